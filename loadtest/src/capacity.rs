//! `lookout-loadtest capacity`: the largest fleet this machine carries
//! within a service-level objective. Runs `run` (fleet, gateway, center,
//! scripted incidents) at a growing camera count — doubling until a run
//! misses the SLO, then bisecting between the last pass and the first miss
//! — and keeps every step's report.
//!
//! The search measures load, not the detector's model. Every step scripts
//! the same incidents, on cameras every step's fleet has (`--incidents`, or
//! by default the run's default incidents on those cameras), and the first
//! step — the smallest fleet — is the reference: an incident it missed, or
//! a false or doubled alert it raised, is the model's, listed in the summary
//! and not held against any step. Any other incident problem at a larger
//! fleet is the load's and fails that step, as a latency or loss objective
//! missed does. Which size runs next is decided by [`Search`], which does no
//! I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::relay::{self, RelayArgs, RelayReport};

/// What a run must meet.
#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    /// Most capture → alert stored p99, ms; `None`: not an objective.
    pub capture_to_alert_p99_ms: Option<f64>,
    /// Most relay (gateway received → center received) p99, ms; `None`: not an objective.
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

    /// Which latency and loss objectives a report misses (incidents are
    /// judged against the reference step: [`judge_incidents`]).
    pub fn misses(&self, r: &RelayReport) -> Vec<String> {
        let mut out = Vec::new();
        // No sample is no evidence: an objective that cannot be measured is
        // missed (a run whose alerts never reached the ledger has no
        // capture→alert latency to meet the bound with).
        let p99 = |name: &str| r.latency_ms.get(name).and_then(|p| p.p99_measured());
        if let Some(limit) = self.capture_to_alert_p99_ms {
            match p99("capture_to_alert") {
                Some(v) if v <= limit => {}
                Some(v) => out.push(format!("capture→alert p99 {v:.1} ms > {limit} ms")),
                None => out.push("capture→alert p99 not measured: no alert stored".into()),
            }
        }
        if let Some(limit) = self.relay_p99_ms {
            match p99("relay") {
                Some(v) if v <= limit => {}
                Some(v) => out.push(format!("relay p99 {v:.2} ms > {limit} ms")),
                None => out.push("relay p99 not measured: no frame relayed".into()),
            }
        }
        let lost = r.frames.lost;
        if let Some(limit) = self.lost
            && lost > limit
        {
            out.push(format!("{lost} frames lost > {limit}"));
        }
        out
    }
}

/// Where the search stands: what it has learned so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The most cameras that met the SLO; `None` when even the first step
    /// missed (or nothing ran yet).
    pub capacity: Option<usize>,
    /// The fewest cameras that missed it; `None` when none did.
    pub first_miss: Option<usize>,
}

/// The search's next move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run a step with this many cameras, then [`Search::record`] it.
    Run(usize),
    /// Nothing more to learn.
    Done(Outcome),
}

/// The camera counts to try, without running anything: doubles from
/// `start` until a step misses the SLO (or `max` passes), then bisects
/// between the last pass and the first miss until they are within a
/// quarter of the pass apart (at least 1). A load test of a machine is
/// monotone enough for this: the search assumes a fleet that fails would
/// fail with more cameras too.
#[derive(Debug, Clone)]
pub struct Search {
    start: usize,
    max: usize,
    outcome: Outcome,
}

impl Search {
    pub fn new(start: usize, max: usize) -> anyhow::Result<Search> {
        anyhow::ensure!(
            start >= 1 && start <= max,
            "--start must be at least 1 and at most --max"
        );
        Ok(Search {
            start,
            max,
            outcome: Outcome {
                capacity: None,
                first_miss: None,
            },
        })
    }

    /// How close the last pass and the first miss must come: a quarter of
    /// the pass, at least one camera.
    pub fn resolution(pass: usize) -> usize {
        (pass / 4).max(1)
    }

    pub fn next(&self) -> Next {
        match (self.outcome.capacity, self.outcome.first_miss) {
            (None, None) => Next::Run(self.start),
            // Even the first step missed: nothing smaller is tried.
            (None, Some(_)) => Next::Done(self.outcome),
            (Some(pass), None) if pass >= self.max => Next::Done(self.outcome),
            (Some(pass), None) => Next::Run(pass.saturating_mul(2).min(self.max)),
            (Some(pass), Some(miss)) if miss > pass + Search::resolution(pass) => {
                Next::Run(pass + (miss - pass) / 2)
            }
            (Some(_), Some(_)) => Next::Done(self.outcome),
        }
    }

    /// A step with `cameras` met the SLO (`passed`) or missed it.
    pub fn record(&mut self, cameras: usize, passed: bool) {
        let o = &mut self.outcome;
        if passed {
            o.capacity = Some(o.capacity.map_or(cameras, |c| c.max(cameras)));
        } else {
            o.first_miss = Some(o.first_miss.map_or(cameras, |c| c.min(cameras)));
        }
    }

