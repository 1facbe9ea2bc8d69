//! Inline detection: the ONNX Runtime, the models, and the path a sampled
//! frame takes — decode and scale (GStreamer), preprocess into a batch
//! tensor, run, decode the output into detections.

pub mod engine;
pub mod model;
pub mod postprocess;
pub mod preprocess;
pub mod runtime;
