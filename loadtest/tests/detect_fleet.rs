//! The detection benchmark at a size CI can afford: fleet cameras with
//! scripted smoke and flood incidents, a gateway watching all of them with
//! the bundled model on keyframes. Every incident must raise exactly one
//! alert and no clean camera may raise any; the report must carry
//! capture-to-alert percentiles and the detector-vs-raw-ORT comparison.
//! Latencies are printed, never asserted (shared machines).
//!
//! Five body cameras cover the fleet's three street scenes (day, dusk at the
//! fourth, haze at the fifth), where earlier bundled models raised false
//! smoke alerts (models/smoke_flood.md, *Limitations*).

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn every_incident_raises_one_alert_and_clean_cameras_none() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().expect("tempdir");
    let report = work.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .current_dir(&root)
        .args([
            "detect",
            "--mix",
            "towers=3,drones=2,bodycams=5,fixed=2",
            "--size",
            "small",
            "--duration-s",
            "45",
            "--incidents",
            "tower-01:smoke@12,drone-01:flood@15",
            "--bench-seconds",
            "0.2",
            "--strict",
            "--workdir",
        ])
        .arg(work.path())
        .arg("--report")
        .arg(&report)
        .output()
        .expect("lookout-loadtest detect runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}\ngateway log:\n{}",
        std::fs::read_to_string(work.path().join("logs/gateway.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    support::check_report(&report);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let inc = &r["incidents"];
    assert_eq!(inc["scripted"], 2, "{inc}");
    assert_eq!(inc["alerted"], 2, "{inc}");
    assert_eq!(inc["false_alerts"], 0, "{inc}");
    assert_eq!(inc["duplicate_alerts"], 0, "{inc}");
    assert!(
        r["latency_ms"]["capture_to_alert"]["count"].as_u64() >= Some(2),
        "{}",
        r["latency_ms"]
    );
    assert!(r["latency_ms"]["onset_to_alert"]["p50"].as_f64() > Some(0.0));
    assert!(r["detector"]["frames_in"].as_u64() > Some(0));
    assert!(r["baselines"]["ort_raw_inferences_per_s"].as_f64() > Some(0.0));
    assert!(r["ratios"]["detector_vs_ort_raw"].as_f64() > Some(0.0));
}