    /// The most steps a search from `start` to `max` can take: every step
    /// doubles or halves the open interval.
    pub fn step_limit(&self) -> usize {
        2 * (usize::BITS - self.max.leading_zeros()) as usize + 2
    }
}

/// `missed: tower-01 smoke (onset at 6.0 s)` → `missed: tower-01 smoke`:
/// what an incident problem is about, without its time or alert id, so the
/// same problem is recognised at two fleet sizes.
fn problem_key(problem: &str) -> &str {
    problem.split_once(" (").map_or(problem, |(key, _)| key)
}

/// Splits a step's incident problems (`Score::problems`: misses, false and
/// doubled alerts) into those the reference step had too — the model's,
/// excused — and the rest, the load's. Counted: two misses of `tower-01
/// smoke` at a step are excused only if the reference missed it twice.
pub fn judge_incidents(reference: &[String], step: &[String]) -> (Vec<String>, Vec<String>) {
    let mut allowance: BTreeMap<&str, usize> = BTreeMap::new();
    for p in reference {
        *allowance.entry(problem_key(p)).or_default() += 1;
    }
    let mut load = Vec::new();
    let mut excused = Vec::new();
    for p in step {
        match allowance.get_mut(problem_key(p)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                excused.push(p.clone());
            }
            _ => load.push(p.clone()),
        }
    }
    (load, excused)
}

/// The cameras every fleet of `start` to `max` cameras has (fleets are
/// planned by proportion, so a camera of a small fleet is not always in a
/// larger one), in the `start` fleet's order.
fn common_cameras(start: usize, max: usize, size: &str) -> anyhow::Result<Vec<String>> {
    let first = crate::stack::planned_ids(start, None, size)?;
    let mut keep: BTreeSet<String> = first.iter().cloned().collect();
    for n in start.saturating_add(1)..=max {
        let ids: BTreeSet<String> = crate::stack::planned_ids(n, None, size)?
            .into_iter()
            .collect();
        keep.retain(|c| ids.contains(c));
    }
    Ok(first.into_iter().filter(|c| keep.contains(c)).collect())
}

/// The incident script every step runs: `--incidents` (whose cameras every
/// step's fleet must have) or the run's default incidents on the cameras
/// every step has.
fn step_incidents(args: &CapacityArgs) -> anyhow::Result<String> {
    let common = common_cameras(args.start, args.max, &args.size)?;
    let script = match &args.incidents {
        Some(spec) => {
            for i in crate::fleet::incidents::parse(spec)? {
                if !common.contains(&i.camera) {
                    bail!(
                        "--incidents: `{}` is not in every fleet from {} to {} cameras \
                         (these are: {})",
                        i.camera,
                        args.start,
                        args.max,
                        common.join(", ")
                    );
                }
            }
            spec.clone()
        }
        None => crate::scoring::default_incidents(&common, args.duration.as_secs_f64()),
    };
    if args.slo.capture_to_alert_p99_ms.is_some() && script.trim().is_empty() {
        bail!(
            "the SLO bounds capture→alert latency but no incident is scripted: give \
             --incidents, or a --duration of at least 24 s so the default incidents fit"
        );
    }
    Ok(script)
}

