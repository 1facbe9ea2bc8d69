//! Cameras that dial in, end to end at a size CI can afford: the fleet's RTMP
//! publishers (one H.264, one H.265 as Enhanced RTMP `hvc1`, by the fleet's
//! alternation) and GB/T 28181 devices (registering with the SHA-256 digest, answering
//! the gateway's INVITE with PS over RTP: the first over UDP, the second over TCP) and
//! a lower platform sharing three cameras by cascade (one registration, a catalog of
//! three channels, three calls at once, the second over TCP active) beside a pulled
//! tower, through the gateway's
//! detection and relay to the command center.
//! Every frame each camera sent reaches the center, none is lost on the way in, and
//! the incidents scripted on a pushed and a GB/T 28181 camera are alerted once each.

mod support;

#[test]
fn rtmp_and_gb28181_cameras_relay_every_frame_and_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, _) = support::loadtest_report(
        &[
            "relay",
            "--mix",
            "towers=1,drones-rtmp=2,fixed-gb=2,platform-gb=3",
            "--size",
            "small",
            "--duration-s",
            "30",
            "--warmup-s",
            "5",
            "--incidents",
            "drone-rtmp-01:flood@10,fixed-gb-02:smoke@12,platform-gb-02:smoke@14",
            "--strict",
        ],
        dir.path(),
    );
    let setup = &r["setup"];
    assert_eq!(setup["pushed_rtmp"], 2, "{setup}");
    assert_eq!(setup["gb28181"], 5, "{setup}");
    let frames = &r["frames"];
    assert_eq!(frames["lost"], 0, "{frames}");
    for id in [
        "drone-rtmp-01",
        "drone-rtmp-02",
        "fixed-gb-01",
        "fixed-gb-02",
        "platform-gb-01",
        "platform-gb-02",
        "platform-gb-03",
    ] {
        let c = &r["cameras"][id];
        assert!(
            c["received_at_gateway"].as_u64().unwrap_or(0) > 200,
            "{id} sent too little: {c}"
        );
        assert_eq!(c["lost_camera_to_gateway"], 0, "{id}: {c}");
        assert_eq!(c["sent"], c["received_at_center"], "{id}: {c}");
    }
    let inc = &r["incidents"];
    assert_eq!(inc["alerted"], 3, "{inc}");
    assert_eq!(inc["missed"], 0, "{inc}");
    assert_eq!(inc["duplicate_alerts"], 0, "{inc}");
    let alerts = &r["alerts"];
    assert_eq!(alerts["missing_from_ledger"], 0, "{alerts}");
    assert_eq!(alerts["stored_twice"], 0, "{alerts}");

    // The platform's second channel is configured TCP active (the fleet's emitted
    // config): the gateway connected for its RTP and never fell back to another
    // transport. The devices registered with the SHA-256 digest offered first.
    let log = std::fs::read_to_string(dir.path().join("logs").join("gateway.log"))
        .expect("the gateway's log");
    let about =
        |camera: &str, text: &str| log.lines().any(|l| l.contains(camera) && l.contains(text));
    assert!(
        about("platform-gb-02", "GB/T 28181 stream playing")
            && about("platform-gb-02", "lookout connecting"),
        "platform-gb-02 did not play over TCP active:\n{log}"
    );
    assert!(
        !about("platform-gb-02", "asking for RTP over"),
        "platform-gb-02 fell back to another transport:\n{log}"
    );
    let config = std::fs::read_to_string(dir.path().join("gateway.toml")).expect("gateway config");
    assert!(
        config.contains("digest = [\"SHA-256\", \"MD5\"]"),
        "{config}"
    );
}
