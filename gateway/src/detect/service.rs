//! The detection stage of the daemon: for every camera with detectors, a
//! sampler that takes its keyframes (or N fps), decodes and scales only
//! those, and queues the work frame for each of its detectors; for every
//! detector, one thread that batches frames across cameras, runs them
//! through one shared ONNX Runtime session and turns the results into
//! alerts.
//!
//! ```text
//! ingest ─► sampler (per camera) ─► decoder (GStreamer) ─► queue (per detector, drop-oldest)
//!                                                            └► worker: batch ─► ORT ─► alerts ─► hub
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::decode::{DecodeEvents, DecodedFrame, DecoderHandle, DecoderPool, MIN_WORK_SIDE};
use super::engine::{Engine, InferTimings, Prepared};
use super::postprocess::Detection;
use super::preprocess::{RgbFrame, picture_size};
use super::queue::DropOldest;
use super::runtime;
use crate::alert::hub::{Alert, AlertHub, CameraRef, FrameRef};
use crate::alert::identity::ModelIdentity;
use crate::alert::machine::{AlertEventKind, CameraAlerts, Transition};
use crate::alert::snapshot;
use crate::config::{CameraConfig, Config, DetectorConfig, Sampling};
use crate::ingest::{AccessUnit, Filter, Ingest};
use crate::metrics::Metrics;

type Labels = Vec<(String, String)>;

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
    pub batch_size: Family<Labels, Histogram, fn() -> Histogram>,
    pub frames: Family<Labels, Counter>,
    pub dropped: Family<Labels, Counter>,
    pub queue_depth: Family<Labels, Gauge>,
    pub decode_errors: Family<Labels, Counter>,
    /// Sampled frames that never came out of the decoder, by camera and reason.
    pub decode_lost: Family<Labels, Counter>,
    pub inference_errors: Family<Labels, Counter>,
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

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A sampled, decoded frame on its way to the detectors.
pub struct Sample {
    pub camera: Arc<CameraConfig>,
    /// The work frame (aspect kept).
    pub frame: RgbFrame,
    /// The picture already scaled to each model's picture size (its input
    /// when stretching, the fitted size when letterboxing).
    pub scaled: Vec<RgbFrame>,
    /// The picture size the camera sent.
    pub source: (u32, u32),
    pub seq: u64,
    pub capture_unix_ns: u64,
    pub received_unix_ns: u64,
}

impl Sample {
    /// The frame a model with this input should read: the one already
    /// scaled to its size when it stretches, else the work frame.
    pub fn frame_for(&self, input: &crate::config::ModelInput) -> &RgbFrame {
        let want = picture_size(self.source.0, self.source.1, input);
        self.scaled
            .iter()
            .find(|f| (f.width, f.height) == want)
            .unwrap_or(&self.frame)
    }
}

pub(crate) type Job = Arc<Sample>;

/// One detector: its queue and its thread.
struct DetectorSlot {
    config: DetectorConfig,
    queue: Arc<DropOldest<Job>>,
}

