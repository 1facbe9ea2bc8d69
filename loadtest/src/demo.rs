//! `lookout-loadtest demo`: the README's first command. It starts every part
//! that exists, as separate processes with their real configuration, prints
//! where to look, and runs until Ctrl-C (or `--duration`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procs::{self, Proc};

pub struct DemoArgs {
    pub workdir: PathBuf,
    pub duration: Option<Duration>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    let logs = args.workdir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    let lookout = procs::sibling("lookout")?;
    let config = root.join("configs").join("demo.toml");
    let mut gateway = Proc::start(
        "gateway",
        &lookout,
        &[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &logs.join("gateway.log"),
    )?;
    procs::wait_http_ok(
        "http://127.0.0.1:8080/healthz",
        Duration::from_secs(20),
        &mut gateway,
    )?;

    println!();
    println!("lookout demo is running");
    println!("  gateway health   http://127.0.0.1:8080/healthz");
    println!("  gateway metrics  http://127.0.0.1:8080/metrics");
    println!("  logs             {}", logs.display());
    match args.duration {
        Some(d) => println!("stopping by itself after {} s", d.as_secs()),
        None => println!("press Ctrl-C to stop"),
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        gateway.check_alive()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stopping the demo");
    let clean = gateway.stop(Duration::from_secs(10));
    anyhow::ensure!(clean, "the gateway did not stop within 10 s of SIGTERM");
    Ok(())
}

/// The source tree the binaries were built from (configs live there).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
