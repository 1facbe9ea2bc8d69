//! The bodies of lookout's fuzz targets, as plain functions: each `fuzz_targets/*.rs`
//! binary hands libFuzzer's input to one of them, and `examples/write_seeds.rs` builds
//! the committed seed corpus from real captures and real encoder output. Keeping the
//! bodies here means a crash input can be replayed by any test or debugger without
//! libFuzzer.
//!
//! The gateway's configuration parser lives in the `lookout` crate, whose dependencies
//! (GStreamer, ONNX Runtime, quinn, axum, SQLite) would take minutes to build with
//! coverage instrumentation. Its files, the center's and the shared pieces in
//! `lookout-core` depend only on `serde`, `toml`, `thiserror` and `lookout-codecs`, so
//! they are compiled here from their own files (the shared ones as a small crate named
//! `lookout-core`, `core-config/`): the fuzzer runs exactly the code `lookout
//! check-config` and `lookout center` run, without the rest. If those files ever reach
//! for another module, this build fails and says so; see README.md.

/// The gateway's `config` module (`gateway/src/config/`), compiled from its own source.
#[path = "../../../gateway/src/config/mod.rs"]
pub mod config;

/// The command center's configuration (`center/src/config.rs`).
#[path = "../../../center/src/config.rs"]
pub mod center_config;

pub mod seeds;
pub mod targets;
