//! `lookout-loadtest detect`: the detection benchmark an integrator runs.
//!
//! Starts a simulated fleet with scripted incidents, a gateway watching
//! every camera with a detector (keyframe sampling unless told otherwise),
//! lets it run, then scores the gateway's alerts against the fleet's ground
//! truth:
//! - every incident must raise exactly one alert (same camera, same class,
//!   raised after the onset) — a second one is a *duplicate*;
//! - any other alert is *false* (a clean camera, the wrong class, or before
//!   the onset);
//! - capture-to-alert (capture time of the frame that raised the alert →
//!   the gateway's detection of it; receive-to-alert is the gateway's own
//!   share, from the frame's arrival) and onset-to-alert (the incident's first
//!   frame → alert raised; includes waiting for the next keyframe and the
//!   debounce) percentiles, from HDR histograms.
//!
//! Then, in the same run, `lookout bench-detector` measures the detector's
//! throughput through the gateway's path next to bare ONNX Runtime on the
//! same model and batch size.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use crate::procs;
use crate::prom;
use crate::report::{
    DetectorFigures, Machine, StageMeans, detector_figures, json_text, machine, utc_now,
};
use crate::scoring::{Score, SeenAlert, read_onsets, score};
use crate::stack::{
    FleetRun, detector_block, free_port, get_json, mix_counts, start_fleet, start_gateway,
    write_gateway_config,
};
use crate::stats::{Percentiles, histogram, percentiles, ratio, record};

/// The detector-vs-raw-ONNX-Runtime comparison as `detect` and `run` make it:
/// this many alternating rounds of this many seconds each side. Short, many
/// rounds let a noisy neighbour's bursts fall on both sides alike.
pub const BENCH_ROUNDS: usize = 10;
pub const BENCH_SECONDS: f64 = 0.3;

/// What `detect` was asked for, from its command line (`cli::DetectCli`).
pub struct DetectArgs {
    /// Cameras in the fleet (split 3:2:2:1 towers:drones:bodycams:fixed) unless `mix` is given.
    pub cameras: usize,
    /// Cameras per kind, e.g. `towers=24,drones=16`; overrides `cameras`.
    pub mix: Option<String>,
    /// The fleet's picture size, `full` or `small`.
    pub size: String,
    /// From the fleet's first frame to reading the gateway's alerts.
    pub duration: Duration,
    /// `None`: `default_incidents`: two 12 s incidents per camera, one of each class.
    pub incidents: Option<String>,
    /// A gateway configuration whose first `[[detector]]` watches every camera.
    pub detector_config: PathBuf,
    /// The gateway's sampling: `keyframes` or a rate such as `2fps`.
    pub sampling: String,
    /// Folder of encoded clips for the fleet (made once, reused).
    pub cache: PathBuf,
    /// Work folder: configurations, `logs/`, `metrics.txt`, `bench-detector.json`.
    pub workdir: PathBuf,
    /// Seconds per round of `lookout bench-detector` (each side, [`BENCH_ROUNDS`] rounds).
    pub bench_seconds: f64,
    /// Where to write the report (JSON); `None`: printed only.
    pub report: Option<PathBuf>,
}

/// `detect`'s report: what `--report` writes as JSON (docs/REPORT.md).
#[derive(Debug, Serialize)]
pub struct DetectReport {
    /// Schema, kind, version, git revision, command line, model hashes.
    #[serde(flatten)]
    pub provenance: crate::provenance::Provenance,
    /// When the fleet started, UTC.
    pub started_at: String,
    /// The machine the benchmark ran on.
    pub machine: Machine,
    /// What was run.
    pub setup: DetectSetup,
    /// The scripted incidents scored against the gateway's alerts.
    pub incidents: Score,
    /// Alert latency percentiles by name: `capture_to_alert`,
    /// `receive_to_alert`, `onset_to_alert`.
    pub latency_ms: HashMap<String, Percentiles>,
    /// The gateway's detector over the run, with its mean time per stage.
    pub detector: DetectorFigures,
    /// The baseline the detector is compared with.
    pub baselines: DetectBaselines,
    /// The detector over its baseline.
    pub ratios: DetectRatios,
    /// `lookout bench-detector --json`'s own report, copied as that command
    /// wrote it (its schema is the gateway's `BenchReport`, not this crate's).
    pub bench: Value,
}

/// What `detect` ran (the report's `setup`). Fields in alphabetical order, the
/// order the report has always had.
#[derive(Debug, Clone, Serialize)]
pub struct DetectSetup {
    /// Cameras the gateway watches.
    pub cameras: usize,
    /// The `[[detector]]` id of `--detector-config`.
    pub detector: String,
    /// How long the fleet ran, s.
    pub duration_s: f64,
    /// Always `loopback`: no link emulator in `detect`.
    pub link: &'static str,
    /// Cameras per kind in the gateway's configuration.
    pub mix: BTreeMap<String, usize>,
    /// The gateway's sampling (`keyframes` unless told otherwise).
    pub sampling: String,
    /// The fleet's picture size (`--size`).
    pub size: String,
}

