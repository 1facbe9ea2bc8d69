//! `lookout bench-detector`: how close the detector stage comes to the bare
//! ONNX Runtime it wraps, measured in one run on one machine.
//!
//! Two measurements on the same session, batch size and input, alternated in
//! many short rounds (default 12 of 0.5 s each) so that a noisy neighbour's
//! bursts hurt both alike: on this shared 2-core machine, 3 rounds of 1–3 s
//! gave ratios from 0.81 to 0.96 on the same build, 10 rounds of 0.3 s 0.85 to
//! 0.90.
//! - **raw**: `session.run` on a tensor that is already filled — the most
//!   the model can do here;
//! - **detector**: the gateway's own path for decoded frames as the decode
//!   stage hands them over (work frame, plus the picture already at the
//!   model's picture size) —
//!   the drop-oldest queue, batching across cameras, preprocessing (scale,
//!   normalise, layout; on its own thread overlapped with the previous
//!   batch's inference where cores allow, else in line), inference, output
//!   decoding, mapping to the camera's
//!   picture and the alert state machines — kept saturated by a feeder
//!   thread, as when many cameras send keyframes at once. Alert snapshots are
//!   requested but not encoded: that is the snapshot thread's work, once per
//!   alert, not per frame.
//!
//! Percentiles come from HDR histograms of per-batch time (on the inference
//! thread, from receiving the prepared batch to its last alert decision).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::engine::{Engine, EngineError, InferTimings};
use super::preprocess::RgbFrame;
use super::queue::DropOldest;
use super::service::{DetectMetrics, Job, Sample, SnapshotJob, WorkerContext, worker};
use crate::alert::hub::AlertHub;
use crate::alert::identity::ModelIdentity;
use crate::config::{CameraConfig, CameraKind, Transport};

/// How `lookout bench-detector` measures.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Seconds per measurement per round (at least 0.1 is used).
    pub seconds: f64,
    /// Rounds, each one raw measurement then one of the detector path (at
    /// least 1 is run): many short rounds let a noisy neighbour hurt both
    /// alike.
    pub rounds: usize,
    /// Work-frame size fed to the detector (a 720p camera's is 640×360).
    pub frame: (u32, u32),
    /// Cameras the frames are spread over (alert state per camera).
    pub cameras: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            seconds: 0.5,
            rounds: 12,
            frame: (640, 360),
            cameras: 64,
        }
    }
}

/// Percentiles of per-batch time, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median batch time, ms (recorded in µs, 3 significant figures).
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Longest batch, ms.
    pub max: f64,
    /// Batches recorded.
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        // Recorded in microseconds.
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            count: h.len(),
        }
    }
}

/// One of the two measurements, summed over every round.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Frames run: the batch size per raw run; frames the worker ran on the
    /// detector path.
    pub frames: u64,
    /// Wall-clock time measured over all rounds, seconds.
    pub seconds: f64,
    /// `frames / seconds`.
    pub frames_per_s: f64,
    /// Per-batch time (raw: `session.run`; detector: from receiving the
    /// prepared batch to its last alert decision).
    pub batch_ms: Percentiles,
}

/// Where a detector-path batch's time went, mean per batch, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct StageMeans {
    /// Filling the batch's tensor: on the preprocessing thread overlapped
    /// with the previous batch's inference, or in line before this batch's;
    /// either way not part of the per-batch time.
    pub preprocess: f64,
    /// ONNX Runtime's `run`.
    pub inference: f64,
    /// Decoding the output into detections (NMS included).
    pub postprocess: f64,
    /// Batching, alert decisions and everything else: the mean batch time
    /// less `inference` and `postprocess`, at least 0.
    pub other: f64,
}

/// What `lookout bench-detector` prints (as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The `[[detector]]` id measured.
    pub detector: String,
    /// Its model file's identity.
    pub model: ModelIdentity,
    /// Frames per run: the engine's batch size (config `max_batch`, or 1
    /// for a model fixed at 1).
    pub batch: usize,
    /// The model's input size (width, height), pixels.
    pub input: (u32, u32),
    /// The work-frame size fed to the detector (width, height), pixels.
    pub frame: (u32, u32),
    /// ONNX Runtime intra-op threads the engine was opened with (reported
    /// only).
    pub threads: usize,
    /// Rounds run.
    pub rounds: usize,
    /// Where the detector path filled each batch's tensor: `overlap` (on its
    /// own thread during the previous batch's inference) or `inline` (on the
    /// inference thread between runs); see the detector's `preprocess`.
    pub preprocessing: &'static str,
    /// Bare `session.run` on a tensor filled once.
    pub ort_raw: Side,
    /// The gateway's own path, queue to alert decisions.
    pub detector_path: Side,
    /// Mean per batch on the detector path, milliseconds.
    pub stage_mean_ms: StageMeans,
    /// detector_path.frames_per_s ÷ ort_raw.frames_per_s.
    pub ratio: f64,
}

