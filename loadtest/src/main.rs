//! `lookout-loadtest`: the camera-fleet simulator, the scene renderer's
//! command line and the load/latency benchmark driver.

mod capacity;
mod check;
mod delay;
mod demo;
mod detect;
mod faults;
mod fleet;
mod html;
mod link;
mod procs;
mod provenance;
mod relay;
mod soak;
mod stack;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lookout-loadtest",
    version,
    about = "Camera fleet and benchmarks for lookout"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything that exists end to end and print where to look.
    Demo {
        /// Stop by itself after this long: `30s`, `5m`, or plain seconds
        /// (default: run until Ctrl-C).
        #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_u64)]
        duration_s: Option<u64>,
        /// Folder for logs and state.
        #[arg(long, default_value = ".lookout/demo")]
        workdir: PathBuf,
        /// `full` (720p) or `small` pictures for the simulated cameras.
        #[arg(long, default_value = "full", value_parser = ["full", "small"])]
        size: String,
        /// Folder of encoded clips (made once, reused).
        #[arg(long, default_value = ".lookout/clips")]
        cache: PathBuf,
    },
    /// Load and latency run (also `relay`): fleet, gateway and center as
    /// separate processes; the report follows docs/REPORT.md. Relay benchmark and fault drill: a fleet with scripted incidents, a
    /// command center and a gateway relaying to it over QUIC with mutual TLS
    /// (optionally through the link emulator, optionally with the center
    /// killed mid-run). Checks that every alert is in the center's ledger
    /// exactly once and every frame arrived; prints the relay's latency
    /// percentiles next to the camera → gateway hop of the same frames.
    #[command(alias = "run")]
    Relay {
        /// Number of cameras (split 3:2:2:1 towers:drones:bodycams:fixed).
        #[arg(long, default_value_t = 64)]
        cameras: usize,
        /// e.g. `towers=24,drones=16,bodycams=16,fixed=8` (overrides --cameras).
        #[arg(long)]
        mix: Option<String>,
        #[arg(long, default_value = "full", value_parser = ["full", "small"])]
        size: String,
        /// How long: `60s`, `2m`, or plain seconds.
        #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_u64, default_value_t = 60)]
        duration_s: u64,
        /// Latency windows start after this long (`10s`, or plain seconds).
        #[arg(long = "warmup", alias = "warmup-s", value_name = "WARMUP", value_parser = secs_u64, default_value_t = 10)]
        warmup_s: u64,
        /// Incident script (default: two 12 s incidents per camera, one smoke and one flood, as many as fit the run).
        #[arg(long)]
        incidents: Option<String>,
        /// Gateway configuration with the [[detector]] to run on keyframes.
        #[arg(long, default_value = "models/smoke_flood.toml")]
        detector_config: PathBuf,
        /// Relay only: no detection, no alerts.
        #[arg(long)]
        no_detect: bool,
        /// Gateway ↔ center link: `loopback`, `cellular` (20 Mbit/s, 20 ms
        /// each way, 1 % loss), `satellite` (4 Mbit/s, 300 ms each way,
        /// 2 % loss) or `custom` (the --link-* options).
        #[arg(long, default_value = "loopback", value_parser = ["loopback", "cellular", "satellite", "custom"])]
        link: String,
        /// Link emulator between gateway and center: rate cap, kbit/s (0: none).
        #[arg(long)]
        link_rate_kbps: Option<u64>,
        /// Link emulator: one-way delay, ms.
        #[arg(long, default_value_t = 0.0)]
        link_delay_ms: f64,
        /// Link emulator: loss probability, 0..1.
        #[arg(long, default_value_t = 0.0)]
        link_loss: f64,
        /// Link emulator: queue depth, ms of traffic (tail drop).
        #[arg(long, default_value_t = 200.0)]
        link_queue_ms: f64,
        /// Link emulator: extra one-way delay, uniform 0..=jitter, ms.
        #[arg(long, default_value_t = 0.0)]
        link_jitter_ms: f64,
        /// Link emulator: share of packets held back (overtaken), 0..1.
        #[arg(long, default_value_t = 0.0)]
        link_reorder: f64,
        /// Link emulator: partitions, seconds from start, `10+5,30+2.5`.
        #[arg(long, default_value = "")]
        link_partitions: String,
        /// Kill the center at S seconds for L seconds: `S+L`.
        #[arg(long)]
        center_outage: Option<String>,
        /// Alerts per second from a simulated river gauge, posted through
        /// the gateway's `POST /api/alerts` for the whole run (the alert
        /// path timed during faults, independently of detection).
        #[arg(long, default_value_t = 0.0)]
        sensor_alerts_per_s: f64,
        /// Per-camera latency budget for GOP resets, ms.
        #[arg(long)]
        latency_budget_ms: Option<u64>,
        /// Add an upper center the first one forwards everything to.
        #[arg(long)]
        cascade: bool,
        /// The center's video subscription: every camera, or only those
        /// with an active alert.
        #[arg(long, default_value = "all", value_parser = ["all", "alerting"])]
        subscribe: String,
        /// Also measure the baselines (bare GStreamer clients on the same
        /// streams, bare ONNX Runtime on the same model): about 15 s more.
        #[arg(long)]
        baselines: bool,
        #[arg(long, default_value = ".lookout/clips")]
        cache: PathBuf,
        #[arg(long, default_value = ".lookout/relay")]
        workdir: PathBuf,
        /// Write the report (JSON) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Exit 1 unless every alert is in the ledger exactly once, every
        /// incident alerted, and (uncongested) every frame arrived.
        #[arg(long)]
        strict: bool,
    },
    /// The largest fleet this machine carries within an SLO: `run` at a
    /// doubling, then bisected, camera count; every step's report is kept.
    Capacity {
        /// e.g. `capture_to_alert_p99=100ms,relay_p99=5ms,lost=0`
        #[arg(
            long,
            default_value = "capture_to_alert_p99=100ms,relay_p99=5ms,lost=0"
        )]
        slo: String,
        #[arg(long, default_value_t = 8)]
        start: usize,
        #[arg(long, default_value_t = 128)]
        max: usize,
        #[arg(long, default_value = "full", value_parser = ["full", "small"])]
        size: String,
        /// How long each step runs: `40s`, `1m`, or plain seconds.
        #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_u64, default_value_t = 40)]
        duration_s: u64,
        #[arg(long = "warmup", alias = "warmup-s", value_name = "WARMUP", value_parser = secs_u64, default_value_t = 10)]
        warmup_s: u64,
        /// Incident script for every step (as for `run`), on cameras every step's fleet has;
        /// default: the run's default incidents on those cameras.
        #[arg(long)]
        incidents: Option<String>,
        #[arg(long, default_value = "models/smoke_flood.toml")]
        detector_config: PathBuf,
        #[arg(long, default_value = ".lookout/clips")]
        cache: PathBuf,
        #[arg(long, default_value = ".lookout/capacity")]
        workdir: PathBuf,
        /// Write the summary (JSON) here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Soak: the load test's fleet, center and gateway for tens of minutes,
    /// with incidents all along; every interval samples RSS, fds, threads
    /// and CPU of each process, frames and the interval's latency
    /// percentiles; judges memory growth, fd and thread trends, latency and
    /// the ledger after warm-up (docs/SOAK.md).
    Soak(soak::SoakArgs),
    /// Serve simulated cameras over RTSP on this machine.
    Fleet(FleetCli),
    /// Render labelled training stills and/or a contact sheet from the scene renderer.
    /// Detection benchmark: a fleet with scripted incidents and a gateway
    /// watching every camera with a detector; scores the alerts against the
    /// ground truth (alerted, missed, false, duplicate), prints
    /// capture-to-alert and onset-to-alert percentiles, then measures the
    /// detector's throughput next to bare ONNX Runtime in the same run.
    Detect {
        /// Number of cameras (split 3:2:2:1 towers:drones:bodycams:fixed).
        #[arg(long, default_value_t = 64)]
        cameras: usize,
        /// e.g. `towers=24,drones=16,bodycams=16,fixed=8` (overrides --cameras).
        #[arg(long)]
        mix: Option<String>,
        #[arg(long, default_value = "full", value_parser = ["full", "small"])]
        size: String,
        /// From the fleet's first frame to scoring: `60s`, `2m`, or plain seconds.
        #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64, default_value_t = 60.0)]
        duration_s: f64,
        /// Incident script (as for `fleet`); default: two 12 s incidents per camera, one smoke and one flood, as many as fit the run.
        #[arg(long)]
        incidents: Option<String>,
        /// A gateway config whose first `[[detector]]` watches every camera.
        #[arg(long, default_value = "models/smoke_flood.toml")]
        detector_config: PathBuf,
        /// `keyframes` or e.g. `2fps`.
        #[arg(long, default_value = "keyframes")]
        sampling: String,
        #[arg(long, default_value = ".lookout/clips")]
        cache: PathBuf,
        #[arg(long, default_value = ".lookout/detect-run")]
        workdir: PathBuf,
        /// Seconds per round of the throughput comparison (raw and detector
        /// alternating, `detect::BENCH_ROUNDS` rounds).
        #[arg(long, default_value_t = detect::BENCH_SECONDS)]
        bench_seconds: f64,
        /// Write the report (JSON) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Exit non-zero unless every incident raised exactly one alert and
        /// no other alert was raised.
        #[arg(long)]
        strict: bool,
    },
    /// Link emulator: a UDP relay between a client (the gateway) and a
    /// server (the center) imposing a rate cap, delay, jitter, loss,
    /// reordering and partitions, from a seed. Loopback addresses only.
    Link {
        /// Where the client sends (e.g. 127.0.0.1:4434).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The server (e.g. 127.0.0.1:4433).
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Rate cap, kbit/s, each direction (0: none).
        #[arg(long, default_value_t = 0)]
        rate_kbps: u64,
        /// One-way delay, ms, each direction.
        #[arg(long, default_value_t = 0.0)]
        delay_ms: f64,
        /// Extra one-way delay, uniform 0..=jitter, ms.
        #[arg(long, default_value_t = 0.0)]
        jitter_ms: f64,
        /// Loss probability, 0..1, each direction.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Share of packets held back (overtaken), 0..1.
        #[arg(long, default_value_t = 0.0)]
        reorder: f64,
        /// Queue depth of the rate-capped link, ms of traffic (tail drop).
        #[arg(long, default_value_t = 200.0)]
        queue_ms: f64,
        /// Partitions, seconds from start: `10+5,30+2.5`.
        #[arg(long, default_value = "")]
        partitions: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop by itself after this long (`20s`, `5m`, or plain seconds).
        #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64)]
        duration_s: Option<f64>,
        /// Write the counters (JSON) here when stopping.
        #[arg(long)]
        stats: Option<PathBuf>,
    },
    Render {
        /// Write labelled stills (PNG + JSON, index.jsonl) into this folder.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Seeds of the stills, as START..END (each seed is one image).
        #[arg(long, default_value = "0..1000")]
        seeds: String,
        /// Side of the square stills in pixels.
        #[arg(long, default_value_t = 224)]
        size: u32,
        /// Only this camera kind; default: each seed's own.
        #[arg(long, value_parser = PossibleValuesParser::new(lookout_scene::SceneKind::ALL.map(|k| k.name())))]
        kind: Option<String>,
        /// Only this lighting; default: each seed's own.
        #[arg(long, value_parser = PossibleValuesParser::new(lookout_scene::Lighting::ALL.map(|l| l.name())))]
        lighting: Option<String>,
        /// Write a contact sheet (PNG) of smoke, flood and negatives here.
        #[arg(long)]
        contact_sheet: Option<PathBuf>,
        /// First seed of the contact sheet's samples.
        #[arg(long, default_value_t = 0)]
        sheet_seed: u64,
    },
    /// Check reports against the contract (docs/REPORT.md): every required
    /// field present, counts integers, percentiles numbers (or null with
    /// count 0) with their sample count, provenance present. Reads every kind
    /// this tool writes (run, capacity, soak, detect, link, fleet); exits 1
    /// if any file is invalid, naming the JSON path of each problem.
    CheckReport {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run a fleet with a reader on every camera and check its timing and CPU.
    FleetCheck {
        #[arg(long, default_value_t = 64)]
        cameras: usize,
        #[arg(long)]
        mix: Option<String>,
        #[arg(long, default_value = "full", value_parser = ["full", "small"])]
        size: String,
        /// How long: `60s`, `2m`, or plain seconds.
        #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64, default_value_t = 60.0)]
        duration_s: f64,
        #[arg(long, default_value = ".lookout/clips")]
        cache: PathBuf,
        #[arg(long, default_value = ".lookout/fleet-check")]
        workdir: PathBuf,
        /// Fail below this share of frames on time.
        #[arg(long, default_value_t = 0.99)]
        min_on_time: f64,
        /// Fail above this fleet CPU (cores).
        #[arg(long, default_value_t = 0.6)]
        max_cpu_cores: f64,
    },
}

