//! Decoding only the frames a detector samples, and scaling them once.
//!
//! A decoder is one thread of lookout's own driving a GStreamer chain
//! `h26Xparse ! avdec_h26X ! tee`, then per output
//! `videoscale ! videoconvert ! RGB WxH ! appsink`: the work frame, and each model's
//! picture size on the camera. The thread pushes each unit into the chain itself, so
//! decoding, scaling and conversion run on it from start to end: no `appsrc` or queue
//! threads, and the thread runs at a lower priority than ingest and the relay
//! ([`crate::threads::enter_background`]).
//!
//! In `keyframes` mode every unit a decoder sees is a keyframe with its parameter sets in
//! front, which needs nothing decoded before it: cameras with the same codec and picture
//! size **share** a decoder (up to [`CAMERAS_PER_DECODER`] each), so 64 cameras need a
//! handful of decoders, not 64 (each holds its own picture buffers, tens of MiB at
//! 720p). In `N fps` mode every unit is decoded (a delta frame cannot be decoded
//! without its references), so each camera gets a decoder of its own, and frames that
//! are not due are dropped right after the decoder, before scaling and conversion.
//!
//! Scaling happens before conversion (measured: `videoscale ! videoconvert` costs about
//! 0.8 ms per 720p frame, converting first is 3× slower, `videoconvertscale` 2× slower)
//! to a *work frame* whose long side is the [`MIN_WORK_SIDE`] with the picture's aspect
//! kept (alert snapshots are drawn on it), and straight to each model's picture size (its
//! input when it stretches, the picture fitted inside its input when it letterboxes):
//! each output is scaled once from the decoded picture by GStreamer's SIMD scaler, and
//! the detector thread is left with a copy into floats.
//!
//! The decoder runs single-threaded: frame threading would hold each output back until
//! several more inputs arrive, which in keyframe mode means seconds. A unit that cannot
//! be decoded is dropped by the decoder and counted against its camera; the chain is
//! rebuilt only if GStreamer reports an error, and the other cameras on it lose at most
//! the unit in flight.

use lookout_core::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::preprocess::RgbFrame;
use super::queue::DropOldest;
use crate::ingest::{AccessUnit, Codec};
use crate::threads;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// A GStreamer buffer of one access unit, with its parameter sets (each
/// behind a start code) in front when `with_params`. No copy of the
/// picture: the buffer wraps the unit's bytes and the parameter sets'.
/// Also what the clip writer hands its parser.
pub(crate) fn unit_buffer(unit: &lookout_core::unit::AccessUnit, with_params: bool) -> gst::Buffer {
    let mut buffer = gst::Buffer::new();
    if let Some(b) = buffer.get_mut() {
        if with_params {
            for ps in [&unit.params.vps, &unit.params.sps, &unit.params.pps]
                .into_iter()
                .flatten()
            {
                b.append_memory(gst::Memory::from_slice(START_CODE));
                b.append_memory(gst::Memory::from_slice(ps.clone()));
            }
        }
        b.append_memory(gst::Memory::from_slice(unit.data.clone()));
    }
    buffer
}

/// The smallest long side of a work frame: large enough for a readable
/// alert snapshot.
pub const MIN_WORK_SIDE: u32 = 640;

/// Cameras one shared (keyframe) decoder serves at most. At a keyframe every 1–2 s
/// and about 7 ms to decode and scale a 720p keyframe here, 16 cameras keep a decoder
/// under 15 % of a core; more cameras get more decoders, which spread over the cores.
pub const CAMERAS_PER_DECODER: usize = 16;

/// Units waiting for a decoder's thread, at most; when it falls behind the oldest is
/// dropped (and counted against its camera).
const INPUT_LIMIT: usize = 32;

/// Units pushed and not yet out of an exclusive decoder, at most; older entries are
/// given up (their frames were dropped by the decoder as corrupt).
const PENDING_LIMIT: usize = 64;

