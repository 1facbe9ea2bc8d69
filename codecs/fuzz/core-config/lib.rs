//! `lookout_core::config`, compiled from `core/src/config/` (see Cargo.toml).

#[path = "../../../core/src/config/mod.rs"]
pub mod config;
