//! lookout: a video and alert fusion gateway for emergency command centers.
//!
//! Cameras' RTSP feeds come in (ingest), sampled frames go through ONNX
//! detectors (detect), alerts and video go out over QUIC to the command
//! center (relay). This crate holds the daemon's stages; `main.rs` is its
//! command line.

pub mod auth;
pub mod center;
pub mod certs;
pub mod check;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod durable;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod relay;
pub mod sessions;
pub mod shutdown;
pub mod threads;

/// The GStreamer version the process runs with (after `gstreamer::init`).
pub fn gstreamer_version() -> String {
    let (major, minor, micro, _nano) = gstreamer::version();
    format!("{major}.{minor}.{micro}")
}
