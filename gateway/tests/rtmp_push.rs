//! RTMP push, against a publisher no one here wrote: ffmpeg encodes a clip itself
//! (libx264) and publishes it with `-c copy -f flv` to `rtmp://127.0.0.1:P/live/cam1`,
//! as a drone's ground station or an encoder would. The pushed camera must go live in
//! `GET /api/cameras` with the clip's codec, picture size and frame rate; a push to a key
//! no camera has is refused and counted; a publisher that goes away leaves the camera
//! `waiting`, and one that comes back is a reconnect of the same camera.

mod procs;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use procs::{Proc, wait};
use serde_json::Value;

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `ffmpeg -hide_banner -loglevel error ARGS…`.
fn ffmpeg(args: &[&str]) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A 6 s 640×360 25 fps H.264 clip with a keyframe every second, made by ffmpeg.
fn make_clip(dir: &Path) -> std::path::PathBuf {
    let clip = dir.join("clip.mp4");
    let out = ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=25",
        "-t",
        "6",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
    ])
    .arg(&clip)
    .output()
    .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg could not make the clip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    clip
}

/// ffmpeg publishing `clip` in a loop, in real time, to `url`.
fn publish(clip: &Path, url: &str) -> Child {
    ffmpeg(&["-re", "-stream_loop", "-1", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "flv", url])
        .spawn()
        .expect("ffmpeg runs")
}

fn camera(gw: &Proc, id: &str) -> Value {
    let cams = gw.get("/api/cameras");
    cams["cameras"]
        .as_array()
        .or(cams.as_array())
        .and_then(|list| list.iter().find(|c| c["id"] == id).cloned())
        .unwrap_or_else(|| panic!("camera {id} in /api/cameras: {cams}"))
}

fn stop(mut child: Child) {
    if let Err(e) = child.kill() {
        eprintln!("ffmpeg already gone: {e}");
    }
    if let Err(e) = child.wait() {
        eprintln!("ffmpeg not reaped: {e}");
    }
}

#[test]
fn ffmpeg_pushes_a_camera_live_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = make_clip(dir.path());
    let port = free_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\
             stall_timeout_ms = 1500\n\n[gateway.rtmp]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[camera]]\nid = \"cam1\"\nkind = \"drone\"\n\
             push = {{ protocol = \"rtmp\", key = \"cam1\" }}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let gw = Proc::start(&["run", "--config"], &config, "lookout gateway running");
    assert_eq!(camera(&gw, "cam1")["state"], "waiting");

    // Live within 10 s with what the clip holds.
    let url = format!("rtmp://127.0.0.1:{port}/live/cam1");
    let pusher = publish(&clip, &url);
    let started = Instant::now();
    let live = wait(Duration::from_secs(10), || {
        let c = camera(&gw, "cam1");
        c["state"] == "live" && c["fps"].as_f64().is_some_and(|f| (f - 25.0).abs() < 2.0)
    });
    let c = camera(&gw, "cam1");
    assert!(live, "not live at 25 fps within 10 s: {c}\n{}", gw.log());
    println!("live at 25 fps after {:?}: {c}", started.elapsed());
    assert_eq!(c["codec"], "h264", "{c}");
    assert_eq!(
        (c["width"].as_u64(), c["height"].as_u64()),
        (Some(640), Some(360)),
        "{c}"
    );
    assert_eq!(c["transport"], "rtmp", "{c}");
    assert_eq!(c["timestamp_source"], "stream_clock", "{c}");
    assert_eq!(c["malformed_nals"], 0, "{c}");

    // A key no camera has: ffmpeg is refused, the refusal counted, the key not logged.
    let refused = ffmpeg(&["-re", "-t", "2", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/not-a-camera-key"))
        .output()
        .expect("ffmpeg runs");
    assert!(
        !refused.status.success(),
        "a push to an unknown key succeeded"
    );
    assert!(
        gw.metric("lookout_rtmp_refused_total{reason=\"unknown_key\"}") >= 1.0,
        "{}",
        gw.metrics()
    );
    assert!(
        !gw.logged("not-a-camera-key"),
        "the key was logged:\n{}",
        gw.log()
    );
    // The pushed camera did not notice.
    assert_eq!(camera(&gw, "cam1")["state"], "live");

    // The publisher goes away: the camera waits for it; it comes back: a reconnect.
    stop(pusher);
    assert!(
        wait(Duration::from_secs(6), || camera(&gw, "cam1")["state"]
            == "waiting"),
        "{}",
        camera(&gw, "cam1")
    );
    let pusher = publish(&clip, &url);
    assert!(
        wait(Duration::from_secs(10), || camera(&gw, "cam1")["state"]
            == "live"),
        "{}",
        camera(&gw, "cam1")
    );
    assert!(camera(&gw, "cam1")["reconnects"].as_u64() >= Some(1));
    stop(pusher);
    gw.kill();
}