/// The same for a shared decoder, which sees keyframes only.
const SHARED_PENDING_LIMIT: usize = 4;

/// What the sampler knew about a unit when it pushed it.
#[derive(Debug, Clone)]
pub struct UnitMeta {
    /// The unit's per-camera sequence number (`AccessUnit::seq`).
    pub seq: u64,
    /// When the picture was taken, Unix ns (by the unit's timestamp source).
    pub capture_unix_ns: u64,
    /// When the gateway received the unit, Unix ns.
    pub received_unix_ns: u64,
    /// Whether the detector wants this frame (false: decode for reference
    /// only).
    pub sampled: bool,
    /// When the sampler handed the unit to the decoder: the start of the
    /// frame's `decode` time.
    pub pushed: Instant,
}

/// A decoded, scaled frame with where it came from.
#[derive(Debug)]
pub struct DecodedFrame {
    /// The unit's metadata as the sampler pushed it (always `sampled`).
    pub meta: UnitMeta,
    /// The work frame (aspect kept; snapshots, letterboxed models).
    pub frame: RgbFrame,
    /// The same picture scaled to each requested size (models' picture sizes).
    pub scaled: Vec<RgbFrame>,
    /// The picture size the camera sent.
    pub source: (u32, u32),
    /// Handed to the decoder to out of it: waiting, decode, scale and convert.
    pub decode: Duration,
}

/// Why a camera cannot decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The decoder's chain or thread could not be started (a GStreamer
    /// plugin missing, no thread to spare).
    #[error("camera {camera}: cannot build the decoder: {message}")]
    Build { camera: String, message: String },
    /// The camera's decoder has stopped (its chain could not be rebuilt):
    /// the sampler drops it and joins a new one at the next keyframe.
    #[error("camera {camera}: decoder: {message}")]
    Stream { camera: String, message: String },
}

/// The work frame size for a `w`×`h` picture: long side `side` (never more
/// than the picture's), aspect kept, width a multiple of 4 (packed RGB rows
/// then need no padding) and height even.
pub fn work_size(w: u32, h: u32, side: u32) -> (u32, u32) {
    let (w, h) = (w.max(1), h.max(1));
    let long = w.max(h);
    let side = side.min(long).max(16);
    let s = side as f64 / long as f64;
    let ww = (((w as f64 * s) / 4.0).round() as u32 * 4).max(4);
    let hh = (((h as f64 * s) / 2.0).round() as u32 * 2).max(2);
    (ww, hh)
}

/// What a camera does with each of its sampled frames.
pub type FrameSink = Box<dyn Fn(DecodedFrame) + Send + Sync>;

/// What happens to a camera's units besides coming out as frames.
pub trait DecodeEvents: Send + Sync {
    /// A sampled unit was dropped: the decoder was behind (`busy`) or could not decode
    /// it.
    fn lost(&self, busy: bool);
    /// The decoder's chain failed on one of this camera's units and was rebuilt.
    fn failed(&self, message: &str);
}

/// One camera's way out of a decoder.
struct Route {
    camera: Arc<str>,
    sink: FrameSink,
    events: Box<dyn DecodeEvents>,
}

/// A unit on its way into a decoder.
struct Input {
    unit: AccessUnit,
    meta: UnitMeta,
    route: Arc<Route>,
}

/// What identifies decoders cameras may share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    codec: Codec,
    source: (u32, u32),
    /// Cameras share a decoder only when their sequence parameter sets are the same
    /// bytes: a change of them makes the decoder reconfigure, which would otherwise
    /// happen on every other picture.
    sps: Option<bytes::Bytes>,
    work: (u32, u32),
    sizes: Vec<(u32, u32)>,
    /// The camera a decoder belongs to alone (every frame decoded), or none (shared,
    /// keyframes only).
    exclusive: Option<Arc<str>>,
}

