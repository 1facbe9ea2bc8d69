//! Real RTSP cameras for the ingest tests: an in-process
//! `gstreamer-rtsp-server` on 127.0.0.1 serving live `videotestsrc` streams
//! encoded with x264/x265 at 320x240, 25 fps, one keyframe a second — over
//! real sockets, nothing mocked. A server can be killed (listening socket,
//! client connections and sessions closed, as when a camera reboots) and
//! started again on the same port; a mount's `valve` can be closed to make a
//! half-open camera (RTSP and RTCP alive, no video). Also a TCP listener that
//! accepts and never answers, and status polling helpers. `rogue.rs` is a
//! handmade RTSP camera that completes the handshake and then misbehaves
//! (noise, malformed RTP, truncated access units, flapping).
//!
//! The payloaders do not insert parameter sets themselves
//! (`config-interval` unset): with x264's sliced threads, GStreamer 1.22's
//! `rtph264pay config-interval=-1` puts SPS/PPS before *every* IDR slice,
//! which by the H.264 rules starts a new access unit mid-picture, and
//! h264parse then splits each keyframe in two.

#![allow(dead_code)]

pub mod rogue;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::{self as rtsp_server, gio, glib, gst};

pub const FPS: f64 = 25.0;

/// One mount point of a test server.
#[derive(Clone)]
pub struct Mount {
    pub path: &'static str,
    pub launch: String,
    /// Refuse UDP transport (RTSP 461), like a camera behind a firewall
    /// that only lets the RTSP connection through.
    pub tcp_only: bool,
}

impl Mount {
    pub fn h264(path: &'static str) -> Mount {
        Mount {
            path,
            launch: launch(
                "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=300 ! rtph264pay name=pay0 pt=96",
            ),
            tcp_only: false,
        }
    }

    pub fn h265(path: &'static str) -> Mount {
        Mount {
            path,
            launch: launch(
                "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=300 ! rtph265pay name=pay0 pt=96",
            ),
            tcp_only: false,
        }
    }

    pub fn tcp_only(mut self) -> Mount {
        self.tcp_only = true;
        self
    }
}

fn launch(encode: &str) -> String {
    format!(
        "( videotestsrc is-live=true pattern=ball ! capsfilter name=size caps=video/x-raw,width=320,height=240,framerate=25/1 ! valve name=valve drop=false ! {encode} )"
    )
}

/// Credentials a server demands (digest).
#[derive(Clone)]
pub struct Credentials {
    pub user: &'static str,
    pub password: &'static str,
}

pub struct RtspServer {
    pub port: u16,
    server: rtsp_server::RTSPServer,
    source: glib::Source,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The `valve` and `size` capsfilter of every media each mount
    /// created, to stop its video or change its resolution.
    valves: Arc<Mutex<HashMap<String, Vec<gst::Bin>>>>,
}

pub fn init() {
    gst::init().expect("GStreamer initialises");
}

impl RtspServer {
    /// Serves `mounts` on 127.0.0.1:`port` (0 = a free port).
    pub fn start(port: u16, mounts: &[Mount], auth: Option<Credentials>) -> RtspServer {
        init();
        let server = rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let points = server.mount_points().expect("mount points");
        let valves: Arc<Mutex<HashMap<String, Vec<gst::Bin>>>> = Arc::default();
        for m in mounts {
            let factory = rtsp_server::RTSPMediaFactory::new();
            factory.set_launch(&m.launch);
            factory.set_shared(true);
            if m.tcp_only {
                factory.set_protocols(rtsp_server::gst_rtsp::RTSPLowerTrans::TCP);
            }
            let v = valves.clone();
            let path = m.path.to_string();
            factory.connect_media_configure(move |_, media| {
                if let Ok(bin) = media.element().downcast::<gst::Bin>() {
                    v.lock()
                        .expect("valves")
                        .entry(path.clone())
                        .or_default()
                        .push(bin);
                }
            });
            if auth.is_some() {
                factory.add_role_from_structure(
                    &gst::Structure::builder("user")
                        .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                        .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                        .build(),
                );
            }
            points.add_factory(m.path, factory);
        }
        if let Some(c) = &auth {
            let a = rtsp_server::RTSPAuth::new();
            a.set_supported_methods(rtsp_server::gst_rtsp::RTSPAuthMethod::Digest);
            let token = rtsp_server::RTSPToken::builder()
                .field(rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
                .build();
            a.add_digest(c.user, c.password, &token);
            server.set_auth(Some(&a));
        }
        let ctx = glib::MainContext::new();
        let source = server
            .create_source(None::<&gio::Cancellable>)
            .expect("RTSP server binds");
        source.attach(Some(&ctx));
        let bound = u16::try_from(server.bound_port()).expect("bound port");
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let ml = main_loop.clone();
        let thread = std::thread::spawn(move || {
            ctx.with_thread_default(|| ml.run())
                .expect("main context acquired");
        });
        RtspServer {
            port: bound,
            server,
            source,
            main_loop,
            thread: Some(thread),
            valves,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}{path}", self.port)
    }

    /// Opens or closes the valve in front of the encoder of every media of
    /// `path`: closed, the camera keeps its RTSP session and RTCP but sends
    /// no video.
    pub fn set_video(&self, path: &str, flowing: bool) -> usize {
        let v = self.valves.lock().expect("valves");
        let list = v.get(path).map(Vec::as_slice).unwrap_or(&[]);
        for valve in list.iter().filter_map(|b| b.by_name("valve")) {
            valve.set_property("drop", !flowing);
        }
        list.len()
    }

    /// Changes the picture size of every media of `path` mid-stream, as an
    /// operator reconfiguring a camera would: the encoder starts a new
    /// sequence with a new SPS.
    pub fn set_size(&self, path: &str, width: i32, height: i32) -> usize {
        let v = self.valves.lock().expect("valves");
        let list = v.get(path).map(Vec::as_slice).unwrap_or(&[]);
        let caps = gst::Caps::builder("video/x-raw")
            .field("width", width)
            .field("height", height)
            .field("framerate", gst::Fraction::new(25, 1))
            .build();
        for f in list.iter().filter_map(|b| b.by_name("size")) {
            f.set_property("caps", &caps);
        }
        list.len()
    }

    /// Stops serving as a crashed camera would: the listening socket, every
    /// client connection and every session are closed.
    pub fn kill(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.source.destroy();
        self.server
            .client_filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Remove));
        if let Some(pool) = self.server.session_pool() {
            pool.filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Remove));
        }
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

/// Open file descriptors and threads of this process.
pub fn fds_and_threads() -> (usize, usize) {
    let count = |p: &str| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
    (count("/proc/self/fd"), count("/proc/self/task"))
}

/// Resident memory of this process in KiB (`VmRSS`), 0 if unreadable.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A port nothing listens on (bound then released).
pub fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A "camera" that accepts TCP connections and never says a word.
pub struct SilentCamera {
    pub port: u16,
    _thread: std::thread::JoinHandle<()>,
}

impl SilentCamera {
    pub fn start() -> SilentCamera {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().flatten() {
                held.push(s);
            }
        });
        SilentCamera {
            port,
            _thread: thread,
        }
    }
}

/// Polls `check` every 100 ms until it returns true or `limit` passes;
/// returns the time it took.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
