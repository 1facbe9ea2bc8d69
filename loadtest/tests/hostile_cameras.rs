//! One `lookout run` process against cameras that attack the RTSP exchange
//! itself, next to good fleet cameras: a header sent a byte every 100 ms, endless
//! header lines, one 16 MB header line, an absurd `Content-Length`, garbage
//! interleaved RTP, silence after SETUP, and a camera that asks for the password
//! by `Basic` authentication (handmade cameras from
//! `gateway/tests/support/rogue.rs`, real sockets on 127.0.0.1).
//!
//! Over a minute the gateway's threads, descriptors and resident memory stay
//! flat (sampled every second; the highest figure of the last ten seconds is
//! compared with the highest of the first ten), the good cameras deliver at
//! least 24 frames a second, every hostile camera is reported for what it
//! sent, the Basic-only camera never receives the password, and the gateway
//! stops on SIGINT within its documented time. The figures are printed.

#[path = "../../gateway/tests/support/rogue.rs"]
mod rogue;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rogue::{Fault, RogueCamera};
use serde_json::Value;

mod support;
use support::{Kill, bin, free_port, get, n, s};

/// The gateway's camera table by id.
fn cameras(http: &str) -> Option<BTreeMap<String, Value>> {
    support::cameras(http).map(|(table, _)| table)
}

/// Good fleet cameras (H.264 at 25 fps, `--size small`).
const GOOD: [&str; 2] = ["tower-01", "fixed-01"];
/// What "full rate" means for a 25 fps camera beside hostile ones.
const MIN_GOOD_FPS: f64 = 24.0;

/// After every good camera is live, before the first sample: every hostile
/// camera has been refused and retried a few times by then.
const WARM_UP: Duration = Duration::from_secs(10);
/// The measured window.
const WINDOW: Duration = Duration::from_secs(60);
/// Each end of the window whose highest sample is compared.
const EDGE: usize = 10;

/// Growth allowed between the two ends of the window. Hostile cameras
/// reconnect every second or two, each connection holding a pipeline of a
/// few threads and descriptors while it lasts; a leak of one pipeline per
/// reconnect (what this test was written against: 2 threads and 3
/// descriptors each) would exceed these several times over in a minute.
const THREAD_SLACK: i64 = 12;
const FD_SLACK: i64 = 16;
const RSS_SLACK_KIB: i64 = 24 * 1024;

/// `lookout run` gives its stages 10 s after SIGINT and its blocking threads
/// 1 s more (README, "Commands").
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(11);

/// Threads, open descriptors and resident KiB of a process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    threads: i64,
    fds: i64,
    rss_kib: i64,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Sample {
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as i64)
            .unwrap_or(0),
        rss_kib: field("VmRSS:"),
    }
}

fn highest(samples: &[Sample]) -> Sample {
    Sample {
        threads: samples.iter().map(|s| s.threads).max().unwrap_or(0),
        fds: samples.iter().map(|s| s.fds).max().unwrap_or(0),
        rss_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
    }
}

