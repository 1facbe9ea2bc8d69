//! A detector's work: the next batch's tensor is filled (on a thread of its
//! own while the current batch is in ONNX Runtime, where cores allow); each
//! frame's detections go through its camera's alert state machine, and
//! transitions become alerts in the hub, with their snapshots encoded on a
//! thread of their own.

use crate::alert::hub::AlertState;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::engine::{Engine, InferTimings, Prepared};
use super::metrics::{l, unix_now_ns};
use super::postprocess::Detection;
use super::preprocess::RgbFrame;
use super::queue::DropOldest;
use super::service::{Job, Sample, WorkerContext};
use crate::alert::hub::{Alert, AlertHub, CameraRef, FrameRef};
use crate::alert::machine::{AlertEventKind, CameraAlerts, Transition};
use crate::alert::snapshot;
use crate::config::{CameraConfig, DetectorConfig};

/// An alert in progress for one camera and label.
struct Open {
    alert: Alert,
}

/// A batch taken off the queue, with when each frame was queued, and its
/// input tensor.
type ReadyBatch = (Vec<(Job, Instant)>, Prepared);

/// One detector's work: batch, infer, alert, until the queue is closed;
/// returns the number of frames it ran. Where the machine has cores to spare
/// ([`Engine::overlaps_preprocessing`]), two threads: a preprocessing thread
/// (`detect-ID-prep`) takes the next batch off the queue and fills its input
/// tensor while this one has the previous batch in ONNX Runtime, then hands
/// it over through a one-slot channel (so at most one prepared batch waits,
/// and drop-oldest still applies to everything behind it); otherwise this
/// thread fills each batch between runs. `on_batch` gets each batch's time
/// on this thread, from having it prepared to its last alert decision, with
/// its stage times (preprocessing's own).
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
    let overlap = engine.overlaps_preprocessing();
    tracing::debug!(detector = %id, overlap, "preprocessing on its own thread: {overlap}");
    let mut run = Runner::new(engine, ctx);
    if !overlap {
        in_line(&prepare, &mut run, on_batch);
    } else {
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
                    tracing::warn!(detector = %id, "cannot start the preprocessing thread, preprocessing in line: {e}");
                    in_line(&prepare, &mut run, on_batch);
                }
            }
        });
    }
    tracing::debug!(detector = %id, frames = run.total, "detector stopped");
    run.total
}

/// Fills and runs one batch after the other on this thread.
fn in_line(
    prepare: &impl Fn(Option<Vec<f32>>) -> Option<ReadyBatch>,
    run: &mut Runner,
    on_batch: &mut dyn FnMut(Duration, &InferTimings),
) {
    let mut spare = None;
    while let Some((batch, prepared)) = prepare(spare.take()) {
        spare = Some(run.batch(batch, prepared, on_batch));
    }
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
                state: AlertState::Active,
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
            // Announced even when the journal failed (an operator here must
            // see it); the hub has logged that failure at error.
            if let Err(e) = ctx.hub.publish(AlertEventKind::Raised, alert.clone()) {
                tracing::debug!("alert announced without being durable: {e}");
            }
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
            // Announced even when the journal failed (an operator here must
            // see it); the hub has logged that failure at error.
            if let Err(e) = ctx.hub.publish(AlertEventKind::Updated, a.clone()) {
                tracing::debug!("alert announced without being durable: {e}");
            }
            queue_snapshot(ctx, &a.id, job, &t);
        }
        AlertEventKind::Cleared => {
            let Some(mut o) = open.remove(&key) else {
                return;
            };
            o.alert.state = AlertState::Cleared;
            o.alert.cleared_unix_ns = Some(now_ns);
            tracing::info!(
                alert = %o.alert.id,
                camera = %o.alert.camera.id,
                label = %o.alert.label,
                "alert cleared"
            );
            // Announced even when the journal failed (an operator here must
            // see it); the hub has logged that failure at error.
            if let Err(e) = ctx.hub.publish(AlertEventKind::Cleared, o.alert) {
                tracing::debug!("alert announced without being durable: {e}");
            }
        }
        // The state machine never emits it; the snapshot thread does.
        AlertEventKind::Snapshot => {}
    }
}
