//! A center that subscribes to alerting cameras only: quiet cameras' GOPs
//! are skipped at the gateway (counted, never sent), the camera whose
//! incident raises an alert is pushed from its next keyframe, and the
//! alert itself flows whatever the subscription.

use std::path::Path;
use std::process::Command;

#[test]
fn alerting_only_subscription_sends_just_the_alerting_camera() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().expect("tempdir");
    let report = work.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .current_dir(&root)
        .args([
            "relay",
            "--mix",
            "towers=2,drones=1",
            "--size",
            "small",
            "--duration-s",
            "26",
            "--warmup-s",
            "3",
            "--incidents",
            "tower-01:smoke@8",
            "--subscribe",
            "alerting",
            "--strict",
            "--workdir",
        ])
        .arg(work.path())
        .arg("--report")
        .arg(&report)
        .output()
        .expect("lookout-loadtest relay runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(r["alerts"]["in_ledger"], 1, "{}", r["alerts"]);
    let cams = &r["cameras"];
    for quiet in ["tower-02", "drone-01"] {
        assert_eq!(cams[quiet]["sent"], 0, "{quiet}: {}", cams[quiet]);
        assert!(
            cams[quiet]["gops_skipped"].as_u64().unwrap_or(0) > 3,
            "{quiet}: {}",
            cams[quiet]
        );
    }
    let t1 = &cams["tower-01"];
    assert!(t1["gops_sent"].as_u64().unwrap_or(0) >= 3, "{t1}");
    assert_eq!(t1["sent"], t1["received_at_center"], "{t1}");
}
