//! `lookout-loadtest demo`: the README's first command. It starts every part
//! that exists, as separate processes with their real configuration — the
//! simulated cameras (`lookout-loadtest fleet`, RTSP on 127.0.0.1:8554), the
//! command center (`lookout center --config configs/center.toml`) and the
//! gateway (`lookout run --config configs/demo.toml`, relaying to the center
//! over QUIC with mutual TLS from certificates `lookout certs` makes in
//! `.lookout/certs`) — waits until the gateway reports every camera live and
//! the center has it connected, prints where to look, and runs until Ctrl-C
//! (or `--duration 30s`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procs::{self, Proc};

/// What `demo` was asked for, from its command line (`cli::DemoCli`).
pub struct DemoArgs {
    /// Folder for the processes' logs (`logs/`: fleet, center, gateway, ground truth).
    pub workdir: PathBuf,
    /// Stop by itself after this long; `None`: run until Ctrl-C.
    pub duration: Option<Duration>,
    /// `full` or `small` pictures for the simulated cameras.
    pub size: String,
    /// Folder of encoded clips for the fleet (made once, reused).
    pub cache: PathBuf,
}

/// The cameras `configs/demo.toml` lists, served by the fleet: four pulled over RTSP, a
/// drone that pushes over RTMP to 127.0.0.1:1935 and a body camera that is a GB/T 28181
/// device registering to 127.0.0.1:5060.
const DEMO_MIX: &str = "towers=2,drones=1,bodycams=1,drones-rtmp=1,bodycams-gb=1";

/// The ports configs/demo.toml listens on for cameras that dial in.
const DEMO_RTMP_PORT: &str = "1935";
const DEMO_SIP_PORT: &str = "5060";

