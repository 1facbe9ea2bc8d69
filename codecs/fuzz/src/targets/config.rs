//! The gateway's and the command center's configuration files, as an operator (or a
//! broken deployment script) could write them: any bytes go through the same path as
//! `lookout check-config` and `lookout center --config` — TOML, serde, the semantic
//! checks, and locating each problem's line, column and key. Nothing may panic, and
//! every problem must point at a real place in the file (or at none). Seeds are the
//! repository's `configs/*.toml` cut down to one of each component.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::center_config::CenterConfig;
use crate::config::{Config, Problems, parse_toml, redact_text};

/// Runs one input; panics on a finding.
pub fn config(input: &[u8]) {
    // A file that is not UTF-8 stops at reading it, before any parser.
    let Ok(source) = std::str::from_utf8(input) else {
        return;
    };
    let path = Path::new("fuzz/lookout.toml");
    let problems = match Config::parse(path, source) {
        Ok(config) => {
            for camera in &config.cameras {
                let _ = camera.url_redacted();
            }
            crate::config::problems_at(path, source, config.validate())
        }
        Err(problems) => problems,
    };
    check_located(source, &problems);
    let _ = redact_text(source);
    center(input, source);
}

/// The center's file goes through the same TOML and serde path; only a file that gets
/// through it reaches the center's semantic checks, which `CenterConfig::load` keeps to
/// itself and runs on a file it reads, so such an input is written to one first.
fn center(input: &[u8], source: &str) {
    let path = Path::new("fuzz/center.toml");
    if let Err(problems) = parse_toml::<CenterConfig>(path, source) {
        check_located(source, &problems);
        return;
    }
    let Some(file) = center_file() else {
        return;
    };
    if std::fs::write(file, input).is_err() {
        return;
    }
    if let Err(problems) = CenterConfig::load(file) {
        check_located(source, &problems);
    }
}

/// A file of this process's own under the temporary folder, made once. `cargo xtask
/// fuzz` points `TMPDIR` at a folder in memory when the machine has `/dev/shm`: writing
/// a file on every run costs milliseconds on some disks.
fn center_file() -> Option<&'static Path> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lookout-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        Some(dir.join("center.toml"))
    })
    .as_deref()
}

/// Every problem is either unlocated (line and column 0) or inside the file: a line that
/// exists and a column within it (one past its end for a missing value at the end).
fn check_located(source: &str, problems: &Problems) {
    let lines: Vec<&str> = source.split('\n').collect();
    for p in &problems.0 {
        if p.line == 0 {
            assert_eq!(p.column, 0, "{p}");
            continue;
        }
        let line = lines
            .get(p.line - 1)
            .unwrap_or_else(|| panic!("line {} of {}: {p}", p.line, lines.len()));
        assert!(
            (1..=line.chars().count() + 1).contains(&p.column),
            "column {} of a {}-character line: {p}",
            p.column,
            line.chars().count()
        );
        assert!(!p.key.is_empty(), "{p}");
        let _ = p.to_string();
    }
}
