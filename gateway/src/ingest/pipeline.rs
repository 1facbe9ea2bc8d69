//! One connection to one camera, in GStreamer:
//! `rtspsrc ! rtph26Xdepay ! h26Xparse ! appsink` (Annex-B byte stream,
//! one buffer per access unit).
//!
//! `camera.rs` opens a [`Connection`] per attempt and closes it when the
//! attempt ends; this file owns everything that runs on GStreamer's threads:
//! choosing the video stream from the SDP (`select-stream`), building the
//! depayload chain once the codec is known (`pad-added`), handing each
//! appsink buffer (one mapping, no copy) with its RTCP time to the camera's
//! [`UnitBuilder`] (`units.rs`), counting the NAL units and
//! access units the camera cut short (`truncation.rs`, on the RTP packets
//! before the depayloader), and forwarding bus errors to the
//! camera task through a non-blocking channel. Nothing here blocks on tokio
//! or waits for a consumer.

use lookout_core::sync::Locked;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::camera::Camera;
use super::health::{ActiveTransport, unix_now_ns};
use super::truncation::TruncationCheck;
use super::units::UnitBuilder;
use crate::config::redact_text;
use crate::threads;
use lookout_core::unit::{Codec, TimestampSource};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_TO_UNIX_S: u64 = 2_208_988_800;

/// Jitter-buffer depth for UDP: enough to put reordered packets back in
/// order on a LAN or a cellular link without adding noticeable delay. TCP
/// delivers in order, so it gets none.
const UDP_JITTER_MS: u32 = 100;

/// What one connection attempt needs to know.
#[derive(Clone)]
pub(crate) struct ConnectSpec {
    /// The URL without user-info.
    pub location: String,
    /// RTSP user, from the URL's user-info or the camera's config.
    pub user: Option<String>,
    /// RTSP password (never logged).
    pub password: Option<String>,
    /// RTP over the RTSP connection (TCP) or over UDP, for this attempt.
    pub transport: ActiveTransport,
    /// Given to rtspsrc as its TCP and UDP receive timeouts, so a dead peer
    /// is also noticed inside GStreamer, not only by the stall watchdog.
    pub timeout: Duration,
    /// The codec the configuration expects, if it names one.
    pub expected: Option<Codec>,
}

impl std::fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in a debug print.
        f.debug_struct("ConnectSpec")
            .field("location", &self.location)
            .field("user", &self.user.as_ref().map(|_| "***"))
            .field("transport", &self.transport)
            .finish()
    }
}

/// How a failure should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Refused, dropped, timed out: back off and try again.
    Soon,
    /// Wrong credentials or nothing we can ingest: retrying will not help
    /// until someone changes the camera or the config, so retry slowly (and
    /// do not lock the camera's account with rapid wrong passwords).
    Slowly,
}

/// Why a connection failed: the stage that failed and its cause, already
/// redacted.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionError {
    /// Where it failed: `setup`, `rtsp`, `codec`, `stream`, … (the `stage` label of
    /// the ingest error metric).
    pub stage: &'static str,
    /// What went wrong, credentials redacted.
    pub cause: String,
    /// How soon the camera task tries again.
    pub retry: Retry,
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.cause)
    }
}

/// What the pipeline tells the camera task.
#[derive(Debug)]
pub(crate) enum PipelineEvent {
    Failed(ConnectionError),
    /// The camera ended the stream (EOS, RTSP BYE/TEARDOWN from its side).
    Ended,
}

/// Pipeline events waiting for the camera task, at most. The first one ends the
/// connection, so later ones only tell the same story again.
const EVENTS_QUEUED: usize = 8;

/// Hands a pipeline event to the camera task from a GStreamer thread; never blocks.
fn tell(tx: &mpsc::Sender<PipelineEvent>, camera: &str, event: PipelineEvent) {
    match tx.try_send(event) {
        Ok(()) => {}
        // The connection is already ending on an earlier event.
        Err(mpsc::error::TrySendError::Full(e)) => {
            tracing::debug!(
                camera,
                "pipeline event after the connection's end dropped: {e:?}"
            );
        }
        // The camera task has closed this connection.
        Err(mpsc::error::TrySendError::Closed(e)) => {
            tracing::debug!(camera, "pipeline event after close: {e:?}");
        }
    }
}

/// A running connection. Dropping it without [`close`] leaks the pipeline's
/// threads until GStreamer notices; always close.
pub(crate) struct Connection {
    pipeline: gst::Pipeline,
    /// Failures and the end of the stream, as the pipeline's threads see them (the
    /// first one ends the connection).
    pub events: mpsc::Receiver<PipelineEvent>,
}

