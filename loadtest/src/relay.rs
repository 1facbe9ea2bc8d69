//! `lookout-loadtest relay`: the relay benchmark and fault drill an
//! integrator runs before trusting a gateway → command-center link.
//!
//! Starts, as separate processes, a simulated fleet with scripted
//! incidents, a command center (`lookout center`) and a gateway (`lookout
//! run`) watching every camera with the detector and relaying to the
//! center over QUIC with mutual TLS (certificates made by `lookout certs`
//! in the work folder). Optionally the link between them goes through the
//! link emulator (rate cap, delay, loss, partitions) and the center is
//! killed and restarted mid-run. Then it checks and reports:
//!
//! - alerts: every alert the gateway raised is in the center's SQLite
//!   ledger exactly once (one record per id, none invented), every scripted
//!   incident is among them, and how long alerts took from capture and from
//!   being raised to being stored;
//! - video: frames the gateway handed to GOP streams vs frames the center
//!   received, per camera; GOPs sent, reset and skipped;
//! - latency: the relay's own share (a unit received by the gateway →
//!   received by the center) at p50/p99/p99.9 from the center's HDR
//!   histogram, next to the camera → gateway (RTSP) hop of the same frames
//!   as the baseline measured in the same run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use crate::faults::{Fault, FaultWatch, SENSOR_LABEL, SensorFeed};
use crate::link::{Impairment, Link, LinkArgs, Partition};
use crate::procs;
use crate::prom::{self, ROLES, cpu_by_role};
use crate::provenance::{self, Provenance, ReportKind};
use crate::report::{detector_figures, machine, utc_now};
use crate::scoring::{LedgerCheck, Score, SeenAlert, read_onsets};
use crate::stack::{
    self, FleetRun, Http, camera_ids, center_config, detector_block, get_json, mix_counts,
    start_center, start_fleet, start_gateway, upstream_block,
};
use crate::stats::buckets::Buckets;
use crate::stats::{Percentiles, center_percentiles, histogram, percentiles, ratio};

pub struct RelayArgs {
    pub cameras: usize,
    pub mix: Option<String>,
    pub size: String,
    pub duration: Duration,
    pub incidents: Option<String>,
    /// `None`: relay only, no detection (and no alerts).
    pub detector_config: Option<PathBuf>,
    pub cache: PathBuf,
    pub workdir: PathBuf,
    /// Latency windows start after this long.
    pub warmup: Duration,
    /// Gateway → center impairment; `None`: straight over loopback.
    pub link: Option<Impairment>,
    /// The link's profile name for the report (`loopback`, `cellular`, …).
    pub link_name: String,
    pub partitions: Vec<Partition>,
    /// Kill the center this long after the start, for this long.
    pub center_outage: Option<(Duration, Duration)>,
    /// Put a second, upper center ("city") above the first, which forwards
    /// everything to it (a cascade).
    pub cascade: bool,
    /// The center's `subscribe` setting (`all`, `alerting`).
    pub subscribe: String,
    /// Also measure the baselines: a bare GStreamer RTSP client per camera,
    /// and bare ONNX Runtime on the detector's model.
    pub baselines: bool,
    /// Per-camera latency budget for the gateway's GOP resets.
    pub latency_budget_ms: Option<u64>,
    /// Simulated gauge alerts per second through `POST /api/alerts`.
    pub sensor_alerts_per_s: f64,
    pub report: Option<PathBuf>,
    pub strict: bool,
}

/// Frames per camera: camera side, gateway side and center side.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CameraFrames {
    /// Access units the gateway received from the camera.
    pub received_at_gateway: u64,
    /// Frames the camera numbered in its capture stamps that never reached the
    /// gateway; `None` for a camera that does not number its frames.
    pub lost_camera_to_gateway: Option<u64>,
    /// Frames the gateway's relay sent to the center.
    pub sent: u64,
    pub received_at_center: u64,
    pub gops_sent: u64,
    pub gops_reset: u64,
    pub gops_skipped: u64,
}

/// The fleet's frames hop by hop, summed over cameras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHops {
    /// What the cameras that number their frames numbered, from the first frame the
    /// gateway received to the last (received + lost on the way); `None` when no
    /// camera numbers its frames.
    sent_by_cameras: Option<u64>,
    received_at_gateway: u64,
    lost_camera_to_gateway: Option<u64>,
}