/// Records one batch time in microseconds. Only a batch over the
/// histogram's 60 s cap fails: it is left out of the percentiles, and said.
fn record(h: &mut Histogram<u64>, t: Duration, side: &str) {
    if let Err(e) = h.record((t.as_micros() as u64).max(1)) {
        tracing::warn!("bench: {side} batch time {t:?} not recorded: {e}");
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs … 60 s, 3 significant figures; cannot fail with these bounds.
    match Histogram::new_with_bounds(1, 60_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

/// A deterministic, textured frame (gradients and noise): inference cost
/// does not depend on content for these models, but it must not be
/// constant.
pub fn synthetic_frame(w: u32, h: u32, seed: u32) -> RgbFrame {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    for y in 0..h {
        for c in 0..w {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = (x & 31) as u8;
            data.push(((c * 255 / w.max(1)) as u8).wrapping_add(n));
            data.push(((y * 255 / h.max(1)) as u8).wrapping_add(n));
            data.push(n.wrapping_mul(4));
        }
    }
    RgbFrame {
        width: w,
        height: h,
        data,
    }
}

/// Takes the alert snapshots the detector path asks for and drops them. Each bench
/// camera raises its alert once a round; encoding those 64 JPEGs is the snapshot
/// thread's work, once per alert, off the detector's thread, and would only compete
/// with ONNX Runtime for the cores here.
fn discard_snapshots() -> std::io::Result<std::sync::mpsc::SyncSender<SnapshotJob>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<SnapshotJob>(256);
    std::thread::Builder::new()
        .name("bench-snapshots".into())
        .spawn(move || while rx.recv().is_ok() {})?;
    Ok(tx)
}

/// Runs the comparison. `threads` is only reported (the engine was opened
/// with it).
pub fn run(
    engine: &mut Engine,
    identity: &ModelIdentity,
    threads: usize,
    opts: &BenchOptions,
) -> Result<BenchReport, EngineError> {
    let batch = engine.max_batch();
    let cameras: Vec<Arc<CameraConfig>> = (0..opts.cameras.max(1))
        .map(|i| {
            Arc::new(CameraConfig::bare(
                &format!("bench-{i:02}"),
                CameraKind::Tower,
                "rtsp://127.0.0.1/bench",
                Transport::Tcp,
            ))
        })
        .collect();
    let frames: Vec<RgbFrame> = (0..16)
        .map(|i| synthetic_frame(opts.frame.0, opts.frame.1, i + 1))
        .collect();
    // What the decode stage hands the model: the picture already at its
    // picture size (scaled by GStreamer on the camera's thread).
    let inp = engine.config.input.clone();
    let (sw, sh) = (opts.frame.0 * 2, opts.frame.1 * 2);
    let (pw, ph) = super::preprocess::picture_size(sw, sh, &inp);
    let scaled: Vec<Vec<RgbFrame>> =
        vec![(0..16).map(|i| synthetic_frame(pw, ph, i + 1)).collect()];
    let per = Duration::from_secs_f64(opts.seconds.max(0.1));

    // Warm up (allocations, ORT's first-run costs).
    for _ in 0..3 {
        engine.fill_raw(&scaled[0], batch);
        engine.run_raw(batch)?;
    }

    let mut raw_h = histogram();
    let mut det_h = histogram();
    let (mut raw_frames, mut raw_time) = (0u64, Duration::ZERO);
    let (mut det_frames, mut det_time) = (0u64, Duration::ZERO);
    let mut stage_sum = InferTimings::default();
    let mut batches = 0u64;
    for _ in 0..opts.rounds.max(1) {
        // Raw, on a tensor filled from the same frames the detector path
        // gets (content can matter: e.g. denormal activations).
        engine.fill_raw(&scaled[0], batch);
        let start = Instant::now();
        while start.elapsed() < per {
            let t = engine.run_raw(batch)?;
            record(&mut raw_h, t, "raw");
            raw_frames += batch as u64;
        }
        raw_time += start.elapsed();

        // Detector path, saturated.
        let queue: Arc<DropOldest<Job>> = Arc::new(DropOldest::new(batch * 8));
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = start_feeder(
            queue.clone(),
            stop.clone(),
            &cameras,
            &frames,
            &scaled,
            (sw, sh),
            batch,
        );
        let hub = Arc::new(AlertHub::new());
        let ctx = WorkerContext {
            gateway_id: "bench".to_string(),
            identity: identity.clone(),
            snapshots: discard_snapshots().map_err(|e| EngineError::Inference {
                detector: engine.config.id.clone(),
                message: format!("cannot start the snapshot thread: {e}"),
            })?,
            hub,
            metrics: DetectMetrics::new(),
        };
        // Stop the feeder after the measurement period; the worker drains
        // what is queued and returns.
        let timer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(per);
                stop.store(true, Ordering::Relaxed);
            })
        };
        let start = Instant::now();
        let n = worker(engine, &queue, &ctx, &mut |t, stages| {
            record(&mut det_h, t, "detector");
            stage_sum += *stages;
            batches += 1;
        });
        let took = start.elapsed();
        // A panicked timer or feeder leaves this round's figures in doubt:
        // say so rather than report them as if nothing happened.
        if timer.join().is_err() {
            tracing::warn!("bench: the round timer thread panicked");
        }
        if feeder.join().is_err() {
            tracing::warn!("bench: the feeder thread panicked");
        }
        det_frames += n;
        det_time += took;
    }
    let side = |frames: u64, time: Duration, h: &Histogram<u64>| Side {
        frames,
        seconds: time.as_secs_f64(),
        frames_per_s: frames as f64 / time.as_secs_f64().max(1e-9),
        batch_ms: Percentiles::of(h),
    };
    let ort_raw = side(raw_frames, raw_time, &raw_h);
    let per_batch = |d: Duration| d.as_secs_f64() * 1000.0 / batches.max(1) as f64;
    let total_ms = det_h.mean() / 1000.0;
    let (pre, inf, post) = (
        per_batch(stage_sum.preprocess),
        per_batch(stage_sum.inference),
        per_batch(stage_sum.postprocess),
    );
    let stage_mean_ms = StageMeans {
        preprocess: pre,
        inference: inf,
        postprocess: post,
        other: (total_ms - inf - post).max(0.0),
    };
    let detector_path = side(det_frames, det_time, &det_h);
    Ok(BenchReport {
        detector: engine.config.id.clone(),
        model: identity.clone(),
        batch,
        input: (engine.config.input.width, engine.config.input.height),
        frame: opts.frame,
        threads,
        rounds: opts.rounds.max(1),
        preprocessing: if engine.overlaps_preprocessing() {
            "overlap"
        } else {
            "inline"
        },
        ratio: detector_path.frames_per_s / ort_raw.frames_per_s.max(1e-9),
        ort_raw,
        detector_path,
        stage_mean_ms,
    })
}