#[derive(clap::Args)]
struct FleetCli {
    /// Number of cameras (split by --mix, or 3:2:2:1 towers:drones:bodycams:fixed;
    /// default 4, or the sum of --mix).
    #[arg(long)]
    cameras: Option<usize>,
    /// e.g. `towers=24,drones=16,bodycams=16,fixed=8`.
    #[arg(long)]
    mix: Option<String>,
    /// Loopback address to serve on.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// RTSP port (0 picks a free one; see --emit-gateway-config).
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// `full` (720p towers, drones, fixed; 480p body cameras) or `small` (half).
    #[arg(long, default_value = "full", value_parser = ["full", "small"])]
    size: String,
    /// Require RTSP digest authentication with USER:PASSWORD.
    #[arg(long)]
    auth: Option<String>,
    /// Incident script: a TOML file, or `tower-01:smoke@20,drone-01:flood@35`.
    #[arg(long)]
    incidents: Option<String>,
    /// Where to write the incidents' ground truth (JSON), as they start.
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// Write a lookout configuration for exactly these cameras.
    #[arg(long)]
    emit_gateway_config: Option<PathBuf>,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    cache: PathBuf,
    /// Stop by itself after this long (`20s`, `5m`, or plain seconds).
    #[arg(long = "duration", alias = "duration-s", value_name = "DURATION", value_parser = secs_f64)]
    duration_s: Option<f64>,
    /// Write the run's summary (JSON) here when stopping.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Encode H.264 cameras with B-frames and High profile.
    #[arg(long)]
    bframes: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            duration_s,
            workdir,
            size,
            cache,
        } => demo::run(demo::DemoArgs {
            workdir,
            duration: duration_s.map(Duration::from_secs),
            size,
            cache,
        }),
        Command::Fleet(f) => run_fleet(f),
        Command::CheckReport { files } => check::run(&files),
        Command::Soak(args) => soak::run(args).map(|_| ()),
        Command::Capacity {
            slo,
            start,
            max,
            size,
            duration_s,
            warmup_s,
            incidents,
            detector_config,
            cache,
            workdir,
            report,
        } => capacity::Slo::parse(&slo).and_then(|slo| {
            capacity::run(capacity::CapacityArgs {
                slo,
                start,
                max,
                size,
                duration: Duration::from_secs(duration_s.clamp(5, 86_400)),
                warmup: Duration::from_secs(warmup_s),
                incidents,
                detector_config,
                cache,
                workdir,
                report,
            })
        }),
        Command::Link {
            listen,
            to,
            rate_kbps,
            delay_ms,
            jitter_ms,
            loss,
            reorder,
            queue_ms,
            partitions,
            seed,
            duration_s,
            stats,
        } => run_link(
            listen,
            to,
            rate_kbps,
            [delay_ms, jitter_ms, queue_ms],
            [loss, reorder],
            &partitions,
            seed,
            duration_s,
            stats,
        ),
        Command::Relay {
            cameras,
            mix,
            size,
            duration_s,
            warmup_s,
            incidents,
            detector_config,
            no_detect,
            link,
            link_rate_kbps,
            link_delay_ms,
            link_loss,
            link_queue_ms,
            link_jitter_ms,
            link_reorder,
            link_partitions,
            center_outage,
            sensor_alerts_per_s,
            latency_budget_ms,
            cascade,
            subscribe,
            baselines,
            cache,
            workdir,
            report,
            strict,
        } => run_relay(
            relay::RelayArgs {
                cameras,
                mix,
                size,
                duration: Duration::from_secs(duration_s.clamp(5, 86_400)),
                incidents,
                detector_config: (!no_detect).then_some(detector_config),
                cache,
                workdir,
                warmup: Duration::from_secs(warmup_s),
                link: None,
                link_name: String::new(),
                partitions: Vec::new(),
                center_outage: None,
                cascade,
                subscribe,
                baselines,
                latency_budget_ms,
                sensor_alerts_per_s,
                report,
                strict,
            },
            RelayLink {
                profile: link,
                rate_kbps: link_rate_kbps,
                delay_ms: link_delay_ms,
                loss: link_loss,
                queue_ms: link_queue_ms,
                jitter_ms: link_jitter_ms,
                reorder: link_reorder,
                partitions: link_partitions,
                center_outage,
            },
        ),
        Command::Detect {
            cameras,
            mix,
            size,
            duration_s,
            incidents,
            detector_config,
            sampling,
            cache,
            workdir,
            bench_seconds,
            report,
            strict,
        } => detect::run(detect::DetectArgs {
            cameras,
            mix,
            size,
            duration: Duration::from_secs_f64(duration_s.clamp(10.0, 86_400.0)),
            incidents,
            detector_config,
            sampling,
            cache,
            workdir,
            bench_seconds: bench_seconds.clamp(0.2, 600.0),
            report,
        })
        .and_then(|r| {
            let s = &r.incidents;
            if strict && (s.missed + s.false_alerts + s.duplicate_alerts > 0) {
                anyhow::bail!(
                    "{} missed, {} false and {} duplicate alerts",
                    s.missed,
                    s.false_alerts,
                    s.duplicate_alerts
                );
            }
            Ok(())
        }),
        Command::Render {
            dataset,
            seeds,
            size,
            kind,
            lighting,
            contact_sheet,
            sheet_seed,
        } => {
            let only = lookout_scene::Only {
                kind: kind
                    .as_deref()
                    .and_then(lookout_scene::SceneKind::from_name),
                lighting: lighting
                    .as_deref()
                    .and_then(lookout_scene::Lighting::from_name),
            };
            render(dataset, &seeds, size, only, contact_sheet, sheet_seed)
        }
        Command::FleetCheck {
            cameras,
            mix,
            size,
            duration_s,
            cache,
            workdir,
            min_on_time,
            max_cpu_cores,
        } => fleet::check::run(fleet::check::CheckArgs {
            cameras,
            mix,
            size,
            duration: Duration::from_secs_f64(duration_s.clamp(1.0, 86_400.0)),
            cache,
            workdir,
            min_on_time,
            max_cpu_cores,
        })
        .map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The relay benchmark's link and fault options, as typed.