struct SamplerSlot {
    config: Arc<CameraConfig>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running detection stage.
pub struct DetectService {
    detectors: HashMap<String, DetectorSlot>,
    samplers: Mutex<HashMap<String, SamplerSlot>>,
    ingest: Arc<Ingest>,
    decoders: Arc<DecoderPool>,
    metrics: DetectMetrics,
}

/// What a detector's thread needs besides its engine and queue.
pub(crate) struct WorkerContext {
    pub(crate) gateway_id: String,
    pub(crate) identity: ModelIdentity,
    pub(crate) hub: Arc<AlertHub>,
    pub(crate) metrics: DetectMetrics,
    pub(crate) snapshots: std::sync::mpsc::SyncSender<SnapshotJob>,
}

impl DetectService {
    /// Opens every detector's model (a model that cannot be opened stops the
    /// start, with the detector named) and starts its thread, then starts
    /// samplers for the cameras that use detectors.
    pub async fn start(
        config: &Config,
        ingest: Arc<Ingest>,
        hub: Arc<AlertHub>,
        metrics: DetectMetrics,
    ) -> anyhow::Result<Arc<DetectService>> {
        let mut detectors = HashMap::new();
        if !config.detectors.is_empty() {
            let explicit = config
                .gateway
                .onnxruntime
                .as_ref()
                .map(|p| config.resolve(p));
            let rt = runtime::load(explicit.as_deref())?;
            let snapshots = snapshot_thread(hub.clone())?;
            for d in &config.detectors {
                let path = config.resolve(&d.model);
                let identity =
                    ModelIdentity::of_file(&path, d.model_version.as_deref()).map_err(|e| {
                        anyhow::anyhow!("detector {}: model {}: {e}", d.id, path.display())
                    })?;
                let threads = d.threads.unwrap_or_else(default_threads);
                let ctx = WorkerContext {
                    gateway_id: config.gateway.id.clone(),
                    identity: identity.clone(),
                    hub: hub.clone(),
                    metrics: metrics.clone(),
                    snapshots: snapshots.clone(),
                };
                // The session is opened on the detector's own thread, after it has
                // lowered its priority: ONNX Runtime's pool threads, created with the
                // session, inherit it. A model that cannot be opened still stops the start.
                let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
                let (dc, model_path) = (d.clone(), path.clone());
                std::thread::Builder::new()
                    .name(format!("detect-{}", d.id))
                    .spawn(move || {
                        crate::threads::enter_background(crate::threads::Role::Detect);
                        match Engine::open(rt, &dc, &model_path, threads) {
                            Ok(mut engine) => {
                                let limit = dc.queue_limit.unwrap_or(engine.max_batch() * 4);
                                let q = Arc::new(DropOldest::new(limit));
                                let _ = opened_tx.send(Ok((q.clone(), limit)));
                                worker(&mut engine, &q, &ctx, &mut |_, _| {});
                            }
                            Err(e) => {
                                let _ = opened_tx.send(Err(e));
                            }
                        }
                        crate::threads::leave();
                    })?;
                let (queue, limit) = opened_rx.recv().map_err(|_| {
                    anyhow::anyhow!("detector {}: its thread ended at start", d.id)
                })??;
                tracing::info!(
                    detector = %d.id,
                    model = %identity.name,
                    version = %identity.version,
                    threads,
                    max_batch = d.max_batch,
                    queue_limit = limit,
                    "detector ready"
                );
                detectors.insert(
                    d.id.clone(),
                    DetectorSlot {
                        config: d.clone(),
                        queue,
                    },
                );
            }
        }
        let service = Arc::new(DetectService {
            detectors,
            samplers: Mutex::new(HashMap::new()),
            ingest,
            decoders: Arc::new(DecoderPool::new()),
            metrics,
        });
        service.apply(&config.cameras).await;
        Ok(service)
    }

    /// Starts, stops or restarts samplers so that they match `cameras`
    /// (after a reload). Detector definitions are fixed at start.
    pub async fn apply(&self, cameras: &[CameraConfig]) {
        let mut samplers = self.samplers.lock().await;
        let wanted: HashMap<&str, &CameraConfig> = cameras
            .iter()
            .filter(|c| !c.detectors.is_empty())
            .map(|c| (c.id.as_str(), c))
            .collect();
        let stale: Vec<String> = samplers
            .iter()
            .filter(|(id, s)| wanted.get(id.as_str()).is_none_or(|c| **c != *s.config))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(s) = samplers.remove(&id) {
                let _ = s.stop.send(true);
                let _ = s.task.await;
            }
        }
        for (id, camera) in wanted {
            if samplers.contains_key(id) {
                continue;
            }
            let mut queues = Vec::new();
            let mut inputs = Vec::new();
            for d in &camera.detectors {
                match self.detectors.get(d) {
                    Some(slot) => {
                        queues.push((d.clone(), slot.queue.clone()));
                        inputs.push(slot.config.input.clone());
                    }
                    None => tracing::warn!(
                        camera = %id,
                        detector = %d,
                        "detector was added after start; it runs after a restart"
                    ),
                }
            }
            if queues.is_empty() {
                continue;
            }
            let config = Arc::new(camera.clone());
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(sampler(
                config.clone(),
                self.ingest.clone(),
                self.decoders.clone(),
                queues,
                inputs,
                self.metrics.clone(),
                stop_rx,
            ));
            samplers.insert(id.to_string(), SamplerSlot { config, stop, task });
        }
    }

