//! `lookout-loadtest capacity` end to end at the smallest size: one step,
//! its own report, and a summary naming the capacity found; both pass
//! `check-report`.

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
    let step_report = Path::new(steps[0]["report"].as_str().expect("report path"));
    assert!(step_report.is_file(), "{s}");
    // Each step's report is a run report under the same contract.
    support::check_report(step_report);
    assert!(
        stdout.contains("capacity: 3 cameras meet the SLO"),
        "{stdout}"
    );
}
