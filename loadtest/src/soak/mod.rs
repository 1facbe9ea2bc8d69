//! `lookout-loadtest soak`: the long run that shows lookout neither leaks
//! nor slows down over time.
//!
//! It starts the same processes as `run` (`relay.rs`), with the setup,
//! end-of-run drain and ledger check both share (`stack.rs`): a simulated
//! fleet, a command center and a gateway relaying to it over QUIC with
//! mutual TLS, each a separate process. Incidents are scripted all along
//! the run on rotating cameras, so the alert path (detection, outbox,
//! ledger) works throughout and not only in the first minute. Every
//! interval it samples, from `/proc`, each process's resident memory, open
//! file descriptors, threads and CPU; from the gateway's and the center's
//! metrics, the frames relayed in the interval; from the center's
//! `POST /api/latency/reset`, the relay and capture → center percentiles of
//! the interval; and the alerts raised and stored so far. At the end it
//! checks the center's ledger as `run` does and computes the verdict
//! described in `docs/SOAK.md`: memory growth after warm-up under 5 %, no
//! sustained rise of file descriptors or threads, p99 latency of the last
//! intervals not degraded against the first, every alert stored exactly
//! once, every incident alerted.

mod judge;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::Value;

use crate::cli::parse_duration;
use crate::fleet::incidents::Onset;
use crate::procs::{self, Proc};
use crate::prom;
use crate::report::{machine, utc_now};
use crate::scoring::{LedgerCheck, read_onsets};
use crate::stack::{
    self, EndOfRun, FleetRun, Http, center_config, detector_block, mix_counts, planned_ids,
    start_center, start_fleet, start_gateway,
};
use crate::stats::{Percentiles, center_percentiles, mean};

use judge::verdict;
pub use report::SoakReport;
use report::{
    AlertCounts, CenterVideo, Heap, HeapByProcess, IntervalFrames, IntervalLatency, PerProcess,
    Sample, SoakAlerts, SoakFrames, SoakSetup,
};
use report::{print_report, print_sample, render_html};

/// Samples averaged at each end of the post-warm-up series.
const WINDOW: usize = 3;
/// Resident memory may grow by less than this share after warm-up.
const RSS_GROWTH_LIMIT: f64 = 0.05;
/// A later p99 fails only when it is both this many times the early one…
const LATENCY_RATIO_LIMIT: f64 = 2.0;
/// …and this many milliseconds above it (small p99s jitter by whole ms).
const LATENCY_SLACK_MS: f64 = 5.0;
/// The first incident comes no earlier than this after the fleet starts…
const FIRST_INCIDENT: Duration = Duration::from_secs(20);
/// …and the last at least this long before the end, so it can be alerted.
const LAST_INCIDENT_MARGIN: Duration = Duration::from_secs(15);

/// `soak`'s options (clap parses them straight into this).
#[derive(clap::Args)]
pub struct SoakArgs {
    /// Number of cameras (split 3:2:2:1 towers:drones:bodycams:fixed).
    #[arg(long, default_value_t = 64)]
    pub cameras: usize,
    /// e.g. `towers=24,drones=16,bodycams=16,fixed=8` (overrides --cameras); a kind with
    /// `-rtmp` pushes over RTMP, with `-gb` is a GB/T 28181 device (`drones-rtmp=8,bodycams-gb=16`);
    /// `platform-gb=16`: fixed cameras shared by one GB/T 28181 lower platform.
    #[arg(long)]
    pub mix: Option<String>,
    /// `full` (720p towers, drones, fixed; 480p body cameras) or `small` (half).
    #[arg(long, default_value = "full", value_parser = ["full", "small"])]
    pub size: String,
    /// How long: `30m`, `90s`, `1h`, or plain seconds.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time between samples.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Samples before this are shown but not judged.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Time between scripted incidents (rotating over towers and drones).
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub incident_every: Duration,
    /// Gateway configuration with the [[detector]] to run on keyframes.
    #[arg(long, default_value = "models/smoke_flood.toml")]
    pub detector_config: PathBuf,
    /// Folder of encoded clips (made once, reused).
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
    /// Work folder: certificates, configurations, the center's storage, logs.
    #[arg(long, default_value = ".lookout/soak")]
    pub workdir: PathBuf,
    /// Write the report (JSON) here, and the HTML page next to it.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Exit 1 when the verdict fails.
    #[arg(long)]
    pub strict: bool,
}

