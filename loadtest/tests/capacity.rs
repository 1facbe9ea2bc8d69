//! `lookout-loadtest capacity` end to end at the smallest size: one step,
//! its own report, and a summary naming the capacity found.

use std::path::Path;
use std::process::Command;

#[test]
fn capacity_steps_and_summarises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = tempfile::tempdir().expect("tempdir");
    let summary = work.path().join("capacity.json");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .current_dir(&root)
        .args(["capacity", "--start", "3", "--max", "3", "--size", "small"])
        .args([
            "--duration-s",
            "14",
            "--warmup-s",
            "3",
            "--slo",
            "lost=100000",
        ])
        .arg("--workdir")
        .arg(work.path())
        .arg("--report")
        .arg(&summary)
        .output()
        .expect("lookout-loadtest capacity runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    assert_eq!(s["capacity_cameras"], 3, "{s}");
    let steps = s["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "{s}");
    assert!(
        Path::new(steps[0]["report"].as_str().expect("report path")).is_file(),
        "{s}"
    );
    assert!(
        stdout.contains("capacity: 3 cameras meet the SLO"),
        "{stdout}"
    );
}
