//! `cargo xtask fuzz`: builds the fuzz targets of `codecs/fuzz/` with libFuzzer on the
//! stable toolchain and runs them, each for a bounded time. `cargo xtask test` runs every
//! target for [`SUITE_SECONDS`] after the tests; by hand they run longer.
//!
//! cargo-fuzz would need nightly only for `-Zsanitizer=address`, which safe Rust does not
//! need to find panics; everything else it does is a set of `RUSTFLAGS` that stable
//! rustc accepts ([`COVERAGE_FLAGS`]), so the build here is a plain `cargo build` with
//! them. `--target` is passed so those flags reach the fuzzed crates but not build
//! scripts and proc macros, which must not be instrumented.
//!
//! Each run reads the committed corpus (`codecs/fuzz/corpus/<target>/`) and writes what
//! it discovers to `target/fuzz/corpus/<target>/`, so the suite never changes the
//! repository; `--merge` folds the discoveries that add coverage back into the committed
//! corpus. A crash input lands in `target/fuzz/artifacts/<target>/` and its path is
//! printed with the command that replays it.

use std::collections::HashSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;

/// Seconds each target runs in `cargo xtask test`: long enough to replay the corpus and
/// explore around it, short enough that four targets and a cold build stay within a few
/// minutes on two cores.
pub const SUITE_SECONDS: u64 = 20;

/// Seconds each target runs by hand when `--seconds` is not given.
pub const MANUAL_SECONDS: u64 = 300;

/// What cargo-fuzz passes to rustc (without AddressSanitizer): sanitizer-coverage
/// instrumentation feeding libFuzzer's 8-bit counters, its PC table, and comparison
/// tracing so it can solve magic numbers; `--cfg fuzzing` for code that wants to know.
/// Debug assertions and overflow checks come from the fuzz crate's release profile.
const COVERAGE_FLAGS: &[&str] = &[
    "--cfg",
    "fuzzing",
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
];

/// Longest one input may run before libFuzzer reports it as a hang, in seconds.
const INPUT_TIMEOUT_S: u64 = 10;

/// Extra wall time after `-max_total_time` before xtask gives up on a fuzzer that does
/// not stop by itself (it finishes the input in hand and writes its statistics).
const GRACE: Duration = Duration::from_secs(INPUT_TIMEOUT_S * 3 + 30);

/// What `cargo xtask fuzz` was asked to do.
pub struct Options {
    /// Seconds per target.
    pub seconds: u64,
    /// Targets to run; all of them when empty.
    pub targets: Vec<String>,
    /// Merge what earlier runs discovered into the committed corpus instead of fuzzing.
    pub merge: bool,
}

impl Options {
    /// Parses `[--seconds N] [--merge] [TARGET...]`.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options {
            seconds: MANUAL_SECONDS,
            targets: Vec::new(),
            merge: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seconds" => {
                    let value = args.next().ok_or("--seconds needs a number")?;
                    options.seconds =
                        value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                            format!("--seconds {value}: expected seconds above 0")
                        })?;
                }
                "--merge" => options.merge = true,
                flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
                target => options.targets.push(target.to_owned()),
            }
        }
        Ok(options)
    }
}

