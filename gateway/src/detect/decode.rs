//! Decoding only the frames a detector samples, and scaling them once.
//!
//! One small GStreamer pipeline per watched camera:
//! `appsrc ! h26Xparse ! avdec_h26X ! tee`, then per output
//! `videoscale ! videoconvert ! RGB WxH ! appsink`: the work frame, and
//! each model's picture size on the camera.
//! In `keyframes` mode the sampler hands it keyframes only, so delta frames
//! never reach the decoder. In `N fps` mode every unit is decoded (a delta
//! frame cannot be decoded without its references) but frames that are not
//! due are dropped right after the decoder, before scaling and conversion.
//!
//! Scaling happens before conversion (measured: `videoscale ! videoconvert`
//! costs about 0.8 ms per 720p frame, converting first is 3× slower,
//! `videoconvertscale` 2× slower) to a *work frame* whose long side is the
//! [`MIN_WORK_SIDE`] with the picture's aspect kept (alert snapshots are
//! drawn on it), and straight to each model's picture size (its input when
//! it stretches, the picture fitted inside its input when it letterboxes):
//! each output is scaled once from the decoded picture by GStreamer's SIMD
//! scaler, and the detector thread is left with a copy into floats.
//!
//! The decoder runs single-threaded: frame threading would hold each output
//! back until several more inputs arrive, which in keyframe mode means
//! seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::preprocess::RgbFrame;
use crate::ingest::{AccessUnit, Codec};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The smallest long side of a work frame: large enough for a readable
/// alert snapshot.
pub const MIN_WORK_SIDE: u32 = 640;

/// Units pushed and not yet out of the decoder, at most; older entries are
/// forgotten (their frames were dropped by the decoder as corrupt).
const PENDING_LIMIT: usize = 64;

/// What the sampler knew about a unit when it pushed it.
#[derive(Debug, Clone)]
pub struct UnitMeta {
    pub seq: u64,
    pub capture_unix_ns: u64,
    pub received_unix_ns: u64,
    /// Whether the detector wants this frame (false: decode for reference
    /// only).
    pub sampled: bool,
    pub pushed: Instant,
}

/// A unit in the decoder: what the sampler knew, and the outputs of each
/// branch as they arrive.
struct Pending {
    meta: UnitMeta,
    work: Option<RgbFrame>,
    scaled: Vec<Option<RgbFrame>>,
}

/// A decoded, scaled frame with where it came from.
#[derive(Debug)]
pub struct DecodedFrame {
    pub meta: UnitMeta,
    /// The work frame (aspect kept; snapshots, letterboxed models).
    pub frame: RgbFrame,
    /// The same picture scaled to each requested size (models' picture sizes).
    pub scaled: Vec<RgbFrame>,
    /// The picture size the camera sent.
    pub source: (u32, u32),
    /// Push to appsink: decode, scale and convert.
    pub decode: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("camera {camera}: cannot build the decoder: {message}")]
    Build { camera: String, message: String },
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

type FrameSink = Box<dyn Fn(DecodedFrame) + Send + Sync>;

/// One camera's decoder.
pub struct FrameDecoder {
    camera: String,
    pub codec: Codec,
    /// Picture size the pipeline was built for.
    pub source: (u32, u32),
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
    branches: usize,
    /// The last timestamp given to the decoder.
    last_pts: Option<u64>,
}

