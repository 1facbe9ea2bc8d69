//! The bodies of lookout's fuzz targets, as plain functions: each `fuzz_targets/*.rs`
//! binary hands libFuzzer's input to one of them, and `examples/write_seeds.rs` builds
//! the committed seed corpus from real captures and real encoder output. Keeping the
//! bodies here means a crash input can be replayed by any test or debugger without
//! libFuzzer.
//!
//! The gateway's configuration parser lives in the `lookout` crate, whose dependencies
//! (GStreamer, ONNX Runtime, quinn, axum, SQLite) would take minutes to build with
//! coverage instrumentation. Its two source folders depend only on `serde`, `toml` and
//! `thiserror`, so they are compiled here from the gateway's own files: the fuzzer runs
//! exactly the code `lookout check-config` and `lookout center` run, without the rest of
//! the gateway. If those files ever reach for another gateway module, this build fails
//! and says so; see README.md.

/// The gateway's `config` module (`gateway/src/config/`), compiled from its own source.
#[path = "../../../gateway/src/config/mod.rs"]
pub mod config;

/// The command center's configuration (`gateway/src/center/config.rs`); it refers to
/// `crate::config`, which is the module above.
#[path = "../../../gateway/src/center/config.rs"]
pub mod center_config;

pub mod seeds;
pub mod targets;