/// `cargo xtask fuzz`: build, then fuzz (or merge) each chosen target in turn.
pub fn fuzz(root: &Path, options: &Options) -> Result<()> {
    let all = targets(root)?;
    let chosen: Vec<String> = if options.targets.is_empty() {
        all.clone()
    } else {
        for t in &options.targets {
            if !all.contains(t) {
                return Err(format!(
                    "no fuzz target `{t}`; the targets are: {}",
                    all.join(", ")
                ));
            }
        }
        options.targets.clone()
    };
    let bins = build(root)?;
    if options.merge {
        return chosen.iter().try_for_each(|t| merge(root, &bins, t));
    }
    let mut failed = Vec::new();
    for t in &chosen {
        if let Err(e) = run_target(root, &bins, t, options.seconds) {
            eprintln!("xtask: {e}");
            failed.push(t.as_str());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzzing found problems in: {}", failed.join(", ")))
    }
}

/// `cargo fmt --check` and `cargo clippy -D warnings` on the fuzz crate, for `cargo xtask
/// test`. Its own workspace, so the workspace-wide runs do not reach it. Clippy builds
/// without the coverage flags, into a folder of its own under `target/fuzz/` so it never
/// invalidates the instrumented build.
pub fn lint(root: &Path) -> Result<()> {
    let manifest = manifest(root);
    let manifest = manifest
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", manifest.display()))?;
    let lint_dir = work_dir(root).join("lint");
    let lint_dir = lint_dir
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", lint_dir.display()))?;
    crate::cargo(root, &["fmt", "--manifest-path", manifest, "--", "--check"])?;
    crate::cargo(
        root,
        &[
            "clippy",
            "--manifest-path",
            manifest,
            "--locked",
            "--all-targets",
            "--target-dir",
            lint_dir,
            "--",
            "-D",
            "warnings",
        ],
    )
}

/// The fuzz crate's manifest, for the checks that run on it as on the workspace.
pub fn manifest(root: &Path) -> PathBuf {
    fuzz_dir(root).join("Cargo.toml")
}

/// The target names: the files of `codecs/fuzz/fuzz_targets/`.
fn targets(root: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir(root).join("fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no fuzz targets in {}", dir.display()));
    }
    Ok(names)
}

fn fuzz_dir(root: &Path) -> PathBuf {
    root.join("codecs").join("fuzz")
}

/// Where everything the fuzzers build and write goes: inside the ignored `target/`.
fn work_dir(root: &Path) -> PathBuf {
    root.join("target").join("fuzz")
}

/// Builds every target with coverage instrumentation; returns the folder of the binaries.
fn build(root: &Path) -> Result<PathBuf> {
    let triple = host_triple()?;
    let target_dir = work_dir(root);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = fuzz_dir(root).join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--bins",
        "--target",
        &triple,
    ])
    .arg("--manifest-path")
    .arg(&manifest)
    .arg("--target-dir")
    .arg(&target_dir)
    .env("RUSTFLAGS", COVERAGE_FLAGS.join(" "))
    // Takes precedence over RUSTFLAGS when set by an outer cargo.
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .current_dir(root);
    let started = Instant::now();
    crate::run(&mut cmd, "cargo build (fuzz targets, libFuzzer)")?;
    println!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(target_dir.join(triple).join("release"))
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> Result<String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("could not run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .ok_or_else(|| "rustc -vV printed no host triple".into())
}

/// A folder for the config target's scratch file, in memory where the machine has one
/// (removed after the run), else under `target/fuzz/`.
fn scratch_dir(root: &Path, target: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("lookout-fuzz-{target}-{}", std::process::id()))
    } else {
        work_dir(root).join("tmp").join(target)
    }
}

