//! `lookout_core::config` and `lookout_core::export::config`, compiled from their own
//! files (see Cargo.toml).

#[path = "../../../core/src/config/mod.rs"]
pub mod config;

/// `lookout_core::export`'s configuration (`core/src/export/config.rs`): the
/// `[[export]]` entries both files take, reached as `lookout_core::export::config`.
#[path = "../../../core/src/export/config.rs"]
pub mod export_config;

pub mod export {
    pub use crate::export_config as config;
    pub use crate::export_config::ExportConfig;
}