impl FrameDecoder {
    /// Builds and starts the pipeline; `on_frame` runs on GStreamer's
    /// streaming thread for every sampled frame that comes out. Besides the
    /// work frame, the decoded picture is scaled straight to each size in
    /// `sizes` (each model's picture size: its input when it stretches, the
    /// fitted size when it letterboxes), so preprocessing is only a copy
    /// into floats.
    pub fn new(
        camera: &str,
        codec: Codec,
        source: (u32, u32),
        work_side: u32,
        sizes: &[(u32, u32)],
        on_frame: FrameSink,
    ) -> Result<FrameDecoder, DecodeError> {
        let build = |message: String| DecodeError::Build {
            camera: camera.to_string(),
            message,
        };
        let (caps, parse, dec) = match codec {
            Codec::H264 => ("video/x-h264", "h264parse", "avdec_h264"),
            Codec::H265 => ("video/x-h265", "h265parse", "avdec_h265"),
        };
        let (ww, wh) = work_size(source.0, source.1, work_side);
        let mut desc = format!(
            "appsrc name=src is-live=true format=time block=false max-bytes=33554432 \
             caps={caps},stream-format=byte-stream,alignment=au \
             ! {parse} ! {dec} name=dec max-threads=1 output-corrupt=false ! tee name=t \
             t. ! queue max-size-buffers=4 ! videoscale ! videoconvert \
             ! video/x-raw,format=RGB,width={ww},height={wh},pixel-aspect-ratio=1/1 \
             ! appsink name=sink sync=false max-buffers=8 drop=true"
        );
        for (i, (w, h)) in sizes.iter().enumerate() {
            desc.push_str(&format!(
                " t. ! queue max-size-buffers=4 ! videoscale ! videoconvert ! video/x-raw,format=RGB,width={w},height={h} \
                 ! appsink name=in{i} sync=false max-buffers=8 drop=true"
            ));
        }
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| {
                build(format!(
                    "{e} (are gst-libav and gst-plugins-base installed?)"
                ))
            })?
            .downcast::<gst::Pipeline>()
            .map_err(|_| build("not a pipeline".to_string()))?;
        let get = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| build(format!("no element {name}")))
        };
        let src = get("src")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| build("src is not an appsrc".to_string()))?;
        let mut sinks = Vec::new();
        for name in
            std::iter::once("sink".to_string()).chain((0..sizes.len()).map(|i| format!("in{i}")))
        {
            sinks.push(
                get(&name)?
                    .downcast::<gst_app::AppSink>()
                    .map_err(|_| build(format!("{name} is not an appsink")))?,
            );
        }
        let pending: Arc<Mutex<HashMap<u64, Pending>>> = Arc::default();

        // Frames decoded only as references are dropped before scaling.
        let scale_sink = get("dec")?
            .static_pad("src")
            .ok_or_else(|| build("the decoder has no src pad".to_string()))?;
        let p = pending.clone();
        scale_sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(pts) = buf.pts() else {
                return gst::PadProbeReturn::Drop;
            };
            let Ok(mut map) = p.lock() else {
                return gst::PadProbeReturn::Drop;
            };
            match map.get(&pts.nseconds()) {
                Some(m) if m.meta.sampled => gst::PadProbeReturn::Ok,
                _ => {
                    map.remove(&pts.nseconds());
                    gst::PadProbeReturn::Drop
                }
            }
        });

        let on_frame = Arc::new(on_frame);
        let branches = sizes.len();
        for (branch, sink) in sinks.iter().enumerate() {
            let p = pending.clone();
            let cam = camera.to_string();
            let on_frame = on_frame.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let Ok(sample) = sink.pull_sample() else {
                            return Err(gst::FlowError::Eos);
                        };
                        let Some(frame) = frame_of(&sample) else {
                            tracing::warn!(camera = %cam, "decoder produced an unreadable frame");
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        let Some(pts) = sample.buffer().and_then(|b| b.pts()) else {
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        let done = {
                            let Ok(mut map) = p.lock() else {
                                return Ok(gst::FlowSuccess::Ok);
                            };
                            let Some(entry) = map.get_mut(&pts.nseconds()) else {
                                return Ok(gst::FlowSuccess::Ok);
                            };
                            if branch == 0 {
                                entry.work = Some(frame);
                            } else if let Some(slot) = entry.scaled.get_mut(branch - 1) {
                                *slot = Some(frame);
                            }
                            let complete =
                                entry.work.is_some() && entry.scaled.iter().all(Option::is_some);
                            if complete {
                                map.remove(&pts.nseconds())
                            } else {
                                None
                            }
                        };
                        if let Some(Pending {
                            meta,
                            work: Some(frame),
                            scaled,
                        }) = done
                        {
                            let decode = meta.pushed.elapsed();
                            on_frame(DecodedFrame {
                                meta,
                                frame,
                                scaled: scaled.into_iter().flatten().collect(),
                                source,
                                decode,
                            });
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| build(format!("cannot start: {e}")))?;
        Ok(FrameDecoder {
            camera: camera.to_string(),
            codec,
            source,
            pipeline,
            src,
            pending,
            branches,
            last_pts: None,
        })
    }

    /// Hands one unit to the decoder. Keyframes get the stream's parameter
    /// sets in front, so a camera that sends them only out of band still
    /// decodes. Never blocks.
    pub fn push(&mut self, unit: &AccessUnit, sampled: bool) -> Result<(), DecodeError> {
        // Timestamps: the camera's when it has them and they change, else
        // 1 ms after the last one.
        let pts = match unit.pts.map(|p| p.as_nanos() as u64) {
            Some(p) if self.last_pts != Some(p) => p,
            _ => self.last_pts.map_or(0, |l| l + 1_000_000),
        };
        self.last_pts = Some(pts);
        // No copy of the picture: the buffer wraps the unit's bytes (and, in
        // front of a keyframe, the parameter sets' bytes).
        let mut buffer = gst::Buffer::new();
        if let Some(b) = buffer.get_mut() {
            if unit.keyframe {
                for ps in [&unit.params.vps, &unit.params.sps, &unit.params.pps]
                    .into_iter()
                    .flatten()
                {
                    b.append_memory(gst::Memory::from_slice(START_CODE));
                    b.append_memory(gst::Memory::from_slice(ps.clone()));
                }
            }
            b.append_memory(gst::Memory::from_slice(unit.data.clone()));
            b.set_pts(gst::ClockTime::from_nseconds(pts));
        }
        if let Ok(mut map) = self.pending.lock() {
            if map.len() >= PENDING_LIMIT
                && let Some(oldest) = map.keys().min().copied()
            {
                map.remove(&oldest);
            }
            map.insert(
                pts,
                Pending {
                    meta: UnitMeta {
                        seq: unit.seq,
                        capture_unix_ns: unit.capture_unix_ns,
                        received_unix_ns: unit.received_unix_ns,
                        sampled,
                        pushed: Instant::now(),
                    },
                    work: None,
                    scaled: vec![None; self.branches],
                },
            );
        }
        self.src
            .push_buffer(buffer)
            .map_err(|e| self.stream_error(format!("cannot push: {e}")))?;
        self.check_bus()
    }

    /// Reports the first error the pipeline posted, if any.
    pub fn check_bus(&self) -> Result<(), DecodeError> {
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(self.stream_error(e.error().to_string()));
            }
        }
        Ok(())
    }

    fn stream_error(&self, message: String) -> DecodeError {
        DecodeError::Stream {
            camera: self.camera.clone(),
            message,
        }
    }
}