/// Incidents spread over the run: the first at `max(every / 2, 20 s)`, then
/// one every `every`, the last at least 15 s before the end; alternately
/// smoke on a tower and flood on a drone, each camera once (the fleet plays
/// one incident per camera, and it stays in the picture). Stops early when
/// the towers and drones run out.
pub fn incident_script(
    ids: &[String],
    duration: Duration,
    every: Duration,
) -> Vec<(String, &'static str, u64)> {
    let towers: Vec<&String> = ids.iter().filter(|i| i.starts_with("tower")).collect();
    let drones: Vec<&String> = ids.iter().filter(|i| i.starts_with("drone")).collect();
    let (mut next_tower, mut next_drone) = (0, 0);
    let mut out = Vec::new();
    let Some(last) = duration.checked_sub(LAST_INCIDENT_MARGIN) else {
        return out;
    };
    let every = every.max(Duration::from_secs(1));
    let mut at = (every / 2).max(FIRST_INCIDENT);
    // Each camera is used once, so this ends within ids.len() turns.
    while at <= last && out.len() < ids.len() {
        let want_smoke = out.len() % 2 == 0;
        let pick = if (want_smoke && next_tower < towers.len()) || next_drone >= drones.len() {
            towers.get(next_tower).map(|c| {
                next_tower += 1;
                (*c, "smoke")
            })
        } else {
            drones.get(next_drone).map(|c| {
                next_drone += 1;
                (*c, "flood")
            })
        };
        let Some((camera, class)) = pick else { break };
        out.push((camera.clone(), class, at.as_secs()));
        at += every;
    }
    out
}

/// Memory, fds, threads and CPU seconds of one process (zeros if it is gone;
/// the caller checks that it is alive).
fn read_process(pid: u32) -> (f64, u64, u64, f64) {
    (
        procs::rss_mib(pid).map_or(0.0, |(now, _)| now),
        procs::fd_count(pid).unwrap_or(0),
        procs::thread_count(pid).unwrap_or(0),
        procs::cpu_seconds(pid).unwrap_or(0.0),
    )
}

/// Where the previous sample left the cumulative counters.
struct Mark {
    at: Instant,
    cpu: PerProcess<f64>,
    sent: f64,
    received: f64,
}

/// The running stack, as the setup left it.
struct Stack {
    center: Proc,
    center_http: String,
    fleet: Proc,
    fleet_started: Instant,
    ground_truth: PathBuf,
    gw_config: PathBuf,
    gw_http: String,
    gateway: Proc,
    /// Cameras the gateway watches.
    watched: usize,
    detector_id: String,
    models: BTreeMap<String, String>,
    /// When the fleet started, UTC.
    started_at: String,
    /// The incidents, as the fleet's `--incidents` takes them.
    script: Vec<String>,
    /// HTTP with a time limit, so a stuck process cannot stall the soak.
    http: Http,
}

/// What the end of the run read.
struct Drained {
    end: EndOfRun,
    onsets: Vec<Onset>,
    memory_mib_peak: PerProcess<Option<f64>>,
    gateway_stopped_cleanly: bool,
}

/// The soak, phase by phase: setup, sampling (warm-up and the judged
/// samples), drain, check and report.
pub fn run(args: SoakArgs) -> anyhow::Result<SoakReport> {
    check_args(&args)?;
    let (workdir, logs) = stack::workdir(&args.workdir)?;
    let args = SoakArgs { workdir, ..args };
    let mut s = setup(&args, &logs)?;
    let samples = sample(&args, &mut s)?;
    let drained = drain(&args, &mut s)?;
    let report = build_report(&args, s, samples, drained);
    print_report(&report);
    if let Some(path) = &args.report {
        crate::report::write_report(path, &report, render_html)?;
    }
    if args.strict && !report.verdict.passed {
        bail!("soak failed: {}", report.verdict.failures.join("; "));
    }
    Ok(report)
}

