//! `lookout-loadtest`: the camera-fleet simulator, the scene renderer's
//! command line and the load/latency benchmark driver. This file hands
//! each subcommand (`cli`) to the module that runs it.

/// `write!` into a `String` being built (an HTML page, a configuration):
/// `put!(out, "…", …)`. A `String` takes any text, and formatting into it fails
/// only if a value's `Display` does, which none of the numbers and text these
/// files format can: a failure is a bug, not a condition to handle.
macro_rules! put {
    ($out:expr, $($fmt:tt)*) => {{
        use std::fmt::Write as _;
        if let Err(e) = write!($out, $($fmt)*) {
            unreachable!("formatting into a String failed: {e}");
        }
    }};
}

/// [`put!`] with a newline after the text, as `writeln!`.
macro_rules! putln {
    ($out:expr, $($fmt:tt)*) => {{
        use std::fmt::Write as _;
        if let Err(e) = writeln!($out, $($fmt)*) {
            unreachable!("formatting into a String failed: {e}");
        }
    }};
}

mod capacity;
mod check;
mod cli;
mod demo;
mod detect;
mod faults;
mod fleet;
mod html;
mod link;
mod procs;
mod prom;
mod provenance;
mod relay;
mod report;
mod scoring;
mod soak;
mod stack;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command, LinkProfile};

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Demo(c) => demo::run(demo::DemoArgs {
            workdir: c.workdir,
            duration: c.duration_s.map(Duration::from_secs),
            size: c.size.as_str().to_string(),
            cache: c.cache,
        }),
        Command::Fleet(f) => run_fleet(f),
        Command::CheckReport(c) => check::run(&c.files),
        Command::Soak(args) => soak::run(args).map(|_| ()),
        Command::Capacity(c) => capacity(c),
        Command::Link(c) => run_link(c),
        Command::Relay(c) => relay(c),
        Command::Detect(c) => detect(c),
        Command::Render(c) => render(c),
        Command::FleetCheck(c) => fleet::check::run(fleet::check::CheckArgs {
            cameras: c.cameras,
            mix: c.mix,
            size: c.size.as_str().to_string(),
            duration: Duration::from_secs_f64(c.duration_s.clamp(1.0, 86_400.0)),
            cache: c.cache,
            workdir: c.workdir,
            min_on_time: c.min_on_time,
            max_cpu_cores: c.max_cpu_cores,
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

fn capacity(c: cli::CapacityCli) -> anyhow::Result<()> {
    let slo = capacity::Slo::parse(&c.slo)?;
    capacity::run(capacity::CapacityArgs {
        slo,
        start: c.start,
        max: c.max,
        size: c.size.as_str().to_string(),
        duration: Duration::from_secs(c.duration_s.clamp(5, 86_400)),
        warmup: Duration::from_secs(c.warmup_s),
        incidents: c.incidents,
        detector_config: c.detector_config,
        cache: c.cache,
        workdir: c.workdir,
        report: c.report,
    })
}

fn detect(c: cli::DetectCli) -> anyhow::Result<()> {
    let r = detect::run(detect::DetectArgs {
        cameras: c.cameras,
        mix: c.mix,
        size: c.size.as_str().to_string(),
        duration: Duration::from_secs_f64(c.duration_s.clamp(10.0, 86_400.0)),
        incidents: c.incidents,
        detector_config: c.detector_config,
        sampling: c.sampling,
        cache: c.cache,
        workdir: c.workdir,
        bench_seconds: c.bench_seconds.clamp(0.2, 600.0),
        report: c.report,
    })?;
    let s = &r.incidents;
    if c.strict && (s.missed + s.false_alerts + s.duplicate_alerts > 0) {
        anyhow::bail!(
            "{} missed, {} false and {} duplicate alerts",
            s.missed,
            s.false_alerts,
            s.duplicate_alerts
        );
    }
    Ok(())
}

/// `run`/`relay`: the link preset and the --link-* and fault options
/// checked and turned into the run's arguments.
fn relay(c: cli::RelayCli) -> anyhow::Result<()> {
    let (mut rate_kbps, mut delay_ms, mut loss) = (c.link_rate_kbps, c.link_delay_ms, c.link_loss);
    match c.link {
        LinkProfile::Cellular => {
            rate_kbps = Some(20_000);
            delay_ms = 20.0;
            loss = 0.01;
        }
        LinkProfile::Satellite => {
            rate_kbps = Some(4_000);
            delay_ms = 300.0;
            loss = 0.02;
        }
        LinkProfile::Loopback | LinkProfile::Custom => {}
    }
    for (name, v) in [
        ("--link-delay-ms", delay_ms),
        ("--link-queue-ms", c.link_queue_ms),
        ("--link-jitter-ms", c.link_jitter_ms),
    ] {
        anyhow::ensure!(
            v.is_finite() && (0.0..=60_000.0).contains(&v),
            "{name} must be between 0 and 60000"
        );
    }
    anyhow::ensure!(
        (0.0..=1.0).contains(&loss),
        "--link-loss must be between 0 and 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&c.link_reorder),
        "--link-reorder must be between 0 and 1"
    );
    let partitions = link::parse_partitions(&c.link_partitions)?;
    let impaired = rate_kbps.is_some_and(|r| r > 0)
        || delay_ms > 0.0
        || loss > 0.0
        || c.link_jitter_ms > 0.0
        || c.link_reorder > 0.0
        || !partitions.is_empty();
    let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
    let impairment = impaired.then(|| link::Impairment {
        rate_bps: rate_kbps.unwrap_or(0).saturating_mul(1000),
        delay: ms(delay_ms),
        loss,
        queue: ms(c.link_queue_ms),
        jitter: ms(c.link_jitter_ms),
        reorder: c.link_reorder,
        ..Default::default()
    });
    let center_outage = match &c.center_outage {
        Some(spec) => Some(center_outage(spec)?),
        None => None,
    };
    relay::run(relay::RelayArgs {
        cameras: c.cameras,
        mix: c.mix,
        size: c.size.as_str().to_string(),
        duration: Duration::from_secs(c.duration_s.clamp(5, 86_400)),
        incidents: c.incidents,
        detector_config: (!c.no_detect).then_some(c.detector_config),
        cache: c.cache,
        workdir: c.workdir,
        warmup: Duration::from_secs(c.warmup_s),
        link: impairment,
        link_name: c.link.as_str().to_string(),
        partitions: if impaired { partitions } else { Vec::new() },
        center_outage,
        cascade: c.cascade,
        subscribe: c.subscribe.as_str().to_string(),
        baselines: c.baselines,
        latency_budget_ms: c.latency_budget_ms,
        sensor_alerts_per_s: c.sensor_alerts_per_s,
        report: c.report,
        clips: !c.no_clips,
        strict: c.strict,
    })
    .map(|_| ())
}

/// `--center-outage S+L`: when and how long, in seconds.
fn center_outage(spec: &str) -> anyhow::Result<(Duration, Duration)> {
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
    Ok((secs(at)?, secs(len)?))
}

/// `link`: the emulator on its own until stopped or `--duration`.
fn run_link(c: cli::LinkCli) -> anyhow::Result<()> {
    let cli::LinkCli {
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
    } = c;
    let partitions = partitions.as_str();
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
    // Whoever started the relay may have stopped reading its output: a closed
    // stdout loses nothing asked for (`--stats` above is where to keep them).
    use std::io::Write;
    writeln!(std::io::stdout(), "{text}").ok();
    Ok(())
}

/// `fleet`: simulated cameras until stopped or `--duration`.
fn run_fleet(f: cli::FleetCli) -> anyhow::Result<()> {
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
        size: match f.size {
            cli::Size::Small => fleet::profile::Size::Small,
            cli::Size::Full => fleet::profile::Size::Full,
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
        rtmp_port: f.rtmp_port,
        sip_port: f.sip_port,
    })
    .map(|_| ())
}

/// `render`: labelled stills and/or a contact sheet.
fn render(c: cli::RenderCli) -> anyhow::Result<()> {
    let only = lookout_scene::Only {
        kind: c
            .kind
            .as_deref()
            .and_then(lookout_scene::SceneKind::from_name),
        lighting: c
            .lighting
            .as_deref()
            .and_then(lookout_scene::Lighting::from_name),
    };
    let cli::RenderCli {
        dataset,
        seeds,
        size,
        contact_sheet,
        sheet_seed,
        ..
    } = c;
    let seeds = seeds.as_str();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_times(args: &[&str]) -> (u64, u64) {
        let cli = Cli::try_parse_from(args).expect("parses");
        match cli.command {
            Command::Relay(r) => (r.duration_s, r.warmup_s),
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
