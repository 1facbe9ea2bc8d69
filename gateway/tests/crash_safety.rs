//! Crash safety of alert delivery, with real processes and SIGKILL: a
//! `lookout run` gateway relays to a `lookout center` over QUIC with mutual
//! TLS, and a client raises bursts of alerts through `POST /api/alerts`.
//!
//! 1. The gateway is killed at a random point of each burst and restarted
//!    from the same files. The client sends the request that got no answer
//!    again (same id), as any client of a crashed server must.
//! 2. The center is killed at a random point of each burst (so some kills
//!    fall between storing a batch and acknowledging it) and restarted on
//!    the same address and ledger.
//!
//! Afterwards the center's ledger holds exactly the alerts the gateway
//! confirmed (`201`/`200`), each once: none lost, none extra, none doubled.
//! Figures (kills, alerts, re-deliveries absorbed, drain time) are printed.
//! `LOOKOUT_CRASH_ITERATIONS=N` runs N kills of each kind (default 30
//! gateway + 20 center); `LOOKOUT_CRASH_SEED` repeats a run.

mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procs::{Proc, http, setup, start_center, wait};

/// Alerts per burst.
const BURST: usize = 30;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn start_gateway(config: &Path) -> Proc {
    Proc::start(&["run", "--config"], config, "lookout gateway running")
}

fn body(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","camera":"gauge-bridge-3","label":"flood","source":"gauge-17","severity":"critical","score":0.97,"note":"river at 4.2 m"}}"#
    )
}

/// Posts one alert; `Some(true)` confirmed, `Some(false)` refused, `None`
/// no answer (the gateway is gone).
fn post(addr: &str, id: &str) -> Option<bool> {
    let (status, reply) = http(addr, "POST", "/api/alerts", Some(&body(id)), &[])?;
    assert!(
        status == 201 || status == 200,
        "POST {id}: {status} {reply}"
    );
    Some(true)
}

/// Posts a burst from another thread; returns the confirmed ids and the
/// one in flight when the gateway vanished (if any).
fn burst(addr: String, prefix: String) -> std::thread::JoinHandle<(Vec<String>, Option<String>)> {
    std::thread::spawn(move || {
        let mut confirmed = Vec::new();
        for k in 0..BURST {
            let id = format!("{prefix}-{k}");
            match post(&addr, &id) {
                Some(_) => confirmed.push(id),
                None => return (confirmed, Some(id)),
            }
        }
        (confirmed, None)
    })
}

/// The center's ledger for gw-1: id → (revision, deliveries); the highest
/// revision is stored.
fn ledger(center: &Proc) -> BTreeMap<String, (u64, u64)> {
    let list = center.get("/api/alerts?gateway=gw-1&limit=1000000")["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for a in &list {
        let id = a["id"].as_str().unwrap_or_default().to_string();
        let previous = out.insert(
            id.clone(),
            (
                a["revision"].as_u64().unwrap_or(u64::MAX),
                a["deliveries"].as_u64().unwrap_or(0),
            ),
        );
        assert!(previous.is_none(), "alert {id} listed twice");
    }
    out
}