/// What `capacity` was asked for, from its command line (`cli::CapacityCli`).
pub struct CapacityArgs {
    /// What every step must meet (`--slo`).
    pub slo: Slo,
    /// Cameras of the first step, the reference (`--start`).
    pub start: usize,
    /// Most cameras tried (`--max`).
    pub max: usize,
    /// The fleet's picture size, `full` or `small`.
    pub size: String,
    /// How long each step's run lasts, warm-up included.
    pub duration: Duration,
    /// Each step's warm-up, left out of its latency windows.
    pub warmup: Duration,
    /// Incident script for every step; `None`: the default incidents on the
    /// cameras every step's fleet has.
    pub incidents: Option<String>,
    /// Gateway configuration with the `[[detector]]` every step runs.
    pub detector_config: PathBuf,
    /// Folder of encoded clips (made once, reused by every step).
    pub cache: PathBuf,
    /// Work folder; step N keeps its run and report in `cameras-N/`.
    pub workdir: PathBuf,
    /// Where to write the capacity summary (JSON); `None`: not written.
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
    /// The incident script every step ran.
    incidents: String,
    /// The reference step (the first, smallest fleet): its incident
    /// problems are the model's and held against no step.
    reference_cameras: usize,
    /// The reference step's missed incidents, false and doubled alerts.
    model_problems: Vec<String>,
    steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
struct Step {
    cameras: usize,
    passed: bool,
    /// Why the step failed: objectives missed, and incident problems the
    /// reference step did not have.
    misses: Vec<String>,
    /// Incident problems the reference step had too (the model's).
    excused: Vec<String>,
    report: PathBuf,
}

/// Runs one step; `reference` holds the first step's incident problems
/// (set by the first step).
fn step(
    args: &CapacityArgs,
    incidents: &str,
    cameras: usize,
    reference: &mut Option<Vec<String>>,
) -> anyhow::Result<Step> {
    let dir = args.workdir.join(format!("cameras-{cameras}"));
    let report_path = dir.join("report.json");
    println!("capacity: {cameras} cameras …");
    let report = relay::run(RelayArgs {
        cameras,
        mix: None,
        size: args.size.clone(),
        duration: args.duration,
        incidents: Some(incidents.to_string()),
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
        clips: true,
        strict: false,
    })?;
    let mut misses = args.slo.misses(&report);
    let problems = &report.incidents.problems;
    let reference = reference.get_or_insert_with(|| problems.clone());
    let (load, excused) = judge_incidents(reference, problems);
    misses.extend(load);
    let passed = misses.is_empty();
    println!(
        "capacity: {cameras} cameras {}{}",
        if passed {
            "meet the SLO".to_string()
        } else {
            format!("miss it: {}", misses.join("; "))
        },
        if excused.is_empty() {
            String::new()
        } else {
            format!(
                " (not held against them, as the smallest fleet had them too: {})",
                excused.join("; ")
            )
        }
    );
    Ok(Step {
        cameras,
        passed,
        misses,
        excused,
        report: report_path,
    })
}

pub fn run(args: CapacityArgs) -> anyhow::Result<()> {
    let mut search = Search::new(args.start, args.max)?;
    let incidents = step_incidents(&args)?;
    println!("capacity: every step scripts incidents {incidents}");
    // Every step's gateway uses this detector's model; hashed before the first.
    let models = crate::provenance::model_sha256(&args.detector_config)?;
    let mut steps = Vec::new();
    let mut reference: Option<Vec<String>> = None;
    let limit = search.step_limit();
    let outcome = loop {
        match search.next() {
            Next::Done(outcome) => break outcome,
            Next::Run(_) if steps.len() >= limit => {
                bail!("capacity: the search ran {limit} steps without settling")
            }
            Next::Run(n) => {
                let s = step(&args, &incidents, n, &mut reference)?;
                search.record(n, s.passed);
                steps.push(s);
            }
        }
    };
    let summary = CapacitySummary {
        provenance: crate::provenance::Provenance::now(
            crate::provenance::ReportKind::Capacity,
            models,
        ),
        slo: args.slo.clone(),
        capacity_cameras: outcome.capacity,
        first_miss_cameras: outcome.first_miss,
        duration_s: args.duration.as_secs_f64(),
        incidents,
        reference_cameras: args.start,
        model_problems: reference.unwrap_or_default(),
        steps,
    };
    match outcome.capacity {
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

    /// Runs the search against a machine that carries exactly `capacity`
    /// cameras; the sizes it tried and the outcome.
    fn search(start: usize, max: usize, capacity: usize) -> (Vec<usize>, Outcome) {
        let mut s = Search::new(start, max).expect("valid bounds");
        let mut tried = Vec::new();
        for _ in 0..s.step_limit() {
            match s.next() {
                Next::Run(n) => {
                    tried.push(n);
                    s.record(n, n <= capacity);
                }
                Next::Done(o) => return (tried, o),
            }
        }
        panic!("no outcome after {} steps: {tried:?}", s.step_limit());
    }

    fn outcome(capacity: Option<usize>, first_miss: Option<usize>) -> Outcome {
        Outcome {
            capacity,
            first_miss,
        }
    }

    #[test]
    fn doubles_then_bisects_to_a_quarter_of_the_pass() {
        // 8 passes, 16 misses; 12 and then 10 narrow it to 10 (pass) and 12
        // (miss), 2 apart, a quarter of 8: log2(8 / 2) = 2 bisection steps.
        let (tried, o) = search(8, 128, 11);
        assert_eq!(tried, [8, 16, 12, 10]);
        assert_eq!(o, outcome(Some(10), Some(12)));
        // At one camera's resolution the capacity is exact: 2, 4 pass, 8
        // misses, then 6 (miss) and 5 (pass).
        let (tried, o) = search(2, 128, 5);
        assert_eq!(tried, [2, 4, 8, 6, 5]);
        assert_eq!(o, outcome(Some(5), Some(6)));
        // From one camera to a capacity of 11: 1, 2, 4, 8 pass, 16 misses,
        // 12 misses, 10 passes; 11 is within 8 / 4 of both.
        let (tried, o) = search(1, 128, 11);
        assert_eq!(tried, [1, 2, 4, 8, 16, 12, 10]);
        assert_eq!(o, outcome(Some(10), Some(12)));
    }

    #[test]
    fn a_first_step_that_misses_ends_the_search() {
        let (tried, o) = search(8, 128, 5);
        assert_eq!(tried, [8]);
        assert_eq!(o, outcome(None, Some(8)));
    }

    #[test]
    fn the_ceiling_is_tried_and_ends_the_search() {
        // Doubling stops at --max, which is run even off the doubling.
        let (tried, o) = search(3, 10, 1000);
        assert_eq!(tried, [3, 6, 10]);
        assert_eq!(o, outcome(Some(10), None));
        let (tried, o) = search(3, 3, 1000);
        assert_eq!(tried, [3]);
        assert_eq!(o, outcome(Some(3), None));
        // A miss at the ceiling is bisected like any other: 7 misses, then
        // 5 passes and 6 misses.
        let (tried, o) = search(2, 7, 5);
        assert_eq!(tried, [2, 4, 7, 5, 6]);
        assert_eq!(o, outcome(Some(5), Some(6)));
        // … down to the resolution: 10 misses, 8 passed, 2 (8 / 4) apart.
        let (tried, o) = search(4, 10, 9);
        assert_eq!(tried, [4, 8, 10]);
        assert_eq!(o, outcome(Some(8), Some(10)));
    }

    #[test]
    fn every_search_brackets_the_capacity_within_its_resolution() {
        for start in 1..=12 {
            for max in start..=70 {
                for capacity in 0..=max + 1 {
                    let (tried, o) = search(start, max, capacity);
                    assert!(tried.iter().all(|&n| n >= start && n <= max), "{tried:?}");
                    match (o.capacity, o.first_miss) {
                        (None, Some(m)) => assert!(capacity < start && m == start),
                        (Some(c), None) => assert!(c == max && capacity >= max),
                        (Some(c), Some(m)) => {
                            assert!(
                                c <= capacity && capacity < m,
                                "{start}..{max}, capacity {capacity}: {o:?} after {tried:?}"
                            );
                            assert!(m - c <= Search::resolution(c), "{o:?} after {tried:?}");
                        }
                        (None, None) => panic!("no outcome: {tried:?}"),
                    }
                    // No size is run twice.
                    let mut unique = tried.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    assert_eq!(unique.len(), tried.len(), "{tried:?}");
                }
            }
        }
    }

    #[test]
    fn the_search_refuses_empty_bounds() {
        assert!(Search::new(0, 8).is_err());
        assert!(Search::new(9, 8).is_err());
    }

    #[test]
    fn incident_problems_the_reference_had_are_the_models() {
        let reference = vec![
            "missed: drone-01 smoke (onset at 9.0 s)".to_string(),
            "false alert: tower-01 flood (alert a-1)".to_string(),
        ];
        let step = vec![
            // The same miss, at another onset time: the model's.
            "missed: drone-01 smoke (onset at 12.0 s)".to_string(),
            // A miss the reference caught: the load's.
            "missed: tower-01 smoke (onset at 6.0 s)".to_string(),
            "false alert: tower-01 flood (alert b-7)".to_string(),
            // Once more than the reference: the load's.
            "false alert: tower-01 flood (alert b-9)".to_string(),
            "duplicate: tower-02 smoke (alert b-3)".to_string(),
        ];
        let (load, excused) = judge_incidents(&reference, &step);
        assert_eq!(
            excused,
            [
                "missed: drone-01 smoke (onset at 12.0 s)",
                "false alert: tower-01 flood (alert b-7)"
            ]
        );
        assert_eq!(
            load,
            [
                "missed: tower-01 smoke (onset at 6.0 s)",
                "false alert: tower-01 flood (alert b-9)",
                "duplicate: tower-02 smoke (alert b-3)"
            ]
        );
        // The reference itself: all its problems are the model's.
        let (load, excused) = judge_incidents(&reference, &reference);
        assert!(load.is_empty());
        assert_eq!(excused, reference);
    }

    #[test]
    fn incidents_go_on_cameras_every_step_has() {
        // Proportional fleets: 3 cameras are a tower and two fixed, 4 a
        // tower, a drone, a bodycam and one fixed.
        assert_eq!(
            common_cameras(3, 3, "small").expect("plan"),
            ["tower-01", "fixed-01", "fixed-02"]
        );
        assert_eq!(
            common_cameras(3, 4, "small").expect("plan"),
            ["tower-01", "fixed-01"]
        );
        let common = common_cameras(8, 64, "small").expect("plan");
        for n in 8..=64 {
            let ids = crate::stack::planned_ids(n, None, "small").expect("plan");
            assert!(common.iter().all(|c| ids.contains(c)), "{n}: {common:?}");
        }
    }
}
