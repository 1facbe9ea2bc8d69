//! Inline detection: the ONNX Runtime, the models, and the path a sampled
//! frame takes — decode and scale (GStreamer), preprocess into a batch
//! tensor, run, decode the output into detections — the detections
//! go to the alert state machines (`crate::alert`).

pub mod bench;
pub mod decode;
pub mod engine;
pub mod files;
mod metrics;
pub mod model;
pub mod postprocess;
pub mod preprocess;
pub mod queue;
pub mod runtime;
mod sampler;
pub mod service;
mod worker;