/// The per-connection state GStreamer's threads write into.
pub(crate) struct StreamSink {
    camera: Arc<Camera>,
    expected: Option<Codec>,
    /// Set by `select-stream` when the camera answered DESCRIBE with a
    /// stream we can ingest: for `transport = "auto"` a UDP attempt that got
    /// this far and then saw nothing means UDP is blocked, so TCP is next.
    negotiated: AtomicBool,
    /// What the SDP offered, for the error when nothing could be chosen.
    offered: Mutex<Vec<String>>,
    /// NTP (Unix ns) minus PTS at the depayloader, from the RTCP sender
    /// report mapping rtpjitterbuffer attaches; `i64::MIN` while unknown.
    ntp_offset_ns: AtomicI64,
    /// Turns the appsink's buffers into the camera's access units.
    units: UnitBuilder,
}

impl StreamSink {
    pub fn new(camera: Arc<Camera>, session: u32, expected: Option<Codec>) -> StreamSink {
        let camera_for_units = camera.clone();
        StreamSink {
            camera,
            expected,
            negotiated: AtomicBool::new(false),
            offered: Mutex::new(Vec::new()),
            ntp_offset_ns: AtomicI64::new(i64::MIN),
            units: UnitBuilder::new(camera_for_units, session),
        }
    }

    pub fn negotiated(&self) -> bool {
        self.negotiated.load(Relaxed)
    }

    /// `select-stream`: takes the first H.264/H.265 video stream, declines
    /// everything else (audio, metadata, MJPEG) so it is never set up.
    fn select(&self, caps: &gst::CapsRef) -> bool {
        let Some(s) = caps.structure(0) else {
            return false;
        };
        let media = s.get::<&str>("media").unwrap_or("?");
        let encoding = s.get::<&str>("encoding-name").unwrap_or("?");
        {
            let mut o = self.offered.locked();
            o.push(format!("{media}/{encoding}"));
        }
        if media != "video" || codec_of_encoding(encoding).is_none() {
            return false;
        }
        // Only one video stream per camera.
        !self.negotiated.swap(true, Relaxed)
    }

    fn offered(&self) -> String {
        self.offered.locked().join(", ")
    }

    /// The codec was learned from the stream's caps.
    fn set_codec(&self, codec: Codec) {
        let health = &self.camera.health;
        health.set_codec(codec);
        match self.expected {
            Some(want) if want != codec => {
                let w = format!(
                    "configured as {want} but the camera sends {codec}; ingesting it as {codec}"
                );
                tracing::warn!(camera = %self.camera.id, "{w}");
                health.set_warning(Some(w));
            }
            _ => health.set_warning(None),
        }
        self.units.set_codec(codec);
    }

    /// The depayloader's output carries the RTCP-derived NTP time; remember
    /// how it relates to the PTS so units after the parser can be stamped.
    fn note_reference(&self, buffer: &gst::BufferRef) {
        if let (Some(ntp), Some(pts)) = (ntp_unix_ns(buffer), buffer.pts()) {
            let offset = ntp as i64 - pts.nseconds() as i64;
            self.ntp_offset_ns.store(offset, Relaxed);
        }
    }

    /// One access unit from the appsink. Runs on GStreamer's streaming
    /// thread: no blocking, no waiting for consumers.
    fn on_buffer(&self, buffer: gst::Buffer) {
        let received_unix_ns = unix_now_ns();
        let pts = buffer.pts();
        let ntp = ntp_unix_ns(&buffer).or_else(|| {
            let offset = self.ntp_offset_ns.load(Relaxed);
            let pts = pts?;
            (offset != i64::MIN).then(|| (pts.nseconds() as i64).saturating_add(offset) as u64)
        });
        let Ok(mapped) = buffer.into_mapped_buffer_readable() else {
            self.camera.health.malformed_nals.fetch_add(1, Relaxed);
            return;
        };
        // The mapped buffer owns the memory; every consumer shares it.
        let data = Bytes::from_owner(mapped);
        let clock = ntp.map(|t| (t, TimestampSource::RtcpSr));
        self.units.push(
            data,
            pts.map(|t| Duration::from_nanos(t.nseconds())),
            clock,
            received_unix_ns,
        );
    }
}

/// The NTP time GStreamer attached to a buffer (RTCP sender report mapped to
/// the RTP timestamp), as Unix ns.
fn ntp_unix_ns(buffer: &gst::BufferRef) -> Option<u64> {
    buffer
        .iter_meta::<gst::meta::ReferenceTimestampMeta>()
        .find(|m| {
            m.reference()
                .structure(0)
                .is_some_and(|s| s.name() == "timestamp/x-ntp")
        })
        .and_then(|m| {
            m.timestamp()
                .nseconds()
                .checked_sub(NTP_TO_UNIX_S * 1_000_000_000)
        })
}

