//! The camera fleet as third-party clients see it: ffprobe and a plain
//! `gst-launch-1.0 rtspsrc` pipeline read every camera over real RTSP, the
//! stream carries lookout's capture-time stamps, incidents write their
//! ground truth, and the emitted gateway config passes `lookout check-config`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Fleet {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cache_dir() -> PathBuf {
    // Shared by the tests (and with the demo) so clips are encoded once.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.lookout/clips")
}

fn start_fleet(extra: &[&str]) -> Fleet {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .args([
            "fleet",
            "--port",
            "0",
            "--size",
            "small",
            "--duration-s",
            "120",
        ])
        .arg("--cache")
        .arg(cache_dir())
        .arg("--emit-gateway-config")
        .arg(dir.path().join("gateway.toml"))
        .arg("--ground-truth")
        .arg(dir.path().join("truth.json"))
        .arg("--summary")
        .arg(dir.path().join("summary.json"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fleet starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("[fleet] {line}");
            if let Some(rest) = line.split("rtsp://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port.parse::<u16>().unwrap_or(0));
            }
        }
    });
    // Encoding clips the first time can take a while on two cores.
    let port = rx
        .recv_timeout(Duration::from_secs(600))
        .expect("the fleet reports its port");
    assert!(port > 0);
    Fleet { child, port, dir }
}

fn ffprobe(url: &str) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,r_frame_rate",
            "-of",
            "json",
            url,
        ])
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    v["streams"][0].clone()
}

/// "25/1" → 25.0; anything unreadable → NaN, which fails every comparison.
fn fraction(text: &str) -> f64 {
    let (n, d) = text.split_once('/').unwrap_or((text, "1"));
    match (n.parse::<f64>(), d.parse::<f64>()) {
        (Ok(n), Ok(d)) if d != 0.0 => n / d,
        _ => f64::NAN,
    }
}