fn check_args(args: &SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.interval >= Duration::from_secs(1),
        "--interval must be at least 1 s"
    );
    anyhow::ensure!(
        args.incident_every >= Duration::from_secs(5),
        "--incident-every must be at least 5 s"
    );
    let judged = args.duration.saturating_sub(args.warmup).as_secs_f64();
    let needed = (2 * WINDOW) as f64 * args.interval.as_secs_f64();
    anyhow::ensure!(
        judged >= needed,
        "--duration must leave at least {} intervals after --warmup ({needed:.0} s); got {judged:.0} s",
        2 * WINDOW
    );
    Ok(())
}

/// Certificates, the center, the fleet with its incidents spread over the
/// whole run, and the gateway, as `run` starts them.
fn setup(args: &SoakArgs, logs: &Path) -> anyhow::Result<Stack> {
    let lookout = procs::sibling("lookout")?;
    let certs = args.workdir.join("certs");
    stack::make_certs(&lookout, &certs, &["center"])?;

    // The incidents, spread over the whole run.
    let ids = planned_ids(args.cameras, args.mix.as_deref(), &args.size)?;
    let script = incident_script(&ids, args.duration, args.incident_every);
    let script_text: Vec<String> = script
        .iter()
        .map(|(c, class, at)| format!("{c}:{class}@{at}"))
        .collect();

    // The center, the fleet and the gateway, as `run` starts them.
    let (center_cfg, quic_port, center_http) =
        center_config(&args.workdir, &certs, "center", "subscribe = \"all\"\n")?;
    let center = start_center(
        &lookout,
        &center_cfg,
        &logs.join("center.log"),
        &center_http,
    )?;
    let (fleet, gw_config, ground_truth, fleet_started) = start_fleet(
        &FleetRun {
            cameras: args.cameras,
            mix: args.mix.clone(),
            size: args.size.clone(),
            cache: args.cache.clone(),
            incidents: Some(script_text.join(",")),
            duration: args.duration,
        },
        &args.workdir,
    )?;
    let started_at = utc_now();
    let detector = detector_block(&args.detector_config)?;
    let gw_http = stack::gateway_config(
        &args.workdir,
        &gw_config,
        &certs,
        Some(&detector),
        &format!("127.0.0.1:{quic_port}"),
    )?;
    let detector_id = detector.0;
    // Hashed before the run: a model that cannot be read fails now.
    let models = crate::provenance::model_sha256(&gw_config)?;
    let (gateway, watched) = start_gateway(&lookout, &gw_config, logs, &gw_http)?;
    println!(
        "soak: {watched} cameras, {} incidents, {} s, a sample every {} s, warm-up {} s",
        script.len(),
        args.duration.as_secs(),
        args.interval.as_secs_f64(),
        args.warmup.as_secs()
    );
    Ok(Stack {
        center,
        center_http,
        fleet,
        fleet_started,
        ground_truth,
        gw_config,
        gw_http,
        gateway,
        watched,
        detector_id,
        models,
        started_at,
        script: script_text,
        http: Http::new(Some(Duration::from_secs(10))),
    })
}