    /// Stops the samplers and closes the detectors' queues: each detector
    /// finishes what is queued and its thread ends.
    pub async fn stop(&self) {
        let mut samplers = self.samplers.lock().await;
        for (_, s) in samplers.drain() {
            let _ = s.stop.send(true);
            let _ = s.task.await;
        }
        for slot in self.detectors.values() {
            slot.queue.close();
        }
    }
}

/// ONNX Runtime threads for a detector whose entry does not say: the cores,
/// at most 4.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Takes one camera's sampled units to its decoder, rebuilding the decoder
/// when the stream changes (new session, codec or picture size) or fails.
async fn sampler(
    camera: Arc<CameraConfig>,
    ingest: Arc<Ingest>,
    decoders: Arc<DecoderPool>,
    queues: Vec<(String, Arc<DropOldest<Job>>)>,
    inputs: Vec<crate::config::ModelInput>,
    metrics: DetectMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let filter = match camera.sampling {
        Sampling::Keyframes => Filter::Keyframes,
        // Delta frames are needed to decode; the rate is applied below.
        Sampling::Fps(_) => Filter::All,
    };
    let Some(mut sub) = ingest.subscribe(&camera.id, filter) else {
        tracing::warn!(camera = %camera.id, "detection: camera is not ingested");
        return;
    };
    let queues = Arc::new(queues);
    let mut decoder: Option<(DecoderHandle, u32)> = None;
    let mut next_due_ns: u64 = 0;
    loop {
        let unit: AccessUnit = tokio::select! {
            _ = stop.changed() => break,
            u = sub.recv() => match u {
                Some(u) => u,
                None => break,
            },
        };
        let (w, h) = (unit.params.width, unit.params.height);
        let fits = decoder.as_ref().is_some_and(|(d, session)| {
            *session == unit.session && d.codec == unit.codec() && d.source == (w, h)
        });
        if !fits {
            decoder = None;
            if !unit.keyframe || w == 0 || h == 0 {
                continue;
            }
            let sink = frame_sink(camera.clone(), queues.clone(), metrics.clone());
            let mut sizes: Vec<(u32, u32)> = Vec::new();
            for i in &inputs {
                let s = picture_size(w, h, i);
                if !sizes.contains(&s) {
                    sizes.push(s);
                }
            }
            match decoders.join(
                &camera.id,
                unit.codec(),
                (w, h),
                unit.params.sps.clone(),
                MIN_WORK_SIDE,
                &sizes,
                matches!(camera.sampling, Sampling::Fps(_)),
                sink,
                Box::new(CameraDecodeEvents::new(&camera.id, &metrics)),
            ) {
                Ok(d) => decoder = Some((d, unit.session)),
                Err(e) => {
                    metrics
                        .decode_errors
                        .get_or_create(&l(&[("camera", &camera.id)]))
                        .inc();
                    tracing::error!(camera = %camera.id, "{e}");
                    continue;
                }
            }
        }
        let sampled = match camera.sampling {
            Sampling::Keyframes => true,
            Sampling::Fps(fps) => {
                let t = unit.capture_unix_ns;
                if t >= next_due_ns {
                    let interval = (1e9 / fps) as u64;
                    // Stay on the grid unless far behind (a gap, a restart).
                    next_due_ns = if next_due_ns == 0 || t - next_due_ns > interval {
                        t + interval
                    } else {
                        next_due_ns + interval
                    };
                    true
                } else {
                    false
                }
            }
        };
        if let Some((d, _)) = decoder.as_ref()
            && let Err(e) = d.push(&unit, sampled)
        {
            metrics
                .decode_errors
                .get_or_create(&l(&[("camera", &camera.id)]))
                .inc();
            tracing::warn!(camera = %camera.id, "{e}; restarting the decoder at the next keyframe");
            decoder = None;
        }
    }
}

/// A camera's decoding mishaps, counted in its series.
struct CameraDecodeEvents {
    camera: String,
    errors: Counter,
    lost: Counter,
    busy: Counter,
}

