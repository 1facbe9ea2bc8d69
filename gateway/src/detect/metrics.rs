//! The detection stage's Prometheus series: per-stage and per-batch
//! histograms, queue depth, frames, drops and errors per detector, and
//! capture-to-detect per camera.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::Metrics;

/// A series' label pairs, e.g. `[("detector", "smoke"), ("stage", "queue")]`.
pub(crate) type Labels = Vec<(String, String)>;

fn stage_histogram() -> Histogram {
    // 100 µs … ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 7))
}

/// The detection stage's Prometheus series.
#[derive(Clone)]
pub struct DetectMetrics {
    /// Seconds per stage: `queue` (per frame, waiting for its batch),
    /// `decode` (per frame, decode + scale + convert), `preprocess`,
    /// `inference`, `postprocess` (per batch).
    pub stage: Family<Labels, Histogram, fn() -> Histogram>,
    /// Capture of a frame to its detections, per frame, per camera.
    pub capture_to_detect: Family<Labels, Histogram, fn() -> Histogram>,
    /// Frames per inference run, per detector (buckets 1 … 64).
    pub batch_size: Family<Labels, Histogram, fn() -> Histogram>,
    /// Frames run through a detector (after a successful run), per
    /// detector.
    pub frames: Family<Labels, Counter>,
    /// Sampled frames dropped before inference, per detector and reason:
    /// `queue_full` (drop-oldest pushed one out) or `inference_error` (the
    /// batch's run failed).
    pub dropped: Family<Labels, Counter>,
    /// Frames waiting in a detector's queue, per detector: set after each
    /// push and each batch taken.
    pub queue_depth: Family<Labels, Gauge>,
    /// Decoder failures per camera (could not be built, refused a unit, or
    /// failed on the picture); the decoder restarts at the next keyframe.
    pub decode_errors: Family<Labels, Counter>,
    /// Sampled frames that never came out of the decoder, by camera and reason.
    pub decode_lost: Family<Labels, Counter>,
    /// Failed inference runs per detector (their frames are also counted in
    /// `dropped{reason="inference_error"}`).
    pub inference_errors: Family<Labels, Counter>,
    /// Alert transitions by camera, label and event (`raised`, `updated`,
    /// `cleared`), counted as the detector decides them.
    pub alert_events: Family<Labels, Counter>,
}

impl DetectMetrics {
    pub fn new() -> Self {
        DetectMetrics {
            stage: Family::new_with_constructor(stage_histogram),
            capture_to_detect: Family::new_with_constructor(stage_histogram),
            batch_size: Family::new_with_constructor(batch_histogram),
            frames: Family::default(),
            dropped: Family::default(),
            queue_depth: Family::default(),
            decode_errors: Family::default(),
            decode_lost: Family::default(),
            inference_errors: Family::default(),
            alert_events: Family::default(),
        }
    }

    pub fn register(&self, m: &Metrics) {
        m.register(
            "detect_stage_seconds",
            "Time per detection stage: queue and decode per frame; preprocess, inference and postprocess per batch",
            self.stage.clone(),
        );
        m.register(
            "detect_capture_to_detect_seconds",
            "From a frame's capture to its detections",
            self.capture_to_detect.clone(),
        );
        m.register(
            "detect_batch_size",
            "Frames per inference run",
            self.batch_size.clone(),
        );
        m.register(
            "detect_frames",
            "Frames run through a detector",
            self.frames.clone(),
        );
        m.register(
            "detect_dropped_frames",
            "Sampled frames dropped before inference, by reason",
            self.dropped.clone(),
        );
        m.register(
            "detect_queue_depth",
            "Frames waiting for a detector",
            self.queue_depth.clone(),
        );
        m.register(
            "detect_decode_errors",
            "Decoder failures per camera (the decoder restarts at the next keyframe)",
            self.decode_errors.clone(),
        );
        m.register(
            "detect_decode_lost_frames",
            "Sampled frames per camera that never came out of the decoder: undecodable, \
             or dropped because the decoder was behind (decoder_busy)",
            self.decode_lost.clone(),
        );
        m.register(
            "detect_inference_errors",
            "Failed inference runs per detector",
            self.inference_errors.clone(),
        );
        m.register(
            "alert_events",
            "Alert events by camera, label and event (raised, updated, cleared)",
            self.alert_events.clone(),
        );
    }
}

impl Default for DetectMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub use lookout_core::clock::unix_now_ns;
