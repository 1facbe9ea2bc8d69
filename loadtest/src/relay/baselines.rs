//! The run's baselines, measured after lookout has stopped so that neither
//! disturbs the other (`--baselines`): bare GStreamer RTSP clients on the
//! same fleet's streams, and bare ONNX Runtime on the detector's model
//! (`lookout bench-detector`).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::detect::{BENCH_ROUNDS, BENCH_SECONDS};
use crate::procs;
use crate::stack::{FleetRun, start_fleet};

use super::RelayArgs;
use super::setup::Stack;

/// The baselines' figures; `None`: not measured (no --baselines, no
/// detector, or the measurement failed).
pub(super) struct Baselines {
    /// CPU cores of bare GStreamer clients on every camera.
    pub gst_cores: Option<f64>,
    /// Inferences per second of bare ONNX Runtime.
    pub ort_raw: Option<f64>,
    /// Inferences per second through the gateway's detector path.
    pub det_path: Option<f64>,
}

pub(super) fn measure(args: &RelayArgs, s: &Stack) -> anyhow::Result<Baselines> {
    let gst_cores = if args.baselines {
        gst_cores(args)?
    } else {
        None
    };
    let bench = match (&s.detector, args.baselines) {
        (Some(_), true) => bench_detector(args, s)?,
        _ => None,
    };
    Ok(Baselines {
        gst_cores,
        ort_raw: bench
            .as_ref()
            .and_then(|b| b["ort_raw"]["frames_per_s"].as_f64()),
        det_path: bench
            .as_ref()
            .and_then(|b| b["detector_path"]["frames_per_s"].as_f64()),
    })
}

/// A fresh fleet without incidents, and a bare GStreamer RTSP client per camera on it.
fn gst_cores(args: &RelayArgs) -> anyhow::Result<Option<f64>> {
    println!("relay: measuring bare GStreamer clients on the same streams (about 15 s)");
    let dir = args.workdir.join("baseline");
    std::fs::create_dir_all(dir.join("logs"))?;
    let (mut again, again_config, _, _) = start_fleet(
        &FleetRun {
            cameras: args.cameras,
            mix: args.mix.clone(),
            size: args.size.clone(),
            cache: args.cache.clone(),
            incidents: Some(String::new()),
            duration: Duration::from_secs(60),
        },
        &dir,
    )?;
    let cores = gst_ingest_baseline(&again_config)
        .inspect_err(|e| eprintln!("relay: GStreamer ingest baseline failed: {e:#}"))
        .ok();
    again.stop(Duration::from_secs(10));
    Ok(cores)
}

/// Bare ONNX Runtime, same model, batch and threads, next to the detector's
/// path: `lookout bench-detector`'s JSON, `None` if it failed.
fn bench_detector(args: &RelayArgs, s: &Stack) -> anyhow::Result<Option<Value>> {
    let json_path = args.workdir.join("bench-detector.json");
    let out = std::process::Command::new(&s.lookout)
        .args(["bench-detector", "--config"])
        .arg(&s.gw_config)
        .args(["--seconds", &BENCH_SECONDS.to_string()])
        .args(["--rounds", &BENCH_ROUNDS.to_string(), "--json"])
        .arg(&json_path)
        .output()
        .context("running lookout bench-detector")?;
    if out.status.success() {
        Ok(std::fs::read_to_string(&json_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok()))
    } else {
        eprintln!(
            "relay: bench-detector failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(None)
    }
}

/// CPU of a bare GStreamer RTSP client (`rtspsrc ! depay ! fakesink`) per
/// camera of `gw_config`, all at once for 8 s, in cores.
fn gst_ingest_baseline(gw_config: &std::path::Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(gw_config)?;
    let cameras: Vec<(String, bool)> = text
        .split("[[camera]]")
        .skip(1)
        .filter_map(|block| {
            let url = block
                .lines()
                .find_map(|l| l.strip_prefix("url = "))?
                .trim_matches('"')
                .to_string();
            Some((url, block.contains("codec = \"h265\"")))
        })
        .collect();
    let mut kids = Vec::new();
    for (url, h265) in &cameras {
        let depay = if *h265 {
            "rtph265depay"
        } else {
            "rtph264depay"
        };
        let child = std::process::Command::new("gst-launch-1.0")
            .args([
                "-q",
                "rtspsrc",
                &format!("location={url}"),
                "latency=0",
                "!",
                depay,
                "!",
                "fakesink",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting gst-launch-1.0")?;
        kids.push(child);
    }
    // Let them connect, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let before: f64 = kids.iter().filter_map(|k| procs::cpu_seconds(k.id())).sum();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let after: f64 = kids.iter().filter_map(|k| procs::cpu_seconds(k.id())).sum();
    let cores = (after - before) / t.elapsed().as_secs_f64();
    for mut k in kids {
        // One that already exited is fine (`Child::kill` answers `Ok`); an
        // error may have left a client running beside the next phase.
        if let Err(e) = k.kill() {
            eprintln!(
                "relay: SIGKILL to gst-launch-1.0 (pid {}) failed: {e}",
                k.id()
            );
        }
        if let Err(e) = k.wait() {
            eprintln!(
                "relay: waiting for gst-launch-1.0 (pid {}) failed: {e}",
                k.id()
            );
        }
    }
    Ok(cores)
}
