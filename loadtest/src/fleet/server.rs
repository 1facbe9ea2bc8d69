//! The fleet's RTSP server: one gstreamer-rtsp-server mount per camera, each
//! an `appsrc` (shared media) fed by one timer thread for the whole fleet.
//! Every frame gets lookout's capture-time SEI stamp (camera id, frame
//! number, capture time) just before it is pushed, so the gateway and the
//! command center can measure latency from the moment of "capture".

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use lookout_codecs::{CaptureStamp, Codec};

use super::clips::Clip;
use super::incidents::{GroundTruth, Onset};
use super::profile::Profile;

/// One simulated camera.
pub struct SimCamera {
    /// Its id, also its RTSP mount (`/<id>`).
    pub id: String,
    /// What it sends and how it misbehaves.
    pub profile: Profile,
    /// The clean loop played between incidents (shared by cameras of one profile).
    pub clean: Arc<Clip>,
    /// The scripted incidents, in order of onset.
    pub incidents: Vec<Scheduled>,
    /// The appsrc of the mount's media while a client is connected.
    src: Arc<Mutex<Option<gst_app::AppSrc>>>,
    /// Set when a new media starts, so its first client gets a keyframe
    /// (with SPS/PPS) first instead of waiting up to a GOP.
    restart_at_keyframe: Arc<AtomicBool>,
    /// Its counters.
    pub stats: Arc<CameraStats>,
    /// For a camera that dials in (`profile.push_rtmp`, `profile.gb28181`): its RTMP
    /// publisher or GB/T 28181 device, which the feeder hands frames to instead of the
    /// RTSP mount.
    publisher: std::sync::OnceLock<DialIn>,
}

/// How a camera that dials in sends its frames.
pub enum DialIn {
    /// RTMP publish.
    Rtmp(super::rtmp::Publisher),
    /// A GB/T 28181 device, streaming while INVITEd.
    Gb(super::gb28181::GbDevice),
    /// Channel `.1` of the fleet's GB/T 28181 lower platform.
    GbChannel(Arc<super::gb28181::GbDevice>, usize),
}

impl DialIn {
    /// Hands one frame over; never waits. `false` when it was dropped.
    fn push(&self, data: bytes::Bytes, keyframe: bool) -> bool {
        match self {
            DialIn::Rtmp(p) => p.push(data, keyframe),
            DialIn::Gb(d) => d.push(0, data, keyframe),
            DialIn::GbChannel(p, ch) => p.push(*ch, data, keyframe),
        }
    }
}

/// Per-camera counters, read by the status line and the final summary.
#[derive(Default)]
pub struct CameraStats {
    /// Frames the camera produced (its frame counter).
    pub frames: AtomicU64,
    /// Frames pushed to a connected client's media.
    pub pushed: AtomicU64,
    /// Frames pushed more than half a frame interval after they were due.
    pub late: AtomicU64,
    /// The latest any frame was pushed after it was due, µs.
    pub max_late_us: AtomicU64,
}

/// One incident as the feeder plays it.
#[derive(Clone)]
pub struct Scheduled {
    /// Seconds after the fleet starts.
    pub at_s: f64,
    /// The scene is clean again this long after the onset (`None`: it is not).
    pub for_s: Option<f64>,
    /// `smoke` or `flood`.
    pub class: String,
    /// The incident clip played from the onset, looping its developed half.
    pub clip: Arc<Clip>,
}

impl SimCamera {
    pub fn new(
        id: String,
        profile: Profile,
        clean: Arc<Clip>,
        mut incidents: Vec<Scheduled>,
    ) -> Self {
        incidents.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        SimCamera {
            id,
            profile,
            clean,
            incidents,
            src: Arc::new(Mutex::new(None)),
            restart_at_keyframe: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(CameraStats::default()),
            publisher: std::sync::OnceLock::new(),
        }
    }

    /// Starts this camera's RTMP publisher to `rtmp://{gateway}/live/{key}`.
    pub fn start_rtmp(
        &self,
        gateway: std::net::SocketAddr,
        key: &str,
        hevc: super::rtmp::HevcAs,
    ) -> anyhow::Result<()> {
        let p = super::rtmp::Publisher::start(
            &self.id,
            gateway,
            key,
            self.profile.codec,
            hevc,
            self.restart_at_keyframe.clone(),
        )?;
        if self.publisher.set(DialIn::Rtmp(p)).is_err() {
            anyhow::bail!("camera {}: RTMP publisher started twice", self.id);
        }
        Ok(())
    }

