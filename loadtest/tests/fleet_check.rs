//! `lookout-loadtest fleet-check` at a small, bounded size: a reader on every
//! camera, every camera sends, and the command's own limits hold — the README's
//! ≥ 99 % of frames on time and at most 0.6 of a core for the fleet (its
//! defaults). The 64-camera, 60-second run is a command users run.

use std::path::Path;
use std::process::Command;

#[test]
fn fleet_check_reads_every_camera() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .args([
            "fleet-check",
            "--cameras",
            "8",
            "--size",
            "small",
            "--duration-s",
            "10",
            "--cache",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.lookout/clips"))
        .arg("--workdir")
        .arg(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("frames on time"), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("fleet-summary.json")).expect("summary"),
    )
    .expect("json");
    assert_eq!(summary["cameras"], 8);
    for cam in summary["per_camera"].as_array().expect("cameras") {
        assert!(cam["frames_pushed"].as_u64().unwrap_or(0) > 0, "{cam}");
    }
}
