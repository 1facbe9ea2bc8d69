//! The command line: every subcommand and its options as clap parses them,
//! the options that take a fixed set of values as enums, and the duration
//! spellings (`30s`, `2m`, `1m30s`, plain seconds).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand, ValueEnum};

use crate::{detect, soak};

#[derive(Parser)]
#[command(
    name = "lookout-loadtest",
    version,
    about = "Camera fleet and benchmarks for lookout"
)]
/// `lookout-loadtest`'s command line.
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each variant's doc comment is its `--help` text.
#[derive(Subcommand)]
pub enum Command {
    /// Start everything that exists end to end and print where to look.
    Demo(DemoCli),
    /// Load and latency run (also `relay`): fleet, gateway and center as
    /// separate processes; the report follows docs/REPORT.md. Relay benchmark and fault drill: a fleet with scripted incidents, a
    /// command center and a gateway relaying to it over QUIC with mutual TLS
    /// (optionally through the link emulator, optionally with the center
    /// killed mid-run). Checks that every alert is in the center's ledger
    /// exactly once and every frame arrived; prints the relay's latency
    /// percentiles next to the camera → gateway hop of the same frames.
    #[command(alias = "run")]
    Relay(RelayCli),
    /// The largest fleet this machine carries within an SLO: `run` at a
    /// doubling, then bisected, camera count; every step's report is kept.
    Capacity(CapacityCli),
    /// Soak: the load test's fleet, center and gateway for tens of minutes,
    /// with incidents all along; every interval samples RSS, fds, threads
    /// and CPU of each process, frames and the interval's latency
    /// percentiles; judges memory growth, fd and thread trends, latency and
    /// the ledger after warm-up (docs/SOAK.md).
    Soak(soak::SoakArgs),
    /// Serve simulated cameras over RTSP on this machine.
    Fleet(FleetCli),
    /// Detection benchmark: a fleet with scripted incidents and a gateway
    /// watching every camera with a detector; scores the alerts against the
    /// ground truth (alerted, missed, false, duplicate), prints
    /// capture-to-alert and onset-to-alert percentiles, then measures the
    /// detector's throughput next to bare ONNX Runtime in the same run.
    Detect(DetectCli),
    /// Link emulator: a UDP relay between a client (the gateway) and a
    /// server (the center) imposing a rate cap, delay, jitter, loss,
    /// reordering and partitions, from a seed. Loopback addresses only.
    Link(LinkCli),
    /// Render labelled training stills and/or a contact sheet from the scene renderer.
    Render(RenderCli),
    /// Check reports against the contract (docs/REPORT.md): every required
    /// field present, counts integers, percentiles numbers (or null with
    /// count 0) with their sample count, provenance present. Reads every kind
    /// this tool writes (run, capacity, soak, detect, link, fleet); exits 1
    /// if any file is invalid, naming the JSON path of each problem.
    CheckReport(CheckReportCli),
    /// Run a fleet with a reader on every camera and check its timing and CPU.
    FleetCheck(FleetCheckCli),
}

/// `demo`'s options.
#[derive(clap::Args)]
pub struct DemoCli {
    /// Stop by itself after this long: `30s`, `5m`, or plain seconds
    /// (default: run until Ctrl-C).
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_u64)]
    pub duration_s: Option<u64>,
    /// Folder for logs and state.
    #[arg(long, default_value = ".lookout/demo")]
    pub workdir: PathBuf,
    /// `full` (720p) or `small` pictures for the simulated cameras.
    #[arg(long, value_enum, default_value = "full")]
    pub size: Size,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
}

