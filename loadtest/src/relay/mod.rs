//! `lookout-loadtest relay`: the relay benchmark and fault drill an
//! integrator runs before trusting a gateway → command-center link.
//!
//! Starts, as separate processes, a simulated fleet with scripted
//! incidents, a command center (`lookout center`) and a gateway (`lookout
//! run`) watching every camera with the detector and relaying to the
//! center over QUIC with mutual TLS (certificates made by `lookout certs`
//! in the work folder). Optionally the link between them goes through the
//! link emulator (rate cap, delay, loss, partitions) and the center is
//! killed and restarted mid-run. Then it checks and reports:
//!
//! - alerts: every alert the gateway raised is in the center's SQLite
//!   ledger exactly once (one record per id, none invented), every scripted
//!   incident is among them, and how long alerts took from capture and from
//!   being raised to being stored;
//! - video: frames the gateway handed to GOP streams vs frames the center
//!   received, per camera; GOPs sent, reset and skipped;
//! - latency: the relay's own share (a unit received by the gateway →
//!   received by the center) at p50/p99/p99.9 from the center's HDR
//!   histogram, next to the camera → gateway (RTSP) hop of the same frames
//!   as the baseline measured in the same run;
//! - clips (with a detector): every alert's clip at the center, read by
//!   `ffprobe`, and each incident's clip starting before the incident.

mod baselines;
mod check;
mod clips;
mod drain;
mod measure;
mod report;
mod setup;

use std::path::PathBuf;
use std::time::Duration;

use crate::link::{Impairment, Partition};

pub use clips::ClipsReport;
pub use report::{CameraFrames, RelayReport, TimelineEntry};

/// What `relay` (`run`) was asked for, from its command line (`cli::RelayCli`) or from a `capacity`
/// step.
pub struct RelayArgs {
    /// Cameras in the fleet (split 3:2:2:1 towers:drones:bodycams:fixed) unless `mix` is given.
    pub cameras: usize,
    /// Cameras per kind, e.g. `towers=24,drones=16`; overrides `cameras`.
    pub mix: Option<String>,
    /// The fleet's picture size, `full` or `small`.
    pub size: String,
    /// How long the fleet plays, warm-up included.
    pub duration: Duration,
    /// Incident script; `None`: the default incidents (none without a detector).
    pub incidents: Option<String>,
    /// `None`: relay only, no detection (and no alerts).
    pub detector_config: Option<PathBuf>,
    /// Folder of encoded clips for the fleet (made once, reused).
    pub cache: PathBuf,
    /// Work folder: certificates, configurations, the centers' storage, `logs/`;
    /// made absolute by the setup.
    pub workdir: PathBuf,
    /// Latency windows start after this long.
    pub warmup: Duration,
    /// Gateway → center impairment; `None`: straight over loopback.
    pub link: Option<Impairment>,
    /// The link's profile name for the report (`loopback`, `cellular`, …).
    pub link_name: String,
    /// Windows, from the link's start, in which the link passes nothing (needs `link`).
    pub partitions: Vec<Partition>,
    /// Kill the center this long after the start, for this long.
    pub center_outage: Option<(Duration, Duration)>,
    /// Put a second, upper center ("city") above the first, which forwards
    /// everything to it (a cascade).
    pub cascade: bool,
    /// The center's `subscribe` setting (`all`, `alerting`).
    pub subscribe: String,
    /// Also measure the baselines: a bare GStreamer RTSP client per camera,
    /// and bare ONNX Runtime on the detector's model.
    pub baselines: bool,
    /// Per-camera latency budget for the gateway's GOP resets.
    pub latency_budget_ms: Option<u64>,
    /// Simulated gauge alerts per second through `POST /api/alerts`.
    pub sensor_alerts_per_s: f64,
    /// Where to write the report (JSON, and HTML next to it); `None`: printed only.
    pub report: Option<PathBuf>,
    /// Record alert clips (the gateway's default); `false` turns them off
    /// (`--no-clips`), to measure what they cost.
    pub clips: bool,
    /// Fail the run unless every alert is in the ledger once, every incident alerted and
    /// (uncongested) every frame arrived.
    pub strict: bool,
}

/// The run, phase by phase: setup, warm-up and measure, drain, baselines,
/// check, report.
pub fn run(mut args: RelayArgs) -> anyhow::Result<RelayReport> {
    let mut stack = setup::setup(&mut args)?;
    let measured = measure::measure(&args, &mut stack)?;
    let drained = drain::drain(&args, &mut stack)?;
    let baselines = baselines::measure(&args, &stack)?;
    let checked = check::check(&drained, measured.warm_unix_ns);
    let report = report::build(&args, &stack, measured, drained, baselines, checked);
    report::print(&report);
    if let Some(path) = &args.report {
        crate::report::write_report(path, &report, crate::html::render)?;
    }
    if args.strict {
        check::strict(&args, &report)?;
    }
    Ok(report)
}
