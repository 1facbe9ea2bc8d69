//! lookout: a video and alert fusion gateway for emergency command centers.
//!
//! Cameras' RTSP feeds come in (`ingest`), sampled frames go through ONNX
//! detectors (`detect`), which raise alerts (`alert`); alerts and video go
//! out over QUIC to the command center (`relay`). This crate holds the
//! gateway's stages and `main.rs`, the one `lookout` command line (the
//! command center is the `lookout-center` crate, the pieces both share
//! `lookout-core`).

pub mod alert;
pub mod api;
pub mod check;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod gb28181;
pub mod ingest;
pub mod relay;
pub mod roster;

// What the gateway shares with the command center, under the names the
// gateway's modules use.
pub use lookout_center as center;
pub use lookout_core::{auth, certs, durable, http, logging, metrics, sessions, shutdown, threads};

/// The GStreamer version the process runs with (after `gstreamer::init`).
pub fn gstreamer_version() -> String {
    let (major, minor, micro, _nano) = gstreamer::version();
    format!("{major}.{minor}.{micro}")
}
