//! The `lookout` command line: the daemon, configuration checks, version.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lookout::config::{Config, LogFormat, Transport};
use lookout::detect::runtime;
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
        Some(Command::Probe {
            url,
            seconds,
            transport,
            connect_seconds,
        }) => probe(url, seconds, connect_seconds, &transport),
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
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lookout: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(daemon::run(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lookout: {e:#}");
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

fn check_config(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        match check::check_file(f) {
            Ok(c) => println!(
                "{}: ok ({} cameras, {} detectors, {} upstreams)",
                f.display(),
                c.cameras.len(),
                c.detectors.len(),
                c.upstreams.len()
            ),
            Err(problems) => {
                failed = true;
                for p in &problems.0 {
                    eprintln!("{p}");
                }
                eprintln!("{}: {} problem(s)", f.display(), problems.0.len());
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
