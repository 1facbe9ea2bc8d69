//! `cargo deny check licenses bans sources` for `cargo xtask test`: every dependency's
//! license is one `deny.toml` allows, no wildcard version requirements, and every crate
//! comes from crates.io. cargo-deny is installed from crates.io when missing. It runs on
//! the workspace and on the fuzz crate (`codecs/fuzz`, a workspace with its own
//! `Cargo.lock`), both under the one `deny.toml`.
//!
//! Advisories are not checked here: that needs the RustSec database fetched from GitHub,
//! which CI cannot reach. They are checked by hand (`cargo deny check advisories`) where
//! the network allows; see the comment at the top of `deny.toml`.

use std::env;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::Result;

/// The cargo-deny release installed when missing.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// Installs cargo-deny if `cargo deny` is not there, then runs the checks.
pub fn check(root: &Path) -> Result<()> {
    install_if_missing(root)?;
    // deny.toml's license exception is for the fuzz crate's libFuzzer, which the
    // workspace does not use: not meeting it here is expected.
    crate::cargo(
        root,
        &[
            "deny",
            "check",
            "-A",
            "license-exception-not-encountered",
            "licenses",
            "bans",
            "sources",
        ],
    )?;
    let manifest = crate::fuzz::manifest(root);
    let manifest = manifest
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", manifest.display()))?;
    let config = root.join("deny.toml");
    let config = config
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", config.display()))?;
    // The fuzz crate's graph is a small part of the workspace's: the licenses allowed
    // for the rest are not all met there, which is no finding.
    crate::cargo(
        root,
        &[
            "deny",
            "--manifest-path",
            manifest,
            "--config",
            config,
            "check",
            "-A",
            "license-not-encountered",
            "licenses",
            "bans",
            "sources",
        ],
    )
}

fn install_if_missing(root: &Path) -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let present = Command::new(&cargo)
        .args(["deny", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if present {
        return Ok(());
    }
    let started = Instant::now();
    // A pinned release (a newer one may need a newer Rust than the machine's), with
    // --locked: the dependency versions that release was tested with.
    crate::cargo(
        root,
        &[
            "install",
            "--locked",
            "cargo-deny",
            "--version",
            CARGO_DENY_VERSION,
        ],
    )?;
    println!(
        "xtask: cargo-deny installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
