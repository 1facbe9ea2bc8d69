//! `lookout-loadtest capacity` end to end on a small fleet, under a real SLO:
//! a step of one camera (the reference) and one of two, each with its own
//! run report, and a summary naming the capacity found; all pass
//! `check-report`. Which sizes a search tries (doubling, bisecting, the
//! ceiling, a first step that misses) is unit-tested without running
//! anything (`src/capacity.rs`). Also: the search refuses, before running
//! a step, incidents it could not judge at every step.

mod support;

use std::path::Path;
use std::process::Command;

/// The documented default is `capture_to_alert_p99=100ms,relay_p99=5ms,lost=0`
/// for a release build on a quiet machine. This test runs the debug build on
/// a shared 2-core runner, where two cameras measured capture→alert 22 ms
/// and relay p99 5.4 ms (just over the 5 ms default), so the latency bounds
/// are loosened to ten times or more what was measured — still far below
/// what a stalled relay or detector (seconds) produces — and no frame may be
/// lost, as in the default.
const SLO: &str = "capture_to_alert_p99=500ms,relay_p99=50ms,lost=0";

#[test]
fn capacity_meets_a_real_slo_on_a_small_fleet() {
    let work = tempfile::tempdir().expect("tempdir");
    let (s, stdout) = support::loadtest_report(
        &[
            "capacity",
            "--start",
            "1",
            "--max",
            "2",
            "--size",
            "small",
            // The shortest run the default incident (12 s, from 6 s, 6 s
            // to alert) fits in.
            "--duration-s",
            "24",
            "--warmup-s",
            "3",
            "--slo",
            SLO,
        ],
        work.path(),
    );
    assert_eq!(s["slo"]["capture_to_alert_p99_ms"], 500.0, "{s}");
    // The one camera both fleets have carries the incident, at each step.
    assert_eq!(s["incidents"], "tower-01:smoke@6+12", "{s}");
    assert_eq!(s["reference_cameras"], 1, "{s}");
    let steps = s["steps"].as_array().expect("steps");
    let sizes: Vec<u64> = steps.iter().filter_map(|t| t["cameras"].as_u64()).collect();
    assert_eq!(sizes, [1, 2], "doubled to --max: {s}");
    for t in steps {
        assert_eq!(t["passed"], true, "{t}");
        assert_eq!(t["misses"], serde_json::json!([]), "{t}");
        let path = Path::new(t["report"].as_str().expect("report path"));
        // Each step's report is a run report under the same contract …
        support::check_report(path);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("step report"))
                .expect("JSON");
        // … and the tower's smoke was alerted at both sizes, within the SLO.
        assert_eq!(r["incidents"]["scripted"], 1, "{}", r["incidents"]);
        assert_eq!(r["incidents"]["alerted"], 1, "{}", r["incidents"]);
        let p99 = r["latency_ms"]["capture_to_alert"]["p99"]
            .as_f64()
            .unwrap_or(f64::MAX);
        assert!(p99 <= 500.0, "{}", r["latency_ms"]);
        assert_eq!(r["frames"]["lost"], 0, "{}", r["frames"]);
    }
    assert_eq!(s["capacity_cameras"], 2, "{s}");
    assert_eq!(s["first_miss_cameras"], serde_json::Value::Null, "{s}");
    assert!(
        stdout.contains("capacity: 2 cameras meet the SLO on this machine"),
        "{stdout}"
    );
}

fn capacity(args: &[&str]) -> (bool, String) {
    let work = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .arg("capacity")
        .args(args)
        .arg("--workdir")
        .arg(work.path())
        .output()
        .expect("lookout-loadtest runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Refused before any step ran.
    assert!(!text.contains("capacity: 1 cameras …"), "{text}");
    (out.status.success(), text)
}

#[test]
fn capacity_refuses_incidents_it_cannot_judge_at_every_step() {
    // 1 camera is a tower, 2 a tower and a fixed camera: no drone.
    let (ok, text) = capacity(&[
        "--start",
        "1",
        "--max",
        "2",
        "--size",
        "small",
        "--incidents",
        "drone-01:smoke@6+12",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("`drone-01` is not in every fleet from 1 to 2 cameras"),
        "{text}"
    );
    // Too short for the default incidents, so capture→alert latency (in
    // the default SLO) could not be measured.
    let (ok, text) = capacity(&[
        "--start",
        "1",
        "--max",
        "2",
        "--size",
        "small",
        "--duration-s",
        "14",
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("no incident is scripted"), "{text}");
}
