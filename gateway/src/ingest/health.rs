//! What is known about each camera right now: its state machine position,
//! measured frame rate and bitrate, age of the last frame, and the counters
//! operators page on (reconnects, stalls, dropped units, malformed NAL units).
//!
//! Written lock-free from two places — GStreamer's streaming thread (per unit,
//! in `pipeline.rs`) and the camera task (`camera.rs`, per tick) — and read
//! by `GET /api/cameras` and the Prometheus collector (`prometheus.rs`)
//! through [`CameraHealth::status`].

use lookout_core::sync::Locked;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{CameraConfig, redact_text};
use lookout_core::unit::{Codec, TimestampSource, codec_label};

/// Where a camera is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// Opening RTSP, negotiating, waiting for the first unit.
    Connecting,
    /// Units are arriving.
    Live,
    /// The connection was up (or being set up) but no unit came within the
    /// stall timeout — a half-open camera. It is being reconnected.
    Stalled,
    /// The last attempt failed (refused, dropped, timed out); waiting before
    /// the next one.
    Backoff,
    /// The last attempt failed in a way that retrying soon will not fix
    /// (wrong credentials, no H.264/H.265 video): retried slowly.
    Failed,
    /// A pushed camera with no publisher now: waiting for one to dial in.
    Waiting,
}

impl CameraState {
    /// Every state, in the order of their atomic codes (for metrics that
    /// export one series per state).
    pub const ALL: [CameraState; 6] = [
        CameraState::Connecting,
        CameraState::Live,
        CameraState::Stalled,
        CameraState::Backoff,
        CameraState::Failed,
        CameraState::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Connecting => "connecting",
            CameraState::Live => "live",
            CameraState::Stalled => "stalled",
            CameraState::Backoff => "backoff",
            CameraState::Failed => "failed",
            CameraState::Waiting => "waiting",
        }
    }

    fn from_u8(v: u8) -> CameraState {
        match v {
            1 => CameraState::Live,
            2 => CameraState::Stalled,
            3 => CameraState::Backoff,
            4 => CameraState::Failed,
            5 => CameraState::Waiting,
            _ => CameraState::Connecting,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            CameraState::Connecting => 0,
            CameraState::Live => 1,
            CameraState::Stalled => 2,
            CameraState::Backoff => 3,
            CameraState::Failed => 4,
            CameraState::Waiting => 5,
        }
    }
}

/// How the camera's video arrives: the RTSP lower transport, RTMP push, or GB/T 28181
/// RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveTransport {
    /// RTP and RTCP over UDP (`auto` tries this first).
    Udp,
    /// RTP interleaved in the RTSP TCP connection (`tcp`, or `auto` after
    /// UDP brought no video).
    Tcp,
    /// Pushed by the camera over RTMP (`push = { protocol = "rtmp", … }`).
    Rtmp,
    /// A GB/T 28181 channel's PS over RTP/UDP.
    #[serde(rename = "gb28181-udp")]
    GbUdp,
    /// A GB/T 28181 channel's PS over RTP/TCP (RFC 4571), the device connecting.
    #[serde(rename = "gb28181-tcp")]
    GbTcp,
    /// The same, lookout connecting to the device (TCP active).
    #[serde(rename = "gb28181-tcp-active")]
    GbTcpActive,
}

impl ActiveTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveTransport::Udp => "udp",
            ActiveTransport::Tcp => "tcp",
            ActiveTransport::Rtmp => "rtmp",
            ActiveTransport::GbUdp => "gb28181-udp",
            ActiveTransport::GbTcp => "gb28181-tcp",
            ActiveTransport::GbTcpActive => "gb28181-tcp-active",
        }
    }
}

