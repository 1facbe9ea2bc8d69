//! The command center is killed (SIGKILL, as a crash or power cut) while an
//! incident starts, and comes back six seconds later: the gateway keeps the
//! alert in its SQLite outbox, redials, and the alert lands in the center's
//! ledger (which survived the crash) exactly once. The center forwards to an
//! upper center (a cascade), which must end up with every alert exactly
//! once too, and the gateway's video.

mod support;

#[test]
fn an_alert_raised_while_the_center_is_down_arrives_once() {
    let work = tempfile::tempdir().expect("tempdir");
    let (r, _) = support::loadtest_report(
        &[
            "relay",
            "--mix",
            "towers=2,drones=1",
            "--size",
            "small",
            "--duration-s",
            "34",
            "--warmup-s",
            "3",
            "--incidents",
            "tower-01:smoke@8,drone-01:flood@17",
            "--center-outage",
            "14+6",
            "--cascade",
            "--strict",
        ],
        work.path(),
    );
    let alerts = &r["alerts"];
    assert_eq!(alerts["raised_at_gateway"], 2, "{alerts}");
    assert_eq!(alerts["in_ledger"], 2, "{alerts}");
    assert_eq!(alerts["missing_from_ledger"], 0, "{alerts}");
    assert_eq!(alerts["stored_twice"], 0, "{alerts}");
    assert_eq!(r["incidents"]["missed"], 0, "{}", r["incidents"]);
    // The flood alert waited for the center: stored seconds after it was
    // raised, not lost.
    assert!(
        r["latency_ms"]["raise_to_stored"]["max"]
            .as_f64()
            .unwrap_or(0.0)
            > 1000.0,
        "{}",
        r["latency_ms"]
    );
    let cascade = &r["cascade"];
    assert_eq!(cascade["alerts_in_ledger"], 2, "{cascade}");
    assert_eq!(cascade["missing"], 0, "{cascade}");
    assert_eq!(cascade["stored_twice"], 0, "{cascade}");
    assert_eq!(cascade["cameras"], 3, "{cascade}");
    assert!(
        cascade["frames_received"].as_u64().unwrap_or(0) > 300,
        "{cascade}"
    );
    assert_eq!(
        cascade["gateways"],
        serde_json::json!(["center"]),
        "{cascade}"
    );
    // Each alert's clip was recorded while the center was away or came
    // back, and reached it: read by ffprobe as MP4 starting at a keyframe,
    // its first frame captured before the incident began.
    let clips = &r["clips"];
    assert_eq!(clips["at_center"], 2, "{clips}");
    assert_eq!(clips["recorded_at_gateway"], 2, "{clips}");
    assert_eq!(clips["failed_at_gateway"], 0, "{clips}");
    assert_eq!(clips["playable"], 2, "{clips}");
    assert_eq!(clips["incidents_with_clip"], 2, "{clips}");
    assert_eq!(clips["start_before_onset"], 2, "{clips}");
    let log = std::fs::read_to_string(work.path().join("logs/gateway.log")).expect("log");
    assert!(
        log.matches("connected to command center").count() >= 2,
        "no reconnect:\n{log}"
    );
}
