//! The soak's report (docs/SOAK.md): the per-interval samples and the
//! report's types, the summary printed on stdout and the HTML page.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::report::{Machine, json_text};
use crate::scoring::Score;
use crate::stats::Percentiles;

use super::judge::Verdict;

/// One figure for each of the three processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PerProcess<T> {
    /// The gateway's (`lookout run`).
    pub gateway: T,
    /// The command center's (`lookout center`).
    pub center: T,
    /// The simulated fleet's (`lookout-loadtest fleet`).
    pub fleet: T,
}

impl<T> PerProcess<T> {
    pub(super) fn map<U>(&self, f: impl Fn(&T) -> U) -> PerProcess<U> {
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
    /// Frames the center received in this interval.
    pub received_at_center: u64,
    /// `sent - received_at_center` of this interval: frames in flight at a
    /// sample arrive in the next interval, which can make this negative.
    pub lost: i64,
    /// Since the gateway started.
    pub sent_total: u64,
    /// Frames the center received since it started.
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
    /// Resident memory (VmRSS) at the sample, MiB; 0 when unreadable.
    pub rss_mib: PerProcess<f64>,
    /// Open file descriptors at the sample; 0 when unreadable.
    pub fds: PerProcess<u64>,
    /// Threads at the sample; 0 when unreadable.
    pub threads: PerProcess<u64>,
    /// Mean over the interval, cores (1.0 = one core busy).
    pub cpu_cores: PerProcess<f64>,
    /// Frames relayed in the interval and in all.
    pub frames: IntervalFrames,
    /// The center's latency over the interval (its histograms are reset at each sample).
    pub latency_ms: IntervalLatency,
    /// Alert counts since the start, at the sample.
    pub alerts: AlertCounts,
    /// The center's video store at the sample; `null` when its metrics page
    /// did not answer.
    pub center_video: Option<CenterVideo>,
    /// Where the gateway's and the center's memory goes, from their metrics
    /// pages; `null` when a page did not answer.
    pub heap: HeapByProcess,
}

/// [`Heap`] of the two judged processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HeapByProcess {
    pub gateway: Option<Heap>,
    pub center: Option<Heap>,
}

/// A process's heap as it reports it on `/metrics`, MiB: what tells a leak
/// (in use climbing) from the allocator keeping freed memory (free held
/// climbing) or a cache filling to its bound (SQLite's share).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Heap {
    /// Allocated and not freed (`lookout_process_heap_in_use_bytes`).
    pub in_use_mib: f64,
    /// Freed, but kept by the allocator (`lookout_process_heap_free_bytes`).
    pub free_held_mib: f64,
    /// SQLite's allocations, page caches included (`lookout_sqlite_memory_bytes`).
    pub sqlite_mib: f64,
}

/// What the center holds of the cameras' video: it keeps each camera's
/// latest complete GOP (for a wall tile's start), so its memory grows with
/// the cameras whose video it has received (in a soak, one more with each
/// alerting camera), not with time.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CenterVideo {
    /// Cameras the center has received frames of since it started
    /// (series of `lookout_center_frames_total` above 0).
    pub cameras_with_video: u64,
    /// Bytes of frame data in the latest GOPs it keeps
    /// (`lookout_center_latest_gop_bytes`), MiB.
    pub latest_gop_mib: f64,
}

