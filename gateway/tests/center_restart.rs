//! The gateway redials a restarted command center within the bounds the
//! docs give, with real processes (`lookout center`, `lookout run`,
//! certificates from `lookout certs`) over QUIC on loopback.
//!
//! What is promised:
//! - docs/RELIABILITY.md, "A restarted center is noticed at once": the
//!   restarted center answers the old connection's next packet with a
//!   stateless reset and "the gateway redials within half a second". A
//!   gateway without live video sends its next packet within its QUIC
//!   keep-alive interval (2 s, `relay/stream.rs`), so from the center being
//!   back to the gateway being connected again is at most 2 s + 0.5 s.
//! - README, "Connection life": a dial nobody answers (a dead center) gives
//!   up after 1.5 s and is retried after 250 ms, "so the relay is back about
//!   a second after the path heals": after an outage longer than the 10 s
//!   idle timeout, within about a second of the center being back.
//! - An alert raised while the center is down stays in the gateway's outbox
//!   and reaches the ledger after the redial (README, "Alerts").
//!
//! Each bound gets [`SLACK`] on top, for a loaded CI runner (a debug build's
//! handshake on two busy cores); the measured figures are printed.

mod procs;

use std::time::{Duration, Instant};

use procs::{Proc, http, start_center, wait};

/// Added to every documented bound: a debug build on a shared runner.
const SLACK: Duration = Duration::from_millis(1500);
/// QUIC keep-alive interval of the relay's transport (`relay/stream.rs`).
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// "redials within half a second" (RELIABILITY.md).
const REDIAL: Duration = Duration::from_millis(500);
/// "back about a second after the path heals" (README).
const DIAL_CYCLE: Duration = Duration::from_secs(1);
/// The relay's QUIC idle timeout (README, "Connection life").
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's one upstream, from `GET /api/upstreams`.
fn upstream(gw: &Proc) -> serde_json::Value {
    gw.get("/api/upstreams")["upstreams"][0].clone()
}

/// The gateway's connection count and whether it is connected now.
fn link(gw: &Proc) -> (u64, bool) {
    let u = upstream(gw);
    (
        u["connects"].as_u64().unwrap_or(0),
        u["state"] == "connected",
    )
}

fn center_lists(center: &Proc, gateway: &str) -> bool {
    center.get("/api/gateways")["gateways"]
        .as_array()
        .is_some_and(|g| {
            g.iter()
                .any(|g| g["id"] == gateway && g["state"] == "connected")
        })
}

fn in_ledger(center: &Proc, id: &str) -> bool {
    center.get("/api/alerts?gateway=gw-1&limit=1000")["alerts"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["id"] == id))
}

/// Raises an external alert through the gateway's API; it must be
/// confirmed (journalled), whether or not the center is there.
fn raise(gw: &Proc, id: &str) {
    let body = format!(
        r#"{{"id":"{id}","camera":"gauge-bridge-3","label":"flood","source":"gauge-17","severity":"critical","score":0.97}}"#
    );
    let (status, reply) =
        http(&gw.http, "POST", "/api/alerts", Some(&body), &[]).expect("the gateway answers");
    assert_eq!(status, 201, "POST {id}: {reply}");
}