impl CameraDecodeEvents {
    fn new(camera: &str, metrics: &DetectMetrics) -> Self {
        // One statement per series: each `get_or_create` holds its family's lock until
        // the end of the statement, and a second one on the same family would wait for
        // it forever.
        let errors = metrics
            .decode_errors
            .get_or_create(&l(&[("camera", camera)]))
            .clone();
        let lost = metrics
            .decode_lost
            .get_or_create(&l(&[("camera", camera), ("reason", "undecodable")]))
            .clone();
        let busy = metrics
            .decode_lost
            .get_or_create(&l(&[("camera", camera), ("reason", "decoder_busy")]))
            .clone();
        CameraDecodeEvents {
            camera: camera.to_string(),
            errors,
            lost,
            busy,
        }
    }
}

impl DecodeEvents for CameraDecodeEvents {
    fn lost(&self, busy: bool) {
        if busy { &self.busy } else { &self.lost }.inc();
    }

    fn failed(&self, message: &str) {
        self.errors.inc();
        tracing::warn!(camera = %self.camera, "decoder failed on this camera's picture: {message}; rebuilt");
    }
}

/// What a decoder does with each sampled frame: queue it for every detector
/// of the camera.
fn frame_sink(
    camera: Arc<CameraConfig>,
    queues: Arc<Vec<(String, Arc<DropOldest<Job>>)>>,
    metrics: DetectMetrics,
) -> Box<dyn Fn(DecodedFrame) + Send + Sync> {
    // The series each frame touches, resolved once per decoder rather than
    // per frame.
    let targets: Vec<(Arc<DropOldest<Job>>, Histogram, Counter, Gauge)> = queues
        .iter()
        .map(|(detector, q)| {
            (
                q.clone(),
                metrics
                    .stage
                    .get_or_create(&l(&[("detector", detector), ("stage", "decode")]))
                    .clone(),
                metrics
                    .dropped
                    .get_or_create(&l(&[("detector", detector), ("reason", "queue_full")]))
                    .clone(),
                metrics
                    .queue_depth
                    .get_or_create(&l(&[("detector", detector)]))
                    .clone(),
            )
        })
        .collect();
    Box::new(move |d: DecodedFrame| {
        let job = Arc::new(Sample {
            camera: camera.clone(),
            frame: d.frame,
            scaled: d.scaled,
            source: d.source,
            seq: d.meta.seq,
            capture_unix_ns: d.meta.capture_unix_ns,
            received_unix_ns: d.meta.received_unix_ns,
        });
        for (q, decode, dropped, depth) in &targets {
            decode.observe(d.decode.as_secs_f64());
            if q.push(job.clone()).is_some() {
                dropped.inc();
            }
            depth.set(q.len() as i64);
        }
    })
}

/// An alert in progress for one camera and label.
struct Open {
    alert: Alert,
}

/// A batch taken off the queue, with when each frame was queued, and its
/// input tensor.
type ReadyBatch = (Vec<(Job, Instant)>, Prepared);

