//! Inline detection: the ONNX Runtime, the models, and the path a sampled
//! frame takes — decode and scale (GStreamer), preprocess into a batch
//! tensor, run, decode the output into detections — then the alerts those
//! detections raise.

pub mod alerts;
pub mod bench;
pub mod decode;
pub mod engine;
pub mod external;
pub mod files;
pub mod hub;
pub mod identity;
pub mod model;
pub mod postprocess;
pub mod preprocess;
pub mod queue;
pub mod runtime;
pub mod service;
pub mod snapshot;
