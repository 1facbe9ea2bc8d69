//! What made a report: the fields every file `lookout-loadtest` writes opens
//! with, so a published figure can be traced to the code, the command and
//! the model that produced it, and run again.
//!
//! Each report type (`relay::RelayReport`, `soak::SoakReport`,
//! `detect::DetectReport`, the capacity summary, the fleet summary, the link
//! counters) flattens a [`Provenance`] into its top level; `check` reads the
//! same fields back. The contract is `docs/REPORT.md`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The report schema this build writes. 1 is every report written before
/// the field existed (no `schema_version`): `0.0` for figures not measured,
/// some counts as floats, no provenance. 2 adds provenance, writes what was
/// not measured as `null`, counts as integers, and a `count` in every
/// percentile object.
pub const SCHEMA_VERSION: u64 = 2;

/// Which command wrote a report; `check` picks the schema by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// `lookout-loadtest run` (also `relay`), and each step of `capacity`.
    Run,
    /// The `capacity` summary.
    Capacity,
    Soak,
    Detect,
    /// `lookout-loadtest link --stats`.
    Link,
    /// `lookout-loadtest fleet --summary`.
    Fleet,
}

impl ReportKind {
    pub const ALL: [ReportKind; 6] = [
        ReportKind::Run,
        ReportKind::Capacity,
        ReportKind::Soak,
        ReportKind::Detect,
        ReportKind::Link,
        ReportKind::Fleet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Run => "run",
            ReportKind::Capacity => "capacity",
            ReportKind::Soak => "soak",
            ReportKind::Detect => "detect",
            ReportKind::Link => "link",
            ReportKind::Fleet => "fleet",
        }
    }

    pub fn from_name(name: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The provenance block, flattened into the top level of every report.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// Tells this schema from the reports written before it (which lack it).
    pub schema_version: u64,
    /// Which report this is (`run`, `capacity`, `soak`, `detect`, `link`, `fleet`).
    pub kind: ReportKind,
    /// The workspace version `lookout` and `lookout-loadtest` share.
    pub lookout_version: String,
    /// `git rev-parse --short=12 HEAD`, with `-dirty` when tracked files
    /// differ from it; `None` (JSON `null`) outside a git checkout.
    pub git_revision: Option<String>,
    /// The command line as typed, program name first.
    pub argv: Vec<String>,
    /// Hex SHA-256 of every model file the gateway was configured with,
    /// keyed by its path (relative to the current directory when inside it);
    /// empty when the run used no model.
    pub model_sha256: BTreeMap<String, String>,
}

impl Provenance {
    /// The provenance of a report of `kind` written by this process, whose
    /// gateway used `models`.
    pub fn now(kind: ReportKind, models: BTreeMap<String, String>) -> Provenance {
        Provenance {
            schema_version: SCHEMA_VERSION,
            kind,
            lookout_version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: git_revision(),
            argv: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            model_sha256: models,
        }
    }
}

/// A report whose figures come from another struct (the fleet's summary,
/// the link's counters), with the provenance in front and no model.
#[derive(Debug, Serialize)]
pub struct Stamped<'a, T: Serialize> {
    /// Schema, kind, version, git revision, command line; no model.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// The report's own fields, flattened after the provenance.
    #[serde(flatten)]
    pub figures: &'a T,
}

impl<'a, T: Serialize> Stamped<'a, T> {
    pub fn new(kind: ReportKind, figures: &'a T) -> Stamped<'a, T> {
        Stamped {
            provenance: Provenance::now(kind, BTreeMap::new()),
            figures,
        }
    }
}

/// The revision of the checkout this binary was built in (it runs from that
/// checkout's `target/`), else of the current directory's; `None` when
/// neither is a git checkout or git is missing.
///
/// Asked at run time rather than stamped by a build script: cargo reruns a
/// build script only for changes inside its own package, so a stamp would
/// miss edits to the gateway and call a modified tree clean.
pub fn git_revision() -> Option<String> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    exe_dir
        .into_iter()
        .chain(std::env::current_dir().ok())
        .find_map(|dir| git_revision_in(&dir))
}

/// The revision of the checkout holding `dir`.
pub fn git_revision_in(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"])?
        .trim()
        .to_string();
    if head.is_empty() {
        return None;
    }
    // Untracked files do not change what was built or run (a new source file
    // only counts once a tracked one refers to it, and models are hashed on
    // their own); reports under docs/reports are outputs, so regenerating
    // several in a row does not mark the later ones dirty.
    let status = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ":/",
        ":(top,exclude)docs/reports",
    ]);
    Some(match status {
        Some(s) if s.trim().is_empty() => head,
        // A status git could not give is not evidence of a clean tree.
        _ => format!("{head}-dirty"),
    })
}

/// Hex SHA-256 of the model file of every `[[detector]]` in the gateway
/// configuration at `config` (paths relative to the configuration's folder,
/// as the gateway resolves them).
pub fn model_sha256(config: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    let detectors = table
        .get("detector")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    for d in &detectors {
        let Some(model) = d.get("model").and_then(|m| m.as_str()) else {
            continue;
        };
        let path = dir.join(model);
        let digest = sha256_file(&path)
            .with_context(|| format!("hashing the model {} for the report", path.display()))?;
        out.insert(display_path(&path), digest);
    }
    Ok(out)
}

/// Hex SHA-256 of a file's bytes, read in blocks (models run to hundreds of MiB).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `path` relative to the current directory when it lies inside it (so the
/// same model reads the same on every machine), else as it is.
fn display_path(path: &Path) -> String {
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let rel: Option<PathBuf> = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.canonicalize().ok())
        .and_then(|cwd| abs.strip_prefix(cwd).ok().map(Path::to_path_buf));
    rel.unwrap_or(abs).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_of_every_detector_are_hashed_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("m")).expect("mkdir");
        std::fs::write(dir.path().join("m/a.onnx"), b"abc").expect("model");
        let config = dir.path().join("m/gw.toml");
        std::fs::write(
            &config,
            "[[detector]]\nid = \"a\"\nmodel = \"a.onnx\"\n[[detector]]\nid = \"b\"\n",
        )
        .expect("config");
        let models = model_sha256(&config).expect("hashed");
        assert_eq!(models.len(), 1, "{models:?}");
        let (path, digest) = models.iter().next().expect("one model");
        assert!(path.ends_with("m/a.onnx"), "{path}");
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::write(&config, "[[detector]]\nid = \"a\"\nmodel = \"gone.onnx\"\n")
            .expect("config");
        let err = model_sha256(&config).expect_err("a missing model is an error");
        assert!(format!("{err:#}").contains("gone.onnx"), "{err:#}");
    }

    #[test]
    fn outside_a_checkout_there_is_no_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(git_revision_in(dir.path()), None);
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in ReportKind::ALL {
            assert_eq!(ReportKind::from_name(k.name()), Some(k));
            assert_eq!(
                serde_json::to_value(k).expect("serialises"),
                serde_json::json!(k.name())
            );
        }
    }
}