/// One detector's work: batch, infer, alert, until the queue is closed;
/// returns the number of frames it ran. Two threads: a preprocessing thread
/// (`detect-ID-prep`) takes the next batch off the queue and fills its input
/// tensor while this one has the previous batch in ONNX Runtime, then hands
/// it over through a one-slot channel (so at most one prepared batch waits,
/// and drop-oldest still applies to everything behind it). `on_batch` gets
/// each batch's time on this thread, from receiving it prepared to its last
/// alert decision, with its stage times (preprocessing overlapped).
pub(crate) fn worker(
    engine: &mut Engine,
    queue: &DropOldest<Job>,
    ctx: &WorkerContext,
    on_batch: &mut dyn FnMut(Duration, &InferTimings),
) -> u64 {
    let id = engine.config.id.clone();
    let wait = Duration::from_millis(engine.config.batch_wait_ms);
    let max = engine.max_batch();
    let input = engine.config.input.clone();
    let m = &ctx.metrics;
    let one = l(&[("detector", &id)]);
    let queue_h = m
        .stage
        .get_or_create(&l(&[("detector", &id), ("stage", "queue")]))
        .clone();
    let depth = m.queue_depth.get_or_create(&one).clone();
    // Pops a batch and fills its tensor, reusing a returned buffer.
    let prepare = move |spare: Option<Vec<f32>>| -> Option<ReadyBatch> {
        let batch = queue.pop_batch(max, wait)?;
        let now = Instant::now();
        depth.set(queue.len() as i64);
        for (_, queued) in &batch {
            queue_h.observe((now - *queued).as_secs_f64());
        }
        let frames: Vec<&RgbFrame> = batch.iter().map(|(j, _)| j.frame_for(&input)).collect();
        let mut prepared = Prepared::new(spare.unwrap_or_default());
        prepared.fill(&input, &frames);
        drop(frames);
        Some((batch, prepared))
    };
    let mut run = Runner::new(engine, ctx);
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<ReadyBatch>(1);
        let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<Vec<f32>>(2);
        let prep = prepare.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("detect-{id}-prep"))
            .spawn_scoped(scope, move || {
                crate::threads::enter_background(crate::threads::Role::Detect);
                while let Some(ready) = prep(spare_rx.try_recv().ok()) {
                    if ready_tx.send(ready).is_err() {
                        break;
                    }
                }
                crate::threads::leave();
            });
        match spawned {
            Ok(_) => {
                while let Ok((batch, prepared)) = ready_rx.recv() {
                    let buffer = run.batch(batch, prepared, on_batch);
                    // The preprocessing thread holds at most two spares; a
                    // full channel just frees this one.
                    if let Err(std::sync::mpsc::TrySendError::Disconnected(_)) =
                        spare_tx.try_send(buffer)
                    {
                        break;
                    }
                }
            }
            Err(e) => {
                // No thread to spare: preprocess in line, one batch at a time.
                tracing::warn!(detector = %id, "cannot start the preprocessing thread, preprocessing in line: {e}");
                let mut spare = None;
                while let Some((batch, prepared)) = prepare(spare.take()) {
                    spare = Some(run.batch(batch, prepared, on_batch));
                }
            }
        }
    });
    tracing::debug!(detector = %id, frames = run.total, "detector stopped");
    run.total
}

/// The inference side of [`worker`]: runs prepared batches and turns their
/// detections into alert transitions.
struct Runner<'a> {
    engine: &'a mut Engine,
    ctx: &'a WorkerContext,
    total: u64,
    /// Per camera: its config as last seen, its alert state, and its
    /// capture-to-detect series.
    cameras: HashMap<Arc<str>, (Arc<CameraConfig>, CameraAlerts, Histogram)>,
    open: HashMap<(String, String), Open>,
    stages: [Histogram; 3],
    batch_h: Histogram,
    frames_c: Counter,
}

impl<'a> Runner<'a> {
    fn new(engine: &'a mut Engine, ctx: &'a WorkerContext) -> Self {
        let id = engine.config.id.clone();
        let m = &ctx.metrics;
        let series = |s: &str| {
            m.stage
                .get_or_create(&l(&[("detector", &id), ("stage", s)]))
                .clone()
        };
        let one = l(&[("detector", &id)]);
        Runner {
            stages: [
                series("preprocess"),
                series("inference"),
                series("postprocess"),
            ],
            batch_h: m.batch_size.get_or_create(&one).clone(),
            frames_c: m.frames.get_or_create(&one).clone(),
            engine,
            ctx,
            total: 0,
            cameras: HashMap::new(),
            open: HashMap::new(),
        }
    }

