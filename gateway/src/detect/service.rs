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
//!
//! This file starts and reconfigures the stage; the sampler is `sampler.rs`,
//! the detector's threads `worker.rs`, the series `metrics.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::decode::DecoderPool;
use super::engine::Engine;
use super::preprocess::{RgbFrame, picture_size};
use super::queue::DropOldest;
use super::runtime;
use crate::alert::hub::AlertHub;
use crate::alert::identity::ModelIdentity;
use crate::config::{CameraConfig, Config, DetectorConfig};
use crate::ingest::Ingest;

pub use super::metrics::{DetectMetrics, unix_now_ns};
use super::sampler::sampler;
pub(crate) use super::worker::{SnapshotJob, snapshot_thread, worker};

/// A sampled, decoded frame on its way to the detectors.
pub struct Sample {
    /// The camera's configuration as its sampler was started with (a
    /// reload that changes it restarts the sampler).
    pub camera: Arc<CameraConfig>,
    /// The work frame (aspect kept).
    pub frame: RgbFrame,
    /// The picture already scaled to each model's picture size (its input
    /// when stretching, the fitted size when letterboxing).
    pub scaled: Vec<RgbFrame>,
    /// The picture size the camera sent.
    pub source: (u32, u32),
    /// The unit's per-camera sequence number (`AccessUnit::seq`).
    pub seq: u64,
    /// When the picture was taken, Unix ns (by the unit's timestamp source).
    pub capture_unix_ns: u64,
    /// When the gateway received the unit, Unix ns.
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

/// A sample as queued: shared by every detector of its camera, not copied.
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
                let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
                let (dc, model_path) = (d.clone(), path.clone());
                std::thread::Builder::new()
                    .name(format!("detect-{}", d.id))
                    .spawn(move || {
                        crate::threads::enter_background(crate::threads::Role::Detect);
                        match Engine::open(rt, &dc, &model_path, threads) {
                            Ok(mut engine) => {
                                let limit = dc.queue_limit.unwrap_or(engine.max_batch() * 4);
                                let q = Arc::new(DropOldest::new(limit));
                                if opened_tx.send(Ok((q.clone(), limit))).is_err() {
                                    // `start` no longer waits (it failed): nobody
                                    // holds this queue, so nothing would ever come.
                                    tracing::warn!(detector = %dc.id, "the start gave up on this detector; not running it");
                                } else {
                                    worker(&mut engine, &q, &ctx, &mut |_, _| {});
                                }
                            }
                            Err(e) => {
                                if let Err(Err(e)) = opened_tx.send(Err(e)) {
                                    tracing::error!(detector = %dc.id, "cannot open the detector: {e}");
                                }
                            }
                        }
                        crate::threads::leave();
                    })?;
                // Awaited, not blocked on: opening a model takes a while, and this
                // runs on a tokio worker.
                let (queue, limit) = opened_rx.await.map_err(|_| {
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
                stop_sampler(&id, s).await;
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
        for (id, s) in samplers.drain() {
            stop_sampler(&id, s).await;
        }
        for slot in self.detectors.values() {
            slot.queue.close();
        }
    }
}

/// Stops one camera's sampler and waits for it.
async fn stop_sampler(camera: &str, s: SamplerSlot) {
    // `send` fails only when the task has returned already (its camera was
    // not ingested, or its feed ended): nothing to stop.
    if s.stop.send(true).is_err() {
        tracing::debug!(camera = %camera, "sampler had already ended");
    }
    if let Err(e) = s.task.await {
        tracing::error!(camera = %camera, "sampler task ended abnormally: {e}");
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
