//! One detector's ONNX Runtime session and the batch it runs: frames from
//! any cameras that use the detector are packed into one input tensor (a
//! reused buffer), run together, and the output is split back per frame and
//! decoded by the detector's output kind.

use std::path::Path;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::TensorRef;

use super::model::{self, ModelError};
use super::postprocess::{self, Detection, SegMap};
use super::preprocess::{self, Placement, RgbFrame};
use super::runtime::Runtime;
use crate::config::{DetectorConfig, OutputKind};

/// Why a detector could not open or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file could not be opened as an ONNX Runtime session.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model's inputs or outputs disagree with its `[[detector]]`
    /// entry: every problem found, `; `-separated.
    #[error("detector {detector}: the model does not match its configuration: {problems}")]
    Mismatch { detector: String, problems: String },
    /// ONNX Runtime failed a run (or the bench could not start a thread).
    #[error("detector {detector}: inference failed: {message}")]
    Inference { detector: String, message: String },
    /// The model's output is not the shape its output kind needs.
    #[error("detector {detector}: output has shape {shape:?}, expected {expected}")]
    OutputShape {
        detector: String,
        shape: Vec<i64>,
        expected: String,
    },
}

/// The input tensor's shape for `n` frames.
fn tensor_shape(inp: &crate::config::ModelInput, n: usize) -> [usize; 4] {
    let (h, w) = (inp.height as usize, inp.width as usize);
    match inp.layout {
        crate::config::Layout::Nchw => [n, 3, h, w],
        crate::config::Layout::Nhwc => [n, h, w, 3],
    }
}

/// Turns an ONNX Runtime error into this detector's inference error.
fn inference_error(detector: &str) -> impl Fn(ort::Error) -> EngineError + Copy + '_ {
    move |e| EngineError::Inference {
        detector: detector.to_string(),
        message: e.to_string(),
    }
}

/// Where one run's time went, for the stage histograms.
#[derive(Debug, Clone, Copy, Default)]
pub struct InferTimings {
    /// Resizing and normalising frames into the input tensor.
    pub preprocess: Duration,
    /// ONNX Runtime's `run`.
    pub inference: Duration,
    /// Decoding the output into detections (NMS included).
    pub postprocess: Duration,
}

impl std::ops::AddAssign for InferTimings {
    fn add_assign(&mut self, o: InferTimings) {
        self.preprocess += o.preprocess;
        self.inference += o.inference;
        self.postprocess += o.postprocess;
    }
}

/// A detector ready to run.
pub struct Engine {
    /// The `[[detector]]` entry it was opened with (the bench may have
    /// overridden `max_batch`).
    pub config: DetectorConfig,
    session: Session,
    /// Frames per run: the config's `max_batch`, or 1 when the model's batch
    /// dimension is fixed at 1.
    max_batch: usize,
    /// ONNX Runtime intra-op threads the session was opened with.
    threads: usize,
    /// The input tensor, reused across runs.
    input: Vec<f32>,
}

/// A batch turned into the model's input tensor, ready for
/// [`Engine::run_prepared`]: made by the detector's preprocessing thread while
/// the session runs the batch before it. The buffer is reused.
#[derive(Debug, Default)]
pub struct Prepared {
    input: Vec<f32>,
    placements: Vec<Placement>,
    /// Each frame's size, to map boxes back.
    sizes: Vec<(u32, u32)>,
    /// How long filling took.
    took: Duration,
}

impl Prepared {
    /// An empty batch that will fill `buffer` (a previous batch's, returned
    /// by [`Prepared::into_buffer`]).
    pub fn new(buffer: Vec<f32>) -> Prepared {
        Prepared {
            input: buffer,
            ..Prepared::default()
        }
    }

    /// Scales, normalises and lays out `frames` into the input tensor.
    pub fn fill(&mut self, input: &crate::config::ModelInput, frames: &[&RgbFrame]) {
        let t0 = Instant::now();
        let slot = preprocess::slot_len(input);
        self.input.resize(slot * frames.len(), 0.0);
        self.placements.clear();
        self.sizes.clear();
        for (i, f) in frames.iter().enumerate() {
            let p = preprocess::fill(f, input, &mut self.input[i * slot..(i + 1) * slot]);
            self.placements.push(p);
            self.sizes.push((f.width, f.height));
        }
        self.took = t0.elapsed();
    }