    /// Runs one prepared batch, raises its alert transitions, and returns
    /// the tensor buffer for reuse.
    fn batch(
        &mut self,
        batch: Vec<(Job, Instant)>,
        prepared: Prepared,
        on_batch: &mut dyn FnMut(Duration, &InferTimings),
    ) -> Vec<f32> {
        let started = Instant::now();
        let m = &self.ctx.metrics;
        let mut timings = InferTimings::default();
        let outcome = self.engine.run_prepared(&prepared, &mut timings);
        let id = &self.engine.config.id;
        let results = match outcome {
            Ok(r) => r,
            Err(e) => {
                m.inference_errors
                    .get_or_create(&l(&[("detector", id)]))
                    .inc();
                m.dropped
                    .get_or_create(&l(&[("detector", id), ("reason", "inference_error")]))
                    .inc_by(batch.len() as u64);
                tracing::error!(detector = %id, frames = batch.len(), "{e}");
                return prepared.into_buffer();
            }
        };
        let done_ns = unix_now_ns();
        let [pre_h, inf_h, post_h] = &self.stages;
        pre_h.observe(timings.preprocess.as_secs_f64());
        inf_h.observe(timings.inference.as_secs_f64());
        post_h.observe(timings.postprocess.as_secs_f64());
        self.batch_h.observe(batch.len() as f64);
        self.frames_c.inc_by(batch.len() as u64);
        self.total += batch.len() as u64;
        for ((job, _), dets) in batch.iter().zip(results) {
            let frame = job.frame_for(&self.engine.config.input);
            let dets = to_source(&dets, frame, job.source);
            if !self.cameras.contains_key(job.camera.id.as_str()) {
                let h = m
                    .capture_to_detect
                    .get_or_create(&l(&[("detector", id), ("camera", &job.camera.id)]))
                    .clone();
                let alerts = CameraAlerts::new(
                    self.engine.config.alert.clone(),
                    self.engine.config.alert_labels.clone(),
                    job.camera.zones.clone(),
                );
                self.cameras.insert(
                    Arc::from(job.camera.id.as_str()),
                    (job.camera.clone(), alerts, h),
                );
            }
            let Some(entry) = self.cameras.get_mut(job.camera.id.as_str()) else {
                continue;
            };
            entry
                .2
                .observe(done_ns.saturating_sub(job.capture_unix_ns) as f64 / 1e9);
            if !Arc::ptr_eq(&entry.0, &job.camera) {
                // The camera was reconfigured: new zones apply from this
                // frame; alerts in progress carry on.
                if entry.0.zones != job.camera.zones {
                    entry.1.set_zones(job.camera.zones.clone());
                }
                entry.0 = job.camera.clone();
            }
            for t in entry.1.observe(&dets, done_ns) {
                on_transition(
                    self.ctx,
                    &self.engine.config,
                    job,
                    t,
                    done_ns,
                    &mut self.open,
                );
            }
        }
        on_batch(started.elapsed(), &timings);
        prepared.into_buffer()
    }
}

/// Maps detections from work-frame pixels to the camera's picture.
fn to_source(dets: &[Detection], frame: &RgbFrame, source: (u32, u32)) -> Vec<Detection> {
    let sx = source.0 as f32 / frame.width as f32;
    let sy = source.1 as f32 / frame.height as f32;
    dets.iter()
        .map(|d| Detection {
            bbox: d.bbox.map(|b| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]),
            ..d.clone()
        })
        .collect()
}

/// A snapshot to draw and encode, off the detector's thread.
pub(crate) struct SnapshotJob {
    alert_id: String,
    sample: Job,
    boxes: Vec<[f32; 4]>,
    label: String,
}

/// Encodes alert snapshots on their own thread, so a burst of alerts never
/// holds a detector up; the alert itself is published first and its
/// snapshot follows (a few milliseconds later).
pub(crate) fn snapshot_thread(
    hub: Arc<AlertHub>,
) -> std::io::Result<std::sync::mpsc::SyncSender<SnapshotJob>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<SnapshotJob>(256);
    std::thread::Builder::new()
        .name("alert-snapshots".into())
        .spawn(move || {
            while let Ok(j) = rx.recv() {
                if let Some(jpeg) = snapshot_of(&j.sample, &j.boxes, &j.label) {
                    hub.attach_snapshot(&j.alert_id, jpeg);
                }
            }
        })?;
    Ok(tx)
}