/// A decoder's thread and its input.
struct Decoder {
    input: Arc<DropOldest<Input>>,
    /// Cameras joined and not yet left (changed under the pool's lock).
    users: AtomicUsize,
    /// Set when the thread could not build its chain at all.
    broken: Arc<AtomicBool>,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // The thread finishes what is queued and ends.
        self.input.close();
    }
}

/// The decoders of one gateway, shared by cameras where decoding allows it.
#[derive(Default)]
pub struct DecoderPool {
    decoders: Mutex<HashMap<Key, Vec<Weak<Decoder>>>>,
}

/// A camera's place on a decoder; leaving (dropping it) frees the place, and a decoder
/// no camera holds ends its thread.
pub struct DecoderHandle {
    decoder: Arc<Decoder>,
    route: Arc<Route>,
    /// The codec the decoder was built for (the camera's, when it joined).
    pub codec: Codec,
    /// Picture size the decoder was built for.
    pub source: (u32, u32),
}

impl DecoderPool {
    pub fn new() -> DecoderPool {
        DecoderPool::default()
    }

    /// Decoders running now (a decoder no camera holds any more may still be
    /// finishing its queue).
    pub fn decoders(&self) -> usize {
        self.decoders
            .locked()
            .values()
            .flatten()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// A place for `camera` on a decoder for `codec` pictures of `source` size, scaling
    /// to the work frame and to each of `sizes`. `every_frame`: the camera sends every
    /// unit (delta frames too), so it needs a decoder of its own; otherwise it sends
    /// only keyframes and shares one. `sink` gets the camera's sampled frames, on the
    /// decoder's thread.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &self,
        camera: &str,
        codec: Codec,
        source: (u32, u32),
        sps: Option<bytes::Bytes>,
        work_side: u32,
        sizes: &[(u32, u32)],
        every_frame: bool,
        sink: FrameSink,
        events: Box<dyn DecodeEvents>,
    ) -> Result<DecoderHandle, DecodeError> {
        let camera: Arc<str> = Arc::from(camera);
        let key = Key {
            codec,
            source,
            sps,
            work: work_size(source.0, source.1, work_side),
            sizes: sizes.to_vec(),
            exclusive: every_frame.then(|| camera.clone()),
        };
        let route = Arc::new(Route {
            camera: camera.clone(),
            sink,
            events,
        });
        let mut map = self.decoders.locked();
        let list = map.entry(key.clone()).or_default();
        list.retain(|w| {
            w.upgrade()
                .is_some_and(|d| !d.broken.load(Ordering::Relaxed))
        });
        let free = list.iter().filter_map(Weak::upgrade).find(|d| {
            key.exclusive.is_none() && d.users.load(Ordering::Relaxed) < CAMERAS_PER_DECODER
        });
        let decoder = match free {
            Some(d) => d,
            None => {
                let d = Arc::new(start_decoder(&camera, key.clone())?);
                list.push(Arc::downgrade(&d));
                d
            }
        };
        decoder.users.fetch_add(1, Ordering::Relaxed);
        Ok(DecoderHandle {
            decoder,
            route,
            codec,
            source,
        })
    }
}

impl DecoderHandle {
    /// Hands one unit to the decoder; never blocks. Keyframes get the stream's parameter
    /// sets in front, so a camera that sends them only out of band still decodes, and
    /// any decoder can start on any camera's keyframe.
    pub fn push(&self, unit: &AccessUnit, sampled: bool) -> Result<(), DecodeError> {
        if self.decoder.broken.load(Ordering::Relaxed) {
            return Err(DecodeError::Stream {
                camera: self.route.camera.to_string(),
                message: "the decoder stopped".to_string(),
            });
        }
        let meta = UnitMeta {
            seq: unit.seq,
            capture_unix_ns: unit.capture_unix_ns,
            received_unix_ns: unit.received_unix_ns,
            sampled,
            pushed: Instant::now(),
        };
        if let Some(old) = self.decoder.input.push(Input {
            unit: unit.clone(),
            meta,
            route: self.route.clone(),
        }) && old.meta.sampled
        {
            old.route.events.lost(true);
        }
        Ok(())
    }
}

