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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::fleet::incidents::Onset;
use crate::fleet::profile::{Mix, Size};
use crate::procs::{self, Proc};

/// The detector-vs-raw-ONNX-Runtime comparison as `detect` and `run` make it:
/// this many alternating rounds of this many seconds each side. Short, many
/// rounds let a noisy neighbour's bursts fall on both sides alike.
pub const BENCH_ROUNDS: usize = 10;
pub const BENCH_SECONDS: f64 = 0.3;

pub struct DetectArgs {
    pub cameras: usize,
    pub mix: Option<String>,
    pub size: String,
    pub duration: Duration,
    /// `None`: `default_incidents`: two 12 s incidents per camera, one of each class.
    pub incidents: Option<String>,
    pub detector_config: PathBuf,
    pub sampling: String,
    pub cache: PathBuf,
    pub workdir: PathBuf,
    pub bench_seconds: f64,
    pub report: Option<PathBuf>,
}

/// Latency percentiles of one histogram, ms. With no sample (`count` 0)
/// the figures are 0.0 here and `null` in a report: nothing was measured.
#[derive(Debug, Clone, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub count: u64,
}

impl Serialize for Percentiles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let measured = |v: f64| (self.count > 0).then_some(v);
        let mut st = s.serialize_struct("Percentiles", 6)?;
        st.serialize_field("p50", &measured(self.p50))?;
        st.serialize_field("p90", &measured(self.p90))?;
        st.serialize_field("p99", &measured(self.p99))?;
        st.serialize_field("p999", &measured(self.p999))?;
        st.serialize_field("max", &measured(self.max))?;
        st.serialize_field("count", &self.count)?;
        st.end()
    }
}

impl Percentiles {
    /// p99 when there was a sample.
    pub(crate) fn p99_measured(&self) -> Option<f64> {
        (self.count > 0).then_some(self.p99)
    }
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |v: u64| v as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        count: h.len(),
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

/// How the alerts compare with the ground truth.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Score {
    pub scripted: usize,
    pub alerted: usize,
    pub missed: usize,
    pub false_alerts: usize,
    pub duplicate_alerts: usize,
    /// Camera and class of each miss, false or duplicate alert.
    pub problems: Vec<String>,
}

impl Score {
    /// `N scripted, N alerted, N missed, N false, N duplicate`.
    pub(crate) fn counts(&self) -> String {
        format!(
            "{} scripted, {} alerted, {} missed, {} false, {} duplicate",
            self.scripted, self.alerted, self.missed, self.false_alerts, self.duplicate_alerts
        )
    }
}

/// The alert fields scoring needs.
#[derive(Debug, Clone)]
pub struct SeenAlert {
    pub id: String,
    pub camera: String,
    pub label: String,
    pub capture_unix_ns: u64,
    pub detect_unix_ns: u64,
    pub raised_unix_ns: u64,
    /// The gateway's share: frame received → detected, ms.
    pub receive_to_detect_ms: f64,
}

impl SeenAlert {
    pub(crate) fn from_json(v: &Value) -> Option<SeenAlert> {
        Some(SeenAlert {
            id: v["id"].as_str()?.to_string(),
            camera: v["camera"]["id"].as_str()?.to_string(),
            label: v["label"].as_str()?.to_string(),
            capture_unix_ns: v["capture_unix_ns"].as_u64()?,
            detect_unix_ns: v["detect_unix_ns"].as_u64()?,
            raised_unix_ns: v["raised_unix_ns"].as_u64()?,
            receive_to_detect_ms: v["receive_to_detect_ms"].as_f64().unwrap_or(0.0),
        })
    }
}

