//! Writes access units into an MP4 file without re-encoding: GStreamer's
//! own parser (`h264parse` / `h265parse`) turns the Annex-B units into
//! length-prefixed samples with their parameter sets in the sample entry
//! (`avc1` with `avcC`, `hvc1` with `hvcC`), and `mp4mux` writes the file
//! with its index in front (`faststart`), so a browser can start playing
//! before it has the whole file. Sample times are the frames' capture
//! times, relative to the first; the first unit must be a keyframe.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use lookout_core::unit::{AccessUnit, Codec};

/// Longest the muxer may take to write its index and close the file.
const FINISH_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(30);
/// The last frame's duration when the clip has a single frame.
const LONE_FRAME_NS: u64 = 40_000_000;

/// What a finished clip holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub frames: u64,
    /// Capture time of the first frame (the keyframe the clip starts at).
    pub first_capture_unix_ns: u64,
    /// Capture time of the last frame.
    pub last_capture_unix_ns: u64,
}

/// One MP4 file being written.
pub struct ClipWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    codec: Codec,
    first_ns: Option<u64>,
    last_capture_ns: u64,
    /// The newest unit and its time in the clip: held back until the next
    /// one gives its duration.
    held: Option<(AccessUnit, u64)>,
    frames: u64,
}

impl ClipWriter {
    /// Starts writing `codec` video to `path` (created or truncated).
    pub fn create(path: &Path, codec: Codec) -> Result<ClipWriter, String> {
        let (parse, caps) = match codec {
            Codec::H264 => ("h264parse", "video/x-h264"),
            Codec::H265 => ("h265parse", "video/x-h265"),
        };
        let desc = format!(
            "appsrc name=src format=time is-live=false \
             caps={caps},stream-format=byte-stream,alignment=au \
             ! {parse} ! mp4mux faststart=true ! filesink name=sink sync=false async=false"
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| format!("{e} (are gst-plugins-good and -bad installed?)"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_string())?;
        let sink = pipeline.by_name("sink").ok_or("no element sink")?;
        sink.set_property("location", path.to_string_lossy().as_ref());
        let src = pipeline
            .by_name("src")
            .ok_or("no element src")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| "src is not an appsrc".to_string())?;
        // Never block the recording task: a clip is bounded in length, and
        // the file is local.
        src.set_property("block", false);
        src.set_property("max-bytes", 0u64);
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("starting the MP4 writer for {}: {e}", path.display()))?;
        Ok(ClipWriter {
            pipeline,
            src,
            codec,
            first_ns: None,
            last_capture_ns: 0,
            held: None,
            frames: 0,
        })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Adds the next unit (decoding order, the first a keyframe).
    pub fn push(&mut self, unit: &AccessUnit) -> Result<(), String> {
        let first = *self.first_ns.get_or_insert(unit.capture_unix_ns);
        let mut at = unit.capture_unix_ns.saturating_sub(first);
        if let Some((_, held_at)) = &self.held {
            // Times only go forward in the file, whatever the clock did.
            at = at.max(held_at + 1_000_000);
        }
        if let Some((prev, prev_at)) = self.held.take() {
            self.write(&prev, prev_at, at - prev_at)?;
        }
        self.last_capture_ns = unit.capture_unix_ns;
        self.held = Some((unit.clone(), at));
        Ok(())
    }

    fn write(&mut self, unit: &AccessUnit, at: u64, duration: u64) -> Result<(), String> {
        // The parameter sets in front of the first keyframe, so the parser
        // has them even when the camera sends them out of band.
        let mut buffer = crate::detect::decode::unit_buffer(unit, self.frames == 0);
        let Some(b) = buffer.get_mut() else {
            return Err("a new buffer is not writable".into());
        };
        b.set_pts(gst::ClockTime::from_nseconds(at));
        b.set_dts(gst::ClockTime::from_nseconds(at));
        b.set_duration(gst::ClockTime::from_nseconds(duration));
        if !unit.keyframe {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        self.src
            .push_buffer(buffer)
            .map_err(|e| format!("MP4 writer refused frame {}: {e:?}", unit.seq))?;
        self.frames += 1;
        Ok(())
    }

    /// Writes the last frame, the index, and closes the file. Blocks until
    /// the muxer is done: call it off the async threads.
    pub fn finish(mut self) -> Result<Written, String> {
        let result = self.finish_inner();
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::debug!("stopping an MP4 writer: {e}");
        }
        result
    }

    fn finish_inner(&mut self) -> Result<Written, String> {
        let first = self.first_ns.ok_or("a clip without frames")?;
        if let Some((unit, at)) = self.held.take() {
            // The average frame interval so far, for the last frame.
            let duration = match self.frames {
                0 => LONE_FRAME_NS,
                n => (at / n).max(1_000_000),
            };
            self.write(&unit, at, duration)?;
        }
        self.src
            .end_of_stream()
            .map_err(|e| format!("ending the clip: {e:?}"))?;
        let bus = self.pipeline.bus().ok_or("the MP4 writer has no bus")?;
        match bus.timed_pop_filtered(
            FINISH_TIMEOUT,
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(m) => match m.view() {
                gst::MessageView::Eos(_) => Ok(Written {
                    frames: self.frames,
                    first_capture_unix_ns: first,
                    last_capture_unix_ns: self.last_capture_ns,
                }),
                gst::MessageView::Error(e) => Err(format!(
                    "MP4 writer: {} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                )),
                _ => Err("MP4 writer: unexpected message".into()),
            },
            None => Err(format!("MP4 writer did not finish within {FINISH_TIMEOUT}")),
        }
    }
}

impl Drop for ClipWriter {
    fn drop(&mut self) {
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::debug!("stopping an MP4 writer: {e}");
        }
    }
}
