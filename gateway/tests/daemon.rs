//! The real `lookout` binary against a real RTSP server: `lookout run`
//! serves `/api/cameras` and per-camera `/metrics`, follows SIGHUP reloads
//! (and keeps running on a broken file), stops cleanly on SIGTERM; `lookout
//! probe` reports a camera.

mod support;

use std::io::{BufRead, BufReader};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Mount, RtspServer, refused_port};

fn lookout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
}

fn config(cameras: &[(&str, String)], extra_gateway: &str) -> String {
    let mut s = format!(
        "[gateway]\nid = \"test-gw\"\nhttp_listen = \"127.0.0.1:0\"\nstall_timeout_ms = 1500\nreconnect_initial_ms = 100\nreconnect_max_ms = 1000\n{extra_gateway}\n"
    );
    for (id, url) in cameras {
        s.push_str(&format!(
            "\n[[camera]]\nid = \"{id}\"\nkind = \"tower\"\nurl = \"{url}\"\ntransport = \"tcp\"\n"
        ));
    }
    s
}

/// A running daemon whose stderr is collected line by line.
struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    http: String,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let mut child = lookout()
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("lookout runs");
        let stderr = child.stderr.take().expect("stderr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().expect("log").push(line);
            }
        });
        let start = Instant::now();
        let http = loop {
            let found = log.lock().expect("log").iter().find_map(|line| {
                line.contains("lookout gateway running").then(|| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix("http="))
                        .map(str::to_string)
                })?
            });
            if let Some(addr) = found {
                break addr;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "daemon did not start: {:?}",
                log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Daemon { child, log, http }
    }

    fn get(&self, path: &str) -> String {
        let mut response = ureq::get(format!("http://{}{path}", self.http))
            .call()
            .expect("the API answers 200");
        response.body_mut().read_to_string().expect("a text body")
    }

    fn cameras(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&self.get("/api/cameras")).expect("JSON from /api/cameras");
        v["cameras"].as_array().cloned().expect("cameras array")
    }

    fn camera(&self, id: &str) -> Option<serde_json::Value> {
        self.cameras().into_iter().find(|c| c["id"] == id)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig}");
    }

    fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(text))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn run_serves_cameras_follows_sighup_and_stops() {
    let server = RtspServer::start(0, &[Mount::h264("/one"), Mount::h264("/two")], None);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gw.toml");
    let pw_url = server
        .url("/two")
        .replace("rtsp://", "rtsp://viewer:hunter2@");
    std::fs::write(&path, config(&[("cam-1", server.url("/one"))], "")).expect("write");
    let d = Daemon::start(&path);

    assert!(
        wait(Duration::from_secs(10), || d.camera("cam-1").is_some_and(
            |c| c["state"] == "live" && c["fps"].as_f64().unwrap_or(0.0) > 20.0
        )),
        "{:?}",
        d.cameras()
    );
    let c = d.camera("cam-1").expect("cam-1");
    for key in [
        "id",
        "kind",
        "name",
        "group",
        "state",
        "codec",
        "width",
        "height",
        "fps",
        "bitrate_kbps",
        "last_frame_age_ms",
        "reconnects",
        "dropped_units",
        "malformed_nals",
        "timestamp_source",
        "url",
        "last_error",
    ] {
        assert!(c.get(key).is_some(), "/api/cameras lacks `{key}`: {c}");
    }
    assert_eq!(
        (c["codec"].as_str(), c["width"].as_u64()),
        (Some("h264"), Some(320))
    );
    let metrics = d.get("/metrics");
    assert!(
        metrics.contains("lookout_camera_state{camera=\"cam-1\",state=\"live\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lookout_camera_fps{camera=\"cam-1\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lookout_camera_reconnects_total{camera=\"cam-1\"} 0"),
        "{metrics}"
    );

    // Add a camera (with credentials in its URL) by SIGHUP.
    std::fs::write(
        &path,
        config(
            &[("cam-1", server.url("/one")), ("cam-2", pw_url.clone())],
            "",
        ),
    )
    .expect("write");
    d.signal("HUP");
    assert!(
        wait(Duration::from_secs(10), || d
            .camera("cam-2")
            .is_some_and(|c| c["state"] == "live")),
        "{:?}",
        d.cameras()
    );
    assert_eq!(
        d.camera("cam-1").expect("cam-1")["reconnects"],
        0,
        "untouched"
    );

    // A broken file is rejected; both cameras keep running.
    std::fs::write(
        &path,
        config(
            &[
                ("cam-1", server.url("/one")),
                ("bad", "http://nope/".into()),
            ],
            "",
        ),
    )
    .expect("write");
    d.signal("HUP");
    assert!(wait(Duration::from_secs(5), || d.logged("reload rejected")));
    assert!(
        wait(Duration::from_secs(2), || d.logged("camera[1].url")),
        "the problem is named: {}",
        d.log.lock().expect("log").join("\n")
    );
    let ids: Vec<String> = d
        .cameras()
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, vec!["cam-1", "cam-2"]);

    // No detector, no alerts: the list is there and empty.
    let alerts: serde_json::Value =
        serde_json::from_str(&d.get("/api/alerts?active=true")).expect("JSON from /api/alerts");
    assert_eq!(alerts["alerts"], serde_json::json!([]));

    // Credentials appear nowhere.
    let api = d.get("/api/cameras");
    let metrics = d.get("/metrics");
    assert!(!api.contains("hunter2") && !metrics.contains("hunter2"));
    assert!(api.contains("rtsp://***@127.0.0.1"), "{api}");

    d.signal("TERM");
    let mut d = d;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(12), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let log = d.log.lock().expect("log").join("\n");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(log.contains("ingest stopped"), "{log}");
}

#[test]
fn probe_reports_a_camera_and_fails_clearly_on_a_dead_one() {
    let server = RtspServer::start(0, &[Mount::h264("/probe")], None);
    let out = lookout()
        .args([
            "probe",
            &server.url("/probe"),
            "--seconds",
            "2.5",
            "--transport",
            "tcp",
        ])
        .output()
        .expect("probe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "codec:            h264",
        "size:             320x240",
        "transport:        tcp",
        "timestamp source:",
    ] {
        assert!(text.contains(want), "missing `{want}`:\n{text}");
    }
    let fps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("fps:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("fps line");
    assert!((fps - support::FPS).abs() < 3.0, "{text}");
    assert!(
        text.contains("gop:              2"),
        "GOP about 25 frames:\n{text}"
    );

    let out = lookout()
        .args([
            "probe",
            &format!("rtsp://admin:topsecret@127.0.0.1:{}/x", refused_port()),
            "--seconds",
            "1",
            "--connect-seconds",
            "2",
        ])
        .output()
        .expect("probe runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no video"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
}