/// `relay` (`run`)'s options.
#[derive(clap::Args)]
pub struct RelayCli {
    /// Number of cameras (split 3:2:2:1 towers:drones:bodycams:fixed).
    #[arg(long, default_value_t = 64)]
    pub cameras: usize,
    /// e.g. `towers=24,drones=16,bodycams=16,fixed=8` (overrides --cameras); a kind with
    /// `-rtmp` pushes over RTMP, with `-gb` is a GB/T 28181 device (`drones-rtmp=8,bodycams-gb=16`);
    /// `platform-gb=16`: fixed cameras shared by one GB/T 28181 lower platform.
    #[arg(long)]
    pub mix: Option<String>,
    /// `full` (720p towers, drones, fixed; 480p body cameras) or `small` (half).
    #[arg(long, value_enum, default_value = "full")]
    pub size: Size,
    /// How long: `60s`, `2m`, or plain seconds.
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_u64, default_value_t = 60)]
    pub duration_s: u64,
    /// Latency windows start after this long (`10s`, or plain seconds).
    #[arg(long = "warmup", alias = "warmup-s", value_name = "WARMUP", value_parser = secs_u64, default_value_t = 10)]
    pub warmup_s: u64,
    /// Incident script (default: two 12 s incidents per camera, one smoke and one flood, as many as fit the run).
    #[arg(long)]
    pub incidents: Option<String>,
    /// Gateway configuration with the [[detector]] to run on keyframes.
    #[arg(long, default_value = "models/smoke_flood.toml")]
    pub detector_config: PathBuf,
    /// Relay only: no detection, no alerts.
    #[arg(long)]
    pub no_detect: bool,
    /// Gateway ↔ center link: `loopback`, `cellular` (20 Mbit/s, 20 ms
    /// each way, 1 % loss), `satellite` (4 Mbit/s, 300 ms each way,
    /// 2 % loss) or `custom` (the --link-* options).
    #[arg(long, value_enum, default_value = "loopback")]
    pub link: LinkProfile,
    /// Link emulator between gateway and center: rate cap, kbit/s (0: none).
    #[arg(long)]
    pub link_rate_kbps: Option<u64>,
    /// Link emulator: one-way delay, ms.
    #[arg(long, default_value_t = 0.0)]
    pub link_delay_ms: f64,
    /// Link emulator: loss probability, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub link_loss: f64,
    /// Link emulator: queue depth, ms of traffic (tail drop).
    #[arg(long, default_value_t = 200.0)]
    pub link_queue_ms: f64,
    /// Link emulator: extra one-way delay, uniform 0..=jitter, ms.
    #[arg(long, default_value_t = 0.0)]
    pub link_jitter_ms: f64,
    /// Link emulator: share of packets held back (overtaken), 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub link_reorder: f64,
    /// Link emulator: partitions, seconds from start, `10+5,30+2.5`.
    #[arg(long, default_value = "")]
    pub link_partitions: String,
    /// Kill the center at S seconds for L seconds: `S+L`.
    #[arg(long)]
    pub center_outage: Option<String>,
    /// Alerts per second from a simulated river gauge, posted through
    /// the gateway's `POST /api/alerts` for the whole run (the alert
    /// path timed during faults, independently of detection).
    #[arg(long, default_value_t = 0.0)]
    pub sensor_alerts_per_s: f64,
    /// Per-camera latency budget for GOP resets, ms.
    #[arg(long)]
    pub latency_budget_ms: Option<u64>,
    /// Add an upper center the first one forwards everything to.
    #[arg(long)]
    pub cascade: bool,
    /// The center's video subscription: every camera, or only those
    /// with an active alert.
    #[arg(long, value_enum, default_value = "all")]
    pub subscribe: Subscribe,
    /// Also measure the baselines (bare GStreamer clients on the same
    /// streams, bare ONNX Runtime on the same model): about 15 s more.
    #[arg(long)]
    pub baselines: bool,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
    /// Work folder: certificates, configurations, the centers' storage, logs.
    #[arg(long, default_value = ".lookout/relay")]
    pub workdir: PathBuf,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Exit 1 unless every alert is in the ledger exactly once, every
    /// incident alerted, and (uncongested) every frame arrived.
    #[arg(long)]
    pub strict: bool,
    /// Record no alert clips (`[gateway.clips] enabled = false`): what clips
    /// cost, measured against a run with them.
    #[arg(long)]
    pub no_clips: bool,
}

