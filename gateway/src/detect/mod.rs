//! Inline detection: the ONNX Runtime, the models and (later stages) the
//! sampler → decode → scale → batch → infer pipeline.

pub mod model;
pub mod runtime;
