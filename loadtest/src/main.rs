//! `lookout-loadtest`: the camera-fleet simulator, the scene renderer's
//! command line and the load/latency benchmark driver.

mod demo;
mod procs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
        /// Stop by itself after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration_s: Option<u64>,
        /// Folder for logs and state.
        #[arg(long, default_value = ".lookout/demo")]
        workdir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo {
            duration_s,
            workdir,
        } => demo::run(demo::DemoArgs {
            workdir,
            duration: duration_s.map(Duration::from_secs),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}