/// `capacity`'s options.
#[derive(clap::Args)]
pub struct CapacityCli {
    #[arg(
        long,
        default_value = "capture_to_alert_p99=100ms,relay_p99=5ms,lost=0"
    )]
    /// e.g. `capture_to_alert_p99=100ms,relay_p99=5ms,lost=0`
    pub slo: String,
    /// Cameras of the first step, the reference for incident problems.
    #[arg(long, default_value_t = 8)]
    pub start: usize,
    /// Most cameras tried.
    #[arg(long, default_value_t = 128)]
    pub max: usize,
    /// `full` (720p towers, drones, fixed; 480p body cameras) or `small` (half).
    #[arg(long, value_enum, default_value = "full")]
    pub size: Size,
    /// How long each step runs: `40s`, `1m`, or plain seconds.
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_u64, default_value_t = 40)]
    pub duration_s: u64,
    /// Each step's warm-up, left out of its latency windows (`10s`, or plain seconds).
    #[arg(long = "warmup", alias = "warmup-s", value_name = "WARMUP", value_parser = secs_u64, default_value_t = 10)]
    pub warmup_s: u64,
    /// Incident script for every step (as for `run`), on cameras every step's fleet has;
    /// default: the run's default incidents on those cameras.
    #[arg(long)]
    pub incidents: Option<String>,
    /// Gateway configuration with the [[detector]] every step runs.
    #[arg(long, default_value = "models/smoke_flood.toml")]
    pub detector_config: PathBuf,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
    /// Work folder; each step runs in `cameras-N/` and keeps its report there.
    #[arg(long, default_value = ".lookout/capacity")]
    pub workdir: PathBuf,
    /// Write the summary (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// `detect`'s options.
#[derive(clap::Args)]
pub struct DetectCli {
    /// Number of cameras (split 3:2:2:1 towers:drones:bodycams:fixed).
    #[arg(long, default_value_t = 64)]
    pub cameras: usize,
    /// e.g. `towers=24,drones=16,bodycams=16,fixed=8` (overrides --cameras); a kind with
    /// `-rtmp` pushes over RTMP, with `-gb` is a GB/T 28181 device (`drones-rtmp=8,bodycams-gb=16`);
    /// `platform-gb=16`: fixed cameras shared by one GB/T 28181 lower platform.
    #[arg(long)]
    pub mix: Option<String>,
    /// `full` (720p towers, drones, fixed; 480p body cameras) or `small` (half).
    #[arg(long, value_enum, default_value = "full")]
    pub size: Size,
    /// From the fleet's first frame to scoring: `60s`, `2m`, or plain seconds.
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64, default_value_t = 60.0)]
    pub duration_s: f64,
    /// Incident script (as for `fleet`); default: two 12 s incidents per camera, one smoke and one flood, as many as fit the run.
    #[arg(long)]
    pub incidents: Option<String>,
    /// A gateway config whose first `[[detector]]` watches every camera.
    #[arg(long, default_value = "models/smoke_flood.toml")]
    pub detector_config: PathBuf,
    /// `keyframes` or e.g. `2fps`.
    #[arg(long, default_value = "keyframes")]
    pub sampling: String,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
    /// Work folder: configurations, logs, metrics.txt, bench-detector.json.
    #[arg(long, default_value = ".lookout/detect-run")]
    pub workdir: PathBuf,
    /// Seconds per round of the throughput comparison (raw and detector
    /// alternating, `detect::BENCH_ROUNDS` rounds).
    #[arg(long, default_value_t = detect::BENCH_SECONDS)]
    pub bench_seconds: f64,
    /// Write the report (JSON) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Exit non-zero unless every incident raised exactly one alert and
    /// no other alert was raised.
    #[arg(long)]
    pub strict: bool,
}

