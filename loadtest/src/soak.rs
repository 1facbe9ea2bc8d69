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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use serde_json::Value;

use crate::cli::parse_duration;
use crate::procs;
use crate::prom;
use crate::report::{machine, utc_now};
use crate::scoring::{LedgerCheck, Score, read_onsets};
use crate::stack::{
    self, FleetRun, Http, center_config, detector_block, mix_counts, planned_ids, start_center,
    start_fleet, start_gateway,
};
use crate::stats::{Percentiles, center_percentiles, mean, median};

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

#[derive(clap::Args)]
pub struct SoakArgs {
    /// Number of cameras (split 3:2:2:1 towers:drones:bodycams:fixed).
    #[arg(long, default_value_t = 64)]
    pub cameras: usize,
    /// e.g. `towers=24,drones=16,bodycams=16,fixed=8` (overrides --cameras).
    #[arg(long)]
    pub mix: Option<String>,
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
    #[arg(long, default_value = "models/smoke_flood.toml")]
    pub detector_config: PathBuf,
    #[arg(long, default_value = ".lookout/clips")]
    pub cache: PathBuf,
    #[arg(long, default_value = ".lookout/soak")]
    pub workdir: PathBuf,
    /// Write the report (JSON) here, and the HTML page next to it.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Exit 1 when the verdict fails.
    #[arg(long)]
    pub strict: bool,
}

/// One figure for each of the three processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PerProcess<T> {
    pub gateway: T,
    pub center: T,
    pub fleet: T,
}

impl<T> PerProcess<T> {
    fn map<U>(&self, f: impl Fn(&T) -> U) -> PerProcess<U> {
        PerProcess {
            gateway: f(&self.gateway),
            center: f(&self.center),
            fleet: f(&self.fleet),
        }
    }
}

/// Frames the gateway handed to GOP streams and the center received.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IntervalFrames {
    /// In this interval.
    pub sent: u64,
    pub received_at_center: u64,
    /// `sent - received_at_center` of this interval: frames in flight at a
    /// sample arrive in the next interval, which can make this negative.
    pub lost: i64,
    /// Since the gateway started.
    pub sent_total: u64,
    pub received_total: u64,
}

/// The center's latency percentiles over one interval.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IntervalLatency {
    /// A unit received by the gateway → received by the center.
    pub relay: Percentiles,
    /// The unit's capture time (SEI stamp) → received by the center.
    pub capture_to_center: Percentiles,
}

/// Alert counts since the start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertCounts {
    /// Alerts the gateway lists (`/api/alerts`).
    pub raised_at_gateway: u64,
    /// Records in the center's ledger.
    pub in_ledger: u64,
    /// Scripted incidents that have begun on their camera.
    pub incidents_started: u64,
}

/// One reading, taken every interval.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the fleet started serving.
    pub t_s: f64,
    /// Length of the interval this sample closes.
    pub interval_s: f64,
    /// The whole interval lies after the warm-up: judged by the verdict.
    pub after_warmup: bool,
    pub rss_mib: PerProcess<f64>,
    pub fds: PerProcess<u64>,
    pub threads: PerProcess<u64>,
    /// Mean over the interval, cores (1.0 = one core busy).
    pub cpu_cores: PerProcess<f64>,
    pub frames: IntervalFrames,
    pub latency_ms: IntervalLatency,
    pub alerts: AlertCounts,
}

/// Resident-memory growth of one process after warm-up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Growth {
    /// Mean of the first `WINDOW` samples after warm-up, MiB.
    pub first_mib: f64,
    /// Mean of the last `WINDOW` samples, MiB.
    pub last_mib: f64,
    /// `(last - first) / first`.
    pub growth: f64,
    /// False for the fleet: it is the test harness, reported for context.
    pub judged: bool,
    pub passed: bool,
}