/// Samples every interval until the end (warm-up included: the verdict
/// judges the samples after it), printing each.
fn sample(args: &SoakArgs, s: &mut Stack) -> anyhow::Result<Vec<Sample>> {
    println!(
        "{:>7} {:>27} {:>11} {:>11} {:>15} {:>13} {:>15} {:>9}",
        "t s",
        "RSS MiB gw/center/fleet",
        "fds gw/ctr",
        "thr gw/ctr",
        "CPU gw/ctr/flt",
        "frames s/r",
        "p99 relay/c→c",
        "alerts"
    );
    let http = &s.http;
    let (gw_http, center_http) = (&s.gw_http, &s.center_http);
    let gw_metrics = format!("http://{gw_http}/metrics");
    let center_metrics = format!("http://{center_http}/metrics");
    let pids = PerProcess {
        gateway: s.gateway.pid(),
        center: s.center.pid(),
        fleet: s.fleet.pid(),
    };
    // No answer: the first interval includes the start (not expected: the
    // center was just seen answering); said, as its figures are then off.
    if http
        .post_json(&format!("http://{center_http}/api/latency/reset"))
        .is_none()
    {
        eprintln!(
            "soak: the center did not answer the latency reset; the first interval includes the start"
        );
    }
    let mut mark = Mark {
        at: Instant::now(),
        cpu: pids.map(|p| read_process(*p).3),
        sent: http
            .metric(&gw_metrics, "lookout_relay_frames_total")
            .unwrap_or(0.0),
        received: http
            .metric(&center_metrics, "lookout_center_frames_total")
            .unwrap_or(0.0),
    };
    let mut alerts = AlertCounts::default();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = args.interval;
    let hard_stop = args.duration + args.interval + Duration::from_secs(120);
    while next <= args.duration && s.fleet_started.elapsed() < hard_stop {
        s.gateway.check_alive()?;
        s.center.check_alive()?;
        s.fleet.check_alive()?;
        let elapsed = s.fleet_started.elapsed();
        if elapsed < next {
            std::thread::sleep((next - elapsed).min(Duration::from_millis(250)));
            continue;
        }
        let now = Instant::now();
        let dt = now.duration_since(mark.at).as_secs_f64().max(1e-3);
        let figures = pids.map(|p| read_process(*p));
        let cpu = figures.map(|f| f.3);
        let gw_text = http.text(&gw_metrics);
        let sent = gw_text
            .as_deref()
            .map_or(mark.sent, |t| prom::sum(t, "lookout_relay_frames_total"));
        let center_text = http.text(&center_metrics);
        let received = center_text.as_deref().map_or(mark.received, |t| {
            prom::sum(t, "lookout_center_frames_total")
        });
        let center_video = center_text.as_deref().map(center_video);
        let heap = HeapByProcess {
            gateway: gw_text.as_deref().map(heap),
            center: center_text.as_deref().map(heap),
        };
        let latency = http
            .post_json(&format!("http://{center_http}/api/latency/reset"))
            .unwrap_or(Value::Null);
        if let Some(n) = http.count(&format!("http://{gw_http}/api/alerts?limit=1000"), "alerts") {
            alerts.raised_at_gateway = n;
        }
        if let Some(n) = http.count(
            &format!("http://{center_http}/api/alerts?limit=10000"),
            "alerts",
        ) {
            alerts.in_ledger = n;
        }
        alerts.incidents_started =
            read_onsets(&s.ground_truth).map_or(alerts.incidents_started, |o| o.len() as u64);
        let t_s = elapsed.as_secs_f64();
        let d_sent = (sent - mark.sent).max(0.0) as u64;
        let d_received = (received - mark.received).max(0.0) as u64;
        let sample = Sample {
            t_s,
            interval_s: dt,
            after_warmup: t_s - dt >= args.warmup.as_secs_f64() - 0.5,
            rss_mib: figures.map(|f| f.0),
            fds: figures.map(|f| f.1),
            threads: figures.map(|f| f.2),
            cpu_cores: PerProcess {
                gateway: (cpu.gateway - mark.cpu.gateway) / dt,
                center: (cpu.center - mark.cpu.center) / dt,
                fleet: (cpu.fleet - mark.cpu.fleet) / dt,
            },
            frames: IntervalFrames {
                sent: d_sent,
                received_at_center: d_received,
                lost: d_sent as i64 - d_received as i64,
                sent_total: sent as u64,
                received_total: received as u64,
            },
            latency_ms: IntervalLatency {
                relay: center_percentiles(&latency["gateway_to_center"]),
                capture_to_center: center_percentiles(&latency["capture_to_center"]),
            },
            alerts: alerts.clone(),
            center_video,
            heap,
        };
        print_sample(&sample);
        samples.push(sample);
        mark = Mark {
            at: now,
            cpu,
            sent,
            received,
        };
        // A slow machine may miss a beat; samples stay one interval apart.
        while next <= elapsed {
            next += args.interval;
        }
    }
    Ok(samples)
}

/// The center's video store, from its metrics page.
fn center_video(text: &str) -> CenterVideo {
    CenterVideo {
        cameras_with_video: prom::labelled(text, "lookout_center_frames_total")
            .filter(|s| s.value > 0.0)
            .count() as u64,
        latest_gop_mib: prom::sum(text, "lookout_center_latest_gop_bytes") / (1024.0 * 1024.0),
    }
}

/// A process's heap, from its metrics page.
fn heap(text: &str) -> Heap {
    let mib = |name: &str| prom::sum(text, name) / (1024.0 * 1024.0);
    Heap {
        in_use_mib: mib("lookout_process_heap_in_use_bytes"),
        free_held_mib: mib("lookout_process_heap_free_bytes"),
        sqlite_mib: mib("lookout_sqlite_memory_bytes"),
    }
}