/// `link`'s options.
#[derive(clap::Args)]
pub struct LinkCli {
    /// Where the client sends (e.g. 127.0.0.1:4434).
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// The server (e.g. 127.0.0.1:4433).
    #[arg(long)]
    pub to: std::net::SocketAddr,
    /// Rate cap, kbit/s, each direction (0: none).
    #[arg(long, default_value_t = 0)]
    pub rate_kbps: u64,
    /// One-way delay, ms, each direction.
    #[arg(long, default_value_t = 0.0)]
    pub delay_ms: f64,
    /// Extra one-way delay, uniform 0..=jitter, ms.
    #[arg(long, default_value_t = 0.0)]
    pub jitter_ms: f64,
    /// Loss probability, 0..1, each direction.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Share of packets held back (overtaken), 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Queue depth of the rate-capped link, ms of traffic (tail drop).
    #[arg(long, default_value_t = 200.0)]
    pub queue_ms: f64,
    /// Partitions, seconds from start: `10+5,30+2.5`.
    #[arg(long, default_value = "")]
    pub partitions: String,
    /// Seed of the loss, jitter and reorder draws (the same seed draws the same).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop by itself after this long (`20s`, `5m`, or plain seconds).
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64)]
    pub duration_s: Option<f64>,
    /// Write the counters (JSON) here when stopping.
    #[arg(long)]
    pub stats: Option<PathBuf>,
}

/// `render`'s options.
#[derive(clap::Args)]
pub struct RenderCli {
    /// Write labelled stills (PNG + JSON, index.jsonl) into this folder.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Seeds of the stills, as START..END (each seed is one image).
    #[arg(long, default_value = "0..1000")]
    pub seeds: String,
    /// Side of the square stills in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Only this camera kind; default: each seed's own.
    #[arg(long, value_parser = PossibleValuesParser::new(lookout_scene::SceneKind::ALL.map(|k| k.name())))]
    pub kind: Option<String>,
    /// Only this lighting; default: each seed's own.
    #[arg(long, value_parser = PossibleValuesParser::new(lookout_scene::Lighting::ALL.map(|l| l.name())))]
    pub lighting: Option<String>,
    /// Write a contact sheet (PNG) of smoke, flood and negatives here.
    #[arg(long)]
    pub contact_sheet: Option<PathBuf>,
    /// First seed of the contact sheet's samples.
    #[arg(long, default_value_t = 0)]
    pub sheet_seed: u64,
}

/// `check-report`'s arguments.
#[derive(clap::Args)]
pub struct CheckReportCli {
    /// Report files (JSON) to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `fleet-check`'s options.
#[derive(clap::Args)]
pub struct FleetCheckCli {
    /// Number of cameras (split 3:2:2:1 towers:drones:bodycams:fixed).
    #[arg(long, default_value_t = 64)]
    pub cameras: usize,
    /// e.g. `towers=24,drones=16,bodycams=16,fixed=8` (overrides --cameras); a kind with
    /// `-rtmp` pushes over RTMP, with `-gb` is a GB/T 28181 device (`drones-rtmp=8,bodycams-gb=16`);
    /// `platform-gb=16`: fixed cameras shared by one GB/T 28181 lower platform.
    #[arg(long)]
    pub mix: Option<String>,
    /// `full` (720p towers, drones, fixed; 480p body cameras) or `small` (half).
    #[arg(long, value_enum, default_value = "full")]
    pub size: Size,
    /// How long: `60s`, `2m`, or plain seconds.
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64, default_value_t = 60.0)]
    pub duration_s: f64,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
    /// Work folder: the fleet's emitted configuration, summary and log.
    #[arg(long, default_value = ".lookout/fleet-check")]
    pub workdir: PathBuf,
    /// Fail below this share of frames on time.
    #[arg(long, default_value_t = 0.99)]
    pub min_on_time: f64,
    /// Fail above this fleet CPU (cores).
    #[arg(long, default_value_t = 0.6)]
    pub max_cpu_cores: f64,
}