impl Drop for FrameDecoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
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
mod tests {
    use super::*;
    use crate::ingest::{CodecParams, TimestampSource};
    use std::sync::mpsc;

    /// `n` H.264 access units of a test pattern, every one a keyframe.
    fn encode(n: u32, w: u32, h: u32) -> Vec<bytes::Bytes> {
        gst::init().expect("gstreamer");
        let desc = format!(
            "videotestsrc num-buffers={n} pattern=smpte ! video/x-raw,format=I420,width={w},height={h},framerate=25/1 \
             ! x264enc key-int-max=1 tune=zerolatency sliced-threads=false ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false"
        );
        let p = gst::parse::launch(&desc)
            .expect("encoder pipeline")
            .downcast::<gst::Pipeline>()
            .expect("pipeline");
        let sink = p
            .by_name("out")
            .expect("sink")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");
        p.set_state(gst::State::Playing).expect("play");
        let mut out = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            let b = s.buffer().expect("buffer").map_readable().expect("map");
            out.push(bytes::Bytes::copy_from_slice(b.as_slice()));
        }
        let _ = p.set_state(gst::State::Null);
        out
    }

    fn unit(seq: u64, data: bytes::Bytes, w: u32, h: u32) -> AccessUnit {
        let mut params = CodecParams::unknown(Codec::H264);
        params.width = w;
        params.height = h;
        AccessUnit {
            camera: Arc::from("cam"),
            seq,
            session: 1,
            keyframe: true,
            params: Arc::new(params),
            data,
            pts: Some(Duration::from_millis(40 * seq)),
            received_unix_ns: 1_000 + seq,
            capture_unix_ns: seq,
            capture_source: TimestampSource::Sei,
        }
    }

    #[test]
    fn keyframes_come_out_as_work_and_model_sized_frames() {
        let (w, h) = (320, 240);
        let units = encode(6, w, h);
        assert_eq!(units.len(), 6);
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let mut dec = FrameDecoder::new(
            "cam",
            Codec::H264,
            (w, h),
            MIN_WORK_SIDE,
            &[(224, 224), (160, 120)],
            Box::new(move |f| {
                if let Ok(t) = tx.lock() {
                    let _ = t.send(f);
                }
            }),
        )
        .expect("decoder");
        for (i, u) in units.into_iter().enumerate() {
            // Every other one is decoded for reference only.
            dec.push(&unit(i as u64 + 1, u, w, h), i % 2 == 0)
                .expect("push");
        }
        let mut got = Vec::new();
        while let Ok(f) = rx.recv_timeout(Duration::from_secs(5)) {
            got.push(f);
            if got.len() == 3 {
                break;
            }
        }
        assert_eq!(got.len(), 3, "three sampled frames");
        let seqs: Vec<u64> = got.iter().map(|f| f.meta.seq).collect();
        assert_eq!(seqs, vec![1, 3, 5]);
        for f in &got {
            assert_eq!((f.frame.width, f.frame.height), (320, 240));
            let sizes: Vec<(u32, u32)> = f.scaled.iter().map(|s| (s.width, s.height)).collect();
            assert_eq!(sizes, vec![(224, 224), (160, 120)]);
            assert_eq!(f.source, (w, h));
        }
        // Nothing else comes out.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn garbage_is_an_error_or_nothing_never_a_frame() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        gst::init().expect("gstreamer");
        let mut dec = FrameDecoder::new(
            "cam",
            Codec::H264,
            (320, 240),
            MIN_WORK_SIDE,
            &[],
            Box::new(move |f| {
                if let Ok(t) = tx.lock() {
                    let _ = t.send(f);
                }
            }),
        )
        .expect("decoder");
        let junk = bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65, 0xff, 0x00, 0x13, 0x37, 0x42]);
        for i in 0..3 {
            let _ = dec.push(&unit(i + 1, junk.clone(), 320, 240), true);
        }
        assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    }

    #[test]
    fn work_frames_keep_aspect_and_alignment() {
        assert_eq!(work_size(1280, 720, 640), (640, 360));
        assert_eq!(work_size(848, 480, 640), (640, 362));
        // Never upscaled.
        assert_eq!(work_size(320, 240, 640), (320, 240));
        // Portrait body cameras.
        assert_eq!(work_size(720, 1280, 640), (360, 640));
        let (w, h) = work_size(1917, 1079, 700);
        assert_eq!((w % 4, h % 2), (0, 0));
    }
}