    /// Frames in the batch.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The tensor buffer, for the next batch.
    pub fn into_buffer(self) -> Vec<f32> {
        self.input
    }
}

impl Engine {
    /// Opens the model, checks it against `config`, and sizes the batch.
    pub fn open(
        runtime: &Runtime,
        config: &DetectorConfig,
        model_path: &Path,
        intra_threads: usize,
    ) -> Result<Engine, EngineError> {
        let session = model::open(runtime, model_path, intra_threads)?;
        let problems = model::check(&session, config);
        if !problems.is_empty() {
            return Err(EngineError::Mismatch {
                detector: config.id.clone(),
                problems: problems
                    .into_iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        let fixed_batch = session
            .inputs()
            .first()
            .and_then(|i| i.dtype().tensor_shape())
            .and_then(|s| s.first().copied())
            .filter(|d| *d > 0);
        let max_batch = match fixed_batch {
            Some(n) => (n as usize).min(config.max_batch.max(1)),
            None => config.max_batch.max(1),
        };
        Ok(Engine {
            config: config.clone(),
            session,
            max_batch,
            threads: intra_threads.max(1),
            input: Vec::new(),
        })
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Whether the next batch is preprocessed on a thread of its own while
    /// this one runs: `overlap`, or `auto` on a machine with at least two
    /// cores beyond ONNX Runtime's threads. Where the cores are all ONNX
    /// Runtime's, a thread filling the next tensor preempts one of its
    /// workers and the others wait for it at the end of each parallel step,
    /// which costs the run more than filling the tensor in line between runs
    /// (on 2 cores, 2 threads: detector path ÷ bare ONNX Runtime 0.880–0.883
    /// with the thread, 0.887–0.894 in line; docs/reports/bench-detector-inline/).
    pub fn overlaps_preprocessing(&self) -> bool {
        match self.config.preprocess {
            crate::config::Preprocess::Inline => false,
            crate::config::Preprocess::Overlap => true,
            crate::config::Preprocess::Auto => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                cores >= self.threads + 2
            }
        }
    }

    /// Runs the detector on up to [`Engine::max_batch`] frames (more are run in
    /// several batches) and returns each frame's detections.
    pub fn infer(&mut self, frames: &[&RgbFrame]) -> Result<Vec<Vec<Detection>>, EngineError> {
        self.infer_timed(frames).map(|(d, _)| d)
    }

    /// [`Engine::infer`], also saying where the time went.
    pub fn infer_timed(
        &mut self,
        frames: &[&RgbFrame],
    ) -> Result<(Vec<Vec<Detection>>, InferTimings), EngineError> {
        let mut out = Vec::with_capacity(frames.len());
        let mut timings = InferTimings::default();
        for chunk in frames.chunks(self.max_batch) {
            out.extend(self.infer_batch(chunk, &mut timings)?);
        }
        Ok((out, timings))
    }

    /// Fills the input tensor once from `frames` (cycled to `batch`), for
    /// [`Engine::run_raw`]: the baseline runs on the same data as the
    /// detector path.
    pub fn fill_raw(&mut self, frames: &[RgbFrame], batch: usize) {
        let inp = self.config.input.clone();
        let slot = preprocess::slot_len(&inp);
        let n = batch.clamp(1, self.max_batch);
        self.input.resize(slot * n, 0.0);
        if frames.is_empty() {
            return;
        }
        for i in 0..n {
            let f = &frames[i % frames.len()];
            preprocess::fill(f, &inp, &mut self.input[i * slot..(i + 1) * slot]);
        }
    }

    /// Runs the session once on the input tensor as it stands (filled by
    /// [`Engine::fill_raw`]): the raw ONNX Runtime baseline the detector
    /// benchmark compares against.
    pub fn run_raw(&mut self, batch: usize) -> Result<Duration, EngineError> {
        let inp = &self.config.input;
        let slot = preprocess::slot_len(inp);
        let n = batch.clamp(1, self.max_batch);
        self.input.resize(slot * n, 0.5);
        let shape = tensor_shape(inp, n);
        let fail = inference_error(&self.config.id);
        let t = Instant::now();
        let tensor = TensorRef::from_array_view((shape, &self.input[..])).map_err(fail)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(fail)?;
        drop(outputs);
        Ok(t.elapsed())
    }

    fn infer_batch(
        &mut self,
        frames: &[&RgbFrame],
        timings: &mut InferTimings,
    ) -> Result<Vec<Vec<Detection>>, EngineError> {
        let mut prepared = Prepared::new(std::mem::take(&mut self.input));
        prepared.fill(&self.config.input, frames);
        let out = self.run_prepared(&prepared, timings);
        self.input = prepared.into_buffer();
        out
    }

    /// Runs the session on a batch [`Prepared`] (possibly on another thread,
    /// while the previous batch ran) and decodes each frame's detections.
    /// Adds the batch's preprocessing, inference and decoding times to
    /// `timings`.
    pub fn run_prepared(
        &mut self,
        prepared: &Prepared,
        timings: &mut InferTimings,
    ) -> Result<Vec<Vec<Detection>>, EngineError> {
        let inp = &self.config.input;
        let n = prepared.sizes.len();
        let slot = preprocess::slot_len(inp);
        if prepared.input.len() != slot * n {
            return Err(EngineError::Inference {
                detector: self.config.id.clone(),
                message: format!(
                    "prepared batch holds {} values, expected {} frames of {slot}",
                    prepared.input.len(),
                    n
                ),
            });
        }
        let shape = tensor_shape(inp, n);
        let fail = inference_error(&self.config.id);
        let t1 = Instant::now();
        let tensor = TensorRef::from_array_view((shape, &prepared.input[..])).map_err(fail)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(fail)?;
        let t2 = Instant::now();
        let value = &outputs[0];
        let (shape, data): (Vec<i64>, Vec<f32>) = match value.try_extract_tensor::<f32>() {
            Ok((s, d)) => (s.to_vec(), d.to_vec()),
            Err(_) => {
                // Segmentation models often emit int64 class ids.
                let (s, d) = value.try_extract_tensor::<i64>().map_err(fail)?;
                (s.to_vec(), d.iter().map(|v| *v as f32).collect())
            }
        };
        let per = data.len().checked_div(n).unwrap_or(0);
        let cfg = &self.config;
        let bad_shape = |expected: &str| EngineError::OutputShape {
            detector: cfg.id.clone(),
            shape: shape.clone(),
            expected: expected.to_string(),
        };
        let mut results = Vec::with_capacity(n);
        for (i, (&(fw, fh), p)) in prepared.sizes.iter().zip(&prepared.placements).enumerate() {
            let d = &data[i * per..(i + 1) * per];
            let dets = match cfg.output {
                OutputKind::Classification => {
                    if per != cfg.labels.len() {
                        return Err(bad_shape("[N, labels]"));
                    }
                    postprocess::classification(d, &cfg.labels, cfg.softmax, cfg.threshold)
                }
                OutputKind::Yolo => {
                    let rows = 4 + cfg.labels.len();
                    if shape.len() != 3 || per % rows != 0 {
                        return Err(bad_shape("[N, 4+labels, boxes]"));
                    }
                    postprocess::yolo(d, &cfg.labels, per / rows, cfg.threshold, p, (fw, fh))
                }
                OutputKind::Segmentation => {
                    let (map, mh, mw) = match shape.len() {
                        4 => (
                            SegMap::Scores {
                                data: d,
                                classes: shape[1].max(0) as usize,
                            },
                            shape[2].max(0) as usize,
                            shape[3].max(0) as usize,
                        ),
                        3 => (
                            SegMap::Ids { data: d },
                            shape[1].max(0) as usize,
                            shape[2].max(0) as usize,
                        ),
                        _ => return Err(bad_shape("[N, C, H, W] or [N, H, W]")),
                    };
                    // The mask covers the model input: map its pixels through
                    // the input's scale into frame pixels.
                    let sx = mw as f32 / cfg.input.width as f32;
                    let sy = mh as f32 / cfg.input.height as f32;
                    let mask_place = Placement {
                        scale_x: p.scale_x * sx,
                        scale_y: p.scale_y * sy,
                        pad_x: p.pad_x * sx,
                        pad_y: p.pad_y * sy,
                    };
                    postprocess::segmentation(map, &cfg.labels, (mw, mh), cfg.min_area, &mask_place)
                }
            };
            results.push(dets);
        }
        timings.preprocess += prepared.took;
        timings.inference += t2 - t1;
        timings.postprocess += t2.elapsed();
        Ok(results)
    }
}