    /// Makes this camera channel `channel` of the fleet's lower platform `platform`.
    pub fn join_platform(
        &self,
        platform: Arc<super::gb28181::GbDevice>,
        channel: usize,
    ) -> anyhow::Result<()> {
        if self
            .publisher
            .set(DialIn::GbChannel(platform, channel))
            .is_err()
        {
            anyhow::bail!("camera {}: dial-in started twice", self.id);
        }
        Ok(())
    }

    /// What `start_platform` needs of this camera: its id, codec and restart flag.
    pub fn platform_entry(&self) -> (String, lookout_codecs::Codec, Arc<AtomicBool>) {
        (
            self.id.clone(),
            self.profile.codec,
            self.restart_at_keyframe.clone(),
        )
    }

    /// Starts this camera as the fleet's GB/T 28181 device number `n`, registering to
    /// the gateway's SIP side at `gateway`.
    pub fn start_gb28181(&self, gateway: std::net::SocketAddr, n: usize) -> anyhow::Result<()> {
        let d = super::gb28181::GbDevice::start(
            &self.id,
            gateway,
            n,
            self.profile.codec,
            self.restart_at_keyframe.clone(),
        )?;
        if self.publisher.set(DialIn::Gb(d)).is_err() {
            anyhow::bail!("camera {}: dial-in started twice", self.id);
        }
        Ok(())
    }
}

/// Where the server listens and who may read it.
pub struct ServerSettings {
    /// Loopback address to listen on.
    pub address: String,
    /// RTSP port; 0 picks a free one.
    pub port: u16,
    /// Digest credentials (user, password) clients must give; `None`: open.
    pub auth: Option<(String, String)>,
}

/// The running RTSP server; dropping it stops the GLib main loop.
pub struct Server {
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The RTSP port bound.
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.main_loop.quit();
        // Its panic, if any, was printed when it happened; said here too,
        // as dropping has no caller to hand it to.
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            eprintln!("fleet: the RTSP server's thread had panicked");
        }
    }
}

fn payloader(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "rtph264pay",
        Codec::H265 => "rtph265pay",
    }
}

fn caps_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "video/x-h264",
        Codec::H265 => "video/x-h265",
    }
}

/// Starts the server with one mount per camera.
pub fn start(settings: &ServerSettings, cameras: &[Arc<SimCamera>]) -> anyhow::Result<Server> {
    gst::init()?;
    let context = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let server = rtsp::RTSPServer::new();
    server.set_address(&settings.address);
    server.set_service(&settings.port.to_string());
    // Enough queued connections for a gateway reconnecting every camera at once.
    server.set_backlog(1024);
    let mounts = server
        .mount_points()
        .context("RTSP server has no mount points")?;

    if let Some((user, pass)) = &settings.auth {
        let auth = rtsp::RTSPAuth::new();
        auth.set_supported_methods(gstreamer_rtsp::RTSPAuthMethod::Digest);
        let token = rtsp::RTSPToken::builder()
            .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
            .build();
        auth.add_digest(user, pass, &token);
        server.set_auth(Some(&auth));
    }

    for cam in cameras {
        let factory = rtsp::RTSPMediaFactory::new();
        let p = &cam.profile;
        factory.set_launch(&format!(
            "( appsrc name=src is-live=true do-timestamp=true format=time leaky-type=downstream max-bytes=4000000 \
               caps={caps},stream-format=byte-stream,alignment=au,width={w},height={h},framerate={fps}/1 \
               ! {pay} name=pay0 pt=96 config-interval=-1 )",
            caps = caps_name(p.codec),
            w = p.width,
            h = p.height,
            fps = p.fps,
            pay = payloader(p.codec),
        ));
        factory.set_shared(true);
        if settings.auth.is_some() {
            factory.add_role_from_structure(
                &gst::Structure::builder("camera-user")
                    .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                    .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                    .build(),
            );
        }
        let slot = cam.src.clone();
        let restart = cam.restart_at_keyframe.clone();
        factory.connect_media_configure(move |_, media| {
            restart.store(true, Ordering::SeqCst);
            let element = media.element();
            let src = element
                .downcast_ref::<gst::Bin>()
                .and_then(|bin| bin.by_name_recurse_up("src"))
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
            if let Ok(mut s) = slot.lock() {
                *s = src;
            }
            let slot = slot.clone();
            media.connect_unprepared(move |_| {
                if let Ok(mut s) = slot.lock() {
                    *s = None;
                }
            });
        });
        mounts.add_factory(&format!("/{}", cam.id), factory);
    }

    let id = server.attach(Some(&context)).with_context(|| {
        format!(
            "RTSP server cannot listen on {}:{}",
            settings.address, settings.port
        )
    })?;
    let port = u16::try_from(server.bound_port()).unwrap_or(settings.port);
    let ml = main_loop.clone();
    let thread = std::thread::Builder::new()
        .name("rtsp-server".into())
        .spawn(move || {
            let _server = server;
            let _id = id;
            ml.run();
        })?;
    Ok(Server {
        main_loop,
        thread: Some(thread),
        port,
    })
}