/// Polls (every 20 ms, at most `limit`) until the gateway holds a new
/// connection (more than `connects_before`) that the center lists too.
/// Returns how long that took and the last time the gateway still showed
/// its old connection as up (when it had not yet noticed the restart).
fn until_redialled(
    gw: &Proc,
    center: &Proc,
    connects_before: u64,
    limit: Duration,
) -> (Option<Duration>, Duration) {
    let start = Instant::now();
    let mut last_old = Duration::ZERO;
    while start.elapsed() < limit {
        let (connects, connected) = link(gw);
        if connects > connects_before && connected && center_lists(center, "gw-1") {
            return (Some(start.elapsed()), last_old);
        }
        if connects == connects_before && connected {
            last_old = start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (None, last_old)
}

/// [`until_redialled`], failing unless the gateway is connected again
/// within `bound` of the center being up; returns the same pair.
fn redialled_within(
    gw: &Proc,
    center: &Proc,
    connects: u64,
    bound: Duration,
) -> (Duration, Duration) {
    let limit = bound + Duration::from_secs(15);
    let (back, last_old) = until_redialled(gw, center, connects, limit);
    let back = back
        .unwrap_or_else(|| panic!("no redial within {limit:?}: {}\n{}", upstream(gw), gw.log()));
    assert!(
        back <= bound,
        "redialled {back:?} after the center was back, over {bound:?}\n{}",
        gw.log()
    );
    (back, last_old)
}

#[test]
fn the_gateway_redials_a_restarted_center_within_the_documented_bounds() {
    // The gateway's camera has nothing behind it: it sends no video, so only
    // keep-alives and pings tell it the center is gone or back.
    let procs::Setup {
        dir: _dir,
        center_config,
        gateway_config,
    } = procs::setup();

    let mut center = start_center(&center_config);
    let gw = Proc::start(
        &["run", "--config"],
        &gateway_config,
        "lookout gateway running",
    );
    assert!(
        wait(Duration::from_secs(20), || link(&gw).1
            && center_lists(&center, "gw-1")),
        "never connected: {}\n{}",
        upstream(&gw),
        gw.log()
    );
    raise(&gw, "before-restart");
    assert!(
        wait(Duration::from_secs(10), || in_ledger(
            &center,
            "before-restart"
        )),
        "an alert with the center up did not arrive: {}",
        upstream(&gw)
    );

    // 1. A short outage (3 s, inside the idle timeout): the gateway still
    //    holds the dead connection; the restarted center resets it.
    let (connects, _) = link(&gw);
    center.kill();
    raise(&gw, "while-down-short");
    std::thread::sleep(Duration::from_secs(3));
    center = start_center(&center_config);
    let bound = KEEP_ALIVE + REDIAL + SLACK;
    let (back, last_old) = redialled_within(&gw, &center, connects, bound);
    eprintln!(
        "center restart after 3 s: gateway connected again {back:?} after the center was up \
         (old connection last shown up at {last_old:?}; bound {bound:?})"
    );
    // It was the restarted center's stateless reset that ended the old
    // connection, not the idle timeout.
    let ended = gw.lines_with(&["relay connection:"]);
    eprintln!("the old connection ended: {ended:?}");
    assert!(
        ended.iter().any(|l| l.contains("reset by peer")),
        "no stateless reset: {ended:?}\n{}",
        gw.metrics()
    );
    // The redial itself, from when the gateway could have learnt of the
    // reset at the earliest to connected.
    assert!(
        back - last_old <= REDIAL + SLACK,
        "{:?} from the old connection's last sign of life to the new one",
        back - last_old
    );
    assert!(
        wait(Duration::from_secs(5), || in_ledger(
            &center,
            "while-down-short"
        )),
        "the alert raised while the center was down did not arrive: {}",
        upstream(&gw)
    );

    // 2. A long outage (past the idle timeout): the gateway drops the
    //    connection and dials a center that is not there, again and again.
    let (connects, _) = link(&gw);
    center.kill();
    raise(&gw, "while-down-long");
    let down = Instant::now();
    assert!(
        wait(IDLE_TIMEOUT + Duration::from_secs(5), || !link(&gw).1),
        "the gateway still shows the dead center as connected after {:?}: {}",
        down.elapsed(),
        upstream(&gw)
    );
    eprintln!(
        "center gone: the gateway noticed after {:?} (idle timeout {IDLE_TIMEOUT:?})",
        down.elapsed()
    );
    // Some failed dials.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(link(&gw).0, connects, "connected to nobody?");
    center = start_center(&center_config);
    let bound = DIAL_CYCLE + SLACK;
    let (back, _) = redialled_within(&gw, &center, connects, bound);
    eprintln!(
        "center restart after {:?}: gateway connected again {back:?} after the center was up \
         (bound {bound:?})",
        down.elapsed()
    );
    assert!(
        wait(Duration::from_secs(5), || in_ledger(
            &center,
            "while-down-long"
        )),
        "the alert raised while the center was down did not arrive: {}",
        upstream(&gw)
    );
    // Each alert is in the ledger once (the ledger lists one record per id).
    let listed = center.get("/api/alerts?gateway=gw-1&limit=1000")["alerts"]
        .as_array()
        .map_or(0, |a| a.len());
    assert_eq!(listed, 3, "{}", center.get("/api/alerts?gateway=gw-1"));
    assert_eq!(upstream(&gw)["outbox_pending"], 0, "{}", upstream(&gw));
}
