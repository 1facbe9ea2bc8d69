//! A center that subscribes to alerting cameras only: quiet cameras' GOPs
//! are skipped at the gateway (counted, never sent), the camera whose
//! incident raises an alert is pushed from its next keyframe, and the
//! alert itself flows whatever the subscription.

mod support;

#[test]
fn alerting_only_subscription_sends_just_the_alerting_camera() {
    let work = tempfile::tempdir().expect("tempdir");
    let (r, _) = support::loadtest_report(
        &[
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
        ],
        work.path(),
    );
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