fn outbox_pending(gw: &Proc) -> u64 {
    gw.get("/api/upstreams")["upstreams"][0]["outbox_pending"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[test]
fn no_alert_is_lost_or_doubled_when_gateway_or_center_is_killed() {
    let seed = env_u64("LOOKOUT_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    let iterations = env_u64("LOOKOUT_CRASH_ITERATIONS");
    let gateway_kills = iterations.unwrap_or(30);
    let center_kills = iterations.unwrap_or(20);
    eprintln!("crash safety: seed {seed} (LOOKOUT_CRASH_SEED={seed} repeats it)");
    let mut rng = Rng(seed);
    let s = setup();
    let started = Instant::now();

    let mut center = start_center(&s.center_config);
    let mut gw = start_gateway(&s.gateway_config);
    let confirmed: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut retried = 0;

    // How long a whole burst takes here, so kill points can fall anywhere
    // in one.
    let t = Instant::now();
    let (ids, lost) = burst(gw.http.clone(), "warmup".into())
        .join()
        .expect("burst");
    assert!(
        lost.is_none(),
        "the gateway failed during the warm-up burst"
    );
    confirmed.lock().expect("set").extend(ids);
    let burst_ms = (t.elapsed().as_millis() as u64).max(20);
    eprintln!("a burst of {BURST} alerts takes {burst_ms} ms here");

    // 1. SIGKILL the gateway in the middle of bursts.
    for i in 0..gateway_kills {
        let worker = burst(gw.http.clone(), format!("g{i}"));
        std::thread::sleep(Duration::from_millis(rng.below(burst_ms)));
        gw.kill();
        let (ids, in_flight) = worker.join().expect("burst");
        confirmed.lock().expect("set").extend(ids);
        gw = start_gateway(&s.gateway_config);
        // The client's retry of the request that got no answer.
        if let Some(id) = in_flight {
            assert_eq!(post(&gw.http, &id), Some(true), "retry of {id}");
            confirmed.lock().expect("set").insert(id);
            retried += 1;
        }
    }
    let after_gateway_kills = confirmed.lock().expect("set").len();

    // The restarted gateway still knows what it confirmed before its crashes:
    // a retry is answered "already here", and an alert raised before a crash
    // can be cleared (revision 1 at the center).
    let (status, reply) = http(
        &gw.http,
        "POST",
        "/api/alerts",
        Some(&body("warmup-0")),
        &[],
    )
    .expect("the gateway answers");
    assert_eq!(status, 200, "a retry after restarts: {reply}");
    let clear = body("warmup-0").replace(r#""note""#, r#""state":"cleared","note""#);
    let (status, reply) =
        http(&gw.http, "POST", "/api/alerts", Some(&clear), &[]).expect("the gateway answers");
    assert_eq!(
        status, 201,
        "clearing an alert raised before the restarts: {reply}"
    );
    assert_eq!(reply["alert"]["state"], "cleared", "{reply}");

    // 2. SIGKILL the center in the middle of bursts, with the gateway up.
    for i in 0..center_kills {
        let worker = burst(gw.http.clone(), format!("c{i}"));
        std::thread::sleep(Duration::from_millis(rng.below(burst_ms)));
        center.kill();
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        center = start_center(&s.center_config);
        let (ids, in_flight) = worker.join().expect("burst");
        assert!(
            in_flight.is_none(),
            "the gateway must not fail when the center does"
        );
        confirmed.lock().expect("set").extend(ids);
    }

    // Everything confirmed reaches the ledger once the link settles.
    let expected = confirmed.lock().expect("set").clone();
    let drain = Instant::now();
    let settled = wait(Duration::from_secs(60), || {
        outbox_pending(&gw) == 0 && ledger(&center).len() >= expected.len()
    });
    let drain_s = drain.elapsed().as_secs_f64();
    let stored = ledger(&center);
    let ids: BTreeSet<String> = stored.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&ids).collect();
    let extra: Vec<&String> = ids.difference(&expected).collect();
    let redelivered: u64 = stored.values().map(|(_, d)| d.saturating_sub(1)).sum();
    let with_redelivery = stored.values().filter(|(_, d)| *d > 1).count();
    eprintln!(
        "crash safety: {gateway_kills} gateway kills, {center_kills} center kills in {:.1} s; \
         {} alerts confirmed ({after_gateway_kills} by the end of the gateway kills, {retried} \
         after a retry), {} in the ledger, missing {}, extra {}; {redelivered} re-deliveries \
         absorbed by the ledger ({with_redelivery} alerts delivered more than once); drained in \
         {drain_s:.1} s",
        started.elapsed().as_secs_f64(),
        expected.len(),
        stored.len(),
        missing.len(),
        extra.len(),
    );
    assert!(
        settled,
        "not settled after 60 s: outbox {} pending, ledger {} of {}\n{}",
        outbox_pending(&gw),
        stored.len(),
        expected.len(),
        gw.log()
    );
    assert!(missing.is_empty(), "lost alerts: {missing:?}");
    assert!(extra.is_empty(), "alerts nobody confirmed: {extra:?}");
    assert!(
        stored
            .iter()
            .all(|(id, (rev, _))| *rev == u64::from(id == "warmup-0")),
        "every alert was raised once (revision 0), warmup-0 also cleared (revision 1)"
    );
    // Every confirmed alert reached the API of the gateway that confirmed
    // it; the last gateway still lists what it confirmed since its start.
    let listed = gw.get("/api/alerts?limit=1000");
    assert!(listed["alerts"].as_array().is_some_and(|a| !a.is_empty()));
    drop(s.dir);
}

/// A detector alert still active when the gateway went down is cleared when
/// it comes back (its detector starts afresh), so it does not stay active at
/// the center for ever; an external one stays active.
#[test]
fn a_restart_clears_detector_alerts_left_active() {
    let s = setup();
    let record = |id: &str, detector: &str| {
        serde_json::json!({
            "id": id, "state": "active", "gateway": "gw-1",
            "camera": {"id": "gauge-bridge-3", "kind": "fixed"},
            "detector": detector,
            "model": {"name": "smoke_flood", "version": "2", "sha256": ""},
            "label": "smoke", "severity": "high", "score": 0.9, "peak_score": 0.9,
            "boxes": [],
            "frame": {"seq": 1, "width": 1280, "height": 720,
                      "capture_unix_ns": 1, "received_unix_ns": 1},
            "capture_unix_ns": 1, "detect_unix_ns": 2, "capture_to_detect_ms": 0.0,
            "receive_to_detect_ms": 0.0, "raised_unix_ns": 2, "updates": 0,
        })
        .to_string()
    };
    // What the gateway's outbox held when it went down.
    let outbox = lookout::relay::outbox::Outbox::open(
        &s.dir.path().join("gateway-data/outbox/center.sqlite3"),
    )
    .expect("outbox opens");
    for (id, detector) in [("det-1", "smoke_flood"), ("ext-1", "external")] {
        outbox
            .push_alert(&lookout_codecs::relay::Alert {
                id: id.into(),
                revision: 0,
                payload_json: record(id, detector),
                snapshot_jpeg: None,
            })
            .expect("queued");
    }
    drop(outbox);

    let center = start_center(&s.center_config);
    let gw = start_gateway(&s.gateway_config);
    let state = |id: &str| {
        let (_, a) = http(&center.http, "GET", &format!("/api/alerts/{id}"), None, &[])
            .expect("the center answers");
        (
            a["revision"].as_u64(),
            a["state"].as_str().map(String::from),
        )
    };
    assert!(
        wait(Duration::from_secs(20), || state("det-1")
            == (Some(1), Some("cleared".into()))),
        "det-1 at the center: {:?}\n{}",
        state("det-1"),
        gw.log()
    );
    assert_eq!(state("ext-1"), (Some(0), Some("active".into())));
    // The gateway lists both again.
    let listed = gw.get("/api/alerts")["alerts"].to_string();
    assert!(
        listed.contains("det-1") && listed.contains("ext-1"),
        "{listed}"
    );
}
