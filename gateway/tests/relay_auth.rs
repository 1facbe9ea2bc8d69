//! Who may talk to a command center: real `lookout center` and `lookout
//! run` processes over QUIC on loopback, with certificates from `lookout
//! certs`. A gateway with a certificate from another CA is refused in the
//! TLS handshake and gets nothing; a valid certificate may only use its own
//! gateway id; a second certificate for an id that is connected is refused;
//! the right certificate connects.

mod procs;

use std::path::Path;
use std::time::Duration;

use procs::{Proc, center_config, certs, gateway_config, wait};
use serde_json::Value;

fn gateway(dir: &Path, name: &str, id: &str, quic: &str, certs: &Path, cert: &str) -> Proc {
    let path = dir.join(format!("{name}.toml"));
    let storage = dir.join(format!("{name}-data"));
    gateway_config(&path, id, &storage, quic, certs, cert);
    Proc::start(&["run", "--config"], &path, "lookout gateway running")
}

fn upstream(gw: &Proc) -> Value {
    gw.get("/api/upstreams")["upstreams"][0].clone()
}

fn gateways(center: &Proc) -> Vec<Value> {
    center.get("/api/gateways")["gateways"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn only_the_operators_certificates_for_their_own_ids_get_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("operator");
    let rogue = dir.path().join("rogue");
    let reissued = dir.path().join("reissued");
    certs(
        &ca,
        &[
            "--center",
            "center,127.0.0.1",
            "--gateway",
            "gw-1",
            "--gateway",
            "gw-2",
        ],
    );
    certs(&rogue, &["--gateway", "gw-1"]);
    // The same CA issues gw-1 a second, different certificate.
    std::fs::create_dir_all(&reissued).expect("mkdir");
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(ca.join(f), reissued.join(f)).expect("copy CA");
    }
    certs(&reissued, &["--gateway", "gw-1"]);

    let center_toml = dir.path().join("center.toml");
    center_config(
        &center_toml,
        "127.0.0.1:0",
        &dir.path().join("center-data"),
        &ca,
    );
    let center = Proc::start(
        &["center", "--config"],
        &center_toml,
        "lookout center running",
    );
    let quic = center
        .quic
        .clone()
        .expect("quic= in the center's start line");

    // A certificate from another CA: refused in the handshake, on both sides.
    let gw = gateway(dir.path(), "rogue", "gw-1", &quic, &rogue, "gw-1");
    assert!(
        wait(Duration::from_secs(10), || upstream(&gw)["state"]
            == "backoff"),
        "{}",
        upstream(&gw)
    );
    let status = upstream(&gw);
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("handshake"), "{status}");
    // An operator must act: no fast retry loop against the center.
    assert!(
        status["retry_in_ms"].as_u64().unwrap_or(0) >= 20_000,
        "{status}"
    );
    assert!(
        wait(Duration::from_secs(5), || center
            .logged("gateway refused at the TLS handshake")),
        "{}",
        center.log()
    );
    assert!(gateways(&center).is_empty(), "{:?}", gateways(&center));
    assert!(
        center
            .text("/metrics")
            .contains("lookout_center_refused_connections_total{reason=\"tls\"} 1"),
        "{}",
        center.text("/metrics")
    );
    drop(gw);

    // A valid certificate, but for another gateway id: Refuse UNAUTHORIZED.
    let gw = gateway(dir.path(), "borrowed", "gw-1", &quic, &ca, "gw-2");
    assert!(
        wait(Duration::from_secs(10), || upstream(&gw)["state"]
            == "backoff"),
        "{}",
        upstream(&gw)
    );
    let status = upstream(&gw);
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("UNAUTHORIZED") && error.contains("may not use gateway id `gw-1`"),
        "{status}"
    );
    assert!(gateways(&center).is_empty(), "{:?}", gateways(&center));
    drop(gw);

    // The right certificate for the right id: connected.
    let gw = gateway(dir.path(), "good", "gw-1", &quic, &ca, "gw-1");
    assert!(
        wait(Duration::from_secs(10), || upstream(&gw)["state"]
            == "connected"),
        "{}\n{}",
        upstream(&gw),
        center.log()
    );
    let g = gateways(&center);
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0]["id"], "gw-1");
    assert_eq!(g[0]["state"], "connected");
    assert_eq!(g[0]["certificate"]["common_name"], "gw-1");

    // Another certificate for gw-1 while gw-1 is connected: refused; the
    // connected gateway stays.
    let twin = gateway(dir.path(), "twin", "gw-1", &quic, &reissued, "gw-1");
    assert!(
        wait(Duration::from_secs(10), || upstream(&twin)["state"]
            == "backoff"),
        "{}",
        upstream(&twin)
    );
    let status = upstream(&twin);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("GATEWAY_ID_CONFLICT"),
        "{status}"
    );
    assert_eq!(upstream(&gw)["state"], "connected");
    let g = gateways(&center);
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0]["connections"], 1, "{g:?}");

    // Another site's page cannot acknowledge alerts through the center's
    // API (cross-origin write), whatever the alert.
    let (status, reply) = procs::http(
        &center.http,
        "POST",
        "/api/alerts/some-id/ack",
        Some(r#"{"operator":"intruder"}"#),
        &["Origin: http://evil.example"],
    )
    .expect("the center answers");
    assert_eq!(status, 403, "{reply}");
}