/// The soak's report: what `--report` writes as JSON (docs/SOAK.md) and the
/// HTML page renders.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Schema, kind, version, git revision, command line, model hashes.
    #[serde(flatten)]
    pub provenance: crate::provenance::Provenance,
    /// When the fleet started serving, UTC.
    pub started_at: String,
    /// The machine the soak ran on.
    pub machine: Machine,
    /// What was run.
    pub setup: SoakSetup,
    /// Whole run, counted after the gateway drained at the end.
    pub frames: SoakFrames,
    /// The scripted incidents scored against the gateway's alerts.
    pub incidents: Score,
    /// Whole run: the center's ledger against the alerts the gateway raised.
    pub alerts: SoakAlerts,
    /// Whole run, from the ledger: `capture_to_alert`, `onset_to_alert`,
    /// `raise_to_stored`. Relay and capture → center are per sample.
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// Mean over the samples after warm-up; `None` without any.
    pub cpu_cores: PerProcess<Option<f64>>,
    /// Peak resident memory (VmHWM) at the end, MiB; `None` if unreadable.
    pub memory_mib_peak: PerProcess<Option<f64>>,
    /// Every interval's reading, warm-up included.
    pub samples: Vec<Sample>,
    /// Whether the soak passed, rule by rule.
    pub verdict: Verdict,
}

/// What the soak ran (the report's `setup`). Fields in alphabetical order, the
/// order the report has always had.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSetup {
    /// Cameras the gateway watches.
    pub cameras: usize,
    /// The `[[detector]]` id the gateway runs.
    pub detector: String,
    /// How long the fleet ran, s.
    pub duration_s: f64,
    /// Time between scripted incidents, s.
    pub incident_every_s: f64,
    /// The incidents as the fleet's `--incidents` takes them
    /// (`camera:class@seconds`).
    pub incident_script: Vec<String>,
    /// Time between samples, s.
    pub interval_s: f64,
    /// Always `loopback`: the soak runs without the link emulator.
    pub link: &'static str,
    /// Cameras per kind in the gateway's configuration.
    pub mix: BTreeMap<String, usize>,
    /// The gateway's sampling: always `keyframes`.
    pub sampling: &'static str,
    /// The fleet's picture size (`--size`).
    pub size: String,
    /// Samples closing before this are warm-up (not judged), s.
    pub warmup_s: f64,
}

/// The soak's frames over the whole run (the report's `frames`), from the
/// gateway's and the center's metrics after the drain.
#[derive(Debug, Clone, Serialize)]
pub struct SoakFrames {
    /// GOPs the gateway's relay reset rather than queue them late.
    pub gops_reset: u64,
    /// `sent - received_at_center` (negative if the center counted more).
    pub lost: i64,
    /// Frames lost gateway → center from the end of the warm-up to the end
    /// (negative if frames in flight at the warm-up's end arrived after it).
    pub lost_after_warmup: i64,
    /// Frames the cameras numbered that never reached the gateway
    /// (`lookout_ingest_lost_frames_total`); `null` when no camera numbers its frames
    /// (not counted, which is not 0).
    pub lost_camera_to_gateway: Option<u64>,
    /// Frames the center received (`lookout_center_frames_total`).
    pub received_at_center: u64,
    /// Frames the gateway's relay sent (`lookout_relay_frames_total`).
    pub sent: u64,
}

/// The soak's alerts over the whole run (the report's `alerts`): the center's
/// ledger against what the gateway raised.
#[derive(Debug, Clone, Serialize)]
pub struct SoakAlerts {
    /// Deliveries over all ledger records.
    pub deliveries: u64,
    /// Distinct alert ids in the ledger.
    pub in_ledger: usize,
    /// Records in the ledger (an id stored twice counts twice).
    pub ledger_records: usize,
    /// Alerts the gateway raised that the ledger lacks.
    pub missing_from_ledger: usize,
    /// Ids in the ledger the gateway never raised.
    pub not_raised_by_gateway: usize,
    /// Alerts the gateway lists (`/api/alerts`).
    pub raised_at_gateway: usize,
    /// Ids stored more than once.
    pub stored_twice: usize,
}

