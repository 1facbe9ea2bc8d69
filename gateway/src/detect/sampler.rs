//! One camera's sampler: takes its keyframes (or `N fps` on a grid), keeps a
//! decoder that fits the stream (rebuilt on a new session, codec or size),
//! and hands each decoded, scaled frame to the queue of every detector the
//! camera uses.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;

use super::decode::{DecodeEvents, DecodedFrame, DecoderHandle, DecoderPool, MIN_WORK_SIDE};
use super::metrics::{DetectMetrics, l};
use super::preprocess::picture_size;
use super::queue::DropOldest;
use super::service::{Job, Sample};
use crate::config::{CameraConfig, Sampling};
use crate::ingest::{AccessUnit, Filter, Ingest};

/// Takes one camera's sampled units to its decoder, rebuilding the decoder
/// when the stream changes (new session, codec or picture size) or fails.
pub(crate) async fn sampler(
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
    let mut grid = FpsGrid::new(camera.sampling);
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
        let sampled = grid.take(unit.capture_unix_ns);
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

/// Which frames an `N fps` camera's detector sees: the first frame at or
/// after each point of a grid `1/N` s apart, on the capture clock. The grid
/// holds through jitter (a late frame does not push the next one later) and
/// restarts at a frame far behind it (a gap in the stream, a restart).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FpsGrid {
    /// `None`: every frame that reaches the sampler (keyframes sampling).
    interval_ns: Option<u64>,
    next_due_ns: u64,
}

impl FpsGrid {
    pub(crate) fn new(sampling: Sampling) -> FpsGrid {
        FpsGrid {
            interval_ns: match sampling {
                Sampling::Keyframes => None,
                Sampling::Fps(fps) => Some((1e9 / fps) as u64),
            },
            next_due_ns: 0,
        }
    }

    /// Whether the frame captured at `t` (Unix ns) is sampled.
    pub(crate) fn take(&mut self, t: u64) -> bool {
        let Some(interval) = self.interval_ns else {
            return true;
        };
        if t < self.next_due_ns {
            return false;
        }
        // Stay on the grid unless far behind (a gap, a restart).
        self.next_due_ns = if self.next_due_ns == 0 || t - self.next_due_ns > interval {
            t + interval
        } else {
            self.next_due_ns + interval
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Frames every `step` ms from `start`, `n` of them: which are sampled.
    fn run(grid: &mut FpsGrid, start: u64, step: u64, n: u64) -> Vec<u64> {
        (0..n)
            .map(|i| start + i * step * MS)
            .filter(|t| grid.take(*t))
            .map(|t| (t - start) / MS)
            .collect()
    }

    #[test]
    fn keyframes_sampling_takes_everything() {
        let mut g = FpsGrid::new(Sampling::Keyframes);
        assert_eq!(run(&mut g, 1_000 * MS, 40, 5), [0, 40, 80, 120, 160]);
    }

    #[test]
    fn two_fps_of_a_25_fps_camera_is_every_500_ms() {
        let mut g = FpsGrid::new(Sampling::Fps(2.0));
        assert_eq!(run(&mut g, 1_000 * MS, 40, 51), [0, 520, 1000, 1520, 2000]);
    }

    #[test]
    fn jitter_does_not_drift_the_grid() {
        let mut g = FpsGrid::new(Sampling::Fps(10.0));
        let start = 5_000 * MS;
        // Due at 0, 100, 200, 300 ms; frames arrive 30 ms late each time.
        let taken: Vec<bool> = [0, 130, 150, 230, 330]
            .iter()
            .map(|ms| g.take(start + ms * MS))
            .collect();
        assert_eq!(taken, [true, true, false, true, true]);
    }

    #[test]
    fn a_gap_restarts_the_grid_at_the_next_frame() {
        let mut g = FpsGrid::new(Sampling::Fps(10.0));
        let start = 5_000 * MS;
        assert!(g.take(start));
        // Two seconds of nothing, then frames again: the first is taken and the
        // grid restarts from it rather than catching up.
        assert!(g.take(start + 2_000 * MS));
        assert!(!g.take(start + 2_050 * MS));
        assert!(g.take(start + 2_100 * MS));
    }
}
