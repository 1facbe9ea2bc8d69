//! The gateway against the fleet, as the ingest issue measures it: 16 fleet
//! cameras with the config the fleet emits all go live; the fleet is killed
//! and restarted on the same port, and every camera is live again with its
//! reconnect count raised, while the gateway never exits. Times are printed,
//! not asserted tightly (these machines are shared).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Kill, bin, free_port};

fn start_fleet(port: u16, dir: &Path) -> Kill {
    let child = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .args([
            "fleet",
            "--cameras",
            "16",
            "--size",
            "small",
            "--duration-s",
            "300",
        ])
        .args(["--port", &port.to_string()])
        .arg("--cache")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.lookout/clips"))
        .arg("--emit-gateway-config")
        .arg(dir.join("gateway.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fleet starts");
    Kill(child)
}

/// (live cameras, total reconnects) from the gateway's camera table.
fn cameras(http: &str) -> Option<(usize, usize, u64)> {
    let mut resp = ureq::get(&format!("http://{http}/api/cameras"))
        .call()
        .ok()?;
    let v: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
    let cams = v["cameras"].as_array()?;
    let live = cams.iter().filter(|c| c["state"] == "live").count();
    let reconnects = cams.iter().filter_map(|c| c["reconnects"].as_u64()).sum();
    Some((live, cams.len(), reconnects))
}

fn wait_all_live(http: &str, limit: Duration, gateway: &mut Child) -> (Duration, u64) {
    let started = Instant::now();
    loop {
        assert!(
            gateway.try_wait().expect("wait").is_none(),
            "the gateway exited"
        );
        if let Some((live, total, reconnects)) = cameras(http)
            && total == 16
            && live == 16
        {
            return (started.elapsed(), reconnects);
        }
        assert!(
            started.elapsed() < limit,
            "not every camera live within {limit:?}: {:?}",
            cameras(http)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sixteen_fleet_cameras_go_live_and_come_back_after_a_fleet_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut fleet = start_fleet(port, dir.path());
    let cfg = dir.path().join("gateway.toml");
    let deadline = Instant::now() + Duration::from_secs(600);
    while !cfg.is_file() {
        assert!(Instant::now() < deadline, "fleet did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let http = format!("127.0.0.1:{}", free_port());
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        "id = \"fleet-gw\"",
        &format!("id = \"fleet-gw\"\nhttp_listen = \"{http}\""),
    );
    std::fs::write(&cfg, text).expect("write config");
    let mut gateway = Kill(
        Command::new(bin("lookout"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gateway starts"),
    );
    let (first, _) = wait_all_live(&http, Duration::from_secs(30), &mut gateway.0);
    println!(
        "16 cameras live {:.2} s after the gateway started",
        first.as_secs_f64()
    );

    // Kill the fleet outright, then bring it back on the same port.
    drop(fleet);
    std::thread::sleep(Duration::from_secs(2));
    let (_, _, before) = cameras(&http).expect("camera table");
    fleet = start_fleet(port, dir.path());
    let (again, reconnects) = wait_all_live(&http, Duration::from_secs(30), &mut gateway.0);
    println!(
        "16 cameras live again {:.2} s after the fleet restarted; reconnects {before} -> {reconnects}",
        again.as_secs_f64()
    );
    assert!(
        reconnects >= before + 16,
        "every camera reconnected: {before} -> {reconnects}"
    );
    drop(fleet);
}
