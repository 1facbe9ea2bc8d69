//! Ingest cost benchmark: gateway ingest CPU per camera at N cameras next to
//! a bare GStreamer baseline measured in the same run, and their ratio.
//!
//! ```text
//! cargo run -p lookout --release --example ingest_bench -- --cameras 64 --seconds 10
//! ```
//!
//! Three processes, so each is measured alone from `/proc/PID/stat`:
//! - a camera server (this binary, `serve`): one live x264 mount shared by
//!   every client (gstreamer-rtsp-server, 127.0.0.1);
//! - the gateway side (this binary, `ingest`): lookout's [`Ingest`] with N
//!   cameras over TCP, each with a subscriber taking every unit (as the relay
//!   does);
//! - the baseline: one `gst-launch-1.0` holding N
//!   `rtspsrc protocols=tcp latency=0 ! rtph264depay ! fakesink` branches.
//!
//! Both client sides are measured over the same window length after the same
//! warm-up, one after the other, against the same server. The lead folds this
//! into `lookout-loadtest`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{self as rtsp_server, gio, glib, gst};
use lookout::config::{CameraConfig, CameraKind, Transport};
use lookout::ingest::{CameraState, Filter, Ingest, IngestSettings};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(flag("--width", 640) as i32, flag("--height", 360) as i32),
        Some("ingest") => ingest(&args[2], flag("--cameras", 16) as usize),
        _ => drive(flag("--cameras", 16) as usize, flag("--seconds", 10)),
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second here).
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn measure(pid: u32, window: Duration) -> f64 {
    let c0 = cpu_seconds(pid);
    let t0 = Instant::now();
    std::thread::sleep(window);
    (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64()
}

fn spawn_self(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    (child, out)
}

fn read_line_with(out: &mut BufReader<std::process::ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("child ended before printing {prefix}");
        }
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
}

fn drive(cameras: usize, seconds: u64) {
    let window = Duration::from_secs(seconds);
    let warmup = Duration::from_secs(3);
    let (mut server, mut server_out) = spawn_self(&["serve"]);
    let port = read_line_with(&mut server_out, "PORT");
    let url = format!("rtsp://127.0.0.1:{port}/bench");
    println!("camera server: {url} (640x360, 25 fps, x264, one shared encoder)");

    // Gateway ingest.
    let (mut gw, mut gw_out) = spawn_self(&["ingest", &url, "--cameras", &cameras.to_string()]);
    let ready = read_line_with(&mut gw_out, "READY");
    println!("gateway: {cameras} cameras live ({ready})");
    let last_fps = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let last = last_fps.clone();
        std::thread::spawn(move || {
            for line in gw_out.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("FPS")
                    && let Ok(mut l) = last.lock()
                {
                    *l = rest.trim().to_string();
                }
            }
        });
    }
    std::thread::sleep(warmup);
    let s0 = cpu_seconds(server.id());
    let gw_cpu = measure(gw.id(), window);
    let server_gw = (cpu_seconds(server.id()) - s0) / window.as_secs_f64();
    let fps = last_fps.lock().map(|l| l.clone()).unwrap_or_default();
    let _ = gw.kill();
    let _ = gw.wait();

    // Baseline: bare GStreamer in one process.
    let mut launch: Vec<String> = vec!["-q".into()];
    for _ in 0..cameras {
        launch.extend(
            [
                "rtspsrc",
                &format!("location={url}"),
                "protocols=tcp",
                "latency=0",
                "!",
                "rtph264depay",
                "!",
                "fakesink",
                "sync=false",
            ]
            .map(String::from),
        );
    }
    let mut base = Command::new("gst-launch-1.0")
        .args(&launch)
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs");
    std::thread::sleep(warmup + Duration::from_secs(1));
    let s0 = cpu_seconds(server.id());
    let base_cpu = measure(base.id(), window);
    let server_base = (cpu_seconds(server.id()) - s0) / window.as_secs_f64();
    let _ = base.kill();
    let _ = base.wait();
    let _ = server.kill();
    let _ = server.wait();

    let per = |cpu: f64| cpu * 100.0 / cameras as f64;
    println!(
        "window: {seconds} s per side, after {} s warm-up",
        warmup.as_secs()
    );
    println!(
        "gateway ingest  : {:6.2} % of a core total, {:5.3} % per camera ({fps})",
        gw_cpu * 100.0,
        per(gw_cpu)
    );
    println!(
        "gst-launch bare : {:6.2} % of a core total, {:5.3} % per camera",
        base_cpu * 100.0,
        per(base_cpu)
    );
    println!(
        "camera server   : {:6.2} % during the gateway run, {:6.2} % during the baseline",
        server_gw * 100.0,
        server_base * 100.0
    );
    if base_cpu > 0.0 {
        println!("ratio gateway/baseline: {:.2}", gw_cpu / base_cpu);
    }
}

fn serve(width: i32, height: i32) {
    gst::init().expect("GStreamer");
    let server = rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service("0");
    let factory = rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&format!(
        "( videotestsrc is-live=true pattern=smpte ! video/x-raw,width={width},height={height},framerate=25/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=50 bitrate=1500 threads=1 ! rtph264pay name=pay0 pt=96 )"
    ));
    factory.set_shared(true);
    server
        .mount_points()
        .expect("mounts")
        .add_factory("/bench", factory);
    let ctx = glib::MainContext::default();
    let source = server
        .create_source(None::<&gio::Cancellable>)
        .expect("bind");
    source.attach(Some(&ctx));
    println!("PORT {}", server.bound_port());
    glib::MainLoop::new(Some(&ctx), false).run();
}

fn ingest(url: &str, cameras: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let settings = IngestSettings::default();
        let ingest = Ingest::new(settings).expect("ingest");
        let configs: Vec<CameraConfig> = (0..cameras)
            .map(|i| {
                CameraConfig::bare(
                    &format!("cam-{i:03}"),
                    CameraKind::Fixed,
                    url,
                    Transport::Tcp,
                )
            })
            .collect();
        ingest.apply(settings, &configs).await;
        // A relay-like consumer per camera: takes every unit.
        for c in &configs {
            let mut sub = ingest.subscribe(&c.id, Filter::All).expect("sub");
            tokio::spawn(async move { while sub.recv().await.is_some() {} });
        }
        let start = Instant::now();
        loop {
            let live = ingest
                .status()
                .iter()
                .filter(|s| s.state == CameraState::Live)
                .count();
            if live == cameras {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                eprintln!("only {live}/{cameras} cameras live after 60 s");
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("READY in {:.1} s", start.elapsed().as_secs_f64());
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let st = ingest.status();
            let min = st.iter().map(|s| s.fps).fold(f64::INFINITY, f64::min);
            let mean = st.iter().map(|s| s.fps).sum::<f64>() / st.len().max(1) as f64;
            let dropped: u64 = st.iter().map(|s| s.dropped_units).sum();
            println!("FPS mean {mean:.1}, min {min:.1}, dropped units {dropped}");
        }
    });
}