impl Drop for DecoderHandle {
    fn drop(&mut self) {
        self.decoder.users.fetch_sub(1, Ordering::Relaxed);
    }
}

fn build_error(camera: &str, message: impl Into<String>) -> DecodeError {
    DecodeError::Build {
        camera: camera.to_string(),
        message: message.into(),
    }
}

/// Builds the first chain on the calling thread (so a missing plugin is the caller's
/// error), then starts the decoder's thread with it.
fn start_decoder(camera: &str, key: Key) -> Result<Decoder, DecodeError> {
    gst::init().map_err(|e| build_error(camera, e.to_string()))?;
    let chain = Chain::new(&key).map_err(|m| build_error(camera, m))?;
    let input = Arc::new(DropOldest::new(INPUT_LIMIT));
    let broken = Arc::new(AtomicBool::new(false));
    let (q, b) = (input.clone(), broken.clone());
    let name = match &key.exclusive {
        Some(_) => "decode".to_string(),
        None => format!("decode-{}x{}", key.source.0, key.source.1),
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            threads::enter_background(threads::Role::Decode);
            run_decoder(chain, &key, &q, &b);
            threads::leave();
        })
        .map_err(|e| build_error(camera, format!("cannot start its thread: {e}")))?;
    Ok(Decoder {
        input,
        users: AtomicUsize::new(0),
        broken,
    })
}