/// Whether a count (fds, threads) rose for good after warm-up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rise {
    /// Highest of the first `WINDOW` samples after warm-up.
    pub first_max: u64,
    /// Lowest of the last `WINDOW` samples: a rise that lasted.
    pub last_min: u64,
    /// `last_min - first_max`.
    pub rise: i64,
    /// The rise allowed.
    pub tolerance: u64,
    /// Least-squares slope over every sample after warm-up, per hour.
    pub slope_per_h: f64,
    pub judged: bool,
    pub passed: bool,
}

/// p99 latency of the last intervals against the first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyTrend {
    /// Median p99 of the first `WINDOW` intervals after warm-up, ms.
    pub first_p99_ms: f64,
    /// Median p99 of the last `WINDOW` intervals, ms.
    pub last_p99_ms: f64,
    pub ratio: f64,
    pub passed: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyTrends {
    pub relay: LatencyTrend,
    pub capture_to_center: LatencyTrend,
}

/// The soak's verdict; the rules are in `docs/SOAK.md` and in `rules`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub samples_after_warmup: usize,
    pub rss_growth: PerProcess<Growth>,
    pub fds: PerProcess<Rise>,
    pub threads: PerProcess<Rise>,
    pub latency_p99: LatencyTrends,
    /// Every alert the gateway raised is in the ledger once, none invented.
    pub alerts_exactly_once: bool,
    /// Every scripted incident began and was alerted.
    pub incidents_all_alerted: bool,
    /// The gateway stopped within 15 s of SIGTERM at the end.
    pub gateway_stopped_cleanly: bool,
    /// Each failed rule, in words.
    pub failures: Vec<String>,
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Schema, kind, version, git revision, command line, model hashes.
    #[serde(flatten)]
    pub provenance: crate::provenance::Provenance,
    /// When the fleet started serving, UTC.
    pub started_at: String,
    pub machine: Value,
    pub setup: Value,
    /// Whole run, counted after the gateway drained at the end.
    pub frames: Value,
    pub incidents: Score,
    pub alerts: Value,
    /// Whole run, from the ledger: `capture_to_alert`, `onset_to_alert`,
    /// `raise_to_stored`. Relay and capture → center are per sample.
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// Mean over the samples after warm-up; `None` without any.
    pub cpu_cores: PerProcess<Option<f64>>,
    /// Peak resident memory (VmHWM) at the end, MiB; `None` if unreadable.
    pub memory_mib_peak: PerProcess<Option<f64>>,
    pub samples: Vec<Sample>,
    pub verdict: Verdict,
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

/// The first and last `WINDOW` values of a series (empty when it is
/// shorter than two windows, which the verdict reports as too few samples).
fn ends<T: Copy>(v: &[T]) -> (Vec<T>, Vec<T>) {
    if v.len() < 2 * WINDOW {
        return (Vec::new(), Vec::new());
    }
    (v[..WINDOW].to_vec(), v[v.len() - WINDOW..].to_vec())
}

/// Resident memory of one process over the post-warm-up samples.
pub fn rss_growth(series: &[f64], judged: bool) -> Growth {
    let (first, last) = ends(series);
    let (first_mib, last_mib) = (mean(&first), mean(&last));
    let growth = if first_mib > 0.0 {
        (last_mib - first_mib) / first_mib
    } else {
        0.0
    };
    Growth {
        first_mib,
        last_mib,
        growth,
        judged,
        passed: !first.is_empty() && growth < RSS_GROWTH_LIMIT,
    }
}