/// The end: the cameras stop; what the gateway already took must reach
/// the center (alerts acknowledged, frames delivered); then both stop.
fn drain(args: &SoakArgs, s: &mut Stack) -> anyhow::Result<Drained> {
    let pids = PerProcess {
        gateway: s.gateway.pid(),
        center: s.center.pid(),
        fleet: s.fleet.pid(),
    };
    let memory_mib_peak = pids.map(|p| procs::rss_mib(*p).map(|(_, hwm)| hwm));
    s.fleet.stop(Duration::from_secs(10));
    let end = stack::drain(&s.http, &args.workdir, &s.gw_http, &s.center_http)?;
    let onsets = read_onsets(&s.ground_truth).unwrap_or_default();
    let gateway_stopped_cleanly = s.gateway.stop(Duration::from_secs(15));
    s.center.stop(Duration::from_secs(10));
    Ok(Drained {
        end,
        onsets,
        memory_mib_peak,
        gateway_stopped_cleanly,
    })
}

/// The check (ledger, incidents, frames, the verdict) and the report.
fn build_report(args: &SoakArgs, s: Stack, samples: Vec<Sample>, d: Drained) -> SoakReport {
    let end = &d.end;
    // Alerts: the ledger against what the gateway raised.
    let check = LedgerCheck::new(&end.gw_alerts, &end.ledger);
    let timing = check.timing(&d.onsets, &check.stored, 0);
    let latency_ms: BTreeMap<String, Percentiles> = timing.latencies().into_iter().collect();

    // Frames, whole run and after warm-up.
    let sent = prom::sum(&end.gw_metrics, "lookout_relay_frames_total") as u64;
    let received = prom::sum(&end.center_metrics, "lookout_center_frames_total") as u64;
    let at_warmup = samples
        .iter()
        .rev()
        .find(|s| !s.after_warmup)
        .map_or((0, 0), |s| (s.frames.sent_total, s.frames.received_total));
    let lost_after_warmup =
        (sent as i64 - at_warmup.0 as i64) - (received as i64 - at_warmup.1 as i64);
    let gops_reset = prom::sum_with(
        &end.gw_metrics,
        "lookout_relay_gops_total",
        &[("outcome", "reset")],
    );

    let warm: Vec<&Sample> = samples.iter().filter(|s| s.after_warmup).collect();
    let cpu_mean = |f: fn(&PerProcess<f64>) -> f64| {
        (!warm.is_empty()).then(|| mean(&warm.iter().map(|s| f(&s.cpu_cores)).collect::<Vec<_>>()))
    };
    // Counted only where cameras number their frames (the series exists): else null.
    let lost_camera_to_gateway =
        prom::has_series(&end.gw_metrics, "lookout_ingest_lost_frames_total", &[])
            .then(|| prom::sum(&end.gw_metrics, "lookout_ingest_lost_frames_total") as u64);
    let verdict = verdict(
        &samples,
        check.missing == 0 && check.doubled == 0 && check.invented == 0,
        &timing.incidents,
        s.script.len(),
        judge::FramesLost {
            camera_to_gateway: lost_camera_to_gateway,
            gateway_to_center: sent as i64 - received as i64,
        },
        d.gateway_stopped_cleanly,
    );
    let cpu_cores = PerProcess {
        gateway: cpu_mean(|p| p.gateway),
        center: cpu_mean(|p| p.center),
        fleet: cpu_mean(|p| p.fleet),
    };
    SoakReport {
        provenance: crate::provenance::Provenance::now(
            crate::provenance::ReportKind::Soak,
            s.models,
        ),
        started_at: s.started_at,
        machine: machine(),
        setup: SoakSetup {
            cameras: s.watched,
            detector: s.detector_id,
            duration_s: args.duration.as_secs_f64(),
            incident_every_s: args.incident_every.as_secs_f64(),
            incident_script: s.script,
            interval_s: args.interval.as_secs_f64(),
            link: "loopback",
            mix: mix_counts(&s.gw_config),
            sampling: "keyframes",
            size: args.size.clone(),
            warmup_s: args.warmup.as_secs_f64(),
        },
        frames: SoakFrames {
            gops_reset: gops_reset as u64,
            lost: sent as i64 - received as i64,
            lost_after_warmup,
            lost_camera_to_gateway,
            received_at_center: received,
            sent,
        },
        incidents: timing.incidents,
        alerts: SoakAlerts {
            deliveries: check.deliveries,
            in_ledger: check.per_id.len(),
            ledger_records: check.records.len(),
            missing_from_ledger: check.missing,
            not_raised_by_gateway: check.invented,
            raised_at_gateway: check.raised.len(),
            stored_twice: check.doubled,
        },
        latency_ms,
        cpu_cores,
        memory_mib_peak: d.memory_mib_peak,
        samples,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::judge::{count_rise, latency_trend, rss_growth};
    use super::*;

    #[test]
    fn durations_take_units_or_plain_seconds() {
        let s = |t: &str| parse_duration(t).expect(t).as_secs_f64();
        assert_eq!(s("30m"), 1800.0);
        assert_eq!(s("90s"), 90.0);
        assert_eq!(s("45"), 45.0);
        assert_eq!(s("7.5"), 7.5);
        assert_eq!(s("1m30s"), 90.0);
        assert_eq!(s("2h"), 7200.0);
        for bad in ["", "m", "30x", "5m3", "-3", "1e9", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn incidents_rotate_over_towers_and_drones_and_stop_before_the_end() {
        let ids: Vec<String> = [
            "tower-01",
            "tower-02",
            "tower-03",
            "drone-01",
            "drone-02",
            "bodycam-01",
            "fixed-01",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = incident_script(&ids, Duration::from_secs(1800), Duration::from_secs(180));
        // 90 s, 270 s, … : five cameras can take one each.
        assert_eq!(s.len(), 5);
        assert_eq!(s[0], ("tower-01".to_string(), "smoke", 90));
        assert_eq!(s[1], ("drone-01".to_string(), "flood", 270));
        let cams: HashSet<&String> = s.iter().map(|(c, _, _)| c).collect();
        assert_eq!(cams.len(), s.len(), "each camera once");
        let short = incident_script(&ids, Duration::from_secs(70), Duration::from_secs(20));
        let at: Vec<u64> = short.iter().map(|x| x.2).collect();
        assert_eq!(at, vec![20, 40]);
        assert!(incident_script(&ids, Duration::from_secs(10), Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn rss_growth_compares_the_ends_after_warmup() {
        let flat = [100.0, 101.0, 99.0, 100.0, 102.0, 100.0, 101.0];
        assert!(rss_growth(&flat, true).passed);
        let leak = [100.0, 100.0, 100.0, 103.0, 104.0, 106.0, 107.0];
        let g = rss_growth(&leak, true);
        assert!(!g.passed, "{g:?}");
        // (105.67 - 100) / 100
        assert!((g.growth - 0.0567).abs() < 0.001, "{g:?}");
        // Too few samples to judge: not a pass.
        assert!(!rss_growth(&[100.0, 100.0, 100.0], true).passed);
    }

    #[test]
    fn counts_fail_only_on_a_lasting_rise() {
        let t: Vec<f64> = (0..8).map(|i| f64::from(i) * 30.0).collect();
        // A spike in the middle and at the end is not a lasting rise.
        let spiky = [200, 201, 200, 240, 200, 200, 230, 201];
        assert!(count_rise(&t, &spiky, 4, 0.02, true).passed);
        let leak = [200, 200, 201, 204, 207, 210, 213, 216];
        let r = count_rise(&t, &leak, 4, 0.02, true);
        assert!(!r.passed && r.rise == 9 && r.slope_per_h > 0.0, "{r:?}");
    }

    #[test]
    fn latency_fails_when_both_doubled_and_well_above() {
        assert!(latency_trend(&[1.0, 1.2, 1.1, 2.5, 2.9, 3.0]).passed);
        assert!(latency_trend(&[10.0, 11.0, 12.0, 13.0, 14.0, 15.0]).passed);
        assert!(!latency_trend(&[10.0, 11.0, 12.0, 20.0, 30.0, 31.0]).passed);
    }

    #[test]
    fn lost_frames_and_false_alerts_fail_the_verdict() {
        let clean = crate::scoring::Score {
            scripted: 2,
            alerted: 2,
            ..Default::default()
        };
        let judge = |score: &crate::scoring::Score, lost: judge::FramesLost| {
            verdict(&[], true, score, 2, lost, true)
        };
        let mentions = |v: &judge::Verdict, what: &str| v.failures.iter().any(|f| f.contains(what));
        let none_lost = judge::FramesLost {
            camera_to_gateway: Some(0),
            gateway_to_center: 0,
        };
        let v = judge(&clean, none_lost);
        assert!(v.frames_all_delivered && v.no_false_alerts);
        assert!(!mentions(&v, "frames lost") && !mentions(&v, "without an incident"));
        for lost in [
            judge::FramesLost {
                camera_to_gateway: Some(3),
                gateway_to_center: 0,
            },
            judge::FramesLost {
                camera_to_gateway: Some(0),
                gateway_to_center: 1,
            },
            // Not counted (no camera numbers its frames) is not "none lost".
            judge::FramesLost {
                camera_to_gateway: None,
                gateway_to_center: 0,
            },
        ] {
            let v = judge(&clean, lost);
            assert!(!v.frames_all_delivered && !v.passed);
            assert!(mentions(&v, "frames lost"), "{:?}", v.failures);
        }
        // More received than sent (a frame counted twice) is not a loss.
        let v = judge(
            &clean,
            judge::FramesLost {
                camera_to_gateway: Some(0),
                gateway_to_center: -2,
            },
        );
        assert!(v.frames_all_delivered);
        let false_alert = crate::scoring::Score {
            false_alerts: 1,
            ..clean.clone()
        };
        let v = judge(&false_alert, none_lost);
        assert!(!v.no_false_alerts && !v.passed);
        assert!(mentions(&v, "1 false, 0 duplicate"), "{:?}", v.failures);
    }

    /// The typed `setup`, `frames` and `alerts` write what the JSON maps they
    /// replaced wrote: same keys, same order, integers as integers.
    #[test]
    fn typed_sections_write_the_same_json_as_before() {
        let same = |typed: String, map: Value| assert_eq!(typed, map.to_string());
        let mix: BTreeMap<String, usize> =
            [("tower", 3), ("drone", 2), ("bodycam", 0), ("fixed", 1)]
                .into_iter()
                .map(|(k, n)| (k.to_string(), n))
                .collect();
        same(
            serde_json::to_string(&SoakSetup {
                cameras: 6,
                detector: "smoke_flood".into(),
                duration_s: 1800.0,
                incident_every_s: 180.0,
                incident_script: vec!["tower-01:smoke@90".into()],
                interval_s: 30.0,
                link: "loopback",
                mix: mix.clone(),
                sampling: "keyframes",
                size: "full".into(),
                warmup_s: 120.0,
            })
            .expect("serializes"),
            serde_json::json!({
                "cameras": 6usize,
                "mix": {"tower": 3, "drone": 2, "bodycam": 0, "fixed": 1},
                "size": "full",
                "duration_s": 1800.0,
                "interval_s": 30.0,
                "warmup_s": 120.0,
                "incident_every_s": 180.0,
                "incident_script": ["tower-01:smoke@90"],
                "sampling": "keyframes",
                "detector": "smoke_flood",
                "link": "loopback",
            }),
        );
        same(
            serde_json::to_string(&SoakFrames {
                gops_reset: 1,
                lost: -2,
                lost_after_warmup: 22,
                lost_camera_to_gateway: Some(0),
                received_at_center: 102,
                sent: 100,
            })
            .expect("serializes"),
            serde_json::json!({
                "sent": 100u64,
                "received_at_center": 102u64,
                "lost": -2i64,
                "lost_after_warmup": 22i64,
                "lost_camera_to_gateway": 0u64,
                "gops_reset": 1u64,
            }),
        );
        same(
            serde_json::to_string(&SoakAlerts {
                deliveries: 11,
                in_ledger: 10,
                ledger_records: 11,
                missing_from_ledger: 0,
                not_raised_by_gateway: 0,
                raised_at_gateway: 10,
                stored_twice: 1,
            })
            .expect("serializes"),
            serde_json::json!({
                "raised_at_gateway": 10usize,
                "in_ledger": 10usize,
                "ledger_records": 11usize,
                "missing_from_ledger": 0usize,
                "stored_twice": 1usize,
                "not_raised_by_gateway": 0usize,
                "deliveries": 11u64,
            }),
        );
    }
}