#[test]
fn hostile_cameras_cost_bounded_resources_and_shutdown_stays_on_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet_port = free_port();
    let fleet_cfg = dir.path().join("fleet.toml");
    let _fleet = Kill(
        Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
            .args(["fleet", "--mix", "towers=1,fixed=1", "--size", "small"])
            .args(["--duration", "300s", "--port", &fleet_port.to_string()])
            .arg("--cache")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.lookout/clips"))
            .arg("--emit-gateway-config")
            .arg(&fleet_cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fleet starts"),
    );

    let units = Arc::new(rogue::h264_access_units(50));
    let hostile: Vec<(&str, Fault, &str)> = vec![
        ("slow-header", Fault::SlowHeader, "tcp"),
        ("endless-headers", Fault::EndlessHeaders, "tcp"),
        ("huge-header", Fault::HugeHeader, "tcp"),
        ("absurd-length", Fault::AbsurdContentLength, "tcp"),
        ("garbage-rtp", Fault::GarbageRtp, "tcp"),
        ("silent-after-setup", Fault::SilentAfterSetup, "tcp"),
        ("basic-only", Fault::BasicOnly, "tcp"),
    ];
    let rogues: BTreeMap<&str, RogueCamera> = hostile
        .iter()
        .enumerate()
        .map(|(i, (id, fault, _))| {
            (
                *id,
                RogueCamera::start(*fault, units.clone(), 40 + i as u64),
            )
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(600);
    while !fleet_cfg.is_file() {
        assert!(Instant::now() < deadline, "fleet did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let http = format!("127.0.0.1:{}", free_port());
    let mut cfg = format!(
        "[gateway]\nid = \"hostile-gw\"\nhttp_listen = \"{http}\"\nstorage = \"{}\"\n\
         stall_timeout_ms = 2000\nreconnect_initial_ms = 100\nreconnect_max_ms = 1000\n\n",
        dir.path().join("storage").display()
    );
    for id in GOOD {
        cfg.push_str(&format!(
            "[[camera]]\nid = \"{id}\"\nkind = \"fixed\"\nurl = \"rtsp://127.0.0.1:{fleet_port}/{id}\"\ntransport = \"tcp\"\n\n"
        ));
    }
    for (id, _, transport) in &hostile {
        cfg.push_str(&format!(
            "[[camera]]\nid = \"{id}\"\nkind = \"fixed\"\nurl = \"{}\"\ntransport = \"{transport}\"\n\
             username = \"admin\"\npassword = \"Hostile-Pa55-0b1e\"\n\n",
            rogues[id].url()
        ));
    }
    let cfg_path = dir.path().join("gateway.toml");
    std::fs::write(&cfg_path, &cfg).expect("write config");
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut gateway = Kill(
        Command::new(bin("lookout"))
            .args(["run", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("gateway starts"),
    );
    let pid = gateway.0.id();
    let log_tail = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            gateway.0.try_wait().expect("wait").is_none(),
            "the gateway exited:\n{}",
            log_tail()
        );
        if cameras(&http).is_some_and(|t| {
            GOOD.iter()
                .all(|id| t.get(*id).is_some_and(|c| s(c, "state") == "live"))
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "good cameras not live:\n{}",
            log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(WARM_UP);
    let table0 = cameras(&http).expect("camera table");

    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < WINDOW {
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            gateway.0.try_wait().expect("wait").is_none(),
            "the gateway exited:\n{}",
            log_tail()
        );
        samples.push(sample(pid));
    }
    let window = started.elapsed().as_secs_f64();
    let table = cameras(&http).expect("camera table");
    let metrics = get(&format!("http://{http}/metrics")).expect("metrics");

    let first = highest(&samples[..EDGE.min(samples.len())]);
    let last = highest(&samples[samples.len().saturating_sub(EDGE)..]);
    println!(
        "gateway pid {pid} over {window:.0} s: threads {} -> {}, fds {} -> {}, RSS {} -> {} KiB (highest of the first and last {EDGE} samples)",
        first.threads, last.threads, first.fds, last.fds, first.rss_kib, last.rss_kib
    );
    for (id, c) in &table {
        println!(
            "  {id:<19} {:<8} fps {:>5.1} reconnects {:>4} rtsp_refusals {:>4} abandoned {:>2} error {:?}",
            s(c, "state"),
            c["fps"].as_f64().unwrap_or(0.0),
            n(c, "reconnects"),
            n(c, "rtsp_refusals"),
            n(c, "abandoned_teardowns"),
            c["last_error"].as_str(),
        );
    }
    for (id, r) in &rogues {
        println!(
            "  rogue {id:<19} connections {:>4} authorizations {}",
            r.stats.connections.load(Relaxed),
            r.stats.authorizations.load(Relaxed)
        );
    }

    // Bounded: flat across the minute.
    assert!(
        last.threads - first.threads <= THREAD_SLACK,
        "threads grew: {first:?} -> {last:?}"
    );
    assert!(
        last.fds - first.fds <= FD_SLACK,
        "descriptors grew: {first:?} -> {last:?}"
    );
    assert!(
        last.rss_kib - first.rss_kib <= RSS_SLACK_KIB,
        "memory grew: {first:?} -> {last:?}"
    );

    // The good cameras at full rate, undisturbed.
    for id in GOOD {
        let (c, c0) = (&table[id], &table0[id]);
        let rate = (n(c, "units") - n(c0, "units")) as f64 / window;
        assert!(
            rate >= MIN_GOOD_FPS,
            "{id}: {rate:.1} frames/s over the window: {c}"
        );
        assert_eq!(n(c, "reconnects"), 0, "{id} reconnected: {c}");
    }

    // Every hostile camera was tried again and again, and said what it did.
    let expect: [(&str, &str); 7] = [
        ("slow-header", "not finished within"),
        ("endless-headers", "more than 64 header lines"),
        ("huge-header", "header line longer than"),
        ("absurd-length", "Content-Length of 4611686018427387904"),
        ("garbage-rtp", ""),
        ("silent-after-setup", "stalled"),
        ("basic-only", "Basic authentication only"),
    ];
    for (id, words) in expect {
        let c = &table[id];
        assert!(
            rogues[id].stats.connections.load(Relaxed) >= 2,
            "{id} was not retried: {c}"
        );
        assert_ne!(s(c, "state"), "live", "{id}: {c}");
        if id == "silent-after-setup" {
            // PLAY is never answered: whichever gives up first — lookout's
            // stall watchdog or rtspsrc waiting for the answer — names the
            // last attempt, and on a loaded runner either can (a CI run saw
            // 21 stalls and 25 reconnects, the last one rtspsrc's timeout).
            // The watchdog must have fired as well.
            let e = s(c, "last_error");
            assert!(
                e.contains("stalled") || e.contains("Timeout while waiting for server response"),
                "{id}: {c}"
            );
            assert!(n(c, "stalls") >= 1, "{id}: {c}");
        } else {
            assert!(s(c, "last_error").contains(words), "{id}: {c}");
        }
        assert_eq!(n(c, "abandoned_teardowns"), 0, "{id}: {c}");
    }
    for id in [
        "slow-header",
        "endless-headers",
        "huge-header",
        "absurd-length",
    ] {
        assert!(n(&table[id], "rtsp_refusals") >= 2, "{id}: {}", table[id]);
        let series = format!("lookout_camera_rtsp_refusals_total{{camera=\"{id}\"}}");
        assert!(metrics.contains(&series), "no {series} in /metrics");
    }
    // The password is never offered to a camera that asks for it in clear.
    assert_eq!(rogues["basic-only"].stats.authorizations.load(Relaxed), 0);

    // SIGINT: stopped within the documented time, hostile cameras attached.
    let stopping = Instant::now();
    let killed = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = loop {
        if let Some(status) = gateway.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            stopping.elapsed() < SHUTDOWN_LIMIT,
            "the gateway did not stop within {SHUTDOWN_LIMIT:?} of SIGINT:\n{}",
            log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "stopped {:.2} s after SIGINT ({status})",
        stopping.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{status}:\n{}", log_tail());
}
