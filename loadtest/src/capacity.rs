//! `lookout-loadtest capacity`: the largest fleet this machine carries
//! within a service-level objective. Runs `run` (fleet, gateway, center,
//! scripted incidents) at a growing camera count — doubling until a run
//! misses the SLO, then bisecting between the last pass and the first miss
//! — and keeps every step's report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::relay::{self, RelayArgs, RelayReport};

/// What a run must meet.
#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    pub capture_to_alert_p99_ms: Option<f64>,
    pub relay_p99_ms: Option<f64>,
    /// Most frames lost.
    pub lost: Option<u64>,
}

impl Slo {
    /// `capture_to_alert_p99=100ms,relay_p99=5ms,lost=0`.
    pub fn parse(spec: &str) -> anyhow::Result<Slo> {
        let mut slo = Slo {
            capture_to_alert_p99_ms: None,
            relay_p99_ms: None,
            lost: None,
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .with_context(|| format!("--slo: `{part}` is not KEY=VALUE"))?;
            let ms = || -> anyhow::Result<f64> {
                let v = value.trim_end_matches("ms");
                let v: f64 = v
                    .parse()
                    .with_context(|| format!("--slo: `{value}` is not a number of ms"))?;
                anyhow::ensure!(v.is_finite() && v > 0.0, "--slo: {key} must be above 0");
                Ok(v)
            };
            match key {
                "capture_to_alert_p99" => slo.capture_to_alert_p99_ms = Some(ms()?),
                "relay_p99" => slo.relay_p99_ms = Some(ms()?),
                "lost" => {
                    slo.lost = Some(
                        value
                            .parse()
                            .with_context(|| format!("--slo: lost=`{value}` is not a count"))?,
                    )
                }
                other => bail!(
                    "--slo: unknown objective `{other}` (capture_to_alert_p99, relay_p99, lost)"
                ),
            }
        }
        Ok(slo)
    }

    /// Which objectives a report misses.
    pub fn misses(&self, r: &RelayReport) -> Vec<String> {
        let mut out = Vec::new();
        let p99 = |name: &str| r.latency_ms.get(name).map_or(f64::MAX, |p| p.p99);
        if let Some(limit) = self.capture_to_alert_p99_ms
            && p99("capture_to_alert") > limit
        {
            out.push(format!(
                "capture→alert p99 {:.1} ms > {limit} ms",
                p99("capture_to_alert")
            ));
        }
        if let Some(limit) = self.relay_p99_ms
            && p99("relay") > limit
        {
            out.push(format!("relay p99 {:.2} ms > {limit} ms", p99("relay")));
        }
        let lost = r.frames["lost"].as_u64().unwrap_or(u64::MAX);
        if let Some(limit) = self.lost
            && lost > limit
        {
            out.push(format!("{lost} frames lost > {limit}"));
        }
        // As the run report's `slo.passed`: a fleet size that misses an
        // incident, or alerts on nothing or twice, is not carried.
        if r.incidents.missed > 0 {
            out.push(format!("{} incident(s) missed", r.incidents.missed));
        }
        if r.incidents.false_alerts > 0 {
            out.push(format!("{} false alert(s)", r.incidents.false_alerts));
        }
        if r.incidents.duplicate_alerts > 0 {
            out.push(format!(
                "{} duplicate alert(s)",
                r.incidents.duplicate_alerts
            ));
        }
        out
    }
}

pub struct CapacityArgs {
    pub slo: Slo,
    pub start: usize,
    pub max: usize,
    pub size: String,
    pub duration: Duration,
    pub warmup: Duration,
    pub detector_config: PathBuf,
    pub cache: PathBuf,
    pub workdir: PathBuf,
    pub report: Option<PathBuf>,
}

/// The `capacity` report: the search's outcome and each step's run report.
#[derive(Debug, Serialize)]
struct CapacitySummary {
    #[serde(flatten)]
    provenance: crate::provenance::Provenance,
    slo: Slo,
    /// The most cameras that met the SLO; `None` when even `--start` missed.
    capacity_cameras: Option<usize>,
    /// The fewest cameras that missed it; `None` when `--max` passed.
    first_miss_cameras: Option<usize>,
    /// Each step's run length.
    duration_s: f64,
    steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
struct Step {
    cameras: usize,
    passed: bool,
    misses: Vec<String>,
    report: PathBuf,
}

fn step(args: &CapacityArgs, cameras: usize, steps: &mut Vec<Step>) -> anyhow::Result<bool> {
    let dir = args.workdir.join(format!("cameras-{cameras}"));
    let report_path = dir.join("report.json");
    println!("capacity: {cameras} cameras …");
    let report = relay::run(RelayArgs {
        cameras,
        mix: None,
        size: args.size.clone(),
        duration: args.duration,
        incidents: None,
        detector_config: Some(args.detector_config.clone()),
        cache: args.cache.clone(),
        workdir: dir,
        warmup: args.warmup,
        link: None,
        link_name: "loopback".into(),
        partitions: Vec::new(),
        center_outage: None,
        cascade: false,
        subscribe: "all".into(),
        baselines: false,
        latency_budget_ms: None,
        sensor_alerts_per_s: 0.0,
        report: Some(report_path.clone()),
        strict: false,
    })?;
    let misses = args.slo.misses(&report);
    let passed = misses.is_empty();
    println!(
        "capacity: {cameras} cameras {}",
        if passed {
            "meet the SLO".to_string()
        } else {
            format!("miss it: {}", misses.join("; "))
        }
    );
    steps.push(Step {
        cameras,
        passed,
        misses,
        report: report_path,
    });
    Ok(passed)
}

pub fn run(args: CapacityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.start >= 1 && args.start <= args.max,
        "--start must be at least 1 and at most --max"
    );
    // Every step's gateway uses this detector's model; hashed before the first.
    let models = crate::provenance::model_sha256(&args.detector_config)?;
    let mut steps = Vec::new();
    let mut good: Option<usize> = None;
    let mut bad: Option<usize> = None;
    let mut n = args.start;
    // Double until a miss (or the ceiling).
    loop {
        if step(&args, n, &mut steps)? {
            good = Some(n);
            if n == args.max {
                break;
            }
            n = (n * 2).min(args.max);
        } else {
            bad = Some(n);
            break;
        }
    }
    // Bisect between the last pass and the first miss, to a quarter of the pass.
    if let (Some(mut lo), Some(mut hi)) = (good, bad) {
        let resolution = (lo / 4).max(1);
        while hi - lo > resolution {
            let mid = lo + (hi - lo) / 2;
            if step(&args, mid, &mut steps)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        good = Some(lo);
    }
    let summary = CapacitySummary {
        provenance: crate::provenance::Provenance::now(
            crate::provenance::ReportKind::Capacity,
            models,
        ),
        slo: args.slo.clone(),
        capacity_cameras: good,
        first_miss_cameras: bad,
        duration_s: args.duration.as_secs_f64(),
        steps,
    };
    match good {
        Some(g) => println!("capacity: {g} cameras meet the SLO on this machine"),
        None => println!("capacity: even {} camera(s) miss the SLO", args.start),
    }
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_parses_and_refuses_nonsense() {
        let s = Slo::parse("capture_to_alert_p99=100ms,relay_p99=5ms,lost=0").expect("valid");
        assert_eq!(s.capture_to_alert_p99_ms, Some(100.0));
        assert_eq!(s.relay_p99_ms, Some(5.0));
        assert_eq!(s.lost, Some(0));
        assert!(Slo::parse("relay_p99=-1ms").is_err());
        assert!(Slo::parse("speed=fast").is_err());
        assert!(Slo::parse("lost").is_err());
    }
}
