//! The project's own setup and orchestration: `cargo xtask setup | demo | test | lint | fuzz`.
//!
//! It needs nothing but the Rust toolchain and Python (for `pip download`), so
//! it runs on a fresh Debian 12 machine before any system library is there.
//! Every step is idempotent: it checks what is present and installs only what
//! is missing, so the README's two commands work on the first and the
//! hundredth run alike. After setup no environment variable has to be set by
//! hand: the gateway finds the ONNX Runtime library in `.lookout/onnxruntime/`.

mod deny;
mod fuzz;

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Debian packages the workspace needs to build, test and run.
const APT_PACKAGES: &[&str] = &[
    "pkg-config",
    "libgstreamer1.0-dev",
    "libgstreamer-plugins-base1.0-dev",
    "libgstrtspserver-1.0-dev",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-plugins-ugly",
    "gstreamer1.0-libav",
    "gstreamer1.0-tools",
    // ffprobe: the third-party RTSP client the tests check the fleet against.
    "ffmpeg",
    // SIPp: the third-party SIP peer the GB/T 28181 tests register with.
    "sip-tester",
    // The MQTT broker and client the exports are tested against.
    "mosquitto",
    "mosquitto-clients",
    // The video wall's end-to-end test drives a real headless browser.
    "chromium",
    "chromium-driver",
    // The fuzz targets link libFuzzer, which libfuzzer-sys compiles from C++.
    "g++",
];

/// The ONNX Runtime release the `ort` crate's `api-31` feature expects.
const ORT_VERSION: &str = "1.31.1";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(&root),
        Some("demo") => setup(&root).and_then(|()| demo(&root, &args[1..])),
        Some("test") => setup(&root).and_then(|()| test(&root)),
        Some("lint") => lint(&root),
        Some("fuzz") => fuzz::Options::parse(&args[1..]).and_then(|o| fuzz::fuzz(&root, &o)),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|demo|test|lint|fuzz>\n\
                 \n  setup  install what is missing (apt packages, ONNX Runtime) and build\
                 \n  demo   setup, then run the demo end to end\
                 \n  test   setup, then fmt, clippy and cargo deny (the workspace and\
                 \n         codecs/fuzz), the whole test suite, and every fuzz target for {suite} s\
                 \n  lint   fmt, clippy and cargo deny alone (no setup, no tests)\
                 \n  fuzz [--seconds N] [--merge] [TARGET...]\
                 \n         fuzz each target (default: all) for N s (default {manual});\
                 \n         --merge adds what earlier runs found to the committed corpus",
                suite = fuzz::SUITE_SECONDS,
                manual = fuzz::MANUAL_SECONDS,
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn workspace_root() -> PathBuf {
    // xtask lives one folder below the workspace root.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn setup(root: &Path) -> Result<()> {
    install_apt_packages()?;
    let lib = install_onnxruntime(root)?;
    println!("xtask: ONNX Runtime {ORT_VERSION} at {}", lib.display());
    Ok(())
}

fn demo(root: &Path, extra: &[String]) -> Result<()> {
    cargo(root, &["build", "--release", "--workspace", "--bins"])?;
    let driver = root.join("target").join("release").join("lookout-loadtest");
    let mut cmd = Command::new(driver);
    cmd.arg("demo").args(extra).current_dir(root);
    run(&mut cmd, "the demo (lookout-loadtest demo)")
}

fn test(root: &Path) -> Result<()> {
    report_free_disk(root);
    lint(root)?;
    // Binaries first: the end-to-end tests start `lookout` and
    // `lookout-loadtest` as separate processes, as a user would.
    cargo(root, &["build", "--workspace", "--bins"])?;
    cargo(root, &["test", "--workspace", "--no-fail-fast"])?;
    // Bounded fuzzing of every parser that reads a camera, a peer or a file.
    fuzz::fuzz(
        root,
        &fuzz::Options {
            seconds: fuzz::SUITE_SECONDS,
            targets: Vec::new(),
            merge: false,
        },
    )
}