/// The decoder's thread: push each unit through the chain until the input closes.
fn run_decoder(mut chain: Chain, key: &Key, input: &DropOldest<Input>, broken: &AtomicBool) {
    // Timestamps into the chain: an exclusive decoder keeps its camera's (the decoder
    // reorders by them), 1 ms after the last one when they are missing or repeat; a
    // shared decoder numbers units 1 ms apart (its cameras' clocks have nothing in
    // common).
    let mut last_pts: Option<u64> = None;
    while let Some(batch) = input.pop_batch(1, Duration::ZERO) {
        for (item, _) in batch {
            let own = item.unit.pts.filter(|_| key.exclusive.is_some());
            let pts = match own.map(|p| p.as_nanos() as u64) {
                Some(p) if last_pts != Some(p) => p,
                _ => last_pts.map_or(0, |l| l + 1_000_000),
            };
            last_pts = Some(pts);
            for lost in chain.push(&item, pts) {
                lost.events.lost(false);
            }
            if let Err(message) = chain.check() {
                item.route.events.failed(&message);
                chain.close();
                match Chain::new(key) {
                    Ok(c) => chain = c,
                    Err(m) => {
                        tracing::error!("decoder for {key:?} cannot be rebuilt: {m}");
                        broken.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
    chain.close();
}

/// A unit in the chain: its route, what the sampler knew, and the outputs of each branch
/// as they arrive.
struct Pending {
    route: Arc<Route>,
    meta: UnitMeta,
    work: Option<RgbFrame>,
    scaled: Vec<Option<RgbFrame>>,
}

/// The GStreamer elements of one decoder, fed through a pad of its own on the decoder's
/// thread: a push returns once the unit is decoded, scaled and handed out (or dropped).
struct Chain {
    pipeline: gst::Pipeline,
    feed: gst::Pad,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
    branches: usize,
    /// Units in the decoder at most before the oldest is given up as undecodable.
    limit: usize,
}

impl Chain {
    fn new(key: &Key) -> Result<Chain, String> {
        let (caps, parse, dec) = match key.codec {
            Codec::H264 => ("video/x-h264", "h264parse", "avdec_h264"),
            Codec::H265 => ("video/x-h265", "h265parse", "avdec_h265"),
        };
        let (ww, wh) = key.work;
        // max-errors=-1: a camera sending undecodable pictures loses those frames; it does
        // not fail the decoder other cameras share.
        let mut desc = format!(
            "{parse} name=parse ! {dec} name=dec max-threads=1 output-corrupt=false max-errors=-1 \
             ! tee name=t \
             t. ! videoscale ! videoconvert \
             ! video/x-raw,format=RGB,width={ww},height={wh},pixel-aspect-ratio=1/1 \
             ! appsink name=sink sync=false async=false max-buffers=8 drop=true"
        );
        for (i, (w, h)) in key.sizes.iter().enumerate() {
            desc.push_str(&format!(
                " t. ! videoscale ! videoconvert ! video/x-raw,format=RGB,width={w},height={h} \
                 ! appsink name=in{i} sync=false async=false max-buffers=8 drop=true"
            ));
        }
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| format!("{e} (are gst-libav and gst-plugins-base installed?)"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_string())?;
        let get = |name: &str| pipeline.by_name(name).ok_or(format!("no element {name}"));
        let mut sinks = Vec::new();
        for name in std::iter::once("sink".to_string())
            .chain((0..key.sizes.len()).map(|i| format!("in{i}")))
        {
            sinks.push(
                get(&name)?
                    .downcast::<gst_app::AppSink>()
                    .map_err(|_| format!("{name} is not an appsink"))?,
            );
        }
        let pending: Arc<Mutex<HashMap<u64, Pending>>> = Arc::default();

        // Frames decoded only as references are dropped before scaling.
        let dec_src = get("dec")?
            .static_pad("src")
            .ok_or("the decoder has no src pad")?;
        let p = pending.clone();
        dec_src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
                return gst::PadProbeReturn::Drop;
            };
            let mut map = p.locked();
            match map.get(&pts.nseconds()) {
                Some(m) if m.meta.sampled => gst::PadProbeReturn::Ok,
                _ => {
                    map.remove(&pts.nseconds());
                    gst::PadProbeReturn::Drop
                }
            }
        });

        let source = key.source;
        for (branch, sink) in sinks.iter().enumerate() {
            let p = pending.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let Ok(sample) = sink.pull_sample() else {
                            return Err(gst::FlowError::Eos);
                        };
                        deliver(&p, branch, &sample, source);
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }

        let parse_sink = get("parse")?
            .static_pad("sink")
            .ok_or("the parser has no sink pad")?;
        // The feed answers as a live source: avdec then decodes each picture with no
        // output delay (FFmpeg's low-delay mode) instead of holding it for reordering.
        let feed = gst::Pad::builder(gst::PadDirection::Src)
            .name("feed")
            .query_function(|_, _, query| match query.view_mut() {
                gst::QueryViewMut::Latency(q) => {
                    q.set(true, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                    true
                }
                _ => false,
            })
            .build();
        feed.set_active(true)
            .map_err(|e| format!("cannot activate the feed: {e}"))?;
        feed.link(&parse_sink)
            .map_err(|e| format!("cannot link the feed: {e:?}"))?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start: {e}"))?;
        let stream_caps = gst::Caps::builder(caps)
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build();
        for event in [
            gst::event::StreamStart::new("lookout-decoder"),
            gst::event::Caps::new(&stream_caps),
            gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()),
        ] {
            if !feed.push_event(event) {
                // Tearing down a chain that is given up: a failure to stop
                // it changes nothing for the caller, which gets the error.
                if let Err(e) = pipeline.set_state(gst::State::Null) {
                    tracing::debug!("decoder chain not stopped cleanly: {e}");
                }
                return Err("the decoder refused the stream's start".to_string());
            }
        }
        Ok(Chain {
            pipeline,
            feed,
            pending,
            branches: key.sizes.len(),
            // A shared decoder sees keyframes only, each decodable at once (a decoder
            // that reorders holds a few back); an exclusive one may hold a GOP's worth.
            limit: if key.exclusive.is_some() {
                PENDING_LIMIT
            } else {
                SHARED_PENDING_LIMIT
            },
        })
    }

    /// Decodes one unit; returns the routes of sampled units given up as undecodable.
    fn push(&mut self, item: &Input, pts: u64) -> Vec<Arc<Route>> {
        let unit = &item.unit;
        let mut buffer = unit_buffer(unit, unit.keyframe);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
        }
        let mut lost = Vec::new();
        {
            let mut map = self.pending.locked();
            while map.len() >= self.limit {
                let Some(oldest) = map.keys().min().copied() else {
                    break;
                };
                if let Some(p) = map.remove(&oldest)
                    && p.meta.sampled
                {
                    lost.push(p.route);
                }
            }
            map.insert(
                pts,
                Pending {
                    route: item.route.clone(),
                    meta: item.meta.clone(),
                    work: None,
                    scaled: vec![None; self.branches],
                },
            );
        }
        // The outcome shows on the bus (an error) or in the pending map (a unit the
        // decoder dropped stays there until it is the oldest, then counts as lost).
        if let Err(e) = self.feed.push(buffer) {
            tracing::debug!(camera = %item.route.camera, seq = unit.seq, "decoder refused a unit: {e:?}");
        }
        lost
    }

    /// The first error the chain posted, if any.
    fn check(&self) -> Result<(), String> {
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(e.error().to_string());
            }
        }
        Ok(())
    }

    /// Stops the chain for good (it is being rebuilt or the decoder ends).
    /// Failures are logged only: nothing more is pushed into it either way.
    fn close(&self) {
        if let Err(e) = self.feed.set_active(false) {
            tracing::debug!("decoder feed not deactivated: {e}");
        }
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::debug!("decoder chain not stopped cleanly: {e}");
        }
    }
}