impl FrameHops {
    fn of(cameras: &BTreeMap<String, CameraFrames>) -> FrameHops {
        let numbered: Vec<&CameraFrames> = cameras
            .values()
            .filter(|c| c.lost_camera_to_gateway.is_some())
            .collect();
        let lost = (!numbered.is_empty()).then(|| {
            numbered
                .iter()
                .map(|c| c.lost_camera_to_gateway.unwrap_or(0))
                .sum::<u64>()
        });
        FrameHops {
            sent_by_cameras: lost
                .map(|l| l + numbered.iter().map(|c| c.received_at_gateway).sum::<u64>()),
            received_at_gateway: cameras.values().map(|c| c.received_at_gateway).sum(),
            lost_camera_to_gateway: lost,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    /// Schema, kind, version, git revision, command line, model hashes.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// When the measured window began, UTC.
    pub started_at: String,
    pub machine: Value,
    pub setup: Value,
    pub frames: Value,
    pub cameras: BTreeMap<String, CameraFrames>,
    pub incidents: Score,
    pub alerts: Value,
    pub latency_ms: HashMap<String, Percentiles>,
    pub baselines: Value,
    pub ratios: Value,
    pub slo: Value,
    pub link: Option<Value>,
    /// Each fault window (partition, center outage): gateway memory before
    /// and during it, and when each camera was live again after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Value>,
    /// The simulated gauge's alerts: posted, confirmed, in the ledger.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub sensor_alerts: Value,
    /// With `--cascade`: what reached the upper center.
    pub cascade: Option<Value>,
    /// CPU (cores: 1.0 = one core busy) over the measured window.
    pub cpu_cores: Value,
    pub memory_mib: Value,
    pub detector: Value,
    /// Once a second: CPU and memory of each process, and the relay's delay
    /// that second (from the center's histogram buckets).
    pub timeline: Vec<Value>,
    /// The relay's delay over the window as a cumulative distribution at the
    /// center's histogram bounds (`[{"le_ms", "share"}]`); `null` if unread.
    pub relay_cdf: Value,
}

pub fn run(mut args: RelayArgs) -> anyhow::Result<RelayReport> {
    let logs;
    (args.workdir, logs) = stack::workdir(&args.workdir)?;
    let lookout = procs::sibling("lookout")?;
    let certs = args.workdir.join("certs");
    stack::make_certs(&lookout, &certs, &["center", "city"])?;

    // The upper center of a cascade, which the center forwards to.
    let mut city = None;
    let mut upward = String::new();
    if args.cascade {
        let (city_config, city_quic, city_http) = center_config(&args.workdir, &certs, "city", "")?;
        city = Some((
            start_center(&lookout, &city_config, &logs.join("city.log"), &city_http)?,
            city_http,
        ));
        upward = upstream_block("city", &format!("127.0.0.1:{city_quic}"), &certs, "center");
    }
    // The center, with a fresh ledger.
    let (center_config, quic_port, center_http) = center_config(
        &args.workdir,
        &certs,
        "center",
        &format!("subscribe = \"{}\"\n{upward}", args.subscribe),
    )?;
    let center_log = logs.join("center.log");
    let mut center = start_center(&lookout, &center_config, &center_log, &center_http)?;

    // The link, if impaired.
    let center_addr: std::net::SocketAddr = format!("127.0.0.1:{quic_port}").parse()?;
    let link = match &args.link {
        Some(imp) => Some(Link::start(LinkArgs {
            listen: "127.0.0.1:0".parse()?,
            server: center_addr,
            up: imp.clone(),
            down: Impairment {
                rate_bps: 0,
                ..imp.clone()
            },
            partitions: args.partitions.clone(),
            seed: 1,
            duration: Some(args.duration + Duration::from_secs(300)),
        })?),
        None => None,
    };
    let dial = link.as_ref().map_or(center_addr, |l| l.addr);
    // Partitions count from the link's start, everything else from the
    // fleet's.
    let link_started = Instant::now();

    // The fleet and the gateway.
    let (mut fleet, gw_config, ground_truth, fleet_started) = start_fleet(
        &FleetRun {
            cameras: args.cameras,
            mix: args.mix.clone(),
            size: args.size.clone(),
            cache: args.cache.clone(),
            incidents: match (&args.detector_config, &args.incidents) {
                (None, _) => Some(String::new()),
                (Some(_), i) => i.clone(),
            },
            duration: args.duration,
        },
        &args.workdir,
    )?;
    let detector = match &args.detector_config {
        Some(p) => Some(detector_block(p)?),
        None => None,
    };
    let gw_http = stack::gateway_config(
        &args.workdir,
        &gw_config,
        &certs,
        detector.as_ref(),
        &dial.to_string(),
    )?;
    if let Some(budget) = args.latency_budget_ms {
        let text = std::fs::read_to_string(&gw_config)?;
        let text = text.replace(
            "kind = \"",
            &format!("latency_budget_ms = {budget}\nkind = \""),
        );
        std::fs::write(&gw_config, text)?;
    }
    // Hashed before the run: a model that cannot be read fails now, not
    // after minutes of measuring.
    let models = provenance::model_sha256(&gw_config)?;
    let (mut gateway, watched) = start_gateway(&lookout, &gw_config, &logs, &gw_http)?;
    let feed = (args.sensor_alerts_per_s > 0.0).then(|| {
        SensorFeed::start(
            &gw_http,
            camera_ids(&gw_config),
            args.sensor_alerts_per_s,
            args.duration,
        )
    });
    let mut watch = FaultWatch::new(
        args.partitions
            .iter()
            .map(|p| {
                let lead = fleet_started.saturating_duration_since(link_started);
                Fault {
                    kind: "partition",
                    start: p.start.saturating_sub(lead),
                    end: (p.start + p.length).saturating_sub(lead),
                }
            })
            .chain(args.center_outage.map(|(at, length)| Fault {
                kind: "center-outage",
                start: at,
                end: at + length,
            }))
            .collect(),
    );
    println!(
        "relay: {watched} cameras, gateway → {} center{}; running {} s",
        if link.is_some() {
            "link emulator →"
        } else {
            "loopback →"
        },
        if args.detector_config.is_some() {
            ", detector on keyframes"
        } else {
            ""
        },
        args.duration.as_secs()
    );

    // Live figures while it runs; drawn only on a terminal (hidden when
    // the output goes to a file or a test harness).
    let bar = indicatif::ProgressBar::new(args.duration.as_secs());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let http = Http::new(Some(Duration::from_secs(10)));
    let mut last_figures = Instant::now();
    let mut warm = false;
    let mut outage_done = args.center_outage.is_none();
    let mut started_at = utc_now();
    let mut window: Option<(Instant, [f64; 3])> = None;
    let mut warm_unix_ns: u64 = 0;
    // The gateway's own CPU by thread role at the window's start.
    let mut roles_before: Option<[f64; ROLES.len()]> = None;
    let roles_of = |http: &Http| {
        http.text(&format!("http://{gw_http}/metrics"))
            .map(|text| cpu_by_role(&text))
    };
    let mut last_sample: Option<TimelineSample> = None;
    let mut timeline = Vec::new();
    // The center's relay-delay histogram at the window's start and at the last
    // sample: their differences are the delay second by second and over the window.
    let center_buckets = |http: &Http| {
        http.text(&format!("http://{center_http}/metrics"))
            .and_then(|page| Buckets::of_center(&page, "gateway"))
    };
    let mut delay_start: Option<Buckets> = None;
    let mut delay_last: Option<Buckets> = None;
    // Peak resident memory of the gateway and the center; `None` until read.
    let mut peak: [Option<f64>; 2] = [None; 2];
    let raise = |peak: &mut Option<f64>, hwm: f64| *peak = Some(peak.map_or(hwm, |p| p.max(hwm)));
    let cpu_of = |pids: [u32; 3]| pids.map(|p| procs::cpu_seconds(p).unwrap_or(0.0));
    while fleet_started.elapsed() < args.duration {
        let pids = [gateway.pid(), fleet.pid(), center.pid()];
        let now = Instant::now();
        if warm
            && last_sample
                .as_ref()
                .is_none_or(|s| now.duration_since(s.at) >= Duration::from_secs(1))
        {
            let sample = TimelineSample {
                at: now,
                cpu: cpu_of(pids),
                wait: pids.map(procs::run_queue_wait_seconds),
                machine: procs::machine_cpu_ticks(),
            };
            if let Some(before) = &last_sample {
                let dt = now.duration_since(before.at).as_secs_f64();
                let (cpu, was) = (&sample.cpu, &before.cpu);
                // Thread-seconds spent waiting for a CPU per second: above
                // zero, the process had work and no core to run it on.
                let waited = |i: usize| match (sample.wait[i], before.wait[i]) {
                    (Some(now), Some(then)) => serde_json::json!(((now - then) / dt).max(0.0)),
                    _ => serde_json::Value::Null,
                };
                let machine = match (sample.machine, before.machine) {
                    (Some(now), Some(then)) if now.all > then.all => {
                        let all = (now.all - then.all) as f64;
                        serde_json::json!({
                            "busy": now.busy.saturating_sub(then.busy) as f64 / all,
                            "steal": now.steal.saturating_sub(then.steal) as f64 / all,
                        })
                    }
                    _ => serde_json::json!({ "busy": null, "steal": null }),
                };
                let buckets = center_buckets(&http);
                let relay_ms = match (&buckets, &delay_last) {
                    (Some(now), Some(then)) => now.since(then).map(|d| d.summary()),
                    _ => None,
                }
                .unwrap_or(Value::Null);
                if buckets.is_some() {
                    delay_last = buckets;
                }
                let gw_mem = procs::rss_mib(pids[0]);
                let center_mem = procs::rss_mib(pids[2]);
                if let Some((_, hwm)) = gw_mem {
                    raise(&mut peak[0], hwm);
                }
                if let Some((_, hwm)) = center_mem {
                    raise(&mut peak[1], hwm);
                }
                timeline.push(serde_json::json!({
                    "t_s": fleet_started.elapsed().as_secs_f64(),
                    "cpu_cores": {
                        "gateway": (cpu[0] - was[0]) / dt,
                        "fleet": (cpu[1] - was[1]) / dt,
                        "center": (cpu[2] - was[2]) / dt,
                    },
                    "rss_mib": { "gateway": gw_mem.map(|m| m.0), "center": center_mem.map(|m| m.0) },
                    "run_queue_wait": {
                        "gateway": waited(0),
                        "fleet": waited(1),
                        "center": waited(2),
                    },
                    "machine": machine,
                    "relay_ms": relay_ms,
                }));
            }
            last_sample = Some(sample);
        }
        gateway.check_alive()?;
        fleet.check_alive()?;
        if !warm && fleet_started.elapsed() >= args.warmup {
            // No answer: the window simply includes the warm-up (the run's
            // center answers every other request, so this is not expected).
            let _ = http.post_json(&format!("http://{center_http}/api/latency/reset"));
            warm = true;
            started_at = utc_now();
            window = Some((Instant::now(), cpu_of(pids)));
            warm_unix_ns = crate::fleet::server::unix_ns();
            roles_before = roles_of(&http);
            delay_start = center_buckets(&http);
            delay_last = delay_start.clone();
        }
        if let Some((at, length)) = args.center_outage
            && !outage_done
            && fleet_started.elapsed() >= at
        {
            println!("relay: killing the center for {} s", length.as_secs_f64());
            center.kill();
            std::thread::sleep(length);
            center = start_center(
                &lookout,
                &center_config,
                &logs.join("center-restarted.log"),
                &center_http,
            )?;
            println!("relay: center back");
            outage_done = true;
        } else {
            center.check_alive()?;
        }
        if !watch.is_empty() {
            let cams =
                get_json(&format!("http://{center_http}/api/cameras")).unwrap_or(Value::Null);
            let rss = procs::rss_mib(gateway.pid()).map_or(0.0, |m| m.0);
            watch.observe(fleet_started.elapsed(), &cams, rss);
        }
        if last_figures.elapsed() >= Duration::from_secs(1) {
            last_figures = Instant::now();
            bar.set_position(fleet_started.elapsed().as_secs());
            let l = get_json(&format!("http://{center_http}/api/latency")).unwrap_or(Value::Null);
            let alerts = get_json(&format!("http://{center_http}/api/alerts?limit=1000"))
                .ok()
                .and_then(|a| a["alerts"].as_array().map(|a| a.len()))
                .unwrap_or(0);
            bar.set_message(format!(
                "frames at center {}  relay p99 {:.1} ms  alerts {alerts}",
                l["gateway_to_center"]["count"],
                l["gateway_to_center"]["p99_ms"].as_f64().unwrap_or(0.0)
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bar.finish_and_clear();
    // The end of the run: the cameras stop; what the gateway already took
    // must reach the center (alerts acknowledged, frames delivered).
    let latency = get_json(&format!("http://{center_http}/api/latency"))?;
    let pids = [gateway.pid(), fleet.pid(), center.pid()];
    let roles_after = roles_of(&http);
    let cpu_cores = match window {
        Some((t, before)) => {
            let dt = t.elapsed().as_secs_f64().max(1e-3);
            let now = cpu_of(pids);
            let mut v = serde_json::json!({
                "gateway": (now[0] - before[0]) / dt,
                "fleet": (now[1] - before[1]) / dt,
                "center": (now[2] - before[2]) / dt,
            });
            if let (Some(a), Some(b)) = (roles_before, roles_after) {
                let by_role: serde_json::Map<String, Value> = ROLES
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.to_string(), ((b[i] - a[i]) / dt).into()))
                    .collect();
                v["gateway_by_role"] = Value::Object(by_role);
            }
            v
        }
        // The run ended before the warm-up did: nothing measured.
        None => serde_json::json!({ "gateway": null, "fleet": null, "center": null }),
    };
    for (i, pid) in [pids[0], pids[2]].into_iter().enumerate() {
        if let Some((_, hwm)) = procs::rss_mib(pid) {
            raise(&mut peak[i], hwm);
        }
    }
    let window_s = window.map_or(0.0, |(t, _)| t.elapsed().as_secs_f64());
    let posted = feed.map(SensorFeed::stop).unwrap_or_default();
    fleet.stop(Duration::from_secs(10));
    let end = stack::drain(&http, &args.workdir, &gw_http, &center_http)?;
    let gw_metrics = &end.gw_metrics;
    let center_cameras = get_json(&format!("http://{center_http}/api/cameras"))?;
    let link_stats = link.map(|l| l.stop());
    // The upper center: wait until the center's own outbox upward is empty
    // and the frames stop changing, then read its ledger and cameras.
    let cascade = match city.as_mut() {
        Some((city, city_http)) => {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut last = -1.0;
            loop {
                let up =
                    get_json(&format!("http://{center_http}/api/upstreams")).unwrap_or(Value::Null);
                let pending = up["upstreams"][0]["outbox_pending"].as_u64().unwrap_or(1);
                let got = prom::sum(
                    &http
                        .text(&format!("http://{city_http}/metrics"))
                        .unwrap_or_default(),
                    "lookout_center_frames_total",
                );
                if (pending == 0 && got == last) || Instant::now() > deadline {
                    break;
                }
                last = got;
                std::thread::sleep(Duration::from_millis(500));
            }
            let city_ledger = get_json(&format!("http://{city_http}/api/alerts?limit=10000"))?;
            let city_cameras = get_json(&format!("http://{city_http}/api/cameras"))?;
            let city_gateways = get_json(&format!("http://{city_http}/api/gateways"))?;
            city.stop(Duration::from_secs(10));
            let ids = crate::scoring::alert_ids(&city_ledger);
            let distinct: HashSet<&String> = ids.iter().collect();
            let frames: u64 = city_cameras["cameras"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c["frames"].as_u64()).sum())
                .unwrap_or(0);
            Some(serde_json::json!({
                "alerts_in_ledger": distinct.len(),
                "stored_twice": ids.len() - distinct.len(),
                "missing": end.ledger["alerts"].as_array().map(|a| a.iter().filter(|x| x["id"].as_str().is_some_and(|id| !distinct.contains(&id.to_string()))).count()).unwrap_or(0),
                "cameras": city_cameras["cameras"].as_array().map(|a| a.len()).unwrap_or(0),
                "frames_received": frames,
                "gateways": city_gateways["gateways"].as_array().map(|g| g.iter().filter_map(|x| x["id"].as_str().map(String::from)).collect::<Vec<_>>()).unwrap_or_default(),
            }))
        }
        None => None,
    };
    let onsets = read_onsets(&ground_truth).unwrap_or_default();
    let clean = gateway.stop(Duration::from_secs(15));
    center.stop(Duration::from_secs(10));
    if !clean {
        bail!("the gateway did not stop within 15 s of SIGTERM");
    }
    // Baseline, once lookout has stopped so neither disturbs the other: a
    // bare GStreamer RTSP client per camera on the same fleet's streams.
    let gst_cores = if args.baselines {
        println!("relay: measuring bare GStreamer clients on the same streams (about 15 s)");
        let dir = args.workdir.join("baseline");
        std::fs::create_dir_all(dir.join("logs"))?;
        let (mut again, again_config, _, _) = start_fleet(
            &FleetRun {
                cameras: args.cameras,
                mix: args.mix.clone(),
                size: args.size.clone(),
                cache: args.cache.clone(),
                incidents: Some(String::new()),
                duration: Duration::from_secs(60),
            },
            &dir,
        )?;
        let cores = gst_ingest_baseline(&again_config)
            .inspect_err(|e| eprintln!("relay: GStreamer ingest baseline failed: {e:#}"))
            .ok();
        again.stop(Duration::from_secs(10));
        cores
    } else {
        None
    };
    // Baseline: bare ONNX Runtime, same model, batch and threads.
    let bench = match (&detector, args.baselines) {
        (Some(_), true) => {
            let json_path = args.workdir.join("bench-detector.json");
            let out = std::process::Command::new(&lookout)
                .args(["bench-detector", "--config"])
                .arg(&gw_config)
                .args(["--seconds", &crate::detect::BENCH_SECONDS.to_string()])
                .args([
                    "--rounds",
                    &crate::detect::BENCH_ROUNDS.to_string(),
                    "--json",
                ])
                .arg(&json_path)
                .output()
                .context("running lookout bench-detector")?;
            if out.status.success() {
                std::fs::read_to_string(&json_path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            } else {
                eprintln!(
                    "relay: bench-detector failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
        }
        _ => None,
    };
    // `None`: not measured (no --baselines, no detector, or the bench failed).
    let ort_raw = bench
        .as_ref()
        .and_then(|b| b["ort_raw"]["frames_per_s"].as_f64());
    let det_path = bench
        .as_ref()
        .and_then(|b| b["detector_path"]["frames_per_s"].as_f64());

    // Alerts: the ledger against what the gateway raised.
    let check = LedgerCheck::new(&end.gw_alerts, &end.ledger);
    // The gauge's alerts are timed on their own; incidents are scored on
    // the detectors' alerts only.
    let (sensor, stored): (Vec<SeenAlert>, Vec<SeenAlert>) = check
        .stored
        .iter()
        .cloned()
        .partition(|a| a.label == SENSOR_LABEL);
    let timing = check.timing(&onsets, &stored, warm_unix_ns);
    let mut sensor_h = histogram();
    for a in &sensor {
        if let Some(at_ms) = check.received_ms.get(&a.id) {
            let _ = sensor_h.record(
                (at_ms * 1000)
                    .saturating_sub(a.raised_unix_ns / 1000)
                    .max(1),
            );
        }
    }
    let sensor_alerts = if posted.is_empty() {
        Value::Null
    } else {
        let confirmed: Vec<&String> = posted
            .iter()
            .filter(|p| p.confirmed)
            .map(|p| &p.id)
            .collect();
        let missing: Vec<&&String> = confirmed
            .iter()
            .filter(|id| !check.per_id.contains_key(id.as_str()))
            .collect();
        serde_json::json!({
            "posted": posted.len(),
            "confirmed": confirmed.len(),
            "in_ledger": sensor.len(),
            "missing_from_ledger": missing.len(),
            "missing_ids": missing.iter().take(20).collect::<Vec<_>>(),
            "raise_to_stored_ms": percentiles(&sensor_h),
        })
    };

    // Video, per camera.
    let mut cameras: BTreeMap<String, CameraFrames> = BTreeMap::new();
    for c in center_cameras["cameras"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Some(id) = c["id"].as_str() else { continue };
        let gops = |outcome: &str| {
            prom::sum_with(
                gw_metrics,
                "lookout_relay_gops_total",
                &[("camera", id), ("outcome", outcome)],
            ) as u64
        };
        cameras.insert(
            id.to_string(),
            CameraFrames {
                received_at_gateway: prom::sum_with(
                    gw_metrics,
                    "lookout_camera_units_total",
                    &[("camera", id)],
                ) as u64,
                lost_camera_to_gateway: prom::has_series(
                    gw_metrics,
                    "lookout_ingest_lost_frames_total",
                    &[("camera", id)],
                )
                .then(|| {
                    prom::sum_with(
                        gw_metrics,
                        "lookout_ingest_lost_frames_total",
                        &[("camera", id)],
                    ) as u64
                }),
                sent: prom::sum_with(gw_metrics, "lookout_relay_frames_total", &[("camera", id)])
                    as u64,
                received_at_center: c["frames"].as_u64().unwrap_or(0),
                gops_sent: gops("sent"),
                gops_reset: gops("reset"),
                gops_skipped: gops("skipped"),
            },
        );
    }
    let sent: u64 = cameras.values().map(|c| c.sent).sum();
    let received: u64 = cameras.values().map(|c| c.received_at_center).sum();
    let hops = FrameHops::of(&cameras);
    let reset: u64 = cameras.values().map(|c| c.gops_reset).sum();

    let capture_to_alert_p99 = timing.capture_to_alert.p99_measured();
    let mut latency_ms = HashMap::new();
    let relay = center_percentiles(&latency["gateway_to_center"]);
    let hop = center_percentiles(&latency["camera_to_gateway"]);
    latency_ms.insert("relay".to_string(), relay.clone());
    latency_ms.insert(
        "capture_to_center".to_string(),
        center_percentiles(&latency["capture_to_center"]),
    );
    latency_ms.extend(timing.latencies());
    let detector_stats = detector_figures(gw_metrics, detector.is_some(), args.duration);
    let gw_cores = cpu_cores["gateway"].as_f64();
    // The gateway's ingest threads (RTSP/RTP, depayload, parse, fan-out) against bare
    // GStreamer clients doing the RTSP/RTP part alone; the whole gateway when its
    // metrics had no breakdown (an older gateway).
    let ingest_cores = cpu_cores["gateway_by_role"]["ingest"].as_f64().or(gw_cores);
    let incidents_clean = timing.incidents.missed == 0
        && timing.incidents.false_alerts == 0
        && timing.incidents.duplicate_alerts == 0;
    let report = RelayReport {
        provenance: Provenance::now(ReportKind::Run, models),
        started_at,
        machine: machine(),
        cpu_cores,
        memory_mib: serde_json::json!({
            "gateway_rss_peak": peak[0],
            "center_rss_peak": peak[1],
        }),
        detector: detector_stats,
        timeline,
        relay_cdf: match (&delay_last, &delay_start) {
            (Some(end), Some(start)) => end.since(start).map_or(Value::Null, |d| d.cdf()),
            _ => Value::Null,
        },
        setup: serde_json::json!({
            "cameras": watched,
            "mix": mix_counts(&gw_config),
            "sampling": "keyframes",
            "size": args.size,
            "duration_s": args.duration.as_secs_f64(),
            "warmup_s": args.warmup.as_secs_f64(),
            "detector": detector.as_ref().map(|(id, _)| id.clone()),
            "link": args.link_name,
            "link_settings": match &args.link {
                Some(l) => serde_json::json!({
                    "rate_kbps": l.rate_bps / 1000,
                    "delay_ms": l.delay.as_secs_f64() * 1000.0,
                    "jitter_ms": l.jitter.as_secs_f64() * 1000.0,
                    "loss": l.loss,
                    "reorder": l.reorder,
                    "queue_ms": l.queue.as_secs_f64() * 1000.0,
                }),
                None => serde_json::json!("loopback"),
            },
            "subscribe": args.subscribe,
            "center_outage": args.center_outage.map(|(a, l)| serde_json::json!({"at_s": a.as_secs_f64(), "length_s": l.as_secs_f64()})),
        }),
        frames: serde_json::json!({
            "sent_by_cameras": hops.sent_by_cameras,
            "received_at_gateway": hops.received_at_gateway,
            "lost_camera_to_gateway": hops.lost_camera_to_gateway,
            "sent": sent,
            "received_at_center": received,
            "lost_gateway_to_center": sent.saturating_sub(received),
            "lost": hops.lost_camera_to_gateway.unwrap_or(0) + sent.saturating_sub(received),
            "gops_reset": reset,
        }),
        cameras,
        incidents: timing.incidents,
        alerts: serde_json::json!({
            "raised_at_gateway": check.raised.len(),
            "in_ledger": check.per_id.len(),
            "missing_from_ledger": check.missing,
            "stored_twice": check.doubled,
            "not_raised_by_gateway": check.invented,
            "deliveries": check.deliveries,
        }),
        latency_ms,
        baselines: serde_json::json!({
            "camera_to_gateway_ms": hop,
            "gst_ingest_cpu_cores": gst_cores,
            "ort_raw_inferences_per_s": ort_raw,
            "window_s": window.is_some().then_some(window_s),
        }),
        ratios: serde_json::json!({
            "relay_p99_vs_camera_hop_p99": ratio(relay.p99_measured(), hop.p99_measured()),
            // The gateway's ingest threads over bare GStreamer clients reading the
            // same streams; and the whole gateway (ingest, decode, detection, relay)
            // over the same baseline.
            "ingest_cpu_vs_gst": ratio(ingest_cores, gst_cores),
            "gateway_cpu_vs_gst": ratio(gw_cores, gst_cores),
            "detector_vs_ort_raw": ratio(det_path, ort_raw),
        }),
        slo: serde_json::json!({
            "capture_to_alert_p99_ms": 100,
            "relay_p99_ms": 5,
            // An SLO met by missing an incident, or by alerting on nothing or
            // twice, is not met: the command center would act on it.
            "passed": relay.p99_measured().is_some_and(|p| p <= 5.0)
                // No alert at all: judged by the incidents (none scripted, or missed).
                && capture_to_alert_p99.is_none_or(|p| p <= 100.0)
                // End to end: frames lost camera → gateway count too.
                && hops.lost_camera_to_gateway.unwrap_or(0) + sent.saturating_sub(received) == 0
                && incidents_clean,
        }),
        link: link_stats.map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
        faults: watch.report().as_array().cloned().unwrap_or_default(),
        sensor_alerts,
        cascade,
    };
    print_report(&report);
    if let Some(path) = &args.report {
        crate::report::write_report(path, &report, crate::html::render)?;
    }
    if args.strict {
        let mut problems = Vec::new();
        if check.missing > 0 {
            problems.push(format!(
                "{} alert(s) never reached the ledger",
                check.missing
            ));
        }
        if check.doubled > 0 || check.invented > 0 {
            problems.push(format!(
                "ledger: {} id(s) stored twice, {} not raised by the gateway",
                check.doubled, check.invented
            ));
        }
        if report.sensor_alerts["missing_from_ledger"]
            .as_u64()
            .is_some_and(|m| m > 0)
        {
            problems.push(format!(
                "sensor alerts: {}",
                report.sensor_alerts["missing_from_ledger"]
            ));
        }
        if report.incidents.missed > 0 {
            problems.push(format!("{} incident(s) missed", report.incidents.missed));
        }
        if args.link.is_none()
            && args.center_outage.is_none()
            && args.subscribe == "all"
            && sent != received
        {
            problems.push(format!(
                "frames: {sent} sent, {received} received over uncongested loopback"
            ));
        }
        if let Some(c) = &report.cascade
            && (c["missing"].as_u64() != Some(0) || c["stored_twice"].as_u64() != Some(0))
        {
            problems.push(format!("cascade: {c}"));
        }
        if !problems.is_empty() {
            bail!("relay check failed: {}", problems.join("; "));
        }
    }
    Ok(report)
}

fn print_report(r: &RelayReport) {
    let p = |name: &str| {
        r.latency_ms
            .get(name)
            .map(|p| {
                format!(
                    "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms  (n={})",
                    p.p50, p.p90, p.p99, p.p999, p.max, p.count
                )
            })
            .unwrap_or_default()
    };
    println!();
    if !r.sensor_alerts.is_null() {
        let s = &r.sensor_alerts;
        let d = &s["raise_to_stored_ms"];
        println!(
            "sensor alerts (POST /api/alerts): {} posted, {} confirmed, {} in the ledger, {} missing; raised → stored p50 {:.1} p99 {:.1} max {:.1} ms",
            s["posted"],
            s["confirmed"],
            s["in_ledger"],
            s["missing_from_ledger"],
            d["p50"].as_f64().unwrap_or(0.0),
            d["p99"].as_f64().unwrap_or(0.0),
            d["max"].as_f64().unwrap_or(0.0),
        );
    }
    for f in &r.faults {
        println!(
            "fault {} at {:.1} s for {:.1} s: video live again after {:.2} s (slowest of {} cameras, not recovered {}); gateway RSS {:.1} MiB before, peak during {}",
            f["kind"].as_str().unwrap_or("?"),
            f["start_s"].as_f64().unwrap_or(0.0),
            f["length_s"].as_f64().unwrap_or(0.0),
            f["video_recovery_s"]["slowest"].as_f64().unwrap_or(0.0),
            f["video_recovery_s"]["cameras"],
            f["video_recovery_s"]["not_recovered"],
            f["gateway_rss_before_mib"].as_f64().unwrap_or(0.0),
            f["gateway_rss_peak_during_mib"]
                .as_f64()
                .map_or("not sampled".to_string(), |m| format!("{m:.1} MiB")),
        );
    }
    println!(
        "relay latency, gateway received → center received:  {}",
        p("relay")
    );
    println!(
        "baseline, camera → gateway (RTSP hop, same frames):  p50 {:.2}  p99 {:.2}  p99.9 {:.2} ms",
        r.baselines["camera_to_gateway_ms"]["p50"]
            .as_f64()
            .unwrap_or(0.0),
        r.baselines["camera_to_gateway_ms"]["p99"]
            .as_f64()
            .unwrap_or(0.0),
        r.baselines["camera_to_gateway_ms"]["p999"]
            .as_f64()
            .unwrap_or(0.0),
    );
    println!(
        "capture → center:                                   {}",
        p("capture_to_center")
    );
    println!(
        "frames: {} sent, {} received at the center, {} lost; GOPs reset: {}",
        r.frames["sent"], r.frames["received_at_center"], r.frames["lost"], r.frames["gops_reset"]
    );
    println!(
        "alerts: {} raised, {} in the ledger ({} missing, {} stored twice, {} deliveries)",
        r.alerts["raised_at_gateway"],
        r.alerts["in_ledger"],
        r.alerts["missing_from_ledger"],
        r.alerts["stored_twice"],
        r.alerts["deliveries"]
    );
    println!("incidents: {}", r.incidents.counts());
    println!(
        "capture → alert stored:                             {}",
        p("capture_to_alert")
    );
    println!(
        "alert raised → stored in the ledger:                {}",
        p("raise_to_stored")
    );
    println!(
        "onset → alert stored:                               {}",
        p("onset_to_alert")
    );
    if let Some(c) = &r.cascade {
        println!(
            "cascade, upper center: {} alerts in its ledger ({} missing, {} stored twice), {} cameras, {} frames received, from {}",
            c["alerts_in_ledger"],
            c["missing"],
            c["stored_twice"],
            c["cameras"],
            c["frames_received"],
            c["gateways"]
        );
    }
    for (id, c) in &r.cameras {
        println!(
            "  {id:<14} frames {:>6} sent {:>6} received   GOPs {:>4} sent {:>4} reset {:>4} skipped",
            c.sent, c.received_at_center, c.gops_sent, c.gops_reset, c.gops_skipped
        );
    }
}

/// CPU of a bare GStreamer RTSP client (`rtspsrc ! depay ! fakesink`) per
/// camera of `gw_config`, all at once for 8 s, in cores.
fn gst_ingest_baseline(gw_config: &std::path::Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(gw_config)?;
    let cameras: Vec<(String, bool)> = text
        .split("[[camera]]")
        .skip(1)
        .filter_map(|block| {
            let url = block
                .lines()
                .find_map(|l| l.strip_prefix("url = "))?
                .trim_matches('"')
                .to_string();
            Some((url, block.contains("codec = \"h265\"")))
        })
        .collect();
    let mut kids = Vec::new();
    for (url, h265) in &cameras {
        let depay = if *h265 {
            "rtph265depay"
        } else {
            "rtph264depay"
        };
        let child = std::process::Command::new("gst-launch-1.0")
            .args([
                "-q",
                "rtspsrc",
                &format!("location={url}"),
                "latency=0",
                "!",
                depay,
                "!",
                "fakesink",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting gst-launch-1.0")?;
        kids.push(child);
    }
    // Let them connect, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let before: f64 = kids.iter().filter_map(|k| procs::cpu_seconds(k.id())).sum();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let after: f64 = kids.iter().filter_map(|k| procs::cpu_seconds(k.id())).sum();
    let cores = (after - before) / t.elapsed().as_secs_f64();
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    Ok(cores)
}

/// One once-a-second reading of the processes and the machine, for the
/// report's timeline (which holds the differences between two readings).
struct TimelineSample {
    at: Instant,
    /// CPU seconds of the gateway, fleet and center.
    cpu: [f64; 3],
    /// Their threads' seconds waiting for a CPU.
    wait: [Option<f64>; 3],
    machine: Option<procs::MachineTicks>,
}
