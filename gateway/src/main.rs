//! The `lookout` command line: the daemon, configuration checks, version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lookout::config::{Config, LogFormat, Transport};
use lookout::detect::{bench, files, runtime};
use lookout::ingest::probe::{self, ProbeOptions};
use lookout::{check, daemon, logging};

#[derive(Parser)]
#[command(
    name = "lookout",
    about = "Video and alert fusion gateway for emergency command centers",
    disable_version_flag = true
)]
struct Cli {
    /// Print lookout's version and the GStreamer and ONNX Runtime it loads.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Log format (overrides `gateway.log_format`).
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Run the command center: listen for gateways (QUIC, mutual TLS), store
    /// their alerts in the SQLite ledger, keep every camera's latest GOP, and
    /// serve the HTTP API for operators and the video wall.
    Center {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the operator CA (once) and issue command-center and gateway
    /// certificates from it for the relay's mutual TLS.
    Certs(lookout::certs::CertsArgs),
    /// Check configuration files without starting anything.
    CheckConfig {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Connect to one RTSP camera for a few seconds and report its codec,
    /// picture size, frame rate, GOP length, bitrate, transport and
    /// timestamp source. Credentials may be given in the URL
    /// (rtsp://user:password@host/...); they are never printed.
    Probe {
        url: String,
        /// Seconds to measure once video flows.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, value_parser = ["auto", "tcp", "udp"], default_value = "auto")]
        transport: String,
        /// Seconds to wait for the first frame (reconnects included).
        #[arg(long, default_value_t = 10.0)]
        connect_seconds: f64,
    },
    /// Run a configured detector on image files (PNG, JPEG) and print one
    /// JSON line per image with its detections (boxes in image pixels), to
    /// validate a model and its `[[detector]]` entry before deploying it.
    Detect {
        /// A gateway configuration with the `[[detector]]` entry.
        #[arg(long, short)]
        config: PathBuf,
        /// The detector's id (needed when the file has several).
        #[arg(long)]
        detector: Option<String>,
        /// ONNX Runtime intra-op threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Measure a configured detector's throughput through the gateway's own
    /// path (queue, batching, preprocessing, inference, decoding, alerts)
    /// next to bare ONNX Runtime on the same model and batch size, in one
    /// run; prints HDR-histogram percentiles of per-batch time and the ratio.
    BenchDetector(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, short)]
    config: PathBuf,
    #[arg(long)]
    detector: Option<String>,
    /// Seconds per measurement per round.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Rounds (raw and detector alternate; short, many rounds let a noisy
    /// neighbour's bursts fall on both sides alike).
    #[arg(long, default_value_t = 12)]
    rounds: usize,
    /// Frames per batch (default: the detector's max_batch).
    #[arg(long)]
    batch: Option<usize>,
    /// ONNX Runtime intra-op threads (default: the detector's `threads`).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the detector path fills the next batch's tensor: auto, inline
    /// or overlap (default: the detector's `preprocess`).
    #[arg(long)]
    preprocess: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        print_version();
        return ExitCode::SUCCESS;
    }
    match cli.command {
        Some(Command::Run { config, log_format }) => run(config, log_format),
        Some(Command::CheckConfig { files }) => check_config(&files),
        Some(Command::Center { config }) => center(config),
        Some(Command::Certs(args)) => match lookout::certs::run(&args) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lookout certs: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Probe {
            url,
            seconds,
            transport,
            connect_seconds,
        }) => probe(url, seconds, connect_seconds, &transport),
        Some(Command::Detect {
            config,
            detector,
            threads,
            images,
        }) => detect(&config, detector.as_deref(), threads, &images),
        Some(Command::BenchDetector(args)) => bench_detector(&args),
        None => {
            eprintln!("lookout: no command given; try `lookout --help`");
            ExitCode::from(2)
        }
    }
}

fn print_version() {
    println!("lookout {}", env!("CARGO_PKG_VERSION"));
    match gstreamer::init() {
        Ok(()) => println!("GStreamer {}", lookout::gstreamer_version()),
        Err(e) => println!("GStreamer: cannot initialise: {e}"),
    }
    match runtime::load(None) {
        Ok(rt) => println!("ONNX Runtime {} ({})", rt.version, rt.library.display()),
        Err(e) => println!("ONNX Runtime: {e}"),
    }
}