fn codec_of_encoding(encoding: &str) -> Option<Codec> {
    if encoding.eq_ignore_ascii_case("H264") {
        Some(Codec::H264)
    } else if encoding.eq_ignore_ascii_case("H265") {
        Some(Codec::H265)
    } else {
        None
    }
}

fn element(factory: &str, name: &str) -> Result<gst::Element, ConnectionError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|e| ConnectionError {
            stage: "setup",
            cause: format!("GStreamer element `{factory}` is missing: {e}"),
            retry: Retry::Slowly,
        })
}

/// Builds and starts the pipeline. Call from a blocking thread: GStreamer
/// state changes may take a while.
pub(crate) fn open(
    spec: &ConnectSpec,
    sink: Arc<StreamSink>,
) -> Result<Connection, ConnectionError> {
    let pipeline = gst::Pipeline::new();
    let src = element("rtspsrc", "rtsp")?;
    src.set_property("location", &spec.location);
    if let Some(u) = &spec.user {
        src.set_property("user-id", u);
    }
    if let Some(p) = &spec.password {
        src.set_property("user-pw", p);
    }
    let timeout_us = spec.timeout.as_micros().min(u128::from(u64::MAX)) as u64;
    match spec.transport {
        ActiveTransport::Tcp => {
            src.set_property_from_str("protocols", "tcp");
            src.set_property("latency", 0u32);
        }
        ActiveTransport::Udp => {
            src.set_property_from_str("protocols", "udp");
            src.set_property("latency", UDP_JITTER_MS);
            src.set_property("timeout", timeout_us);
        }
        // Pushed cameras have no pipeline (`rtmp.rs`); a spec saying RTMP is a bug in
        // the caller, refused rather than guessed at.
        ActiveTransport::Rtmp
        | ActiveTransport::GbUdp
        | ActiveTransport::GbTcp
        | ActiveTransport::GbTcpActive => {
            return Err(ConnectionError {
                stage: "setup",
                cause: "an RTMP or GB/T 28181 camera dials in to the gateway; it is not pulled over RTSP".into(),
                retry: Retry::Slowly,
            });
        }
    }
    src.set_property("tcp-timeout", timeout_us);
    src.set_property("add-reference-timestamp-meta", true);
    pipeline.add(&src).map_err(|e| ConnectionError {
        stage: "setup",
        cause: e.to_string(),
        retry: Retry::Slowly,
    })?;

    let (tx, events) = mpsc::channel(EVENTS_QUEUED);

    {
        let sink = sink.clone();
        src.connect("select-stream", false, move |args| {
            let chosen = args
                .get(2)
                .and_then(|v| v.get::<gst::Caps>().ok())
                .is_some_and(|caps| sink.select(&caps));
            Some(chosen.to_value())
        });
    }

    {
        let sink = sink.clone();
        let weak = pipeline.downgrade();
        let tx = tx.clone();
        src.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            if let Err(e) = link_video(&pipeline, pad, &sink) {
                tell(&tx, &sink.camera.id, PipelineEvent::Failed(e));
            }
        });
    }

    if let Some(bus) = pipeline.bus() {
        let sink = sink.clone();
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                // Posted on the streaming thread itself as it takes up or ends a task.
                gst::MessageView::StreamStatus(s) => match s.get().0 {
                    gst::StreamStatusType::Enter => threads::enter(threads::Role::Ingest),
                    gst::StreamStatusType::Leave => threads::leave(),
                    _ => {}
                },
                gst::MessageView::Error(e) => {
                    let failed =
                        classify(&e.error(), e.debug().as_deref(), msg.src(), &sink);
                    tell(&tx, &sink.camera.id, PipelineEvent::Failed(failed));
                }
                gst::MessageView::Eos(_) => tell(&tx, &sink.camera.id, PipelineEvent::Ended),
                gst::MessageView::Warning(w) => {
                    if hung_up(&w.error(), w.debug().as_deref(), msg.src()) {
                        // Before the first packet rtspsrc has no pad to end,
                        // so this warning is all that tells of it: without
                        // it the camera would wait out the stall timeout.
                        let hung_up = ConnectionError {
                            stage: "rtsp",
                            cause: "the camera closed the connection".into(),
                            retry: Retry::Soon,
                        };
                        tell(&tx, &sink.camera.id, PipelineEvent::Failed(hung_up));
                    } else {
                        tracing::debug!(camera = %sink.camera.id, "GStreamer warning: {}", redact_text(&w.error().to_string()));
                    }
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    }

    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        if let Err(e) = pipeline.set_state(gst::State::Null) {
            tracing::debug!(camera = %sink.camera.id, "pipeline not stopped after a failed start: {e}");
        }
        return Err(ConnectionError {
            stage: "rtsp",
            cause: format!("cannot start the pipeline: {e}"),
            retry: Retry::Soon,
        });
    }
    Ok(Connection { pipeline, events })
}