/// One branch's output for a unit; when every branch of it is in, the frame goes to its
/// camera.
fn deliver(
    pending: &Mutex<HashMap<u64, Pending>>,
    branch: usize,
    sample: &gst::Sample,
    source: (u32, u32),
) {
    let Some(pts) = sample.buffer().and_then(|b| b.pts()) else {
        return;
    };
    let frame = frame_of(sample);
    let done = {
        let mut map = pending.locked();
        let Some(entry) = map.get_mut(&pts.nseconds()) else {
            return;
        };
        let Some(frame) = frame else {
            tracing::warn!(camera = %entry.route.camera, "decoder produced an unreadable frame");
            return;
        };
        if branch == 0 {
            entry.work = Some(frame);
        } else if let Some(slot) = entry.scaled.get_mut(branch - 1) {
            *slot = Some(frame);
        }
        let complete = entry.work.is_some() && entry.scaled.iter().all(Option::is_some);
        if complete {
            map.remove(&pts.nseconds())
        } else {
            None
        }
    };
    if let Some(Pending {
        route,
        meta,
        work: Some(frame),
        scaled,
    }) = done
    {
        let decode = meta.pushed.elapsed();
        (route.sink)(DecodedFrame {
            meta,
            frame,
            scaled: scaled.into_iter().flatten().collect(),
            source,
            decode,
        });
    }
}

/// Copies a packed RGB frame out of a sample (rows may be padded).
fn frame_of(sample: &gst::Sample) -> Option<RgbFrame> {
    let caps = sample.caps()?;
    let info = gst_video::VideoInfo::from_caps(caps).ok()?;
    let buffer = sample.buffer()?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let stride = *frame.plane_stride().first()? as usize;
    let plane = frame.plane_data(0).ok()?;
    let row = w * 3;
    let mut data = Vec::with_capacity(row * h);
    for y in 0..h {
        data.extend_from_slice(plane.get(y * stride..y * stride + row)?);
    }
    RgbFrame::new(w as u32, h as u32, data)
}

#[cfg(test)]
mod tests;
