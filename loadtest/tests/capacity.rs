//! `lookout-loadtest capacity` end to end at the smallest size: one step,
//! its own report, and a summary naming the capacity found.

mod support;

use std::path::Path;

#[test]
fn capacity_steps_and_summarises() {
    let work = tempfile::tempdir().expect("tempdir");
    let (s, stdout) = support::loadtest_report(
        &[
            "capacity",
            "--start",
            "3",
            "--max",
            "3",
            "--size",
            "small",
            "--duration-s",
            "14",
            "--warmup-s",
            "3",
            "--slo",
            "lost=100000",
        ],
        work.path(),
    );
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