/// fmt, clippy with warnings as errors, and cargo deny, on the workspace and on the
/// fuzz crate: what `test` checks before building anything to test.
fn lint(root: &Path) -> Result<()> {
    cargo(root, &["fmt", "--all", "--", "--check"])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The fuzz crate is a workspace of its own, which the two commands above
    // never see; it is held to the same rules.
    fuzz::lint(root)?;
    deny::check(root)
}

/// What the suite's `target/` grows to on a clean clone (debug builds of every
/// test binary, examples and the fuzz targets), with a margin.
const SUITE_DISK_GIB: f64 = 6.0;

/// Says how much space the disk holding `target/` has left, and warns when it
/// is less than the suite needs: a full disk otherwise shows up, minutes in, as
/// a linker's bus error.
fn report_free_disk(root: &Path) {
    let Some(free) = free_gib(root) else {
        return;
    };
    println!(
        "xtask: {free:.1} GiB free on the disk holding {}",
        root.display()
    );
    if free < SUITE_DISK_GIB {
        eprintln!(
            "xtask: warning: the test suite's build needs about {SUITE_DISK_GIB} GiB under \
             {}; only {free:.1} GiB is free, so it may fail with \"No space left on device\"",
            root.join("target").display()
        );
    }
}

/// Free space, in GiB, of the file system holding `path` (from POSIX `df -Pk`);
/// `None` if `df` is missing or says something unexpected.
fn free_gib(path: &Path) -> Option<f64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // Header line, then: filesystem, 1024-blocks, used, available, capacity, mount.
    let kib: f64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib / (1024.0 * 1024.0))
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(root);
    run(&mut cmd, &format!("cargo {}", args.join(" ")))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    println!("xtask: running {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn install_apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing Debian packages: {}", missing.join(" "));
    let sudo = if is_root() { None } else { Some("sudo") };
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = match sudo {
            Some(s) => {
                let mut c = Command::new(s);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd, &format!("apt-get {}", args[0]))
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    apt(&args)
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Fetches the ONNX Runtime shared library from the PyPI `onnxruntime` wheel
/// into `.lookout/onnxruntime/` (no system Python packages are touched).
/// The gateway looks there by default; see `gateway/src/detect/runtime.rs`.
fn install_onnxruntime(root: &Path) -> Result<PathBuf> {
    let dir = root.join(".lookout").join("onnxruntime");
    let lib = dir.join(format!("libonnxruntime.so.{ORT_VERSION}"));
    if lib.is_file() {
        return Ok(lib);
    }
    let wheels = root.join(".lookout").join("wheels");
    fs::create_dir_all(&wheels).map_err(|e| format!("creating {}: {e}", wheels.display()))?;
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let python = find_python()?;
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .arg("-d")
        .arg(&wheels)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    run(&mut cmd, "pip download onnxruntime")?;
    let wheel = fs::read_dir(&wheels)
        .map_err(|e| format!("reading {}: {e}", wheels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().and_then(OsStr::to_str).unwrap_or("");
            name.starts_with(&format!("onnxruntime-{ORT_VERSION}-")) && name.ends_with(".whl")
        })
        .ok_or_else(|| format!("no onnxruntime {ORT_VERSION} wheel in {}", wheels.display()))?;
    // A wheel is a zip file; Python's zipfile extracts the one member we need.
    let member = format!("onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}");
    let script = "import sys, zipfile, shutil\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3] + '.part', 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n";
    let mut cmd = Command::new(&python);
    cmd.arg("-c").arg(script).arg(&wheel).arg(&member).arg(&lib);
    run(&mut cmd, "extracting libonnxruntime from the wheel")?;
    let part = PathBuf::from(format!("{}.part", lib.display()));
    fs::rename(&part, &lib).map_err(|e| format!("renaming {}: {e}", part.display()))?;
    Ok(lib)
}

fn find_python() -> Result<String> {
    for candidate in ["python3", "python"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            return Ok(candidate.to_string());
        }
    }
    Err("Python 3 with pip is needed to fetch the ONNX Runtime wheel from PyPI; install python3 and python3-pip".into())
}