struct RelayLink {
    profile: String,
    rate_kbps: Option<u64>,
    delay_ms: f64,
    loss: f64,
    queue_ms: f64,
    jitter_ms: f64,
    reorder: f64,
    partitions: String,
    center_outage: Option<String>,
}

fn run_relay(mut args: relay::RelayArgs, mut l: RelayLink) -> anyhow::Result<()> {
    {
        match l.profile.as_str() {
            "cellular" => {
                l.rate_kbps = Some(20_000);
                l.delay_ms = 20.0;
                l.loss = 0.01;
            }
            "satellite" => {
                l.rate_kbps = Some(4_000);
                l.delay_ms = 300.0;
                l.loss = 0.02;
            }
            _ => {}
        }
        args.link_name = l.profile.clone();
        for (name, v) in [
            ("--link-delay-ms", l.delay_ms),
            ("--link-queue-ms", l.queue_ms),
            ("--link-jitter-ms", l.jitter_ms),
        ] {
            anyhow::ensure!(
                v.is_finite() && (0.0..=60_000.0).contains(&v),
                "{name} must be between 0 and 60000"
            );
        }
        anyhow::ensure!(
            (0.0..=1.0).contains(&l.loss),
            "--link-loss must be between 0 and 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&l.reorder),
            "--link-reorder must be between 0 and 1"
        );
        let partitions = link::parse_partitions(&l.partitions)?;
        let impaired = l.rate_kbps.is_some_and(|r| r > 0)
            || l.delay_ms > 0.0
            || l.loss > 0.0
            || l.jitter_ms > 0.0
            || l.reorder > 0.0
            || !partitions.is_empty();
        if impaired {
            let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
            args.link = Some(link::Impairment {
                rate_bps: l.rate_kbps.unwrap_or(0).saturating_mul(1000),
                delay: ms(l.delay_ms),
                loss: l.loss,
                queue: ms(l.queue_ms),
                jitter: ms(l.jitter_ms),
                reorder: l.reorder,
                ..Default::default()
            });
            args.partitions = partitions;
        }
        if let Some(spec) = &l.center_outage {
            let (at, len) = spec
                .split_once('+')
                .ok_or_else(|| anyhow::anyhow!("--center-outage: expected S+L, e.g. 20+5"))?;
            let secs = |v: &str| -> anyhow::Result<Duration> {
                let s: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--center-outage: `{v}` is not a number"))?;
                anyhow::ensure!(
                    s.is_finite() && (0.0..=3600.0).contains(&s),
                    "--center-outage: {s} out of range"
                );
                Ok(Duration::from_secs_f64(s))
            };
            args.center_outage = Some((secs(at)?, secs(len)?));
        }
    }
    relay::run(args).map(|_| ())
}