fn run(config: PathBuf, log_format: Option<String>) -> ExitCode {
    // Log format comes from the file unless overridden; a file that does not
    // parse is reported on stderr by `daemon::run` anyway.
    let format = match log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Text,
        None => Config::load(&config)
            .map(|c| c.gateway.log_format)
            .unwrap_or_default(),
    };
    logging::init(format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lookout")
        .on_thread_start(|| lookout::threads::enter(lookout::threads::Role::Runtime))
        .on_thread_stop(lookout::threads::leave)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lookout: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(daemon::run(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lookout: {e:#}");
            ExitCode::FAILURE
        }
    };
    // A GStreamer teardown a camera wedged is left on a blocking thread
    // (`ingest/camera.rs`); it must not keep the process from exiting.
    rt.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}

/// How long, after the daemon has shut down, the process waits for blocking
/// threads still running before it exits anyway.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

fn center(config: PathBuf) -> ExitCode {
    let format = lookout::center::config::CenterConfig::load(&config)
        .map(|c| c.center.log_format)
        .unwrap_or_default();
    logging::init(format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lookout-center")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lookout center: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(lookout::center::run(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lookout center: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn probe(url: String, seconds: f64, connect_seconds: f64, transport: &str) -> ExitCode {
    logging::init(LogFormat::Text);
    for (flag, v) in [
        ("--seconds", seconds),
        ("--connect-seconds", connect_seconds),
    ] {
        if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
            eprintln!("lookout probe: {flag} must be above 0 and at most 3600");
            return ExitCode::from(2);
        }
    }
    let transport = match transport {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        _ => Transport::Auto,
    };
    let opts = ProbeOptions {
        url,
        transport,
        duration: Duration::from_secs_f64(seconds),
        connect_limit: Duration::from_secs_f64(connect_seconds),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lookout: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(probe::probe(&opts)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lookout probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn detect(config: &Path, detector: Option<&str>, threads: usize, images: &[PathBuf]) -> ExitCode {
    let config = match check::check_file(config) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "lookout detect: {}: {} problem(s)",
                config.display(),
                problems.0.len()
            );
            return ExitCode::from(2);
        }
    };
    let opened = files::pick_detector(&config, detector)
        .and_then(|d| files::open_detector(&config, d, threads.clamp(1, 64)));
    let (mut engine, identity) = match opened {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lookout detect: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match files::run(
        &mut engine,
        &identity,
        images,
        &mut stdout.lock(),
        &mut stderr.lock(),
    ) {
        Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!(
                "lookout detect: {} of {} image(s) could not be read",
                s.failed,
                s.failed + s.images
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("lookout detect: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench_detector(args: &BenchArgs) -> ExitCode {
    let (seconds, rounds, batch) = (args.seconds, args.rounds, args.batch);
    let preprocess = match args.preprocess.as_deref() {
        None => None,
        Some("auto") => Some(lookout::config::Preprocess::Auto),
        Some("inline") => Some(lookout::config::Preprocess::Inline),
        Some("overlap") => Some(lookout::config::Preprocess::Overlap),
        Some(other) => {
            eprintln!(
                "lookout bench-detector: --preprocess {other:?}: expected auto, inline or overlap"
            );
            return ExitCode::from(2);
        }
    };
    let valid = seconds.is_finite() && seconds > 0.0 && seconds <= 600.0;
    if !valid || !(1..=100).contains(&rounds) {
        eprintln!("lookout bench-detector: --seconds must be in (0, 600] and --rounds in 1..=100");
        return ExitCode::from(2);
    }
    let config = match check::check_file(&args.config) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(2);
        }
    };
    let picked = files::pick_detector(&config, args.detector.as_deref()).map(|d| {
        let mut d = d.clone();
        if let Some(b) = batch {
            d.max_batch = b.clamp(1, 64);
        }
        if let Some(p) = preprocess {
            d.preprocess = p;
        }
        d
    });
    let d = match picked {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lookout bench-detector: {e}");
            return ExitCode::from(2);
        }
    };
    let threads = args
        .threads
        .or(d.threads)
        .unwrap_or_else(lookout::detect::service::default_threads)
        .clamp(1, 64);
    let (mut engine, identity) = match files::open_detector(&config, &d, threads) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lookout bench-detector: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = bench::BenchOptions {
        seconds,
        rounds,
        ..Default::default()
    };
    let report = match bench::run(&mut engine, &identity, threads, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lookout bench-detector: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "detector {} (model {} {}), batch {}, input {}x{}, work frames {}x{}, {} ORT threads, {} rounds",
        report.detector,
        report.model.name,
        report.model.version,
        report.batch,
        report.input.0,
        report.input.1,
        report.frame.0,
        report.frame.1,
        report.threads,
        report.rounds
    );
    for (name, side) in [
        ("ORT raw       ", &report.ort_raw),
        ("detector path ", &report.detector_path),
    ] {
        let p = &side.batch_ms;
        println!(
            "  {name} {:>9.1} frames/s   per batch ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (n={})",
            side.frames_per_s, p.p50, p.p90, p.p99, p.p999, p.max, p.count
        );
    }
    let sm = &report.stage_mean_ms;
    println!(
        "  detector path, mean per batch ms: preprocess {:.3} ({})  inference {:.3}  postprocess {:.3}  other {:.3}",
        sm.preprocess,
        if report.preprocessing == "overlap" {
            "own thread, overlapped"
        } else {
            "in line, between runs"
        },
        sm.inference,
        sm.postprocess,
        sm.other
    );
    println!(
        "  detector path / ORT raw = {:.3} ({:.1}%)",
        report.ratio,
        report.ratio * 100.0
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("lookout bench-detector: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn check_config(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        if check::is_center_file(f) {
            match check::check_center_file(f) {
                Ok(c) => println!(
                    "{}: ok (command center `{}`, {} upstreams)",
                    f.display(),
                    c.center.id,
                    c.upstreams.len()
                ),
                Err(problems) => {
                    failed = true;
                    print_problems(f, &problems);
                }
            }
            continue;
        }
        match check::check_file(f) {
            Ok(c) => {
                for w in check::warnings(f, &c) {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: ok ({} cameras, {} detectors, {} upstreams)",
                    f.display(),
                    c.cameras.len(),
                    c.detectors.len(),
                    c.upstreams.len()
                )
            }
            Err(problems) => {
                failed = true;
                print_problems(f, &problems);
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_problems(file: &Path, problems: &lookout::config::Problems) {
    for p in &problems.0 {
        eprintln!("{p}");
    }
    eprintln!("{}: {} problem(s)", file.display(), problems.0.len());
}