/// `fleet`'s options.
#[derive(clap::Args)]
pub struct FleetCli {
    /// Number of cameras (split by --mix, or 3:2:2:1 towers:drones:bodycams:fixed;
    /// default 4, or the sum of --mix).
    #[arg(long)]
    pub cameras: Option<usize>,
    /// e.g. `towers=24,drones=16,bodycams=16,fixed=8`; `drones-rtmp=8` push over RTMP,
    /// `bodycams-gb=16` are GB/T 28181 devices, `platform-gb=16` channels of one lower platform.
    #[arg(long)]
    pub mix: Option<String>,
    /// Loopback address to serve on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// RTSP port (0 picks a free one; see --emit-gateway-config).
    #[arg(long, default_value_t = 8554)]
    pub port: u16,
    /// `full` (720p towers, drones, fixed; 480p body cameras) or `small` (half).
    #[arg(long, value_enum, default_value = "full")]
    pub size: Size,
    /// Require RTSP digest authentication with USER:PASSWORD.
    #[arg(long)]
    pub auth: Option<String>,
    /// Incident script: a TOML file, or `tower-01:smoke@20,drone-01:flood@35`.
    #[arg(long)]
    pub incidents: Option<String>,
    /// Where to write the incidents' ground truth (JSON), as they start.
    #[arg(long)]
    pub ground_truth: Option<PathBuf>,
    /// Write a lookout configuration for exactly these cameras.
    #[arg(long)]
    pub emit_gateway_config: Option<PathBuf>,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
    /// Stop by itself after this long (`20s`, `5m`, or plain seconds).
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64)]
    pub duration_s: Option<f64>,
    /// Write the run's summary (JSON) here when stopping.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Encode H.264 cameras with B-frames and High profile.
    #[arg(long)]
    pub bframes: bool,
    /// The gateway's RTMP port the pushing cameras (`-rtmp` in --mix) dial (0 picks a
    /// free one; see --emit-gateway-config).
    #[arg(long, default_value_t = 0)]
    pub rtmp_port: u16,
    /// The gateway's GB/T 28181 SIP port the devices (`-gb` in --mix) register to (0
    /// picks a free one; see --emit-gateway-config).
    #[arg(long, default_value_t = 0)]
    pub sip_port: u16,
}

/// Picture size of the simulated cameras.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Size {
    /// 720p towers, drones, fixed; 480p body cameras.
    Full,
    /// Half of `full`.
    Small,
}

impl Size {
    /// The spelling on the command line, as the fleet and reports take it.
    pub fn as_str(self) -> &'static str {
        match self {
            Size::Full => "full",
            Size::Small => "small",
        }
    }
}

/// The gateway ↔ center link's preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LinkProfile {
    Loopback,
    /// 20 Mbit/s, 20 ms each way, 1 % loss.
    Cellular,
    /// 4 Mbit/s, 300 ms each way, 2 % loss.
    Satellite,
    /// The --link-* options.
    Custom,
}

impl LinkProfile {
    /// The name on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkProfile::Loopback => "loopback",
            LinkProfile::Cellular => "cellular",
            LinkProfile::Satellite => "satellite",
            LinkProfile::Custom => "custom",
        }
    }
}

/// The center's video subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Subscribe {
    /// Every camera.
    All,
    /// Only cameras with an active alert.
    Alerting,
}

impl Subscribe {
    /// The center's `subscribe` setting.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscribe::All => "all",
            Subscribe::Alerting => "alerting",
        }
    }
}

/// `30m`, `90s`, `2h`, `1m30s` (humantime's spellings), or plain seconds
/// (`45`, `7.5`); at most 7 days.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let secs = match t.parse::<f64>() {
        Ok(s) => s,
        Err(_) => humantime::parse_duration(t)
            .map_err(|e| {
                anyhow::anyhow!(
                    "duration `{text}`: {e} (expected e.g. 30m, 90s, 1m30s or plain seconds)"
                )
            })?
            .as_secs_f64(),
    };
    anyhow::ensure!(
        secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs),
        "duration `{text}`: must be between 0 and 7 days"
    );
    Ok(Duration::from_secs_f64(secs))
}

/// A `--duration`/`--warmup` value (`30s`, `2m`, `1m30s` or plain seconds),
/// in whole seconds, rounded.
fn secs_u64(text: &str) -> anyhow::Result<u64> {
    Ok(parse_duration(text)?.as_secs_f64().round() as u64)
}

/// A `--duration` value (`30s`, `2m`, `1m30s` or plain seconds), in seconds.
fn secs_f64(text: &str) -> anyhow::Result<f64> {
    Ok(parse_duration(text)?.as_secs_f64())
}