/// Matches alerts to onsets. An alert counts for an incident when it has
/// the incident's camera and class and its triggering frame was captured at
/// or after the onset, and before the next onset of the same class on the
/// same camera (which it would count for instead).
pub fn score(onsets: &[Onset], alerts: &[SeenAlert]) -> (Score, Vec<(Onset, SeenAlert)>) {
    let mut s = Score {
        scripted: onsets.len(),
        ..Default::default()
    };
    let mut matched = Vec::new();
    let mut used = vec![false; alerts.len()];
    for o in onsets {
        let next = onsets
            .iter()
            .filter(|n| {
                n.camera == o.camera
                    && n.class == o.class
                    && n.onset_capture_unix_ns > o.onset_capture_unix_ns
            })
            .map(|n| n.onset_capture_unix_ns)
            .min()
            .unwrap_or(u64::MAX);
        let mut hits: Vec<usize> = (0..alerts.len())
            .filter(|&i| {
                let a = &alerts[i];
                a.camera == o.camera
                    && a.label == o.class
                    && a.capture_unix_ns >= o.onset_capture_unix_ns
                    && a.capture_unix_ns < next
            })
            .collect();
        hits.sort_by_key(|&i| alerts[i].raised_unix_ns);
        match hits.split_first() {
            Some((&first, rest)) => {
                s.alerted += 1;
                used[first] = true;
                matched.push((o.clone(), alerts[first].clone()));
                for &d in rest {
                    used[d] = true;
                    s.duplicate_alerts += 1;
                    s.problems.push(format!(
                        "duplicate: {} {} (alert {})",
                        o.camera, o.class, alerts[d].id
                    ));
                }
            }
            None => {
                s.missed += 1;
                s.problems.push(format!(
                    "missed: {} {} (onset at {:.1} s)",
                    o.camera, o.class, o.scripted_at_s
                ));
            }
        }
    }
    for (i, a) in alerts.iter().enumerate() {
        if !used[i] {
            s.false_alerts += 1;
            s.problems.push(format!(
                "false alert: {} {} (alert {})",
                a.camera, a.label, a.id
            ));
        }
    }
    (s, matched)
}

#[derive(Debug, Serialize)]
pub struct DetectReport {
    /// Schema, kind, version, git revision, command line, model hashes.
    #[serde(flatten)]
    pub provenance: crate::provenance::Provenance,
    /// When the fleet started, UTC.
    pub started_at: String,
    pub machine: Value,
    pub setup: Value,
    pub incidents: Score,
    pub latency_ms: HashMap<String, Percentiles>,
    pub detector: Value,
    pub baselines: Value,
    pub ratios: Value,
    pub bench: Value,
}

/// How long a default incident is shown before the scene is clean again.
const DEFAULT_INCIDENT_S: f64 = 12.0;

/// Seconds a default incident must leave before the run ends: the next
/// keyframes, the debounce (2 of 3 samples) and the relay to the center.
const DEFAULT_ALERT_ROOM_S: f64 = 6.0;

/// Default script: every camera shows an incident of the class its kind is
/// mostly watched for (smoke on towers and body cameras, flood on drones and
/// fixed road/river cameras), each 12 s long, their onsets spread over 9 s
/// from a fifth of the run in; then, 2 s after the first ends, one of the
/// other class. An incident is scripted only if it ends with 6 s of the run
/// left, so a 60 s run of N cameras scripts 2 N incidents and a 30 s run
/// about N. Alerts are per camera and label, so the second incident is
/// judged on its own, not hidden by the first one's cooldown.
pub(crate) fn default_incidents(ids: &[String], duration_s: f64) -> String {
    let first = (duration_s * 0.2).clamp(6.0, 15.0);
    let fits = |at: f64| at + DEFAULT_INCIDENT_S + DEFAULT_ALERT_ROOM_S <= duration_s;
    let mut out = Vec::new();
    for (k, cam) in ids.iter().enumerate() {
        let (a, b) = if cam.starts_with("drone") || cam.starts_with("fixed") {
            ("flood", "smoke")
        } else {
            ("smoke", "flood")
        };
        let t1 = first + ((k * 3) % 10) as f64;
        let t2 = t1 + DEFAULT_INCIDENT_S + 2.0;
        for (class, at) in [(a, t1), (b, t2)] {
            if fits(at) {
                out.push(format!("{cam}:{class}@{at}+{DEFAULT_INCIDENT_S}"));
            }
        }
    }
    out.join(",")
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
    let started_at = crate::relay::utc_now();
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
    // Kept for whoever digs into a run (per-camera series).
    let _ = std::fs::write(args.workdir.join("metrics.txt"), &metrics);
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
        let _ = cap.record((a.detect_unix_ns.saturating_sub(a.capture_unix_ns) / 1000).max(1));
    }
    let mut gw = histogram();
    for a in &alerts {
        let _ = gw.record(((a.receive_to_detect_ms * 1000.0) as u64).max(1));
    }
    let mut onset_h = histogram();
    for (o, a) in &matched {
        let _ = onset_h
            .record((a.raised_unix_ns.saturating_sub(o.onset_capture_unix_ns) / 1000).max(1));
    }
    // Counts as integers, rates and means `null` where nothing was measured.
    let mut detector_figures = crate::relay::detector_figures(&metrics, true, args.duration);
    let stage = |s: &str| {
        let sum = metric_stage(&metrics, "lookout_detect_stage_seconds_sum", s);
        let count = metric_stage(&metrics, "lookout_detect_stage_seconds_count", s);
        (count > 0.0).then(|| sum / count * 1000.0)
    };
    detector_figures["stage_mean_ms"] = serde_json::json!({
        "queue": stage("queue"),
        "decode": stage("decode"),
        "preprocess": stage("preprocess"),
        "inference": stage("inference"),
        "postprocess": stage("postprocess"),
    });

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
        machine: crate::relay::machine(),
        setup: serde_json::json!({
            "cameras": watched,
            "mix": crate::relay::mix_counts(&gw_config),
            "size": args.size,
            "duration_s": args.duration.as_secs_f64(),
            "sampling": args.sampling,
            "detector": detector_id,
            "link": "loopback",
        }),
        incidents: score,
        latency_ms: latency,
        detector: detector_figures,
        baselines: serde_json::json!({ "ort_raw_inferences_per_s": raw }),
        ratios: serde_json::json!({ "detector_vs_ort_raw": crate::relay::ratio(det, raw) }),
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

