//! The README's demo command, run for a few seconds: it must start every
//! part, report where to look, and stop cleanly by itself.

use std::process::Command;

#[test]
fn demo_starts_and_stops_cleanly() {
    let workdir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .args(["demo", "--duration-s", "3", "--size", "small", "--workdir"])
        .arg(workdir.path())
        .arg("--cache")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.lookout/clips"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("http://127.0.0.1:8080/healthz"), "{stdout}");
    // Every camera of configs/demo.toml is served by the fleet and live.
    assert!(stdout.contains("(6 live)"), "{stdout}");
    let log = std::fs::read_to_string(workdir.path().join("logs/gateway.log")).expect("log");
    assert!(log.contains("lookout gateway running"), "{log}");
    // The bundled detector watches the demo's cameras.
    assert!(log.contains("detector ready detector=smoke_flood"), "{log}");
    assert!(
        stdout.contains("http://127.0.0.1:8080/api/alerts"),
        "{stdout}"
    );
    assert!(log.contains("stopped"), "{log}");
    // The gateway relays to the demo's command center over QUIC.
    assert!(log.contains("connected to command center"), "{log}");
    assert!(stdout.contains("(6 cameras relayed over QUIC)"), "{stdout}");
    assert!(
        stdout.contains("http://127.0.0.1:8090/api/alerts"),
        "{stdout}"
    );
    // The center exports alerts to the demo's MQTT broker (mosquitto).
    assert!(
        stdout.contains("mosquitto_sub -h 127.0.0.1 -p 1883")
            && stdout.contains("the center's export is connected"),
        "{stdout}"
    );
    let center = std::fs::read_to_string(workdir.path().join("logs/center.log")).expect("log");
    assert!(
        center.contains("gateway connected gateway=demo-gw"),
        "{center}"
    );
}