pub(super) fn print_sample(s: &Sample) {
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

pub(super) fn print_report(r: &SoakReport) {
    let v = &r.verdict;
    println!();
    println!(
        "frames: {} sent, {} received at the center, {} lost ({} after warm-up); GOPs reset: {}",
        r.frames.sent,
        r.frames.received_at_center,
        r.frames.lost,
        r.frames.lost_after_warmup,
        r.frames.gops_reset
    );
    println!(
        "alerts: {} raised, {} in the ledger ({} missing, {} stored twice, {} not raised by the gateway)",
        r.alerts.raised_at_gateway,
        r.alerts.in_ledger,
        r.alerts.missing_from_ledger,
        r.alerts.stored_twice,
        r.alerts.not_raised_by_gateway
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
    for (name, h) in [("gateway", &v.heap.gateway), ("center", &v.heap.center)] {
        if let Some(h) = h {
            println!(
                "  heap {name:<7} in use {:.1} → {:.1}, freed but held {:.1} → {:.1}, SQLite {:.2} → {:.2} MiB  (reported, not judged)",
                h.in_use_first_mib,
                h.in_use_last_mib,
                h.free_held_first_mib,
                h.free_held_last_mib,
                h.sqlite_first_mib,
                h.sqlite_last_mib
            );
        }
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
pub(super) fn render_html(r: &SoakReport) -> String {
    use crate::html::esc;
    let v = &r.verdict;
    let mut out = String::new();
    put!(
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
        r.setup.cameras,
        // As JSON writes them (`60.0`).
        json_text(&r.setup.duration_s),
        json_text(&r.setup.interval_s),
        json_text(&r.setup.warmup_s),
        if v.passed { "pass" } else { "fail" },
        if v.passed { "passed" } else { "failed" },
        esc(&r.provenance.lookout_version),
        esc(r
            .provenance
            .git_revision
            .as_deref()
            .unwrap_or("unknown (not a git checkout)")),
        esc(&r.started_at),
        json_text(&r.machine.cpus),
        json_text(&r.machine.memory_gib),
        esc(r.machine.model.as_deref().unwrap_or("")),
        esc(&r.provenance.argv.join(" ")),
    );
    if !v.failures.is_empty() {
        out.push_str("<ul>");
        for f in &v.failures {
            put!(out, "<li>{}</li>", esc(f));
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
        put!(
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
    put!(
        out,
        "</table><p>p99 relay {:.2} → {:.2} ms, capture → center {:.2} → {:.2} ms. Frames: {} sent, {} received, {} lost ({} after warm-up). Alerts: {} raised, {} in the ledger, {} missing, {} stored twice. Incidents: {}.</p>",
        v.latency_p99.relay.first_p99_ms,
        v.latency_p99.relay.last_p99_ms,
        v.latency_p99.capture_to_center.first_p99_ms,
        v.latency_p99.capture_to_center.last_p99_ms,
        r.frames.sent,
        r.frames.received_at_center,
        r.frames.lost,
        r.frames.lost_after_warmup,
        r.alerts.raised_at_gateway,
        r.alerts.in_ledger,
        r.alerts.missing_from_ledger,
        r.alerts.stored_twice,
        r.incidents.counts(),
    );
    over_time(&mut out, r);
    out.push_str("<h2>Rules</h2><ul>");
    for rule in &v.rules {
        put!(out, "<li>{}</li>", esc(rule));
    }
    out.push_str("</ul>");
    samples_table(&mut out, r);
    out.push_str("</table></body></html>\n");
    out
}

/// Memory, descriptors, threads, CPU and p99 latency over time.
fn over_time(out: &mut String, r: &SoakReport) {
    use crate::html::timeline_plot;
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
}

/// Every sample, one row each.
fn samples_table(out: &mut String, r: &SoakReport) {
    out.push_str("<h2>Samples</h2><table><tr><th>t, s</th><th>RSS gw/center/fleet, MiB</th><th>fds gw/center</th><th>threads gw/center</th><th>CPU gw/center/fleet</th><th>frames sent/received</th><th>relay p50/p99/p99.9, ms</th><th>capture→center p99, ms</th><th>alerts raised/stored</th></tr>");
    for s in &r.samples {
        put!(
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
}
