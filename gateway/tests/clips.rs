//! Alert clips end to end, with real processes and real peers: an RTSP
//! camera (GStreamer's RTSP server, x264 with a keyframe every second), a
//! `lookout run` gateway that records a clip around an alert on it, and a
//! `lookout center` that is killed (SIGKILL) while the clip is being
//! recorded and comes back later. The clip must arrive all the same, be
//! served at `GET /api/alerts/{id}/clip.mp4` with range requests, and
//! `ffprobe` (FFmpeg, which no one here wrote) must read it as H.264 in
//! MP4 that starts with a keyframe and lasts pre + post within one GOP.

mod procs;
mod support;

use std::process::Command;
use std::time::Duration;

use procs::{Proc, http, start_center, wait};
use support::{Mount, RtspServer};

const PRE_S: f64 = 2.0;
const POST_S: f64 = 3.0;
/// The test camera's GOP: `key-int-max=25` at 25 fps.
const GOP_S: f64 = 1.0;

/// `ffprobe` of the clip at `url`: the stream's codec, each frame's key flag
/// and the duration.
fn probe(url: &str) -> (String, Vec<bool>, f64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,codec_tag_string:frame=key_frame:format=duration,format_name",
            "-of",
            "json",
            url,
        ])
        .output()
        .expect("ffprobe runs (cargo xtask setup installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let stream = &v["streams"][0];
    assert_eq!(stream["codec_tag_string"], "avc1", "{v}");
    assert!(
        v["format"]["format_name"]
            .as_str()
            .is_some_and(|f| f.contains("mp4")),
        "{v}"
    );
    let keys = v["frames"]
        .as_array()
        .map(|f| f.iter().map(|f| f["key_frame"] == 1).collect())
        .unwrap_or_default();
    let duration = v["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    (
        stream["codec_name"].as_str().unwrap_or("").to_string(),
        keys,
        duration,
    )
}

/// `GET path` with a `Range` header: the status, `Content-Range` and body.
fn ranged(addr: &str, path: &str, range: &str) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut r = agent
        .get(format!("http://{addr}{path}"))
        .header("Range", range)
        .call()
        .expect("the center answers");
    let content_range = r
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("body");
    (r.status().as_u16(), content_range, body)
}

#[test]
fn a_clip_around_an_alert_reaches_a_center_that_was_down_and_plays_in_ffprobe() {
    let camera = RtspServer::start(0, &[Mount::h264("/tower")], None);
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("certs");
    procs::certs(&pki, &["--center", "center,127.0.0.1", "--gateway", "gw-1"]);
    let quic = format!("127.0.0.1:{}", procs::free_udp_port());
    let center_config = dir.path().join("center.toml");
    procs::center_config(&center_config, &quic, &dir.path().join("center-data"), &pki);
    let gateway_config = dir.path().join("gateway.toml");
    procs::gateway_config(
        &gateway_config,
        "gw-1",
        &dir.path().join("gateway-data"),
        &quic,
        &pki,
        "gw-1",
    );
    let mut text = std::fs::read_to_string(&gateway_config).expect("config");
    text.push_str(&format!(
        "\n[[camera]]\nid = \"tower-3\"\nkind = \"tower\"\nurl = \"{}\"\ntransport = \"tcp\"\n\
         clip = {{ enabled = true, pre_s = {PRE_S}, post_s = {POST_S} }}\n",
        camera.url("/tower"),
    ));
    std::fs::write(&gateway_config, text).expect("config");

    let center = start_center(&center_config);
    let gw = Proc::start(
        &["run", "--config"],
        &gateway_config,
        "lookout gateway running",
    );
    // The ring needs its pre-roll: live video for longer than PRE_S.
    assert!(
        wait(Duration::from_secs(20), || {
            gw.metric("lookout_camera_units_total{camera=\"tower-3\"}") > 100.0
        }),
        "no video from the camera:\n{}",
        gw.log()
    );

    // The center goes down; the alert is raised while it is away.
    center.kill();
    let body = r#"{"id":"clip-e2e-1","camera":"tower-3","label":"smoke","source":"test","severity":"high","score":0.9}"#;
    let (status, reply) =
        http(&gw.http, "POST", "/api/alerts", Some(body), &[]).expect("the gateway answers");
    assert_eq!(status, 201, "{reply}");
    assert!(
        wait(Duration::from_secs(20), || gw
            .metric("lookout_clips_total{outcome=\"recorded\"}")
            >= 1.0),
        "no clip recorded:\n{}",
        gw.log()
    );
    assert_eq!(
        gw.metric("lookout_relay_clips_total{upstream=\"center\",outcome=\"acknowledged\"}"),
        0.0
    );

    // Back: the gateway redials and delivers the clip it kept.
    let center = start_center(&center_config);
    let path = "/api/alerts/clip-e2e-1/clip.mp4";
    assert!(
        wait(Duration::from_secs(30), || {
            center
                .request("HEAD", path, None, &[])
                .is_some_and(|(s, _)| s == 200)
        }),
        "the clip never reached the center:\ngateway:\n{}\ncenter:\n{}",
        gw.log(),
        center.log()
    );
    assert!(
        wait(Duration::from_secs(10), || gw.metric(
            "lookout_relay_clips_total{upstream=\"center\",outcome=\"acknowledged\"}"
        ) >= 1.0),
        "the gateway never saw the acknowledgement:\n{}",
        gw.log()
    );

    let url = format!("http://{}{path}", center.http);
    let (codec, keys, duration) = probe(&url);
    assert_eq!(codec, "h264");
    assert_eq!(keys.first(), Some(&true), "the clip starts with a keyframe");
    let frames = keys.len() as f64;
    println!(
        "clip: {frames} frames, {duration:.2} s (pre {PRE_S} s + post {POST_S} s, GOP {GOP_S} s)"
    );
    assert!(
        (PRE_S + POST_S - 0.2..=PRE_S + POST_S + GOP_S + 0.3).contains(&duration),
        "duration {duration} s, wanted {} s within one GOP",
        PRE_S + POST_S
    );

    // Range requests, as a browser seeking makes them.
    let (status, whole_range, head) = ranged(&center.http, path, "bytes=0-99");
    assert_eq!(status, 206);
    assert_eq!(head.len(), 100);
    let size: u64 = whole_range
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("Content-Range names the size");
    let (status, _, tail) = ranged(&center.http, path, "bytes=-10");
    assert_eq!(status, 206);
    assert_eq!(tail.len(), 10);
    let (status, range, _) = ranged(&center.http, path, &format!("bytes={size}-"));
    assert_eq!(status, 416, "{range}");
    assert_eq!(range, format!("bytes */{size}"));
    // The gateway's own copy is the same file.
    let (status, _, first) = ranged(&center.http, path, "bytes=0-");
    assert_eq!(status, 206);
    assert_eq!(first.len() as u64, size);
    assert_eq!(&first[..100], &head[..]);
    assert_eq!(&first[first.len() - 10..], &tail[..]);
    // The file begins with an MP4 `ftyp` box, its index (`moov`) ahead of
    // the samples so a browser plays it before the last byte.
    assert_eq!(&first[4..8], b"ftyp");
    let moov = first.windows(4).position(|w| w == b"moov");
    let mdat = first.windows(4).position(|w| w == b"mdat");
    assert!(moov.is_some() && moov < mdat, "moov before mdat");
}