/// Live counters and gauges of one camera. Counters survive reconnects and
/// configuration changes of the same camera id.
#[derive(Debug, Default)]
pub struct CameraHealth {
    state: AtomicU8,
    /// 0 none, 1 H.264, 2 H.265: what the camera actually sends.
    codec: AtomicU8,
    /// 0 none, 1 UDP, 2 TCP.
    transport: AtomicU8,
    width: AtomicU32,
    height: AtomicU32,
    /// f64 bits, written by the camera task once a second.
    fps_bits: AtomicU64,
    /// f64 bits, kbit/s, like `fps_bits`.
    kbps_bits: AtomicU64,
    /// Unix ns of the last unit; 0 before the first.
    last_unit_unix_ns: AtomicU64,
    pub(crate) units: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) keyframes: AtomicU64,
    /// Units between the last two keyframes.
    gop: AtomicU32,
    pub(crate) reconnects: AtomicU64,
    pub(crate) stalls: AtomicU64,
    /// Units a slow subscriber missed (drop-oldest), summed over subscribers.
    pub(crate) dropped_units: AtomicU64,
    /// Damaged NAL units skipped, buffers with no NAL unit at all, and NAL
    /// units or access units the camera cut short (`truncation.rs`).
    pub(crate) malformed_nals: AtomicU64,
    /// Connections the RTSP guard closed because the camera broke a limit
    /// (header size or count, body size, a message trickled, a flood).
    pub(crate) rtsp_refusals: AtomicU64,
    /// Pipelines that would not stop in time and were left to their thread.
    pub(crate) abandoned_teardowns: AtomicU64,
    /// Of those, the ones still stopping now (a gauge).
    pub(crate) stuck_teardowns: AtomicU64,
    /// Frame number of the last unit that carried lookout's capture stamp,
    /// plus one; 0 before the first.
    next_stamped_frame: AtomicU64,
    /// Units received that carried the stamp.
    stamped_units: AtomicU64,
    /// Frames the camera numbered (in its stamps) that never reached the
    /// gateway: the sum of the gaps between consecutive stamped frames.
    lost_frames: AtomicU64,
    timestamp_source: AtomicU8,
    /// Already redacted; set on failures, kept while live so an operator sees
    /// why the last reconnect happened.
    last_error: Mutex<Option<String>>,
    /// Something that does not stop ingest but an operator should fix (a
    /// camera configured as H.264 that sends H.265).
    warning: Mutex<Option<String>>,
}

impl CameraHealth {
    pub fn state(&self) -> CameraState {
        CameraState::from_u8(self.state.load(Relaxed))
    }

    pub(crate) fn set_state(&self, s: CameraState) {
        self.state.store(s.to_u8(), Relaxed);
    }

    pub fn codec(&self) -> Option<Codec> {
        match self.codec.load(Relaxed) {
            1 => Some(Codec::H264),
            2 => Some(Codec::H265),
            _ => None,
        }
    }

    pub(crate) fn set_codec(&self, c: Codec) {
        let v = match c {
            Codec::H264 => 1,
            Codec::H265 => 2,
        };
        self.codec.store(v, Relaxed);
    }

    pub fn transport(&self) -> Option<ActiveTransport> {
        match self.transport.load(Relaxed) {
            1 => Some(ActiveTransport::Udp),
            2 => Some(ActiveTransport::Tcp),
            3 => Some(ActiveTransport::Rtmp),
            4 => Some(ActiveTransport::GbUdp),
            5 => Some(ActiveTransport::GbTcp),
            6 => Some(ActiveTransport::GbTcpActive),
            _ => None,
        }
    }

    pub(crate) fn set_transport(&self, t: ActiveTransport) {
        let v = match t {
            ActiveTransport::Udp => 1,
            ActiveTransport::Tcp => 2,
            ActiveTransport::Rtmp => 3,
            ActiveTransport::GbUdp => 4,
            ActiveTransport::GbTcp => 5,
            ActiveTransport::GbTcpActive => 6,
        };
        self.transport.store(v, Relaxed);
    }

    pub(crate) fn set_size(&self, width: u32, height: u32) {
        self.width.store(width, Relaxed);
        self.height.store(height, Relaxed);
    }