#[allow(clippy::too_many_arguments)]
fn run_link(
    listen: std::net::SocketAddr,
    to: std::net::SocketAddr,
    rate_kbps: u64,
    [delay_ms, jitter_ms, queue_ms]: [f64; 3],
    [loss, reorder]: [f64; 2],
    partitions: &str,
    seed: u64,
    duration_s: Option<f64>,
    stats: Option<PathBuf>,
) -> anyhow::Result<()> {
    for (name, v) in [
        ("--delay-ms", delay_ms),
        ("--jitter-ms", jitter_ms),
        ("--queue-ms", queue_ms),
    ] {
        anyhow::ensure!(
            v.is_finite() && (0.0..=60_000.0).contains(&v),
            "{name} must be between 0 and 60000"
        );
    }
    for (name, v) in [("--loss", loss), ("--reorder", reorder)] {
        anyhow::ensure!((0.0..=1.0).contains(&v), "{name} must be between 0 and 1");
    }
    let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
    let imp = link::Impairment {
        rate_bps: rate_kbps.saturating_mul(1000),
        delay: ms(delay_ms),
        jitter: ms(jitter_ms),
        loss,
        reorder,
        queue: ms(queue_ms),
        ..Default::default()
    };
    let duration = match duration_s {
        Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d.min(86_400.0))),
        Some(_) => anyhow::bail!("--duration must be above 0"),
        None => None,
    };
    let relay = link::Link::start(link::LinkArgs {
        listen,
        server: to,
        up: imp.clone(),
        down: imp,
        partitions: link::parse_partitions(partitions)?,
        seed,
        duration,
    })?;
    println!("link: relaying {} -> {to}", relay.addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst))?;
    }
    while relay.running() && !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = relay.stop();
    let text =
        serde_json::to_string_pretty(&provenance::Stamped::new(provenance::ReportKind::Link, &s))?;
    if let Some(p) = stats {
        std::fs::write(&p, &text)?;
    }
    // Whoever started the relay may have stopped reading its output.
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(())
}

