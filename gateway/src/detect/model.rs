//! Opening a detector's ONNX model and checking it against its `[[detector]]`
//! entry before anything runs: an integrator's model with a 640×640 input
//! configured as 320×320, or 80 classes configured with 3 labels, is refused
//! at start with both shapes in the message, not discovered at the first
//! frame.

use std::path::Path;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorElementType;

use super::runtime::Runtime;
use crate::config::{DetectorConfig, Layout, OutputKind};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {path}: cannot open: {message}")]
    Open { path: String, message: String },
}

/// Opens a model with the gateway's session settings.
pub fn open(runtime: &Runtime, path: &Path, intra_threads: usize) -> Result<Session, ModelError> {
    let err = |e: String| ModelError::Open {
        path: path.display().to_string(),
        message: e,
    };
    // Builder errors are not Send/Sync: turn them into strings right here.
    let builder = Session::builder(&runtime.environment).map_err(|e| err(e.to_string()))?;
    let builder = builder
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err(e.to_string()))?;
    let builder = builder
        .with_intra_threads(intra_threads.max(1))
        .map_err(|e| err(e.to_string()))?;
    // ONNX Runtime's pool threads spin between runs by default; on a
    // gateway the cores they would burn belong to ingest and decoding (and
    // the detector's own preprocessing), so they sleep instead.
    let builder = builder
        .with_intra_op_spinning(false)
        .map_err(|e| err(e.to_string()))?;
    // Denormal activations can slow some models many times over.
    let mut builder = builder
        .with_flush_to_zero()
        .map_err(|e| err(e.to_string()))?;
    builder
        .commit_from_file(path)
        .map_err(|e| err(e.to_string()))
}

/// Compares the model's declared input and output with the config. Each
/// mismatch is returned as `(key, message)`, the key relative to the
/// detector entry (`input.width`, `labels`, …).
pub fn check(session: &Session, config: &DetectorConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let inputs = session.inputs();
    if inputs.len() != 1 {
        out.push((
            "model",
            format!(
                "the model has {} inputs; lookout feeds exactly one image tensor",
                inputs.len()
            ),
        ));
        return out;
    }
    let input = &inputs[0];
    match (input.dtype().tensor_type(), input.dtype().tensor_shape()) {
        (Some(TensorElementType::Float32), Some(shape)) if shape.len() == 4 => {
            let (c, h, w) = match config.input.layout {
                Layout::Nchw => (shape[1], shape[2], shape[3]),
                Layout::Nhwc => (shape[3], shape[1], shape[2]),
            };
            if c >= 0 && c != 3 {
                out.push((
                    "input.layout",
                    format!(
                        "input `{}` has shape {:?}: with layout {:?} that is {c} channels, expected 3",
                        input.name(),
                        &shape[..],
                        config.input.layout
                    ),
                ));
            }
            if h >= 0 && h != i64::from(config.input.height) {
                out.push((
                    "input.height",
                    format!(
                        "input `{}` has shape {:?}: the model wants height {h}, the config says {}",
                        input.name(),
                        &shape[..],
                        config.input.height
                    ),
                ));
            }
            if w >= 0 && w != i64::from(config.input.width) {
                out.push((
                    "input.width",
                    format!(
                        "input `{}` has shape {:?}: the model wants width {w}, the config says {}",
                        input.name(),
                        &shape[..],
                        config.input.width
                    ),
                ));
            }
        }
        (ty, shape) => out.push((
            "model",
            format!(
                "input `{}` is {:?} {:?}; lookout feeds a float32 tensor of rank 4",
                input.name(),
                ty,
                shape.map(|s| s.to_vec())
            ),
        )),
    }

    let Some(output) = session.outputs().first() else {
        out.push(("model", "the model has no outputs".into()));
        return out;
    };
    let labels = config.labels.len() as i64;
    let Some(shape) = output.dtype().tensor_shape() else {
        out.push((
            "model",
            format!("output `{}` is not a tensor", output.name()),
        ));
        return out;
    };
    let dims = &shape[..];
    let mismatch = |what: String| ("labels", what);
    match config.output {
        OutputKind::Classification => {
            let classes = dims.last().copied().unwrap_or(-1);
            if dims.len() != 2 {
                out.push((
                    "output",
                    format!(
                        "output `{}` has shape {dims:?}; classification expects [N, classes]",
                        output.name()
                    ),
                ));
            } else if classes >= 0 && classes != labels {
                out.push(mismatch(format!(
                    "output `{}` has shape {dims:?}: {classes} classes, but {labels} labels are configured",
                    output.name()
                )));
            }
        }
        OutputKind::Yolo => {
            if dims.len() != 3 {
                out.push((
                    "output",
                    format!(
                        "output `{}` has shape {dims:?}; YOLO detection expects [N, 4+classes, boxes]",
                        output.name()
                    ),
                ));
            } else if dims[1] >= 0 && dims[1] != 4 + labels {
                out.push(mismatch(format!(
                    "output `{}` has shape {dims:?}: {} classes, but {labels} labels are configured",
                    output.name(),
                    dims[1] - 4
                )));
            }
        }
        OutputKind::Segmentation => {
            let ok = match dims.len() {
                3 => true,
                4 => dims[1] < 0 || dims[1] == labels,
                _ => false,
            };
            if !ok {
                out.push((
                    "output",
                    format!(
                        "output `{}` has shape {dims:?}; segmentation expects [N, classes={labels}, H, W] or [N, H, W]",
                        output.name()
                    ),
                ));
            }
        }
    }
    out
}