#[test]
fn third_party_clients_read_every_camera() {
    let fleet = start_fleet(&["--mix", "towers=1,drones=1,bodycams=1,fixed=2"]);
    let expect = [
        ("tower-01", "h264", 640, 360, 25.0),
        ("drone-01", "h264", 640, 360, 30.0),
        ("bodycam-01", "h264", 416, 240, 25.0),
        ("fixed-01", "h264", 640, 360, 25.0),
        ("fixed-02", "hevc", 640, 360, 25.0),
    ];
    for (id, codec, w, h, rate) in expect {
        let url = format!("rtsp://127.0.0.1:{}/{id}", fleet.port);
        let s = ffprobe(&url);
        assert_eq!(s["codec_name"], codec, "{id}: {s}");
        assert_eq!(s["width"], w, "{id}: {s}");
        assert_eq!(s["height"], h, "{id}: {s}");
        // ffprobe guesses the rate from the first RTP timestamps, which
        // carry the capture clock; on a loaded runner it reads 25 fps as
        // 149/6 (24.8). Within 2 % is the camera's rate.
        let got = fraction(s["r_frame_rate"].as_str().unwrap_or_default());
        assert!(
            (got - rate).abs() <= rate * 0.02,
            "{id}: frame rate {got:.2}, expected {rate}: {s}"
        );
    }
    // A plain GStreamer pipeline, over UDP this time, for 40 frames.
    let url = format!("rtsp://127.0.0.1:{}/tower-01", fleet.port);
    let out = Command::new("timeout")
        .args(["30", "gst-launch-1.0", "-q", "rtspsrc"])
        .arg(format!("location={url}"))
        .args([
            "protocols=udp",
            "!",
            "rtph264depay",
            "!",
            "h264parse",
            "!",
            "identity",
            "eos-after=40",
            "!",
            "fakesink",
        ])
        .output()
        .expect("gst-launch runs");
    assert!(
        out.status.success(),
        "gst-launch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn emitted_config_passes_check_config() {
    let fleet = start_fleet(&["--cameras", "8", "--auth", "viewer:s3cret"]);
    let cfg = fleet.dir.path().join("gateway.toml");
    let lookout = Path::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .parent()
        .expect("bin dir")
        .join("lookout");
    let out = Command::new(lookout)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("lookout runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&cfg).expect("config");
    assert_eq!(text.matches("[[camera]]").count(), 8);
    // With auth required, a client without credentials is refused.
    let url = format!("rtsp://127.0.0.1:{}/tower-01", fleet.port);
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rtsp_transport", "tcp", &url])
        .output()
        .expect("ffprobe runs");
    assert!(!out.status.success());
    let url = format!("rtsp://viewer:s3cret@127.0.0.1:{}/tower-01", fleet.port);
    let s = ffprobe(&url);
    assert_eq!(s["codec_name"], "h264");
}

/// Reads access units from one camera in-process until `want` stamped frames
/// arrived or `limit` passed, and returns the capture stamps found in them with
/// the wall-clock time each arrived. The limit is generous: on a loaded 2-core
/// runner the RTSP handshake alone can take seconds.
fn read_stamps(
    url: &str,
    want: usize,
    limit: Duration,
) -> Vec<(lookout_codecs::CaptureStamp, u64)> {
    use gstreamer::prelude::*;
    gstreamer::init().expect("gstreamer");
    let desc = format!(
        "rtspsrc location={url} latency=0 protocols=tcp ! rtph264depay ! h264parse \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    );
    let pipeline = gstreamer::parse::launch(&desc)
        .expect("pipeline")
        .downcast::<gstreamer::Pipeline>()
        .expect("is a pipeline");
    let sink = pipeline
        .by_name("sink")
        .expect("sink")
        .downcast::<gstreamer_app::AppSink>()
        .expect("appsink");
    pipeline
        .set_state(gstreamer::State::Playing)
        .expect("playing");
    let deadline = Instant::now() + limit;
    let mut stamps = Vec::new();
    while Instant::now() < deadline && stamps.len() < want {
        let Some(sample) = sink.try_pull_sample(gstreamer::ClockTime::from_mseconds(200)) else {
            continue;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64;
        let buffer = sample.buffer().expect("buffer");
        let map = buffer.map_readable().expect("readable");
        if let Some(stamp) = lookout_codecs::find_stamp(lookout_codecs::Codec::H264, map.as_slice())
        {
            stamps.push((stamp.expect("a well-formed stamp"), now));
        }
    }
    pipeline.set_state(gstreamer::State::Null).expect("null");
    stamps
}

#[test]
fn frames_carry_capture_stamps_and_incidents_write_ground_truth() {
    let fleet = start_fleet(&["--mix", "towers=2", "--incidents", "tower-02:smoke@1.5"]);
    let url = format!("rtsp://127.0.0.1:{}/tower-01", fleet.port);
    let stamps = read_stamps(&url, 50, Duration::from_secs(30));
    assert!(
        stamps.len() >= 50,
        "only {} stamped frames in 30 s at 25 fps",
        stamps.len()
    );
    for w in stamps.windows(2) {
        assert_eq!(
            w[1].0.frame,
            w[0].0.frame + 1,
            "frame numbers are consecutive"
        );
        assert!(w[1].0.capture_unix_ns > w[0].0.capture_unix_ns);
    }
    for (stamp, arrived) in &stamps {
        assert_eq!(stamp.camera_id, "tower-01");
        // Captured before it arrived, and not long before (loopback).
        assert!(stamp.capture_unix_ns <= *arrived);
        assert!(arrived - stamp.capture_unix_ns < 1_000_000_000);
    }
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fleet.dir.path().join("truth.json")).expect("truth file"),
    )
    .expect("json");
    let onsets = truth.as_array().expect("array");
    assert_eq!(onsets.len(), 1, "{truth}");
    assert_eq!(onsets[0]["camera"], "tower-02");
    assert_eq!(onsets[0]["class"], "smoke");
    assert!(onsets[0]["onset_capture_unix_ns"].as_u64().unwrap_or(0) > 0);
    assert!(onsets[0]["onset_frame"].as_u64().unwrap_or(0) >= 30);
}