fn run_fleet(f: FleetCli) -> anyhow::Result<()> {
    let auth = match f.auth {
        Some(a) => {
            let (u, p) = a
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--auth expects USER:PASSWORD"))?;
            Some((u.to_string(), p.to_string()))
        }
        None => None,
    };
    let incidents = match f.incidents {
        Some(spec) => fleet::incidents::parse(&spec)?,
        None => Vec::new(),
    };
    fleet::run(fleet::FleetArgs {
        cameras: f.cameras.unwrap_or(if f.mix.is_some() { 0 } else { 4 }),
        mix: f.mix,
        address: f.address,
        port: f.port,
        size: if f.size == "small" {
            fleet::profile::Size::Small
        } else {
            fleet::profile::Size::Full
        },
        auth,
        incidents,
        ground_truth: f.ground_truth,
        emit_gateway_config: f.emit_gateway_config,
        cache: f.cache,
        duration: f
            .duration_s
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(Duration::from_secs_f64),
        summary: f.summary,
        bframes: f.bframes,
    })
    .map(|_| ())
}

fn render(
    dataset: Option<PathBuf>,
    seeds: &str,
    size: u32,
    only: lookout_scene::Only,
    contact_sheet: Option<PathBuf>,
    sheet_seed: u64,
) -> anyhow::Result<()> {
    if dataset.is_none() && contact_sheet.is_none() {
        anyhow::bail!("nothing to render: give --dataset DIR and/or --contact-sheet FILE");
    }
    if let Some(dir) = dataset {
        let (a, b) = seeds
            .split_once("..")
            .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
            .filter(|(a, b)| a < b)
            .ok_or_else(|| {
                anyhow::anyhow!("--seeds `{seeds}`: expected START..END with START < END")
            })?;
        if lookout_scene::seeds::touches_benchmark(&(a..b)) {
            let r = lookout_scene::seeds::BENCHMARK;
            anyhow::bail!(
                "--seeds `{seeds}`: seeds {}..{} are the fleet's benchmark scenes; \
                 stills from them would let a model see what it is benchmarked on",
                r.start,
                r.end
            );
        }
        std::fs::create_dir_all(&dir)?;
        let started = std::time::Instant::now();
        let s = lookout_scene::write_dataset_only(&dir, a..b, size, only)?;
        println!(
            "render: {} stills ({} smoke, {} flood, {} none) in {} in {:.1} s",
            s.images,
            s.smoke,
            s.flood,
            s.none,
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = contact_sheet {
        lookout_scene::contact_sheet(&path, sheet_seed, 180)?;
        println!("render: contact sheet {}", path.display());
    }
    Ok(())
}

/// A `--duration`/`--warmup` value (`30s`, `2m`, `1m30s` or plain seconds),
/// in whole seconds, rounded.
fn secs_u64(text: &str) -> anyhow::Result<u64> {
    Ok(soak::parse_duration(text)?.as_secs_f64().round() as u64)
}

/// A `--duration` value (`30s`, `2m`, `1m30s` or plain seconds), in seconds.
fn secs_f64(text: &str) -> anyhow::Result<f64> {
    Ok(soak::parse_duration(text)?.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_times(args: &[&str]) -> (u64, u64) {
        let cli = Cli::try_parse_from(args).expect("parses");
        match cli.command {
            Command::Relay {
                duration_s,
                warmup_s,
                ..
            } => (duration_s, warmup_s),
            _ => panic!("not the run command"),
        }
    }

    #[test]
    fn durations_take_units_and_the_old_seconds_flags() {
        let p = ["lookout-loadtest", "run"];
        assert_eq!(relay_times(&p), (60, 10));
        assert_eq!(
            relay_times(&[&p[..], &["--duration", "30s", "--warmup", "5s"]].concat()),
            (30, 5)
        );
        assert_eq!(
            relay_times(&[&p[..], &["--duration", "2m", "--warmup", "1m30s"]].concat()),
            (120, 90)
        );
        assert_eq!(
            relay_times(&[&p[..], &["--duration-s", "45", "--warmup-s", "3"]].concat()),
            (45, 3)
        );
        for bad in ["30x", "", "-5", "s"] {
            assert!(
                Cli::try_parse_from([&p[..], &["--duration", bad]].concat()).is_err(),
                "--duration {bad:?} should be refused"
            );
        }
    }
}