/// Stops the pipeline and releases its sockets and threads. Blocking.
pub(crate) fn close(conn: Connection) {
    if let Err(e) = conn.pipeline.set_state(gst::State::Null) {
        // Its elements are released with the pipeline regardless.
        tracing::warn!("camera pipeline did not stop cleanly: {e}");
    }
    if let Some(bus) = conn.pipeline.bus() {
        bus.unset_sync_handler();
    }
}

/// `pad-added`: builds depay ! parse ! appsink for the chosen video stream.
fn link_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    sink: &Arc<StreamSink>,
) -> Result<(), ConnectionError> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let encoding = caps
        .structure(0)
        .and_then(|s| s.get::<&str>("encoding-name").ok())
        .unwrap_or("?")
        .to_string();
    let Some(codec) = codec_of_encoding(&encoding) else {
        // Not ours (select-stream should have declined it); leave unlinked.
        return Ok(());
    };
    let (depay_name, parse_name, caps_name) = match codec {
        Codec::H264 => ("rtph264depay", "h264parse", "video/x-h264"),
        Codec::H265 => ("rtph265depay", "h265parse", "video/x-h265"),
    };
    let depay = element(depay_name, "depay")?;
    let parse = element(parse_name, "parse")?;
    // Parameter sets before every keyframe: a relay viewer or a decoder can
    // start at any keyframe.
    parse.set_property("config-interval", -1i32);
    let appsink = gst_app::AppSink::builder()
        .name("sink")
        .caps(
            &gst::Caps::builder(caps_name)
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .sync(false)
        .max_buffers(16)
        .drop(true)
        .enable_last_sample(false)
        .build();
    sink.set_codec(codec);
    {
        let sink = sink.clone();
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink
                        .pull_sample()
                        .map_err(|_| gst::FlowError::Flushing)?;
                    if let Some(buffer) = sample.buffer_owned() {
                        drop(sample);
                        sink.on_buffer(buffer);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    if let Some(depay_sink) = depay.static_pad("sink") {
        // The RTP packets, before the depayloader hides a cut-short tail.
        let camera = sink.camera.clone();
        let check = Mutex::new(TruncationCheck::new(codec));
        depay_sink.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let mut check = check.locked();
                let mut look = |buffer: &gst::BufferRef| {
                    let Ok(map) = buffer.map_readable() else {
                        return;
                    };
                    if let Some(cut) = check.packet(&map) {
                        camera.health.malformed_nals.fetch_add(1, Relaxed);
                        tracing::debug!(camera = %camera.id, stage = "depayload", "{cut:?} cut short by the camera or the network");
                    }
                };
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => look(b),
                    Some(gst::PadProbeData::BufferList(list)) => list.iter().for_each(look),
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    if let Some(depay_src) = depay.static_pad("src") {
        let sink = sink.clone();
        depay_src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                sink.note_reference(buffer);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let setup_err = |e: &dyn std::fmt::Display| ConnectionError {
        stage: "setup",
        cause: format!("cannot link the {codec} chain: {e}"),
        retry: Retry::Soon,
    };
    let appsink_el: &gst::Element = appsink.upcast_ref();
    pipeline
        .add_many([&depay, &parse, appsink_el])
        .map_err(|e| setup_err(&e))?;
    gst::Element::link_many([&depay, &parse, appsink_el]).map_err(|e| setup_err(&e))?;
    for el in [appsink_el, &parse, &depay] {
        el.sync_state_with_parent().map_err(|e| setup_err(&e))?;
    }
    let depay_sink = depay
        .static_pad("sink")
        .ok_or_else(|| setup_err(&"depayloader has no sink pad"))?;
    pad.link(&depay_sink).map_err(|e| setup_err(&e))?;
    Ok(())
}

/// rtspsrc's warning that the server closed the RTSP connection (it posts
/// a warning, not an error, and ends its pads, which do not exist yet when
/// the camera hangs up right after PLAY).
fn hung_up(error: &glib::Error, debug: Option<&str>, src: Option<&gst::Object>) -> bool {
    error.matches(gst::ResourceError::Read)
        && src.is_some_and(|s| s.name() == "rtsp")
        && debug.is_some_and(|d| d.contains("closed the connection"))
}

/// Names the failing stage and decides how to retry.
fn classify(
    error: &glib::Error,
    debug: Option<&str>,
    src: Option<&gst::Object>,
    sink: &StreamSink,
) -> ConnectionError {
    let path = src.map(|s| s.path_string().to_string()).unwrap_or_default();
    let stage = if path.contains("depay") {
        "depayload"
    } else if path.contains("parse") {
        "parse"
    } else if path.contains("sink") {
        "ingest"
    } else {
        "rtsp"
    };
    let mut cause = error.to_string();
    if let Some(d) = debug {
        // GStreamer's debug string starts with a source location; keep the
        // human part after the last colon-newline if there is one.
        let detail = d.rsplit('\n').next().unwrap_or(d).trim();
        if !detail.is_empty() {
            cause = format!("{cause} ({detail})");
        }
    }
    let mut retry = Retry::Soon;
    if error.matches(gst::ResourceError::NotAuthorized) {
        retry = Retry::Slowly;
        cause = format!("the camera refused the credentials: {cause}");
    } else if stage == "rtsp" && !sink.negotiated() && !sink.offered().is_empty() {
        retry = Retry::Slowly;
        cause = format!(
            "the camera offers no H.264/H.265 video stream (offered: {}): {cause}",
            sink.offered()
        );
    }
    ConnectionError {
        stage,
        cause: redact_text(&cause),
        retry,
    }
}

/// Splits `user:password@` out of an RTSP URL, percent-decoding both, so
/// credentials travel in rtspsrc's properties and never in a location a log
/// line could show.
pub(crate) fn split_userinfo(url: &str) -> (String, Option<String>, Option<String>) {
    // The same reading as redaction's (`config::url_parts`): the user-info
    // runs to the URL's last `@`, so a password with `/`, `?`, `#` or `@`
    // is taken whole and never sent as part of the host or the path.
    let Some(crate::config::UrlParts {
        userinfo: Some(info),
        host_start,
    }) = crate::config::url_parts(url)
    else {
        return (url.to_string(), None, None);
    };
    let userinfo = &url[info.clone()];
    let clean = format!("{}{}", &url[..info.start], &url[host_start..]);
    let (user, pass) = match userinfo.split_once(':') {
        Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
        None => (percent_decode(userinfo), None),
    };
    (clean, Some(user), pass)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_split_and_decoded() {
        let (u, user, pass) = split_userinfo("rtsp://admin:p%40ss@10.0.0.5:554/Streaming/101");
        assert_eq!(u, "rtsp://10.0.0.5:554/Streaming/101");
        assert_eq!(user.as_deref(), Some("admin"));
        assert_eq!(pass.as_deref(), Some("p@ss"));
        let (u, user, pass) = split_userinfo("rtsp://10.0.0.5/a@b");
        assert_eq!(u, "rtsp://10.0.0.5/a@b");
        assert_eq!((user, pass), (None, None));
    }

    #[test]
    fn passwords_with_url_delimiters_are_taken_whole() {
        // Written unescaped, as cameras' web pages and installers do: the
        // host is what follows the last `@`, never a piece of the password.
        for (url, password) in [
            (
                "rtsp://admin:Pa/SsW0rd@10.0.0.5:554/Streaming/101",
                "Pa/SsW0rd",
            ),
            ("rtsp://admin:1234/5678@10.0.0.5/live", "1234/5678"),
            ("rtsp://admin:a?b#c@10.0.0.5/live?channel=1", "a?b#c"),
            ("rtsp://admin:p@ss/w@10.0.0.5/live", "p@ss/w"),
        ] {
            let (u, user, pass) = split_userinfo(url);
            assert!(u.starts_with("rtsp://10.0.0.5"), "{url} -> {u}");
            assert!(!u.contains(password), "{url} -> {u}");
            assert_eq!(user.as_deref(), Some("admin"), "{url}");
            assert_eq!(pass.as_deref(), Some(password), "{url}");
        }
    }

    #[test]
    fn spec_debug_hides_credentials() {
        let spec = ConnectSpec {
            location: "rtsp://h/x".into(),
            user: Some("admin".into()),
            password: Some("secret".into()),
            transport: ActiveTransport::Tcp,
            timeout: Duration::from_secs(1),
            expected: None,
        };
        let text = format!("{spec:?}");
        assert!(
            !text.contains("secret") && !text.contains("admin"),
            "{text}"
        );
    }
}