/// A count that must not rise for good: the lowest of the last samples may
/// exceed the highest of the first by at most `max(min_abs, share × first)`.
pub fn count_rise(t_s: &[f64], series: &[u64], min_abs: u64, share: f64, judged: bool) -> Rise {
    let (first, last) = ends(series);
    let first_max = first.iter().copied().max().unwrap_or(0);
    let last_min = last.iter().copied().min().unwrap_or(0);
    let tolerance = min_abs.max((first_max as f64 * share).ceil() as u64);
    let rise = last_min as i64 - first_max as i64;
    // Least squares over every sample: the trend, for the reader.
    let n = series.len().min(t_s.len());
    let slope_per_h = if n >= 2 {
        let xs = &t_s[..n];
        let ys: Vec<f64> = series[..n].iter().map(|&y| y as f64).collect();
        let (mx, my) = (mean(xs), mean(&ys));
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        if sxx > 0.0 { sxy / sxx * 3600.0 } else { 0.0 }
    } else {
        0.0
    };
    Rise {
        first_max,
        last_min,
        rise,
        tolerance,
        slope_per_h,
        judged,
        passed: !first.is_empty() && rise <= tolerance as i64,
    }
}

/// p99 of the last intervals against the first (intervals without any
/// frame are left out).
pub fn latency_trend(p99s: &[f64]) -> LatencyTrend {
    let (first, last) = ends(p99s);
    let (a, b) = (median(&first), median(&last));
    LatencyTrend {
        first_p99_ms: a,
        last_p99_ms: b,
        ratio: if a > 0.0 { b / a } else { 0.0 },
        passed: !first.is_empty() && (b <= a * LATENCY_RATIO_LIMIT || b - a <= LATENCY_SLACK_MS),
    }
}

/// The rules, in words, as the report states them.
fn rules() -> Vec<String> {
    vec![
        format!(
            "rss: (mean of the last {WINDOW} samples - mean of the first {WINDOW} after warm-up) / the latter < {:.0} %, for the gateway and the center (the fleet is reported, not judged)",
            RSS_GROWTH_LIMIT * 100.0
        ),
        format!(
            "fds: the lowest of the last {WINDOW} samples is at most max(4, 2 %) above the highest of the first {WINDOW} after warm-up, gateway and center"
        ),
        format!(
            "threads: the lowest of the last {WINDOW} samples is at most max(4, 5 %) above the highest of the first {WINDOW} after warm-up, gateway and center"
        ),
        format!(
            "latency: the median p99 of the last {WINDOW} intervals is at most {LATENCY_RATIO_LIMIT}× that of the first {WINDOW} after warm-up, or at most {LATENCY_SLACK_MS} ms above it (relay and capture → center)"
        ),
        "alerts: every alert the gateway raised is in the center's ledger exactly once, none it did not raise".into(),
        "incidents: every scripted incident began and was alerted".into(),
        "the gateway stops within 15 s of SIGTERM at the end".into(),
    ]
}

