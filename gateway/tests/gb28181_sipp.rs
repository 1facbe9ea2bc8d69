//! GB/T 28181 registration against a SIP peer no one here wrote: SIPp (Debian
//! `sip-tester`, installed by `cargo xtask setup`) plays a device from the scenarios in
//! `tests/sipp/`. With the configured password it registers after the 401 digest
//! challenge, answers the catalog query lookout sends and keeps alive; lookout lists it
//! online with both channels. With a wrong password it gets 403, never 200, and the
//! refusal is counted.

mod procs;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;

use procs::{Proc, wait};
use serde_json::Value;

const PLATFORM: &str = "34020000002000000001";
const DOMAIN: &str = "3402000000";
const PASSWORD: &str = "tower-s3cret";

/// A loopback UDP port nothing uses now.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs SIPp as device `device` with `scenario` against `sip` (UDP); its exit status
/// and its error log.
fn sipp(dir: &Path, scenario: &str, device: &str, password: &str, sip: u16) -> (bool, String) {
    let inf = dir.join(format!("{device}.csv"));
    std::fs::write(&inf, format!("SEQUENTIAL\n{device};{PLATFORM};{DOMAIN};\n")).expect("inf");
    let errors = dir.join(format!("{device}-errors.log"));
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{sip}"))
        .arg("-sf")
        .arg(&scenario)
        .arg("-oocsf")
        .arg(scenario.with_file_name("catalog_answer.xml"))
        .arg("-inf")
        .arg(&inf)
        .args(["-au", device, "-ap", password])
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args(["-m", "1", "-timeout", "20s", "-timeout_error", "-trace_err"])
        .arg("-error_file")
        .arg(&errors)
        .output()
        .expect("sipp runs (Debian sip-tester; `cargo xtask setup` installs it)");
    let log = format!(
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    (out.status.success(), log)
}

fn device(gw: &Proc, id: &str) -> Option<Value> {
    gw.get("/api/gb28181/devices")["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["id"] == id).cloned())
}

#[test]
fn sipp_registers_with_digest_answers_the_catalog_and_keeps_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("gb-password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).expect("password");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let sip = free_udp_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\n\
             [gateway.gb28181]\nsip_listen = \"127.0.0.1:{sip}\"\nid = \"{PLATFORM}\"\n\
             domain = \"{DOMAIN}\"\npassword_file = \"{}\"\n",
            dir.path().join("data").display(),
            secret.display()
        ),
    )
    .expect("config");
    let gw = Proc::start(&["run", "--config"], &config, "lookout gateway running");

    let good = "34020000001320000001";
    let (ok, log) = sipp(dir.path(), "device.xml", good, PASSWORD, sip);
    assert!(
        ok,
        "SIPp's device scenario failed:\n{log}\ngateway:\n{}",
        gw.log()
    );
    let d = device(&gw, good).unwrap_or_else(|| panic!("{good} not listed:\n{}", gw.log()));
    assert_eq!(d["status"], "online", "{d}");
    assert_eq!(d["catalog_total"], 2, "{d}");
    let names: Vec<&str> = d["channels"]
        .as_array()
        .map(|c| c.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["north tower visible", "north tower thermal"], "{d}");
    assert!(d["last_keepalive_unix_ms"].as_u64().is_some(), "{d}");
    assert!(gw.metric("lookout_gb28181_devices_online") >= 1.0);

    // The wrong password: 403 (the scenario fails on a 200), counted, never online.
    let bad = "34020000001320000009";
    let (ok, log) = sipp(
        dir.path(),
        "wrong_password.xml",
        bad,
        "not-the-password",
        sip,
    );
    assert!(ok, "SIPp's wrong-password scenario did not get 403:\n{log}");
    assert!(device(&gw, bad).is_none_or(|d| d["status"] != "online"));
    assert!(
        gw.metric("lookout_gb28181_refused_total{reason=\"wrong_password\"}") >= 1.0,
        "{}",
        gw.metrics()
    );
    assert!(!gw.logged(PASSWORD), "the password was logged");
    assert!(
        !gw.logged("not-the-password"),
        "a device's wrong password was logged"
    );

    // The registered device stays listed while SIPp (gone now) would have to keep alive.
    assert!(wait(std::time::Duration::from_secs(2), || device(
        &gw, good
    )
    .is_some()));
    gw.kill();
}