/// The fleet part of a benchmark run.
pub(crate) struct FleetRun {
    pub cameras: usize,
    pub mix: Option<String>,
    pub size: String,
    pub cache: PathBuf,
    /// `None`: `default_incidents`: two 12 s incidents per camera, one of each class.
    pub incidents: Option<String>,
    pub duration: Duration,
}

/// The camera ids the fleet gives `cameras` (or `mix`) of `size`: it names
/// its cameras by plan, so this asks the same plan.
pub(crate) fn planned_ids(
    cameras: usize,
    mix: Option<&str>,
    size: &str,
) -> anyhow::Result<Vec<String>> {
    let mix = Mix::parse(cameras, mix)?;
    let size = if size == "small" {
        Size::Small
    } else {
        Size::Full
    };
    Ok(crate::fleet::plan(&mix, size, false)
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// The incidents that have begun so far, from the fleet's ground truth;
/// `None` while it cannot be read.
pub(crate) fn read_onsets(ground_truth: &Path) -> Option<Vec<Onset>> {
    serde_json::from_str(&std::fs::read_to_string(ground_truth).ok()?).ok()
}

/// Starts `lookout-loadtest fleet` on a free port with the incidents, and
/// waits until it serves. Returns it, the gateway configuration it wrote
/// for its cameras, its ground-truth file, and when it started serving.
pub(crate) fn start_fleet(
    run: &FleetRun,
    workdir: &Path,
) -> anyhow::Result<(Proc, PathBuf, PathBuf, Instant)> {
    let me = std::env::current_exe().context("locating lookout-loadtest")?;
    let gw_config = workdir.join("gateway.toml");
    let ground_truth = workdir.join("ground-truth.json");
    let _ = std::fs::remove_file(&gw_config);
    let mut fleet_args: Vec<String> = vec![
        "fleet".into(),
        "--port".into(),
        "0".into(),
        "--size".into(),
        run.size.clone(),
        "--cache".into(),
        run.cache.display().to_string(),
        "--emit-gateway-config".into(),
        gw_config.display().to_string(),
        "--ground-truth".into(),
        ground_truth.display().to_string(),
        "--duration-s".into(),
        format!("{}", run.duration.as_secs_f64() + 120.0),
    ];
    match &run.mix {
        Some(m) => fleet_args.extend(["--mix".into(), m.clone()]),
        None => fleet_args.extend(["--cameras".into(), run.cameras.to_string()]),
    }
    let incidents = match &run.incidents {
        Some(s) => s.clone(),
        None => {
            let ids = planned_ids(run.cameras, run.mix.as_deref(), &run.size)?;
            default_incidents(&ids, run.duration.as_secs_f64())
        }
    };
    if !incidents.is_empty() {
        fleet_args.extend(["--incidents".into(), incidents.clone()]);
    }
    println!("fleet: incidents {incidents}");
    let mut fleet = Proc::start(
        "fleet",
        &me,
        &fleet_args,
        &workdir.join("logs").join("fleet.log"),
    )?;
    procs::wait_for_log(&mut fleet, "fleet: serving", Duration::from_secs(900))?;
    Ok((fleet, gw_config, ground_truth, Instant::now()))
}

/// Starts `lookout run` on `config` and waits for its API on `http`;
/// returns it and how many cameras the file lists.
pub(crate) fn start_gateway(
    lookout: &Path,
    config: &Path,
    logs: &Path,
    http: &str,
) -> anyhow::Result<(Proc, usize)> {
    let mut gateway = Proc::start(
        "gateway",
        lookout,
        &[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &logs.join("gateway.log"),
    )?;
    procs::wait_http_ok(
        &format!("http://{http}/healthz"),
        Duration::from_secs(60),
        &mut gateway,
    )?;
    let cameras = std::fs::read_to_string(config)
        .map(|t| t.lines().filter(|l| *l == "[[camera]]").count())
        .unwrap_or(0);
    Ok((gateway, cameras))
}

/// Completes the gateway configuration the fleet wrote: `gateway_lines`
/// go into `[gateway]`, every camera gets the detector (id, sampling) if
/// given, and `blocks` (TOML tables) are appended.
pub(crate) fn write_gateway_config(
    path: &Path,
    gateway_lines: &[String],
    detector: Option<(&str, &str)>,
    blocks: &[String],
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg = String::new();
    for line in text.lines() {
        cfg.push_str(line);
        cfg.push('\n');
        if line == "id = \"fleet-gw\"" {
            for l in gateway_lines {
                cfg.push_str(l);
                cfg.push('\n');
            }
        }
        if let Some((id, sampling)) = detector
            && line.starts_with("kind = \"")
        {
            cfg.push_str(&format!(
                "detectors = [\"{id}\"]\nsampling = \"{sampling}\"\n"
            ));
        }
    }
    for b in blocks {
        cfg.push('\n');
        cfg.push_str(b);
    }
    std::fs::write(path, cfg).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
    println!("detector: {}", r.detector);
    print!("{}", String::from_utf8_lossy(bench_stdout));
}

/// The first `[[detector]]` of a gateway config file, with its model path
/// made absolute (it moves into the generated config), as TOML text; and its
/// id.
pub(crate) fn detector_block(path: &Path) -> anyhow::Result<(String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let dir = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let v: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut d = v
        .get("detector")
        .and_then(|d| d.as_array())
        .and_then(|a| a.first())
        .and_then(|d| d.as_table())
        .cloned()
        .with_context(|| format!("{}: no [[detector]] entry", path.display()))?;
    let id = d
        .get("id")
        .and_then(|i| i.as_str())
        .with_context(|| format!("{}: the [[detector]] has no id", path.display()))?
        .to_string();
    if let Some(model) = d.get("model").and_then(|m| m.as_str()) {
        let abs = dir.join(model);
        d.insert(
            "model".into(),
            toml::Value::String(abs.display().to_string()),
        );
    }
    let mut root = toml::Table::new();
    root.insert(
        "detector".into(),
        toml::Value::Array(vec![toml::Value::Table(d)]),
    );
    Ok((id, toml::to_string(&root)?))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn get_json(url: &str) -> anyhow::Result<Value> {
    let mut r = ureq::get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let text = r.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&text)?)
}

/// Sum of every series of a metric in a Prometheus text exposition.
pub(crate) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // An empty sum is -0.0; report 0.
        .fold(0.0, |a, b| a + b)
}

fn metric_stage(text: &str, name: &str, stage: &str) -> f64 {
    let needle = format!("stage=\"{stage}\"");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onset(camera: &str, class: &str, at: u64) -> Onset {
        Onset {
            camera: camera.into(),
            class: class.into(),
            scripted_at_s: 20.0,
            onset_frame: 500,
            onset_capture_unix_ns: at,
        }
    }

    fn alert(id: &str, camera: &str, label: &str, capture: u64) -> SeenAlert {
        SeenAlert {
            id: id.into(),
            camera: camera.into(),
            label: label.into(),
            capture_unix_ns: capture,
            detect_unix_ns: capture + 5,
            raised_unix_ns: capture + 5,
            receive_to_detect_ms: 0.0,
        }
    }

    #[test]
    fn a_second_incident_of_a_class_gets_its_own_alert() {
        let onsets = [
            onset("tower-01", "smoke", 1000),
            onset("tower-01", "smoke", 5000),
        ];
        let alerts = [
            alert("a", "tower-01", "smoke", 2000),
            alert("b", "tower-01", "smoke", 6000),
        ];
        let (s, matched) = score(&onsets, &alerts);
        assert_eq!(
            (s.alerted, s.missed, s.duplicate_alerts, s.false_alerts),
            (2, 0, 0, 0)
        );
        assert_eq!(matched[0].1.id, "a");
        assert_eq!(matched[1].1.id, "b");
    }

    #[test]
    fn the_default_script_gives_every_camera_two_incidents_in_a_minute() {
        let ids: Vec<String> = ["tower-01", "drone-01", "bodycam-01", "fixed-01"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let script = crate::fleet::incidents::parse(&default_incidents(&ids, 60.0))
            .expect("the default script parses");
        assert_eq!(script.len(), 8, "{script:?}");
        for id in &ids {
            let mine: Vec<_> = script.iter().filter(|i| &i.camera == id).collect();
            assert_eq!(mine.len(), 2, "{id}");
            assert_ne!(mine[0].class, mine[1].class, "{id}");
            // Shown, cleared, then the other class; both end with room to alert.
            let end0 = mine[0].at_s + mine[0].for_s.expect("ends");
            assert!(end0 < mine[1].at_s, "{mine:?}");
            assert!(mine[1].at_s + mine[1].for_s.expect("ends") + 6.0 <= 60.0);
        }
        let first = |id: &str| {
            script
                .iter()
                .find(|i| i.camera == id)
                .map(|i| i.class.as_str())
        };
        assert_eq!(first("tower-01"), Some("smoke"));
        assert_eq!(first("drone-01"), Some("flood"));
        // A 64-camera minute: at least 100 incidents to score.
        let many: Vec<String> = (1..=64).map(|k| format!("tower-{k:02}")).collect();
        assert_eq!(default_incidents(&many, 60.0).split(',').count(), 128);
        // A short run scripts only what can be alerted before it ends.
        for i in crate::fleet::incidents::parse(&default_incidents(&many, 30.0)).expect("parses") {
            assert!(i.at_s + 12.0 + 6.0 <= 30.0, "{i:?}");
        }
    }

    #[test]
    fn scoring_counts_hits_misses_false_and_duplicates() {
        let onsets = [
            onset("tower-01", "smoke", 1000),
            onset("drone-01", "flood", 1000),
        ];
        let alerts = [
            alert("a", "tower-01", "smoke", 3000),
            alert("b", "tower-01", "smoke", 9000),
            // Before the onset: false.
            alert("c", "drone-01", "flood", 500),
            // A clean camera.
            alert("d", "tower-02", "smoke", 3000),
        ];
        let (s, matched) = score(&onsets, &alerts);
        assert_eq!(
            (
                s.scripted,
                s.alerted,
                s.missed,
                s.false_alerts,
                s.duplicate_alerts
            ),
            (2, 1, 1, 2, 1)
        );
        assert_eq!(matched.len(), 1);
        assert_eq!(matched[0].1.id, "a");
        assert!(s.problems.iter().any(|p| p.starts_with("missed: drone-01")));
    }

    #[test]
    fn metric_sums_read_the_exposition() {
        let text = "lookout_detect_frames_total{detector=\"a\"} 10\nlookout_detect_frames_total{detector=\"b\"} 5\nlookout_detect_frames_totalx 99\n";
        assert_eq!(metric_sum(text, "lookout_detect_frames_total"), 15.0);
    }

    #[test]
    fn the_detector_block_moves_with_an_absolute_model_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("d.toml");
        std::fs::write(
            &f,
            "[gateway]\nid = \"x\"\n\n[[detector]]\nid = \"d\"\nmodel = \"m.onnx\"\ninput = { width = 8, height = 8 }\n",
        )
        .expect("write");
        let (id, block) = detector_block(&f).expect("block");
        assert_eq!(id, "d");
        let back: toml::Table = toml::from_str(&block).expect("toml");
        let d = &back["detector"][0];
        let canon = dir.path().canonicalize().expect("canon");
        assert_eq!(
            d["model"].as_str(),
            Some(canon.join("m.onnx").display().to_string().as_str())
        );
        assert_eq!(d["input"]["width"].as_integer(), Some(8));
        assert!(back.get("gateway").is_none());
    }
}
