//! The soak's verdict: memory growth, fd and thread trends and latency
//! after warm-up, judged by the rules `docs/SOAK.md` states, with the
//! ledger and the incidents.

use serde::Serialize;

use crate::scoring::Score;
use crate::stats::{Percentiles, mean, median};

use super::report::{IntervalLatency, PerProcess, Sample};
use super::{LATENCY_RATIO_LIMIT, LATENCY_SLACK_MS, RSS_GROWTH_LIMIT, WINDOW};

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
    /// `growth` under `RSS_GROWTH_LIMIT` (5 %) with enough samples; not counted in the verdict when
    /// not `judged`.
    pub passed: bool,
}

/// [`HeapChange`] of the two judged processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HeapEnds {
    pub gateway: Option<HeapChange>,
    pub center: Option<HeapChange>,
}

/// Means of the first and last `WINDOW` samples after warm-up, MiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HeapChange {
    pub in_use_first_mib: f64,
    pub in_use_last_mib: f64,
    pub free_held_first_mib: f64,
    pub free_held_last_mib: f64,
    pub sqlite_first_mib: f64,
    pub sqlite_last_mib: f64,
}

/// The heap's ends, when every judged sample has the figures.
fn heap_change(series: &[Option<super::report::Heap>]) -> Option<HeapChange> {
    let all: Option<Vec<super::report::Heap>> = series.iter().copied().collect();
    let (first, last) = ends(&all?);
    if first.is_empty() {
        return None;
    }
    let m = |v: &[super::report::Heap], f: fn(&super::report::Heap) -> f64| {
        mean(&v.iter().map(f).collect::<Vec<f64>>())
    };
    Some(HeapChange {
        in_use_first_mib: m(&first, |h| h.in_use_mib),
        in_use_last_mib: m(&last, |h| h.in_use_mib),
        free_held_first_mib: m(&first, |h| h.free_held_mib),
        free_held_last_mib: m(&last, |h| h.free_held_mib),
        sqlite_first_mib: m(&first, |h| h.sqlite_mib),
        sqlite_last_mib: m(&last, |h| h.sqlite_mib),
    })
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
    /// False for the fleet: it is the test harness, reported for context.
    pub judged: bool,
    /// `rise` within `tolerance` with enough samples; not counted in the verdict when not `judged`.
    pub passed: bool,
}

/// p99 latency of the last intervals against the first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyTrend {
    /// Median p99 of the first `WINDOW` intervals after warm-up, ms.
    pub first_p99_ms: f64,
    /// Median p99 of the last `WINDOW` intervals, ms.
    pub last_p99_ms: f64,
    /// `last_p99_ms / first_p99_ms`; 0 when the first is 0.
    pub ratio: f64,
    /// The last p99 at most `LATENCY_RATIO_LIMIT` (2×) the first, or at most `LATENCY_SLACK_MS` (5
    /// ms) above it, with enough samples.
    pub passed: bool,
}

/// The p99 trend of both latencies the center measures per interval.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyTrends {
    /// Gateway received → center received.
    pub relay: LatencyTrend,
    /// Capture (SEI stamp) → center received.
    pub capture_to_center: LatencyTrend,
}

/// The soak's verdict; the rules are in `docs/SOAK.md` and in `rules`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Every rule held: `failures` is empty.
    pub passed: bool,
    /// Samples whose whole interval lies after the warm-up; the rules need at least `2 × WINDOW`
    /// (6).
    pub samples_after_warmup: usize,
    /// Resident memory after warm-up, per process (the fleet's not judged).
    pub rss_growth: PerProcess<Growth>,
    /// Where the gateway's and the center's memory went between the same two ends
    /// (heap in use, freed memory the allocator kept, SQLite's share), for the reader:
    /// a leak climbs in use; RSS that grows with in use flat is the allocator keeping
    /// freed pages. Not judged; `null` when the processes did not report it.
    pub heap: HeapEnds,
    /// Open file descriptors after warm-up, per process (at most max(4, 2 %) rise).
    pub fds: PerProcess<Rise>,
    /// Threads after warm-up, per process (at most max(4, 5 %) rise).
    pub threads: PerProcess<Rise>,
    /// Interval p99 latency, the last intervals against the first after warm-up.
    pub latency_p99: LatencyTrends,
    /// Every alert the gateway raised is in the ledger once, none invented.
    pub alerts_exactly_once: bool,
    /// Every scripted incident began and was alerted.
    pub incidents_all_alerted: bool,
    /// No frame lost: camera → gateway (from the cameras' frame numbers, the
    /// whole run) and gateway → center after warm-up.
    pub frames_all_delivered: bool,
    /// No alert without an incident, none raised twice for one.
    pub no_false_alerts: bool,
    /// The gateway stopped within 15 s of SIGTERM at the end.
    pub gateway_stopped_cleanly: bool,
    /// Each failed rule, in words.
    pub failures: Vec<String>,
    /// Every rule, in words, as judged.
    pub rules: Vec<String>,
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
        "frames: none lost, camera → gateway (counted from the cameras' frame numbers over the whole run) or gateway → center (the whole run's counts, read after the drain)".into(),
        "false alerts: none raised without an incident, none twice for one".into(),
        "the gateway stops within 15 s of SIGTERM at the end".into(),
    ]
}

/// Frames the soak lost, by hop.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FramesLost {
    /// Gaps in the cameras' frame numbers at the gateway, the whole run; `None`: not
    /// counted (no camera numbers its frames), which does not pass as none lost.
    pub camera_to_gateway: Option<u64>,
    /// Handed to GOP streams and never received by the center, over the whole run:
    /// the counters read after the drain, when nothing is in flight. (The count from
    /// the warm-up sample on is not used: the gateway's and the center's counters are
    /// read at different instants, so frames in flight and the gap between the two
    /// reads move it by tens of frames either way.)
    pub gateway_to_center: i64,
}

/// The verdict over the samples and the end-of-run checks.
pub(super) fn verdict(
    samples: &[Sample],
    alerts_exactly_once: bool,
    incidents: &Score,
    planned_incidents: usize,
    frames_lost: FramesLost,
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
    let heap = HeapEnds {
        gateway: heap_change(&warm.iter().map(|s| s.heap.gateway).collect::<Vec<_>>()),
        center: heap_change(&warm.iter().map(|s| s.heap.center).collect::<Vec<_>>()),
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
    let frames_all_delivered =
        frames_lost.camera_to_gateway == Some(0) && frames_lost.gateway_to_center <= 0;
    if !frames_all_delivered {
        let camera = frames_lost
            .camera_to_gateway
            .map_or("not counted".to_string(), |n| n.to_string());
        failures.push(format!(
            "frames lost: {camera} camera → gateway, {} gateway → center",
            frames_lost.gateway_to_center
        ));
    }
    let no_false_alerts = incidents.false_alerts == 0 && incidents.duplicate_alerts == 0;
    if !no_false_alerts {
        failures.push(format!(
            "alerts without an incident: {} false, {} duplicate",
            incidents.false_alerts, incidents.duplicate_alerts
        ));
    }
    if !gateway_stopped_cleanly {
        failures.push("the gateway did not stop within 15 s of SIGTERM".into());
    }
    Verdict {
        passed: failures.is_empty(),
        samples_after_warmup: warm.len(),
        rss_growth,
        heap,
        fds,
        threads,
        latency_p99,
        alerts_exactly_once,
        incidents_all_alerted,
        frames_all_delivered,
        no_false_alerts,
        gateway_stopped_cleanly,
        failures,
        rules: rules(),
    }
}