/// `detect`'s baseline (the report's `baselines`).
#[derive(Debug, Clone, Serialize)]
pub struct DetectBaselines {
    /// Bare ONNX Runtime on the detector's model, inferences per second, from
    /// `bench`; `null` when bench-detector's JSON lacks it.
    pub ort_raw_inferences_per_s: Option<f64>,
}

/// `detect`'s ratio (the report's `ratios`).
#[derive(Debug, Clone, Serialize)]
pub struct DetectRatios {
    /// Inferences per second through the gateway's detector path over bare
    /// ONNX Runtime's (both from `bench`); `null` when either is missing or the
    /// baseline is 0.
    pub detector_vs_ort_raw: Option<f64>,
}

pub fn run(args: DetectArgs) -> anyhow::Result<DetectReport> {
    let logs = args.workdir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let lookout = procs::sibling("lookout")?;
    let (detector_id, detector_block) = detector_block(&args.detector_config)?;

    let (mut fleet, gw_config, ground_truth, fleet_started) = start_fleet(
        &FleetRun {
            cameras: args.cameras,
            mix: args.mix.clone(),
            size: args.size.clone(),
            cache: args.cache.clone(),
            incidents: args.incidents.clone(),
            duration: args.duration,
        },
        &args.workdir,
    )?;
    let started_at = utc_now();
    let http = format!("127.0.0.1:{}", free_port()?);
    write_gateway_config(
        &gw_config,
        &[format!("http_listen = \"{http}\"")],
        Some((&detector_id, &args.sampling)),
        &[detector_block],
    )?;
    // Hashed before the run: a model that cannot be read fails now.
    let models = crate::provenance::model_sha256(&gw_config)?;
    let (mut gateway, watched) = start_gateway(&lookout, &gw_config, &logs, &http)?;
    println!(
        "gateway: watching {watched} cameras with detector {detector_id}, {} sampling; running {} s",
        args.sampling,
        args.duration.as_secs()
    );
    while fleet_started.elapsed() < args.duration {
        gateway.check_alive()?;
        fleet.check_alive()?;
        std::thread::sleep(Duration::from_millis(250));
    }
    let alerts_json = get_json(&format!("http://{http}/api/alerts?limit=1000"))?;
    let metrics = ureq::get(&format!("http://{http}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    // Kept for whoever digs into a run (per-camera series); the figures below
    // come from the text in memory, so a failed write loses only that copy.
    let metrics_txt = args.workdir.join("metrics.txt");
    if let Err(e) = std::fs::write(&metrics_txt, &metrics) {
        eprintln!("detect: writing {}: {e}", metrics_txt.display());
    }
    let onsets = read_onsets(&ground_truth).unwrap_or_default();
    let clean = gateway.stop(Duration::from_secs(10));
    fleet.stop(Duration::from_secs(10));
    if !clean {
        bail!("the gateway did not stop within 10 s of SIGTERM");
    }

    let alerts: Vec<SeenAlert> = alerts_json["alerts"]
        .as_array()
        .map(|a| a.iter().filter_map(SeenAlert::from_json).collect())
        .unwrap_or_default();
    let (score, matched) = score(&onsets, &alerts);
    let mut cap = histogram();
    for a in &alerts {
        let us = (a.detect_unix_ns.saturating_sub(a.capture_unix_ns) / 1000).max(1);
        record(&mut cap, us, "capture → alert");
    }
    let mut gw = histogram();
    for a in &alerts {
        let us = ((a.receive_to_detect_ms * 1000.0) as u64).max(1);
        record(&mut gw, us, "receive → alert");
    }
    let mut onset_h = histogram();
    for (o, a) in &matched {
        let us = (a.raised_unix_ns.saturating_sub(o.onset_capture_unix_ns) / 1000).max(1);
        record(&mut onset_h, us, "onset → alert");
    }
    // Counts as integers, rates and means `null` where nothing was measured.
    let mut detector_figures = detector_figures(&metrics, true, args.duration);
    detector_figures.stage_mean_ms = Some(stage_means(&metrics));

    // Throughput against bare ONNX Runtime, same model and batch size.
    let bench_json = args.workdir.join("bench-detector.json");
    let bench_out = std::process::Command::new(&lookout)
        .args(["bench-detector", "--config"])
        .arg(&gw_config)
        .args([
            "--seconds",
            &format!("{}", args.bench_seconds),
            "--rounds",
            &BENCH_ROUNDS.to_string(),
            "--json",
        ])
        .arg(&bench_json)
        .output()
        .context("running lookout bench-detector")?;
    if !bench_out.status.success() {
        bail!(
            "lookout bench-detector failed: {}",
            String::from_utf8_lossy(&bench_out.stderr)
        );
    }
    let bench: Value = serde_json::from_str(&std::fs::read_to_string(&bench_json)?)?;

    let mut latency = HashMap::new();
    latency.insert("capture_to_alert".to_string(), percentiles(&cap));
    latency.insert("onset_to_alert".to_string(), percentiles(&onset_h));
    latency.insert("receive_to_alert".to_string(), percentiles(&gw));
    let raw = bench["ort_raw"]["frames_per_s"].as_f64();
    let det = bench["detector_path"]["frames_per_s"].as_f64();
    let report = DetectReport {
        provenance: crate::provenance::Provenance::now(
            crate::provenance::ReportKind::Detect,
            models,
        ),
        started_at,
        machine: machine(),
        setup: DetectSetup {
            cameras: watched,
            detector: detector_id,
            duration_s: args.duration.as_secs_f64(),
            link: "loopback",
            mix: mix_counts(&gw_config),
            sampling: args.sampling,
            size: args.size,
        },
        incidents: score,
        latency_ms: latency,
        detector: detector_figures,
        baselines: DetectBaselines {
            ort_raw_inferences_per_s: raw,
        },
        ratios: DetectRatios {
            detector_vs_ort_raw: ratio(det, raw),
        },
        bench,
    };
    print_report(&report, &bench_out.stdout);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(report)
}

/// Mean time per detector stage, ms, from the gateway's metrics; `null`
/// for a stage without a sample.
fn stage_means(metrics: &str) -> StageMeans {
    let stage = |s: &str| {
        let sum = prom::sum_with(metrics, "lookout_detect_stage_seconds_sum", &[("stage", s)]);
        let count = prom::sum_with(
            metrics,
            "lookout_detect_stage_seconds_count",
            &[("stage", s)],
        );
        (count > 0.0).then(|| sum / count * 1000.0)
    };
    StageMeans {
        decode: stage("decode"),
        inference: stage("inference"),
        postprocess: stage("postprocess"),
        preprocess: stage("preprocess"),
        queue: stage("queue"),
    }
}

fn print_report(r: &DetectReport, bench_stdout: &[u8]) {
    let s = &r.incidents;
    println!();
    println!(
        "incidents: {} scripted, {} alerted, {} missed, {} false alerts, {} duplicates",
        s.scripted, s.alerted, s.missed, s.false_alerts, s.duplicate_alerts
    );
    for p in &s.problems {
        println!("  {p}");
    }
    for (name, p) in [
        ("capture_to_alert", &r.latency_ms["capture_to_alert"]),
        ("receive_to_alert", &r.latency_ms["receive_to_alert"]),
        ("onset_to_alert", &r.latency_ms["onset_to_alert"]),
    ] {
        println!(
            "{name:<17} ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (n={})",
            p.p50, p.p90, p.p99, p.p999, p.max, p.count
        );
    }
    println!("detector: {}", json_text(&r.detector));
    print!("{}", String::from_utf8_lossy(bench_stdout));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed `setup`, `baselines`, `ratios` and stage means write what the
    /// JSON maps they replaced wrote: same keys, same order.
    #[test]
    fn typed_sections_write_the_same_json_as_before() {
        let same = |typed: String, map: Value| assert_eq!(typed, map.to_string());
        same(
            serde_json::to_string(&DetectSetup {
                cameras: 4,
                detector: "smoke_flood".into(),
                duration_s: 60.0,
                link: "loopback",
                mix: BTreeMap::from([("tower".to_string(), 4)]),
                sampling: "keyframes".into(),
                size: "small".into(),
            })
            .expect("serializes"),
            serde_json::json!({
                "cameras": 4usize,
                "mix": {"tower": 4},
                "size": "small",
                "duration_s": 60.0,
                "sampling": "keyframes",
                "detector": "smoke_flood",
                "link": "loopback",
            }),
        );
        same(
            serde_json::to_string(&DetectBaselines {
                ort_raw_inferences_per_s: None,
            })
            .expect("serializes"),
            serde_json::json!({ "ort_raw_inferences_per_s": None::<f64> }),
        );
        same(
            serde_json::to_string(&DetectRatios {
                detector_vs_ort_raw: Some(0.5),
            })
            .expect("serializes"),
            serde_json::json!({ "detector_vs_ort_raw": Some(0.5) }),
        );
        let metrics = "lookout_detect_stage_seconds_sum{stage=\"decode\"} 0.5\n\
                       lookout_detect_stage_seconds_count{stage=\"decode\"} 100\n";
        same(
            serde_json::to_string(&stage_means(metrics)).expect("serializes"),
            serde_json::json!({
                "queue": None::<f64>,
                "decode": Some(5.0),
                "preprocess": None::<f64>,
                "inference": None::<f64>,
                "postprocess": None::<f64>,
            }),
        );
    }
}