/// What happens in the demo: smoke rises on a tower, later water spreads
/// under the drone; tower-02 and the body camera stay clean.
const DEMO_INCIDENTS: &str = "tower-01:smoke@20,drone-01:flood@40";

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    let logs = args.workdir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    let me = std::env::current_exe().context("locating lookout-loadtest")?;
    println!("starting the camera fleet (the first run renders and encodes its clips)");
    let mut fleet = Proc::start(
        "fleet",
        &me,
        &[
            "fleet".into(),
            "--mix".into(),
            DEMO_MIX.into(),
            "--port".into(),
            "8554".into(),
            "--rtmp-port".into(),
            DEMO_RTMP_PORT.into(),
            "--sip-port".into(),
            DEMO_SIP_PORT.into(),
            "--size".into(),
            args.size.clone(),
            "--cache".into(),
            args.cache.display().to_string(),
            "--incidents".into(),
            DEMO_INCIDENTS.into(),
            "--ground-truth".into(),
            logs.join("ground-truth.json").display().to_string(),
        ],
        &logs.join("fleet.log"),
    )?;
    procs::wait_for_log(&mut fleet, "fleet: serving", Duration::from_secs(900))?;

    let mut broker = start_broker(&args.workdir, &logs)?;
    let lookout = procs::sibling("lookout")?;
    ensure_certs(&lookout, &root.join(".lookout").join("certs"))?;
    let mut center = Proc::start(
        "center",
        &lookout,
        &[
            "center".into(),
            "--config".into(),
            root.join("configs")
                .join("center.toml")
                .display()
                .to_string(),
        ],
        &logs.join("center.log"),
    )?;
    procs::wait_http_ok(
        "http://127.0.0.1:8090/healthz",
        Duration::from_secs(20),
        &mut center,
    )?;
    let config = root.join("configs").join("demo.toml");
    let mut gateway = Proc::start(
        "gateway",
        &lookout,
        &[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &logs.join("gateway.log"),
    )?;
    procs::wait_http_ok(
        "http://127.0.0.1:8080/healthz",
        Duration::from_secs(20),
        &mut gateway,
    )?;
    let live = wait_cameras_live(&mut gateway, Duration::from_secs(20));
    let relayed = wait_relayed(&mut center, Duration::from_secs(10));
    let exporting = wait_export_connected(Duration::from_secs(10));

    println!();
    println!("lookout demo is running");
    println!("  video wall       http://127.0.0.1:8090/   (open it in a browser)");
    println!("  cameras (RTSP)   rtsp://127.0.0.1:8554/{{tower-01,tower-02,drone-01,bodycam-01}}");
    println!(
        "  cameras that dial in   drone-rtmp-01 (RTMP push to rtmp://127.0.0.1:1935/live/…), bodycam-gb-01 (GB/T 28181 device, SIP 127.0.0.1:5060)"
    );
    println!("  GB/T 28181       http://127.0.0.1:8080/api/gb28181/devices");
    println!("  camera health    http://127.0.0.1:8080/api/cameras   ({live} live)");
    println!(
        "  alerts           http://127.0.0.1:8080/api/alerts    (smoke on tower-01 from 20 s, flood under drone-01 from 40 s)"
    );
    println!(
        "  command center   http://127.0.0.1:8090/api/cameras   ({relayed} cameras relayed over QUIC)"
    );
    println!(
        "  center alerts    http://127.0.0.1:8090/api/alerts    (the SQLite ledger; POST /api/gateways/GATEWAY/alerts/ID/ack)"
    );
    println!("  center gateways  http://127.0.0.1:8090/api/gateways");
    println!(
        "  alerts on MQTT   mosquitto_sub -h 127.0.0.1 -p {DEMO_MQTT_PORT} -t 'lookout/#' -v   ({})",
        if exporting {
            "the center's export is connected"
        } else {
            "the center's export is not connected yet: http://127.0.0.1:8090/api/exports"
        }
    );
    println!("  CAP 1.2 feed     http://127.0.0.1:8090/api/cap.atom");
    println!(
        "  raise an alert   curl -X POST http://127.0.0.1:8080/api/alerts -H 'Content-Type: application/json' \\\n                     -d '{{\"id\":\"gauge-1\",\"camera\":\"drone-01\",\"label\":\"flood\",\"source\":\"river-gauge-17\"}}'"
    );
    println!("  gateway health   http://127.0.0.1:8080/healthz");
    println!("  gateway metrics  http://127.0.0.1:8080/metrics");
    println!("  logs             {}", logs.display());
    match args.duration {
        Some(d) => println!("stopping by itself after {} s", d.as_secs()),
        None => println!("press Ctrl-C to stop"),
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        gateway.check_alive()?;
        center.check_alive()?;
        fleet.check_alive()?;
        if let Some(b) = broker.as_mut() {
            b.check_alive()?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stopping the demo");
    let clean = gateway.stop(Duration::from_secs(10));
    let center_clean = center.stop(Duration::from_secs(10));
    fleet.stop(Duration::from_secs(10));
    if let Some(b) = broker.as_mut() {
        b.stop(Duration::from_secs(5));
    }
    anyhow::ensure!(clean, "the gateway did not stop within 10 s of SIGTERM");
    anyhow::ensure!(
        center_clean,
        "the command center did not stop within 10 s of SIGTERM"
    );
    Ok(())
}

/// The MQTT broker configs/center.toml exports the alerts to.
const DEMO_MQTT_PORT: u16 = 1883;

/// Starts `mosquitto` on 127.0.0.1:1883 for the center's export, unless a
/// broker already answers there (Debian's `mosquitto` package runs one as a
/// service), which is then used. `None`: no broker of the demo's own.
fn start_broker(workdir: &Path, logs: &Path) -> anyhow::Result<Option<Proc>> {
    if std::net::TcpStream::connect(("127.0.0.1", DEMO_MQTT_PORT)).is_ok() {
        println!(
            "an MQTT broker already listens on 127.0.0.1:{DEMO_MQTT_PORT}: the center exports to it"
        );
        return Ok(None);
    }
    let conf = workdir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {DEMO_MQTT_PORT} 127.0.0.1\nallow_anonymous true\n"),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let mut broker = Proc::start(
        "mosquitto",
        Path::new("mosquitto"),
        &["-c".into(), conf.display().to_string()],
        &logs.join("mosquitto.log"),
    )
    .context("starting mosquitto (`cargo xtask setup` installs it)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", DEMO_MQTT_PORT)).is_err() {
        broker.check_alive()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "mosquitto did not listen on 127.0.0.1:{DEMO_MQTT_PORT} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(broker))
}

/// Waits until the center's MQTT export reports itself connected.
fn wait_export_connected(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let connected = ureq::get("http://127.0.0.1:8090/api/exports")
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["exports"].as_array().cloned())
            .is_some_and(|e| e.iter().any(|x| x["connected"] == true));
        if connected {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The demo's certificates (configs/demo.toml and configs/center.toml name
/// them): an operator CA, the center's and the demo gateway's, made by
/// `lookout certs` once and reused.
fn ensure_certs(lookout: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The password the demo's GB/T 28181 device registers with, in the owner-only file
    // configs/demo.toml names; written every time, so it always matches the fleet's.
    crate::fleet::write_secret(
        &dir.join("gb28181-password"),
        crate::fleet::gb28181::PASSWORD,
    )?;
    let mut args: Vec<String> = vec!["certs".into(), "--dir".into(), dir.display().to_string()];
    if !dir.join("center.pem").is_file() {
        args.extend(["--center".into(), "center,127.0.0.1,localhost".into()]);
    }
    if !dir.join("demo-gw.pem").is_file() {
        args.extend(["--gateway".into(), "demo-gw".into()]);
    }
    if args.len() == 3 && dir.join("ca.pem").is_file() {
        return Ok(());
    }
    let out = std::process::Command::new(lookout)
        .args(&args)
        .output()
        .context("running lookout certs")?;
    anyhow::ensure!(
        out.status.success(),
        "lookout certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Polls the center's `/api/cameras` until the gateway's cameras are there
/// with video arriving, or `limit` passes; returns how many have video.
fn wait_relayed(center: &mut Proc, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut relayed = 0;
    while Instant::now() < deadline {
        if center.check_alive().is_err() {
            break;
        }
        if let Ok(mut resp) = ureq::get("http://127.0.0.1:8090/api/cameras").call()
            && let Ok(text) = resp.body_mut().read_to_string()
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(cams) = v["cameras"].as_array()
        {
            relayed = cams
                .iter()
                .filter(|c| c["frames"].as_u64().unwrap_or(0) > 0)
                .count();
            if !cams.is_empty() && relayed == cams.len() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    relayed
}

/// Polls `/api/cameras` until every camera is live or `limit` passes;
/// returns how many are live.
fn wait_cameras_live(gateway: &mut Proc, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut live = 0;
    while Instant::now() < deadline {
        if gateway.check_alive().is_err() {
            break;
        }
        if let Ok(mut resp) = ureq::get("http://127.0.0.1:8080/api/cameras").call()
            && let Ok(text) = resp.body_mut().read_to_string()
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(cams) = v["cameras"].as_array()
        {
            live = cams.iter().filter(|c| c["state"] == "live").count();
            if !cams.is_empty() && live == cams.len() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    live
}

/// The source tree the binaries were built from (configs live there).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