/// Fuzzes one target for `seconds`; an error names the crash input and how to replay it.
fn run_target(root: &Path, bins: &Path, target: &str, seconds: u64) -> Result<()> {
    let bin = bins.join(target);
    let committed = fuzz_dir(root).join("corpus").join(target);
    let work = work_dir(root);
    let discovered = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    let tmp = scratch_dir(root, target);
    for dir in [&committed, &discovered, &artifacts, &logs, &tmp] {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log =
        fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let before = files_in(&artifacts);

    println!(
        "xtask: fuzzing {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // New inputs go to the first folder; the committed corpus is only read.
        .arg(&discovered)
        .arg(&committed)
        .env("TMPDIR", &tmp)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .current_dir(root);
    let status = wait_bounded(&mut cmd, Duration::from_secs(seconds) + GRACE, target);
    // Only the scratch folder in memory is removed; the one under target/ is reused.
    if tmp.starts_with("/dev/shm") {
        let _ = fs::remove_dir_all(&tmp);
    }
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let status = status?;
    let stats = Stats::from_log(&text);
    if status.success() {
        println!(
            "xtask: {target}: {} runs in {} s ({} exec/s), coverage {} edges, corpus {} inputs; no crash",
            stats.runs, stats.seconds, stats.per_second, stats.coverage, stats.corpus
        );
        return Ok(());
    }

    let lines: Vec<&str> = text.lines().collect();
    eprintln!("xtask: --- last lines of {} ---", log_path.display());
    for line in &lines[lines.len().saturating_sub(60)..] {
        eprintln!("{line}");
    }
    eprintln!("xtask: ---");
    let new: Vec<PathBuf> = files_in(&artifacts)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if new.is_empty() {
        return Err(format!(
            "fuzz target {target} failed ({status}) without saving an input; see {}",
            log_path.display()
        ));
    }
    let saved: Vec<String> = new
        .iter()
        .map(|p| {
            format!(
                "\n  input saved at {}\n  replay with: {} {}",
                p.display(),
                bin.display(),
                p.display()
            )
        })
        .collect();
    Err(format!(
        "fuzz target {target} found a crash ({status}):{}",
        saved.concat()
    ))
}

/// Adds to the committed corpus the inputs earlier runs discovered that reach coverage
/// the committed ones do not (libFuzzer's `-merge=1`).
fn merge(root: &Path, bins: &Path, target: &str) -> Result<()> {
    let committed = fuzz_dir(root).join("corpus").join(target);
    let discovered = work_dir(root).join("corpus").join(target);
    if !discovered.is_dir() {
        println!("xtask: {target}: nothing discovered yet to merge");
        return Ok(());
    }
    let tmp = scratch_dir(root, target);
    fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let before = files_in(&committed).len();
    let mut cmd = Command::new(bins.join(target));
    cmd.arg("-merge=1")
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(&committed)
        .arg(&discovered)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir(root);
    let status = wait_bounded(&mut cmd, Duration::from_secs(600), target);
    if tmp.starts_with("/dev/shm") {
        let _ = fs::remove_dir_all(&tmp);
    }
    if !status?.success() {
        return Err(format!("merging the {target} corpus failed"));
    }
    let after = files_in(&committed).len();
    println!(
        "xtask: {target}: {} inputs added to {}",
        after.saturating_sub(before),
        committed.display()
    );
    Ok(())
}

/// Runs `cmd` and waits at most `limit`; past it the process is killed and that is an
/// error (libFuzzer stops itself after `-max_total_time`, so this is only a backstop).
fn wait_bounded(
    cmd: &mut Command,
    limit: Duration,
    target: &str,
) -> Result<std::process::ExitStatus> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start fuzz target {target}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "fuzz target {target} did not stop within {} s and was killed",
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for fuzz target {target}: {e}")),
        }
    }
}

fn files_in(dir: &Path) -> HashSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// The figures libFuzzer prints at the end of a run (`-print_final_stats=1`) and on its
/// last status line.
#[derive(Default)]
struct Stats {
    runs: String,
    seconds: String,
    per_second: String,
    coverage: String,
    corpus: String,
}

impl Stats {
    fn from_log(log: &str) -> Stats {
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| "?".into())
        };
        let last_status = log.lines().rev().find(|l| l.contains(" cov: "));
        let field = |name: &str| {
            last_status
                .and_then(|l| l.split_whitespace().skip_while(|w| *w != name).nth(1))
                .map(|v| v.split('/').next().unwrap_or(v).to_owned())
                .unwrap_or_else(|| "?".into())
        };
        Stats {
            runs: stat("stat::number_of_executed_units:"),
            seconds: log
                .lines()
                .find_map(|l| l.strip_prefix("Done ")?.split(" runs in ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_owned(),
            per_second: stat("stat::average_exec_per_sec:"),
            coverage: field("cov:"),
            corpus: field("corp:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let args: Vec<String> = ["--seconds", "60", "config", "relay_frames"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = Options::parse(&args).expect("valid");
        assert_eq!(o.seconds, 60);
        assert_eq!(o.targets, ["config", "relay_frames"]);
        assert!(!o.merge);
        assert!(Options::parse(&["--seconds".into(), "0".into()]).is_err());
        assert!(Options::parse(&["--fast".into()]).is_err());
    }

    #[test]
    fn stats_come_from_the_log() {
        let log = "#2604116\tDONE   cov: 877 ft: 1967 corp: 292/19Kb lim: 4096 exec/s: 124005 rss: 28Mb\n\
                   Done 2604116 runs in 21 second(s)\n\
                   stat::number_of_executed_units: 2604116\n\
                   stat::average_exec_per_sec:     124005\n";
        let s = Stats::from_log(log);
        assert_eq!(s.runs, "2604116");
        assert_eq!(s.per_second, "124005");
        assert_eq!(s.seconds, "21");
        assert_eq!(s.coverage, "877");
        assert_eq!(s.corpus, "292");
    }
}