    pub(crate) fn set_rates(&self, fps: f64, kbps: f64) {
        self.fps_bits.store(fps.to_bits(), Relaxed);
        self.kbps_bits.store(kbps.to_bits(), Relaxed);
    }

    pub fn fps(&self) -> f64 {
        f64::from_bits(self.fps_bits.load(Relaxed))
    }

    pub fn last_unit_unix_ns(&self) -> Option<u64> {
        match self.last_unit_unix_ns.load(Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Called from the streaming thread for every unit that is handed on.
    pub(crate) fn record_unit(
        &self,
        received_unix_ns: u64,
        len: usize,
        keyframe: bool,
        units_since_keyframe: u32,
        source: TimestampSource,
    ) {
        self.last_unit_unix_ns.store(received_unix_ns, Relaxed);
        self.units.fetch_add(1, Relaxed);
        self.bytes.fetch_add(len as u64, Relaxed);
        if keyframe {
            self.keyframes.fetch_add(1, Relaxed);
            if units_since_keyframe > 0 {
                self.gop.store(units_since_keyframe, Relaxed);
            }
        }
        self.timestamp_source.store(source.to_u8(), Relaxed);
    }

    /// A unit carried the camera's frame number `frame`: frames skipped since
    /// the last stamped unit were lost between camera and gateway (on the
    /// network, in a reconnect). A number that goes back is a camera that
    /// restarted its count, not a loss. Called from the one streaming thread
    /// of the camera's current connection.
    pub(crate) fn record_stamped_frame(&self, frame: u64) {
        let expected = self
            .next_stamped_frame
            .swap(frame.saturating_add(1), Relaxed);
        self.stamped_units.fetch_add(1, Relaxed);
        if expected > 0 && frame > expected {
            self.lost_frames.fetch_add(frame - expected, Relaxed);
        }
    }

    /// Frames lost between camera and gateway; `None` for a camera whose units
    /// carry no frame numbers (only stamped cameras can be counted).
    pub fn lost_frames(&self) -> Option<u64> {
        (self.stamped_units.load(Relaxed) > 0).then(|| self.lost_frames.load(Relaxed))
    }

    pub(crate) fn set_last_error(&self, e: Option<String>) {
        let mut g = self.last_error.locked();
        *g = e.map(|m| redact_text(&m));
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.locked().clone()
    }

    pub(crate) fn set_warning(&self, w: Option<String>) {
        let mut g = self.warning.locked();
        *g = w.map(|m| redact_text(&m));
    }

    pub fn warning(&self) -> Option<String> {
        self.warning.locked().clone()
    }

    /// A consistent-enough snapshot for the API and metrics.
    pub fn status(&self, config: &CameraConfig) -> CameraStatus {
        let now = unix_now_ns();
        let last = self.last_unit_unix_ns();
        CameraStatus {
            id: config.id.clone(),
            kind: config.kind,
            name: config.name.clone(),
            group: config.group.clone(),
            state: self.state(),
            codec: self.codec(),
            width: self.width.load(Relaxed),
            height: self.height.load(Relaxed),
            fps: round2(self.fps()),
            bitrate_kbps: round2(f64::from_bits(self.kbps_bits.load(Relaxed))),
            last_frame_age_ms: last.map(|t| now.saturating_sub(t) / 1_000_000),
            gop: self.gop.load(Relaxed),
            units: self.units.load(Relaxed),
            keyframes: self.keyframes.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            stalls: self.stalls.load(Relaxed),
            dropped_units: self.dropped_units.load(Relaxed),
            malformed_nals: self.malformed_nals.load(Relaxed),
            rtsp_refusals: self.rtsp_refusals.load(Relaxed),
            abandoned_teardowns: self.abandoned_teardowns.load(Relaxed),
            stuck_teardowns: self.stuck_teardowns.load(Relaxed),
            lost_frames: self.lost_frames(),
            timestamp_source: TimestampSource::from_u8(self.timestamp_source.load(Relaxed)),
            transport: self.transport(),
            url: config.url_redacted(),
            last_error: self.last_error(),
            warning: self.warning(),
        }
    }
}

fn codec_as_label<S: serde::Serializer>(codec: &Option<Codec>, s: S) -> Result<S::Ok, S::Error> {
    match codec {
        Some(c) => s.serialize_some(codec_label(*c)),
        None => s.serialize_none(),
    }
}

impl From<CameraState> for lookout_codecs::relay::CameraState {
    fn from(state: CameraState) -> Self {
        use lookout_codecs::relay::CameraState as Wire;
        match state {
            CameraState::Connecting => Wire::Connecting,
            CameraState::Live => Wire::Live,
            CameraState::Stalled => Wire::Stalled,
            CameraState::Backoff => Wire::Backoff,
            CameraState::Failed => Wire::Failed,
            // The wire has no state for a pushed camera without a publisher: to the
            // center it is a camera not yet delivering video.
            CameraState::Waiting => Wire::Connecting,
        }
    }
}

/// One camera as `GET /api/cameras` shows it. Credentials never appear: the
/// URL and error texts are redacted.
#[derive(Debug, Clone, Serialize)]
pub struct CameraStatus {
    /// The camera's configured id.
    pub id: String,
    /// The configured kind (`tower`, `drone`, `bodycam`, `fixed`).
    pub kind: crate::config::CameraKind,
    /// The configured human name; `null` when none is configured.
    pub name: Option<String>,
    /// The configured administrative group; `null` when none is configured.
    pub group: Option<String>,
    /// Where the camera task's state machine is now.
    pub state: CameraState,
    /// What the camera actually sends, from the stream's caps (not the
    /// configuration); `null` until a connection has negotiated video.
    /// Shown as its label (`h264`, `h265`).
    #[serde(serialize_with = "codec_as_label")]
    pub codec: Option<Codec>,
    /// Picture width from the latest SPS, pixels; 0 until an SPS was seen.
    pub width: u32,
    /// Picture height from the latest SPS, pixels; 0 until an SPS was seen.
    pub height: u32,
    /// Units per second over the last 2 s, measured, not read from the
    /// SDP; 0 while the camera is not live. Rounded to 2 decimals.
    pub fps: f64,
    /// Compressed bitrate over the last 2 s, kbit/s (1000 bit/s); 0 while
    /// the camera is not live. Rounded to 2 decimals.
    pub bitrate_kbps: f64,
    /// Milliseconds since the gateway received the camera's last unit (wall
    /// clock); `null` before the first unit.
    pub last_frame_age_ms: Option<u64>,
    /// Units between the last two keyframes; 0 until two keyframes were
    /// seen.
    pub gop: u32,
    /// Access units received and handed on, since the camera was added
    /// (across reconnects and reloads that keep its id).
    pub units: u64,
    /// Of `units`, the keyframes (H.264 IDR, H.265 IRAP).
    pub keyframes: u64,
    /// Compressed bytes of `units` (Annex-B, start codes included).
    pub bytes: u64,
    /// Connection attempts after the first (every new session).
    pub reconnects: u64,
    /// Attempts ended because no unit came within the stall timeout.
    pub stalls: u64,
    /// Units slow subscribers missed (drop-oldest), summed over
    /// subscribers.
    pub dropped_units: u64,
    /// Damaged NAL units skipped, buffers with no NAL unit, and NAL or
    /// access units the camera cut short.
    pub malformed_nals: u64,
    /// Connections the RTSP guard closed because the camera broke a limit.
    pub rtsp_refusals: u64,
    /// Pipelines that did not stop within the teardown limit and were left
    /// to their thread (a counter).
    pub abandoned_teardowns: u64,
    /// Of `abandoned_teardowns`, those still stopping now (a gauge); at 2
    /// the camera stops reconnecting until one finishes.
    pub stuck_teardowns: u64,
    /// Frames the camera numbered that never reached the gateway; `null` when
    /// the camera does not number its frames (no lookout stamp).
    pub lost_frames: Option<u64>,
    /// Where the last unit's capture time came from; `null` before the
    /// first unit.
    pub timestamp_source: Option<TimestampSource>,
    /// The RTSP transport of the current (or last) attempt; `null` before
    /// the first attempt.
    pub transport: Option<ActiveTransport>,
    /// The configured URL with any `user:password@` replaced by `***@`.
    pub url: String,
    /// Why the last attempt ended (redacted), kept while live so an operator
    /// sees why the last reconnect happened; `null` until an attempt failed.
    pub last_error: Option<String>,
    /// Something that does not stop ingest but an operator should fix (a
    /// camera configured as H.264 that sends H.265), redacted; `null` when
    /// there is none.
    pub warning: Option<String>,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub(crate) use lookout_core::clock::unix_now_ns;

/// Frame rate and bitrate over a sliding window, from the health counters,
/// sampled by the camera task.
#[derive(Debug)]
pub(crate) struct RateMeter {
    window: Duration,
    samples: VecDeque<(Instant, u64, u64)>,
}

impl RateMeter {
    pub fn new(window: Duration) -> RateMeter {
        RateMeter {
            window,
            samples: VecDeque::with_capacity(16),
        }
    }

    /// Adds a sample of the running totals; returns (fps, kbit/s) over the
    /// window, or `None` until two samples span some time.
    pub fn sample(&mut self, at: Instant, units: u64, bytes: u64) -> Option<(f64, f64)> {
        self.samples.push_back((at, units, bytes));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _, _)| at.duration_since(*t) >= self.window)
        {
            self.samples.pop_front();
        }
        let (t0, u0, b0) = *self.samples.front()?;
        let dt = at.duration_since(t0).as_secs_f64();
        if dt < 0.2 {
            return None;
        }
        let fps = units.saturating_sub(u0) as f64 / dt;
        let kbps = bytes.saturating_sub(b0) as f64 * 8.0 / 1000.0 / dt;
        Some((fps, kbps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_measures_over_its_window() {
        let mut m = RateMeter::new(Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(m.sample(t0, 0, 0), None);
        // 25 units and 25 kB per second for 5 s.
        let mut last = None;
        for s in 1..=50u64 {
            let at = t0 + Duration::from_millis(100 * s);
            last = m.sample(at, s * 25 / 10, s * 2_500);
        }
        let (fps, kbps) = last.expect("rates");
        assert!((fps - 25.0).abs() < 1.0, "{fps}");
        assert!((kbps - 200.0).abs() < 5.0, "{kbps}");
        assert!(m.samples.len() <= 22);
    }

    #[test]
    fn gaps_in_the_cameras_frame_numbers_are_lost_frames() {
        let h = CameraHealth::default();
        assert_eq!(h.lost_frames(), None, "no stamp yet: not counted, not 0");
        // The first unit seen sets the count going: frames before it are not ours.
        for f in [1000, 1001, 1002, 1005, 1006, 1010] {
            h.record_stamped_frame(f);
        }
        assert_eq!(h.lost_frames(), Some(2 + 3));
        // The camera restarted its numbering: nothing lost, counting goes on.
        for f in [0, 1, 3] {
            h.record_stamped_frame(f);
        }
        assert_eq!(h.lost_frames(), Some(5 + 1));
        // A repeated number is not a loss either.
        h.record_stamped_frame(3);
        h.record_stamped_frame(4);
        assert_eq!(h.lost_frames(), Some(6));
    }

    #[test]
    fn state_round_trips_through_its_atomic() {
        let h = CameraHealth::default();
        for s in CameraState::ALL {
            h.set_state(s);
            assert_eq!(h.state(), s);
        }
    }
}