/// The verdict over the samples and the end-of-run checks.
fn verdict(
    samples: &[Sample],
    alerts_exactly_once: bool,
    incidents: &Score,
    planned_incidents: usize,
    gateway_stopped_cleanly: bool,
) -> Verdict {
    let warm: Vec<&Sample> = samples.iter().filter(|s| s.after_warmup).collect();
    let t: Vec<f64> = warm.iter().map(|s| s.t_s).collect();
    let rss = |f: fn(&PerProcess<f64>) -> f64| -> Vec<f64> {
        warm.iter().map(|s| f(&s.rss_mib)).collect()
    };
    let counts = |f: fn(&Sample) -> &PerProcess<u64>| -> PerProcess<Vec<u64>> {
        PerProcess {
            gateway: warm.iter().map(|s| f(s).gateway).collect(),
            center: warm.iter().map(|s| f(s).center).collect(),
            fleet: warm.iter().map(|s| f(s).fleet).collect(),
        }
    };
    let rss_series: PerProcess<Vec<f64>> = PerProcess {
        gateway: rss(|p| p.gateway),
        center: rss(|p| p.center),
        fleet: rss(|p| p.fleet),
    };
    let rss_growth = PerProcess {
        gateway: rss_growth(&rss_series.gateway, true),
        center: rss_growth(&rss_series.center, true),
        fleet: rss_growth(&rss_series.fleet, false),
    };
    let rise = |series: PerProcess<Vec<u64>>, min_abs: u64, share: f64| PerProcess {
        gateway: count_rise(&t, &series.gateway, min_abs, share, true),
        center: count_rise(&t, &series.center, min_abs, share, true),
        fleet: count_rise(&t, &series.fleet, min_abs, share, false),
    };
    let fds = rise(counts(|s| &s.fds), 4, 0.02);
    let threads = rise(counts(|s| &s.threads), 4, 0.05);
    let p99 = |f: fn(&IntervalLatency) -> &Percentiles| -> Vec<f64> {
        warm.iter()
            .map(|s| f(&s.latency_ms))
            .filter(|p| p.count > 0)
            .map(|p| p.p99)
            .collect()
    };
    let latency_p99 = LatencyTrends {
        relay: latency_trend(&p99(|l| &l.relay)),
        capture_to_center: latency_trend(&p99(|l| &l.capture_to_center)),
    };
    let incidents_all_alerted =
        incidents.missed == 0 && incidents.scripted == planned_incidents && planned_incidents > 0;

    let mut failures = Vec::new();
    if warm.len() < 2 * WINDOW {
        failures.push(format!(
            "only {} samples after warm-up; the rules need {}",
            warm.len(),
            2 * WINDOW
        ));
    }
    for (name, g) in [
        ("gateway", &rss_growth.gateway),
        ("center", &rss_growth.center),
    ] {
        if !g.passed {
            failures.push(format!(
                "{name} RSS grew {:.1} % after warm-up ({:.0} → {:.0} MiB)",
                g.growth * 100.0,
                g.first_mib,
                g.last_mib
            ));
        }
    }
    for (what, name, r) in [
        ("fds", "gateway", &fds.gateway),
        ("fds", "center", &fds.center),
        ("threads", "gateway", &threads.gateway),
        ("threads", "center", &threads.center),
    ] {
        if !r.passed {
            failures.push(format!(
                "{name} {what} rose from {} to {} (allowed {})",
                r.first_max, r.last_min, r.tolerance
            ));
        }
    }
    for (name, l) in [
        ("relay", &latency_p99.relay),
        ("capture → center", &latency_p99.capture_to_center),
    ] {
        if !l.passed {
            failures.push(format!(
                "{name} p99 went from {:.2} ms to {:.2} ms",
                l.first_p99_ms, l.last_p99_ms
            ));
        }
    }
    if !alerts_exactly_once {
        failures.push("alerts: not every alert is in the ledger exactly once".into());
    }
    if !incidents_all_alerted {
        failures.push(format!(
            "incidents: {} planned, {} began, {} missed",
            planned_incidents, incidents.scripted, incidents.missed
        ));
    }
    if !gateway_stopped_cleanly {
        failures.push("the gateway did not stop within 15 s of SIGTERM".into());
    }
    Verdict {
        passed: failures.is_empty(),
        samples_after_warmup: warm.len(),
        rss_growth,
        fds,
        threads,
        latency_p99,
        alerts_exactly_once,
        incidents_all_alerted,
        gateway_stopped_cleanly,
        failures,
        rules: rules(),
    }
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

pub fn run(args: SoakArgs) -> anyhow::Result<SoakReport> {
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
    let (workdir, logs) = stack::workdir(&args.workdir)?;
    let args = SoakArgs { workdir, ..args };
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
    let mut center = start_center(
        &lookout,
        &center_cfg,
        &logs.join("center.log"),
        &center_http,
    )?;
    let (mut fleet, gw_config, ground_truth, fleet_started) = start_fleet(
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
    let (mut gateway, watched) = start_gateway(&lookout, &gw_config, &logs, &gw_http)?;
    println!(
        "soak: {watched} cameras, {} incidents, {} s, a sample every {} s, warm-up {} s",
        script.len(),
        args.duration.as_secs(),
        args.interval.as_secs_f64(),
        args.warmup.as_secs()
    );
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

    // Sampling, every interval until the end; HTTP with a time limit, so a
    // stuck process cannot stall the soak.
    let http = Http::new(Some(Duration::from_secs(10)));
    let gw_metrics = format!("http://{gw_http}/metrics");
    let center_metrics = format!("http://{center_http}/metrics");
    let pids = PerProcess {
        gateway: gateway.pid(),
        center: center.pid(),
        fleet: fleet.pid(),
    };
    // No answer: the first interval includes the start (not expected: the
    // center was just seen answering).
    let _ = http.post_json(&format!("http://{center_http}/api/latency/reset"));
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
    while next <= args.duration && fleet_started.elapsed() < hard_stop {
        gateway.check_alive()?;
        center.check_alive()?;
        fleet.check_alive()?;
        let elapsed = fleet_started.elapsed();
        if elapsed < next {
            std::thread::sleep((next - elapsed).min(Duration::from_millis(250)));
            continue;
        }
        let now = Instant::now();
        let dt = now.duration_since(mark.at).as_secs_f64().max(1e-3);
        let figures = pids.map(|p| read_process(*p));
        let cpu = figures.map(|f| f.3);
        let sent = http
            .metric(&gw_metrics, "lookout_relay_frames_total")
            .unwrap_or(mark.sent);
        let received = http
            .metric(&center_metrics, "lookout_center_frames_total")
            .unwrap_or(mark.received);
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
            read_onsets(&ground_truth).map_or(alerts.incidents_started, |o| o.len() as u64);
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

    // The end: the cameras stop; what the gateway already took must reach
    // the center (alerts acknowledged, frames delivered).
    let memory_mib_peak = pids.map(|p| procs::rss_mib(*p).map(|(_, hwm)| hwm));
    fleet.stop(Duration::from_secs(10));
    let end = stack::drain(&http, &args.workdir, &gw_http, &center_http)?;
    let onsets = read_onsets(&ground_truth).unwrap_or_default();
    let gateway_stopped_cleanly = gateway.stop(Duration::from_secs(15));
    center.stop(Duration::from_secs(10));

    // Alerts: the ledger against what the gateway raised.
    let check = LedgerCheck::new(&end.gw_alerts, &end.ledger);
    let timing = check.timing(&onsets, &check.stored, 0);
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
    let verdict = verdict(
        &samples,
        check.missing == 0 && check.doubled == 0 && check.invented == 0,
        &timing.incidents,
        script.len(),
        gateway_stopped_cleanly,
    );
    let report = SoakReport {
        provenance: crate::provenance::Provenance::now(crate::provenance::ReportKind::Soak, models),
        started_at,
        machine: machine(),
        setup: serde_json::json!({
            "cameras": watched,
            "mix": mix_counts(&gw_config),
            "size": args.size,
            "duration_s": args.duration.as_secs_f64(),
            "interval_s": args.interval.as_secs_f64(),
            "warmup_s": args.warmup.as_secs_f64(),
            "incident_every_s": args.incident_every.as_secs_f64(),
            "incident_script": script_text,
            "sampling": "keyframes",
            "detector": detector_id,
            "link": "loopback",
        }),
        frames: serde_json::json!({
            "sent": sent,
            "received_at_center": received,
            "lost": sent as i64 - received as i64,
            "lost_after_warmup": lost_after_warmup,
            "gops_reset": gops_reset as u64,
        }),
        incidents: timing.incidents,
        alerts: serde_json::json!({
            "raised_at_gateway": check.raised.len(),
            "in_ledger": check.per_id.len(),
            "ledger_records": check.records.len(),
            "missing_from_ledger": check.missing,
            "stored_twice": check.doubled,
            "not_raised_by_gateway": check.invented,
            "deliveries": check.deliveries,
        }),
        latency_ms,
        cpu_cores: PerProcess {
            gateway: cpu_mean(|p| p.gateway),
            center: cpu_mean(|p| p.center),
            fleet: cpu_mean(|p| p.fleet),
        },
        memory_mib_peak,
        samples,
        verdict,
    };
    print_report(&report);
    if let Some(path) = &args.report {
        crate::report::write_report(path, &report, render_html)?;
    }
    if args.strict && !report.verdict.passed {
        bail!("soak failed: {}", report.verdict.failures.join("; "));
    }
    Ok(report)
}

fn print_sample(s: &Sample) {
    println!(
        "{:>7.0} {:>9.0}{:>9.0}{:>9.0} {:>5}/{:<5} {:>5}/{:<5} {:>4.2}/{:.2}/{:.2} {:>6}/{:<6} {:>7.2}/{:<7.2} {:>4}/{:<4}",
        s.t_s,
        s.rss_mib.gateway,
        s.rss_mib.center,
        s.rss_mib.fleet,
        s.fds.gateway,
        s.fds.center,
        s.threads.gateway,
        s.threads.center,
        s.cpu_cores.gateway,
        s.cpu_cores.center,
        s.cpu_cores.fleet,
        s.frames.sent,
        s.frames.received_at_center,
        s.latency_ms.relay.p99,
        s.latency_ms.capture_to_center.p99,
        s.alerts.raised_at_gateway,
        s.alerts.in_ledger,
    );
}

fn print_report(r: &SoakReport) {
    let v = &r.verdict;
    println!();
    println!(
        "frames: {} sent, {} received at the center, {} lost ({} after warm-up); GOPs reset: {}",
        r.frames["sent"],
        r.frames["received_at_center"],
        r.frames["lost"],
        r.frames["lost_after_warmup"],
        r.frames["gops_reset"]
    );
    println!(
        "alerts: {} raised, {} in the ledger ({} missing, {} stored twice, {} not raised by the gateway)",
        r.alerts["raised_at_gateway"],
        r.alerts["in_ledger"],
        r.alerts["missing_from_ledger"],
        r.alerts["stored_twice"],
        r.alerts["not_raised_by_gateway"]
    );
    println!("incidents: {}", r.incidents.counts());
    for name in ["capture_to_alert", "onset_to_alert"] {
        if let Some(p) = r.latency_ms.get(name) {
            println!(
                "{name}: p50 {:.1}  p99 {:.1}  max {:.1} ms (n={})",
                p.p50, p.p99, p.max, p.count
            );
        }
    }
    println!("after warm-up ({} samples):", v.samples_after_warmup);
    for (name, g) in [
        ("gateway", &v.rss_growth.gateway),
        ("center", &v.rss_growth.center),
        ("fleet", &v.rss_growth.fleet),
    ] {
        println!(
            "  RSS {name:<8} {:>8.1} → {:>8.1} MiB  {:+.2} %{}",
            g.first_mib,
            g.last_mib,
            g.growth * 100.0,
            if g.judged { "" } else { "  (not judged)" }
        );
    }
    for (what, set) in [("fds", &v.fds), ("threads", &v.threads)] {
        for (name, x) in [
            ("gateway", &set.gateway),
            ("center", &set.center),
            ("fleet", &set.fleet),
        ] {
            println!(
                "  {what:<7} {name:<8} {:>5} → {:>5}  rise {:+} (allowed {}), slope {:+.1}/h{}",
                x.first_max,
                x.last_min,
                x.rise,
                x.tolerance,
                x.slope_per_h,
                if x.judged { "" } else { "  (not judged)" }
            );
        }
    }
    for (name, l) in [
        ("relay", &v.latency_p99.relay),
        ("capture → center", &v.latency_p99.capture_to_center),
    ] {
        println!(
            "  p99 {name:<17} {:>7.2} → {:>7.2} ms  ×{:.2}",
            l.first_p99_ms, l.last_p99_ms, l.ratio
        );
    }
    let fig = |v: Option<f64>, places: usize| {
        v.map_or_else(|| "not measured".to_string(), |x| format!("{x:.places$}"))
    };
    println!(
        "  CPU gateway {}, center {}, fleet {} cores; peak RSS gateway {}, center {}, fleet {} MiB",
        fig(r.cpu_cores.gateway, 2),
        fig(r.cpu_cores.center, 2),
        fig(r.cpu_cores.fleet, 2),
        fig(r.memory_mib_peak.gateway, 0),
        fig(r.memory_mib_peak.center, 0),
        fig(r.memory_mib_peak.fleet, 0)
    );
    if v.passed {
        println!("soak verdict: passed");
    } else {
        println!("soak verdict: FAILED");
        for f in &v.failures {
            println!("  - {f}");
        }
    }
}

/// The soak report as one self-contained HTML page: the verdict, then
/// memory, file descriptors, threads, CPU and p99 latency over time (with
/// the load test's chart helper), then every sample.
fn render_html(r: &SoakReport) -> String {
    use crate::html::{esc, timeline_plot};
    let v = &r.verdict;
    let timeline: Vec<Value> = serde_json::to_value(&r.samples)
        .ok()
        .and_then(|s| s.as_array().cloned())
        .unwrap_or_default();
    // Warm-up intervals (connections and decoders starting) would dwarf
    // the rest of the latency plot.
    let p99: Vec<Value> = r
        .samples
        .iter()
        .filter(|s| s.after_warmup)
        .map(|s| {
            serde_json::json!({
                "t_s": s.t_s,
                "p99_ms": {
                    "relay": s.latency_ms.relay.p99,
                    "capture_to_center": s.latency_ms.capture_to_center.p99,
                },
            })
        })
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lookout soak {}</title>
<style>body{{font:14px system-ui,sans-serif;margin:20px;color:#1f2328}}h1{{font-size:20px}}
.slo{{padding:8px 12px;border-radius:4px;font-weight:700;display:inline-block}}
.pass{{background:#dafbe1;color:#1a7f37}}.fail{{background:#ffebe9;color:#cf222e}}
figure{{display:inline-block;margin:8px;vertical-align:top}}figcaption{{font-weight:600}}
table{{border-collapse:collapse;margin-top:8px}}td,th{{border:1px solid #d0d7de;padding:3px 8px;text-align:right}}
th:first-child,td:first-child{{text-align:left}}</style></head><body>
<h1>lookout soak — {} cameras, {} s, a sample every {} s, warm-up {} s</h1>
<p class="slo {}">Soak verdict: {}</p>
<p>lookout {} · revision {} · started {} · machine: {} CPUs, {} GiB, {}</p>
<p>Command: <code>{}</code></p>"##,
        esc(&r.started_at),
        r.setup["cameras"],
        r.setup["duration_s"],
        r.setup["interval_s"],
        r.setup["warmup_s"],
        if v.passed { "pass" } else { "fail" },
        if v.passed { "passed" } else { "failed" },
        esc(&r.provenance.lookout_version),
        esc(r
            .provenance
            .git_revision
            .as_deref()
            .unwrap_or("unknown (not a git checkout)")),
        esc(&r.started_at),
        r.machine["cpus"],
        r.machine["memory_gib"],
        esc(r.machine["model"].as_str().unwrap_or("")),
        esc(&r.provenance.argv.join(" ")),
    );
    if !v.failures.is_empty() {
        out.push_str("<ul>");
        for f in &v.failures {
            let _ = write!(out, "<li>{}</li>", esc(f));
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>After warm-up</h2><table><tr><th>process</th><th>RSS first → last, MiB</th><th>growth</th><th>fds first max → last min</th><th>threads first max → last min</th></tr>");
    for (name, g, f, t) in [
        (
            "gateway",
            &v.rss_growth.gateway,
            &v.fds.gateway,
            &v.threads.gateway,
        ),
        (
            "center",
            &v.rss_growth.center,
            &v.fds.center,
            &v.threads.center,
        ),
        (
            "fleet (not judged)",
            &v.rss_growth.fleet,
            &v.fds.fleet,
            &v.threads.fleet,
        ),
    ] {
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{:.1} → {:.1}</td><td>{:+.2} %</td><td>{} → {}</td><td>{} → {}</td></tr>",
            g.first_mib,
            g.last_mib,
            g.growth * 100.0,
            f.first_max,
            f.last_min,
            t.first_max,
            t.last_min
        );
    }
    let _ = write!(
        out,
        "</table><p>p99 relay {:.2} → {:.2} ms, capture → center {:.2} → {:.2} ms. Frames: {} sent, {} received, {} lost ({} after warm-up). Alerts: {} raised, {} in the ledger, {} missing, {} stored twice. Incidents: {}.</p>",
        v.latency_p99.relay.first_p99_ms,
        v.latency_p99.relay.last_p99_ms,
        v.latency_p99.capture_to_center.first_p99_ms,
        v.latency_p99.capture_to_center.last_p99_ms,
        r.frames["sent"],
        r.frames["received_at_center"],
        r.frames["lost"],
        r.frames["lost_after_warmup"],
        r.alerts["raised_at_gateway"],
        r.alerts["in_ledger"],
        r.alerts["missing_from_ledger"],
        r.alerts["stored_twice"],
        r.incidents.counts(),
    );
    out.push_str("<h2>Over time</h2>");
    let all = ["gateway", "center", "fleet"];
    out.push_str(&timeline_plot(
        "resident memory, MiB",
        &timeline,
        "rss_mib",
        &all,
    ));
    out.push_str(&timeline_plot(
        "open file descriptors",
        &timeline,
        "fds",
        &all,
    ));
    out.push_str(&timeline_plot("threads", &timeline, "threads", &all));
    out.push_str(&timeline_plot("CPU, cores", &timeline, "cpu_cores", &all));
    out.push_str(&timeline_plot(
        "p99 latency per interval after warm-up, ms",
        &p99,
        "p99_ms",
        &["relay", "capture_to_center"],
    ));
    out.push_str("<h2>Rules</h2><ul>");
    for rule in &v.rules {
        let _ = write!(out, "<li>{}</li>", esc(rule));
    }
    out.push_str("</ul><h2>Samples</h2><table><tr><th>t, s</th><th>RSS gw/center/fleet, MiB</th><th>fds gw/center</th><th>threads gw/center</th><th>CPU gw/center/fleet</th><th>frames sent/received</th><th>relay p50/p99/p99.9, ms</th><th>capture→center p99, ms</th><th>alerts raised/stored</th></tr>");
    for s in &r.samples {
        let _ = write!(
            out,
            "<tr><td>{:.0}{}</td><td>{:.0}/{:.0}/{:.0}</td><td>{}/{}</td><td>{}/{}</td><td>{:.2}/{:.2}/{:.2}</td><td>{}/{}</td><td>{:.2}/{:.2}/{:.2}</td><td>{:.2}</td><td>{}/{}</td></tr>",
            s.t_s,
            if s.after_warmup { "" } else { " (warm-up)" },
            s.rss_mib.gateway,
            s.rss_mib.center,
            s.rss_mib.fleet,
            s.fds.gateway,
            s.fds.center,
            s.threads.gateway,
            s.threads.center,
            s.cpu_cores.gateway,
            s.cpu_cores.center,
            s.cpu_cores.fleet,
            s.frames.sent,
            s.frames.received_at_center,
            s.latency_ms.relay.p50,
            s.latency_ms.relay.p99,
            s.latency_ms.relay.p999,
            s.latency_ms.capture_to_center.p99,
            s.alerts.raised_at_gateway,
            s.alerts.in_ledger,
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

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
}