fn snapshot_of(job: &Sample, source_boxes: &[[f32; 4]], label: &str) -> Option<Bytes> {
    let mut frame = job.frame.clone();
    let sx = frame.width as f32 / job.source.0.max(1) as f32;
    let sy = frame.height as f32 / job.source.1.max(1) as f32;
    let boxes: Vec<[f32; 4]> = source_boxes
        .iter()
        .map(|b| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
        .collect();
    snapshot::draw(&mut frame, &boxes, snapshot::label_colour(label));
    match snapshot::jpeg(&frame) {
        Ok(j) => Some(Bytes::from(j)),
        Err(e) => {
            tracing::warn!(camera = %job.camera.id, "cannot encode the alert snapshot: {e}");
            None
        }
    }
}

fn queue_snapshot(ctx: &WorkerContext, alert_id: &str, job: &Job, t: &Transition) {
    let sent = ctx.snapshots.try_send(SnapshotJob {
        alert_id: alert_id.to_string(),
        sample: job.clone(),
        boxes: t.evidence.boxes.clone(),
        label: t.label.clone(),
    });
    if sent.is_err() {
        tracing::warn!(alert = %alert_id, "snapshot encoder is behind; this alert has no snapshot");
    }
}

fn on_transition(
    ctx: &WorkerContext,
    detector: &DetectorConfig,
    job: &Job,
    t: Transition,
    now_ns: u64,
    open: &mut HashMap<(String, String), Open>,
) {
    let key = (job.camera.id.clone(), t.label.clone());
    ctx.metrics
        .alert_events
        .get_or_create(&l(&[
            ("camera", &job.camera.id),
            ("label", &t.label),
            ("event", t.kind.as_str()),
        ]))
        .inc();
    match t.kind {
        AlertEventKind::Raised => {
            let id = uuid::Uuid::now_v7().to_string();
            let alert = Alert {
                snapshot: Some(format!("/api/alerts/{id}/snapshot.jpg")),
                id,
                state: "active",
                gateway: ctx.gateway_id.clone(),
                camera: CameraRef {
                    id: job.camera.id.clone(),
                    kind: job.camera.kind,
                    name: job.camera.name.clone(),
                    group: job.camera.group.clone(),
                    location: job.camera.location,
                },
                detector: detector.id.clone(),
                model: ctx.identity.clone(),
                label: t.label.clone(),
                severity: t.severity,
                score: t.evidence.score,
                peak_score: t.evidence.score,
                boxes: t.evidence.boxes.clone(),
                area: t.evidence.area,
                frame: FrameRef {
                    seq: job.seq,
                    width: job.source.0,
                    height: job.source.1,
                    capture_unix_ns: job.capture_unix_ns,
                    received_unix_ns: job.received_unix_ns,
                },
                capture_unix_ns: job.capture_unix_ns,
                detect_unix_ns: now_ns,
                capture_to_detect_ms: now_ns.saturating_sub(job.capture_unix_ns) as f64 / 1e6,
                receive_to_detect_ms: now_ns.saturating_sub(job.received_unix_ns) as f64 / 1e6,
                raised_unix_ns: now_ns,
                updated_unix_ns: None,
                cleared_unix_ns: None,
                updates: 0,
                source: None,
                note: None,
            };
            tracing::warn!(
                alert = %alert.id,
                camera = %alert.camera.id,
                label = %alert.label,
                score = alert.score,
                severity = alert.severity.as_str(),
                capture_to_detect_ms = alert.capture_to_detect_ms,
                "alert raised"
            );
            let _ = ctx.hub.publish(AlertEventKind::Raised, alert.clone());
            queue_snapshot(ctx, &alert.id, job, &t);
            open.insert(key, Open { alert });
        }
        AlertEventKind::Updated => {
            let Some(o) = open.get_mut(&key) else { return };
            let a = &mut o.alert;
            a.score = t.evidence.score;
            a.peak_score = a.peak_score.max(t.evidence.score);
            a.boxes = t.evidence.boxes.clone();
            a.area = t.evidence.area;
            a.updated_unix_ns = Some(now_ns);
            a.updates += 1;
            let _ = ctx.hub.publish(AlertEventKind::Updated, a.clone());
            queue_snapshot(ctx, &a.id, job, &t);
        }
        AlertEventKind::Cleared => {
            let Some(mut o) = open.remove(&key) else {
                return;
            };
            o.alert.state = "cleared";
            o.alert.cleared_unix_ns = Some(now_ns);
            tracing::info!(
                alert = %o.alert.id,
                camera = %o.alert.camera.id,
                label = %o.alert.label,
                "alert cleared"
            );
            let _ = ctx.hub.publish(AlertEventKind::Cleared, o.alert);
        }
        // The state machine never emits it; the snapshot thread does.
        AlertEventKind::Snapshot => {}
    }
}