/// The feeder thread that keeps the detector path's queue full: jobs made
/// once from the bench frames, spread over the cameras.
#[allow(clippy::too_many_arguments)]
fn start_feeder(
    queue: Arc<DropOldest<Job>>,
    stop: Arc<AtomicBool>,
    cameras: &[Arc<CameraConfig>],
    frames: &[RgbFrame],
    scaled: &[Vec<RgbFrame>],
    (sw, sh): (u32, u32),
    batch: usize,
) -> std::thread::JoinHandle<()> {
    let jobs: Vec<Job> = (0..cameras.len() * 2)
        .map(|i| {
            let f = &frames[i % frames.len()];
            Arc::new(Sample {
                camera: cameras[i % cameras.len()].clone(),
                frame: f.clone(),
                scaled: scaled.iter().map(|s| s[i % s.len()].clone()).collect(),
                source: (sw, sh),
                seq: i as u64,
                capture_unix_ns: super::service::unix_now_ns(),
                received_unix_ns: super::service::unix_now_ns(),
            })
        })
        .collect();
    std::thread::spawn(move || {
        let mut i = 0usize;
        // Fill the queue (eight batches, far more than the detector runs in
        // 10 ms) and sleep: waking rarely, the feeder takes next to no CPU
        // from ONNX Runtime's threads, which a thread waking every
        // millisecond would keep preempting.
        while !stop.load(Ordering::Relaxed) {
            while queue.len() < batch * 8 {
                queue.push(jobs[i % jobs.len()].clone());
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        queue.close();
    })
}
