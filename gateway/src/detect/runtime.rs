//! Finding and loading the ONNX Runtime shared library.
//!
//! lookout uses `ort` with `load-dynamic`: the library is opened at run time,
//! never downloaded. Without a path `ort` would panic, so the gateway looks
//! for it itself, in this order, and says exactly where it looked when it
//! finds nothing:
//! 1. an explicit path (`gateway.onnxruntime` in the config, or the
//!    `LOOKOUT_ONNXRUNTIME` environment variable);
//! 2. `ORT_DYLIB_PATH`, ort's own convention;
//! 3. next to the executable (`./`, `../lib/`), for packaged installs;
//! 4. the project-local copy that `cargo xtask setup` extracts from the PyPI
//!    `onnxruntime` wheel into `.lookout/onnxruntime/`;
//! 5. the usual system library folders.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime release `ort`'s `api-31` feature is built against.
pub const EXPECTED_VERSION: &str = "1.31.1";

/// Where `cargo xtask setup` puts the library, recorded at build time.
const SETUP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.lookout/onnxruntime");

/// A loaded ONNX Runtime: the process-wide environment every session uses.
pub struct Runtime {
    /// The shared library loaded: the explicit path as given, or the first
    /// found by [`locate`]'s search (canonicalised).
    pub library: PathBuf,
    /// The library's own version string (`OrtGetApiBase`), `unknown` when
    /// it could not be read; compare with [`EXPECTED_VERSION`].
    pub version: String,
    /// The process-wide ONNX Runtime environment (named `lookout`,
    /// telemetry off) every session is created in.
    pub environment: ort::environment::Environment,
}

/// Why ONNX Runtime could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No library in any searched folder: the patterns looked for.
    #[error(
        "ONNX Runtime library not found; looked in:\n{}\nFix: run `cargo xtask setup` in the lookout source tree (it extracts the library from the PyPI `onnxruntime=={EXPECTED_VERSION}` wheel), or point `gateway.onnxruntime` in the config or LOOKOUT_ONNXRUNTIME at a libonnxruntime.so",
        .0.iter().map(|p| format!("  - {}", p.display())).collect::<Vec<_>>().join("\n")
    )]
    NotFound(Vec<PathBuf>),
    /// A path given explicitly (configuration or environment variable) is
    /// not a file.
    #[error("ONNX Runtime library {path}: does not exist (set by {source_of_path})")]
    ExplicitMissing {
        path: PathBuf,
        source_of_path: String,
    },
    /// `ort` could not load the library or build its environment.
    #[error("ONNX Runtime library {path}: {message}")]
    Load { path: PathBuf, message: String },
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Loads ONNX Runtime once per process; later calls return the same runtime
/// (a second, different `explicit` path is ignored: ONNX Runtime can only be
/// loaded once).
pub fn load(explicit: Option<&Path>) -> Result<&'static Runtime, RuntimeError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let library = locate(explicit)?;
    let builder = ort::init_from(&library).map_err(|e| RuntimeError::Load {
        path: library.clone(),
        message: e.to_string(),
    })?;
    let environment = builder
        .with_name("lookout")
        .with_telemetry(false)
        .build()
        .map_err(|e| RuntimeError::Load {
            path: library.clone(),
            message: e.to_string(),
        })?;
    let version = library_version(&library).unwrap_or_else(|| "unknown".to_string());
    // `set` fails only when another thread loaded it meanwhile: that
    // runtime is the one returned below, and this one is dropped.
    if RUNTIME
        .set(Runtime {
            library,
            version,
            environment,
        })
        .is_err()
    {
        tracing::debug!("ONNX Runtime was loaded by another thread meanwhile; using that one");
    }
    RUNTIME
        .get()
        .ok_or_else(|| RuntimeError::NotFound(Vec::new()))
}

/// The candidate paths in search order, first match wins.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(RuntimeError::ExplicitMissing {
                path: p.to_path_buf(),
                source_of_path: "the configuration (gateway.onnxruntime)".into(),
            })
        };
    }
    for var in ["LOOKOUT_ONNXRUNTIME", "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(v);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(RuntimeError::ExplicitMissing {
                    path: p,
                    source_of_path: format!("the {var} environment variable"),
                })
            };
        }
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.clone());
        dirs.push(exe_dir.join("../lib"));
    }
    dirs.push(PathBuf::from(SETUP_DIR));
    for d in [
        "/usr/local/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    let names = [
        format!("libonnxruntime.so.{EXPECTED_VERSION}"),
        "libonnxruntime.so.1".to_string(),
        "libonnxruntime.so".to_string(),
    ];
    let mut looked = Vec::new();
    for d in &dirs {
        for n in &names {
            let p = d.join(n);
            if p.is_file() {
                return Ok(p.canonicalize().unwrap_or(p));
            }
        }
        looked.push(d.join("libonnxruntime.so*"));
    }
    Err(RuntimeError::NotFound(looked))
}

/// The library's own version string (`OrtGetApiBase()->GetVersionString()`);
/// its build-info string does not always carry the release number.
fn library_version(path: &Path) -> Option<String> {
    // SAFETY: `path` is the ONNX Runtime library ort has just loaded and
    // checked (it exports `OrtGetApiBase` with this signature); opening it again
    // only raises its reference count, and the version string is a static C
    // string owned by the library, copied before the handle is dropped.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").ok()?;
        let base = get_base();
        if base.is_null() {
            return None;
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr(version)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_names_it() {
        let err = locate(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
    }
}