/// The feeding state of one camera.
struct Feed {
    cam: Arc<SimCamera>,
    clip: Arc<Clip>,
    pos: usize,
    /// Index of the next incident to start.
    next_incident: usize,
    /// Fleet time (s) at which the incident playing now ends.
    incident_ends_s: Option<f64>,
    /// Scheduled time of frame `n` is `start + phase + n * interval` (+ jitter).
    n: u64,
    interval: Duration,
    /// Where in the frame interval this camera's clock ticks: cameras are not
    /// genlocked, so a fleet's frames spread over the interval instead of all arriving
    /// in one burst per tick.
    phase: Duration,
    /// Fleet time until which the camera is silent (body-camera drop-outs).
    silent_until: Option<Instant>,
    next_dropout: Option<Instant>,
    rng: u64,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Now, Unix nanoseconds.
pub(crate) fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Feeds every camera from one thread until `stop` is set.
pub fn feed(cameras: &[Arc<SimCamera>], truth: &GroundTruth, stop: &AtomicBool, start: Instant) {
    let mut feeds: Vec<Feed> = cameras
        .iter()
        .enumerate()
        .map(|(i, cam)| {
            let interval = Duration::from_nanos(1_000_000_000 / u64::from(cam.profile.fps.max(1)));
            let mut rng = 0x5eed ^ (i as u64).wrapping_mul(0x1234_5678_9abc_def1);
            // Cameras of one clip start at different points of it, so the
            // fleet does not send every keyframe in the same tick.
            let pos = (splitmix(&mut rng) as usize) % cam.clean.units.len().max(1);
            let pos = cam.clean.units[pos..]
                .iter()
                .position(|u| u.keyframe)
                .map_or(0, |k| pos + k);
            let phase = interval.mul_f64((splitmix(&mut rng) % 1000) as f64 / 1000.0);
            let next_dropout = cam.profile.dropout_every_s.map(|s| {
                start
                    + Duration::from_secs_f64(
                        s * (0.3 + 0.7 * (splitmix(&mut rng) % 1000) as f64 / 1000.0),
                    )
            });
            Feed {
                clip: cam.clean.clone(),
                cam: cam.clone(),
                pos,
                next_incident: 0,
                incident_ends_s: None,
                n: 0,
                interval,
                phase,
                silent_until: None,
                next_dropout,
                rng,
            }
        })
        .collect();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = feeds
        .iter()
        .enumerate()
        .map(|(i, f)| Reverse((start + f.phase, i)))
        .collect();

    while !stop.load(Ordering::Relaxed) {
        let Some(Reverse((due, i))) = heap.pop() else {
            return;
        };
        let now = Instant::now();
        if due > now {
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
            if Instant::now() < due {
                heap.push(Reverse((due, i)));
                continue;
            }
        }
        let f = &mut feeds[i];
        let pushed_at = Instant::now();
        send_frame(f, truth, start, pushed_at, due);
        // Next due time: the regular schedule plus this camera's jitter.
        f.n += 1;
        let base = start + f.phase + f.interval.mul_f64(f.n as f64);
        let next = if f.cam.profile.jitter > 0.0 {
            let r = (splitmix(&mut f.rng) % 2001) as f64 / 1000.0 - 1.0;
            let offset = f.interval.as_secs_f64() * f.cam.profile.jitter * r;
            if offset >= 0.0 {
                base + Duration::from_secs_f64(offset)
            } else {
                base.checked_sub(Duration::from_secs_f64(-offset))
                    .unwrap_or(base)
            }
        } else {
            base
        };
        heap.push(Reverse((next, i)));
    }
}

fn send_frame(f: &mut Feed, truth: &GroundTruth, start: Instant, now: Instant, due: Instant) {
    // Drop-outs: the camera goes silent and resumes where it was.
    if let Some(until) = f.silent_until {
        if now < until {
            return;
        }
        f.silent_until = None;
    }
    if let (Some(next), Some(every)) = (f.next_dropout, f.cam.profile.dropout_every_s)
        && now >= next
    {
        f.silent_until = Some(now + Duration::from_millis(f.cam.profile.dropout_ms));
        f.next_dropout = Some(next + Duration::from_secs_f64(every));
        return;
    }
    // Scripted incidents: the clean loop again when one ends, the incident's clip
    // from its first frame (a keyframe) at the first frame due after its onset.
    let t = now.duration_since(start).as_secs_f64();
    if f.incident_ends_s.is_some_and(|end| t >= end) {
        f.incident_ends_s = None;
        f.clip = f.cam.clean.clone();
        f.pos = 0;
    }
    if let Some(inc) = f.cam.incidents.get(f.next_incident)
        && t >= inc.at_s
    {
        f.next_incident += 1;
        f.incident_ends_s = inc.for_s.map(|d| inc.at_s + d);
        f.clip = inc.clip.clone();
        f.pos = 0;
        let frame = f.cam.stats.frames.load(Ordering::Relaxed);
        truth.record(Onset {
            camera: f.cam.id.clone(),
            class: inc.class.clone(),
            scripted_at_s: inc.at_s,
            onset_frame: frame,
            onset_capture_unix_ns: unix_ns(),
        });
    }
    if f.cam.restart_at_keyframe.swap(false, Ordering::SeqCst) {
        let units = &f.clip.units;
        f.pos = units[f.pos..]
            .iter()
            .position(|u| u.keyframe)
            .map_or(f.clip.loop_from, |k| f.pos + k);
    }
    let unit = &f.clip.units[f.pos];
    f.pos += 1;
    if f.pos >= f.clip.units.len() {
        f.pos = f.clip.loop_from;
    }
    let frame = f.cam.stats.frames.fetch_add(1, Ordering::Relaxed);
    let publisher = f.cam.publisher.get();
    let src = f.cam.src.lock().ok().and_then(|s| s.clone());
    if publisher.is_none() && src.is_none() {
        return;
    }
    let stamp = CaptureStamp {
        camera_id: f.cam.id.clone(),
        frame,
        capture_unix_ns: unix_ns(),
    };
    // Ids are validated to fit the stamp; an unstamped frame is still a frame.
    let data = lookout_codecs::insert_stamp(f.cam.profile.codec, &unit.data, &stamp)
        .unwrap_or_else(|_| unit.data.clone());
    let pushed = match (publisher, src) {
        (Some(p), _) => p.push(data, unit.keyframe),
        (None, Some(src)) => push_rtsp(&src, data, unit.keyframe),
        (None, None) => false,
    };
    if pushed {
        let stats = &f.cam.stats;
        stats.pushed.fetch_add(1, Ordering::Relaxed);
        let late = now.saturating_duration_since(due);
        if late > f.interval / 2 {
            stats.late.fetch_add(1, Ordering::Relaxed);
        }
        stats
            .max_late_us
            .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Pushes one stamped unit into a connected client's media; whether it was taken.
fn push_rtsp(src: &gst_app::AppSrc, data: bytes::Bytes, keyframe: bool) -> bool {
    let mut buffer = gst::Buffer::from_slice(data);
    if !keyframe && let Some(b) = buffer.get_mut() {
        b.set_flags(gst::BufferFlags::DELTA_UNIT);
    }
    src.push_buffer(buffer).is_ok()
}
