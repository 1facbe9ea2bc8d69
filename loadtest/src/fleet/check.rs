//! `lookout-loadtest fleet-check`: proves the fleet keeps its promise. It
//! starts `lookout-loadtest fleet` as its own process, reads every camera
//! with a plain GStreamer RTSP client (`rtspsrc ! depay ! fakesink`, so
//! every mount really sends), and reports the fleet's on-time ratio and its
//! own CPU use from the fleet's summary.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gstreamer as gst;
use gstreamer::prelude::*;

use super::Summary;
use crate::procs::Proc;
use crate::stack::removed;

/// What `fleet-check` was asked for, from its command line (`cli::FleetCheckCli`).
pub struct CheckArgs {
    /// Cameras in the fleet (split 3:2:2:1 towers:drones:bodycams:fixed) unless `mix` is given.
    pub cameras: usize,
    /// Cameras per kind, e.g. `towers=24,drones=16`; overrides `cameras`.
    pub mix: Option<String>,
    /// Picture size, `full` or `small`.
    pub size: String,
    /// How long the readers measure once all are connected.
    pub duration: Duration,
    /// Folder of encoded clips (made once, reused).
    pub cache: PathBuf,
    /// Work folder: the fleet's emitted configuration, summary and log.
    pub workdir: PathBuf,
    /// Fail below this share of frames on time.
    pub min_on_time: f64,
    /// Fail above this fleet CPU, in cores.
    pub max_cpu_cores: f64,
}

pub fn run(args: CheckArgs) -> anyhow::Result<serde_json::Value> {
    gst::init()?;
    std::fs::create_dir_all(&args.workdir)?;
    let config = args.workdir.join("fleet-gateway.toml");
    let summary_path = args.workdir.join("fleet-summary.json");
    // A summary or configuration left from an earlier check would be read as
    // this fleet's.
    removed(std::fs::remove_file(&summary_path), &summary_path)?;
    removed(std::fs::remove_file(&config), &config)?;
    let me = std::env::current_exe().context("locating lookout-loadtest")?;
    let mut fleet_args = vec![
        "fleet".to_string(),
        "--port".into(),
        "0".into(),
        "--size".into(),
        args.size.clone(),
        "--cache".into(),
        args.cache.display().to_string(),
        "--emit-gateway-config".into(),
        config.display().to_string(),
        "--summary".into(),
        summary_path.display().to_string(),
    ];
    match &args.mix {
        Some(m) => {
            fleet_args.push("--mix".into());
            fleet_args.push(m.clone());
        }
        None => {
            fleet_args.push("--cameras".into());
            fleet_args.push(args.cameras.to_string());
        }
    }
    let mut fleet = Proc::start("fleet", &me, &fleet_args, &args.workdir.join("fleet.log"))?;
    // Clips may need encoding the first time.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !config.is_file() {
        fleet.check_alive()?;
        if Instant::now() > deadline {
            bail!("the fleet did not start within 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let urls = camera_urls(&std::fs::read_to_string(&config)?);
    if urls.is_empty() {
        bail!("the fleet's config lists no cameras");
    }
    let mut readers = Vec::new();
    for url in &urls {
        let desc = format!(
            "rtspsrc location={url} latency=0 protocols=tcp ! application/x-rtp,media=video ! fakesink sync=false"
        );
        let p = gst::parse::launch(&desc)
            .with_context(|| format!("reader for {url}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
        p.set_state(gst::State::Playing)
            .with_context(|| format!("starting reader for {url}"))?;
        readers.push(p);
    }
    eprintln!(
        "fleet-check: {} readers connected; measuring for {} s",
        readers.len(),
        args.duration.as_secs()
    );
    let until = Instant::now() + args.duration;
    while Instant::now() < until {
        fleet.check_alive()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    // The fleet writes its summary when it stops.
    fleet.stop(Duration::from_secs(20));
    for r in readers {
        // Measuring is over and the pipeline is dropped next: a reader that
        // will not stop cleanly changes nothing the check reads.
        r.set_state(gst::State::Null).ok();
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&summary_path)
            .with_context(|| format!("reading {}", summary_path.display()))?,
    )?;
    let s: Summary = serde_json::from_value(summary.clone()).context("fleet summary")?;
    println!(
        "fleet-check: {} cameras for {:.0} s: {:.2}% of {} frames on time, fleet CPU {:.3} cores ({:.2}% of a core per camera)",
        s.cameras,
        s.serving_s,
        s.on_time_ratio * 100.0,
        s.frames_pushed,
        s.cpu_cores,
        s.cpu_cores * 100.0 / s.cameras.max(1) as f64
    );
    let mut failures = Vec::new();
    if s.on_time_ratio < args.min_on_time {
        failures.push(format!(
            "{:.2}% of frames on time, below {:.2}%",
            s.on_time_ratio * 100.0,
            args.min_on_time * 100.0
        ));
    }
    if s.cpu_cores > args.max_cpu_cores {
        failures.push(format!(
            "fleet CPU {:.3} cores, above {:.3}",
            s.cpu_cores, args.max_cpu_cores
        ));
    }
    // Every camera must have sent frames to its reader.
    let silent: Vec<&str> = s
        .per_camera
        .iter()
        .filter(|c| c.frames_pushed == 0)
        .map(|c| c.id.as_str())
        .collect();
    if !silent.is_empty() {
        failures.push(format!("cameras that sent nothing: {}", silent.join(", ")));
    }
    if !failures.is_empty() {
        bail!("fleet-check failed: {}", failures.join("; "));
    }
    Ok(summary)
}

/// The `url = "…"` lines of an emitted gateway config, credentials included.
fn camera_urls(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("url = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_string)
        .collect()
}
