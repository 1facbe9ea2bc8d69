//! The run's report (docs/REPORT.md): its types, building it from what the
//! phases measured, and printing its summary.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::faults::FaultReport;
use crate::link::{Impairment, LinkStats};
use crate::provenance::{Provenance, ReportKind};
use crate::report::{DetectorFigures, Machine, detector_figures, json_text, machine, sorted_keys};
use crate::scoring::Score;
use crate::stack::{gb28181_count, mix_counts, pushed_rtmp_count};
use crate::stats::buckets::{CdfPoint, DelaySummary};
use crate::stats::{Percentiles, center_percentiles, ratio};

use super::RelayArgs;
use super::baselines::Baselines;
use super::check::Checked;
use super::drain::Drained;
use super::measure::Measured;
use super::setup::Stack;

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
    /// Frames the center received from the camera (`frames` in its `/api/cameras`).
    pub received_at_center: u64,
    /// GOP streams the relay delivered whole (`lookout_relay_gops_total{outcome="sent"}`).
    pub gops_sent: u64,
    /// GOP streams the relay reset partway: stale, superseded or behind the latency budget.
    pub gops_reset: u64,
    /// GOPs the relay never opened a stream for (its scheduler skipped them, or no parameter sets
    /// yet).
    pub gops_skipped: u64,
}

/// The fleet's frames hop by hop, summed over cameras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHops {
    /// What the cameras that number their frames numbered, from the first frame the
    /// gateway received to the last (received + lost on the way); `None` when no
    /// camera numbers its frames.
    sent_by_cameras: Option<u64>,
    received_at_gateway: u64,
    lost_camera_to_gateway: Option<u64>,
}

impl FrameHops {
    pub(super) fn of(cameras: &BTreeMap<String, CameraFrames>) -> FrameHops {
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

/// The run's report: what `--report` writes as JSON (docs/REPORT.md) and the
/// HTML page renders.
#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    /// Schema, kind, version, git revision, command line, model hashes.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// When the measured window began, UTC.
    pub started_at: String,
    /// The machine the run ran on.
    pub machine: Machine,
    /// What was run.
    pub setup: Setup,
    /// The fleet's frames hop by hop, summed over cameras.
    pub frames: Frames,
    /// Frames per camera id.
    pub cameras: BTreeMap<String, CameraFrames>,
    /// The scripted incidents scored against the detectors' alerts.
    pub incidents: Score,
    /// The center's ledger against the alerts the gateway raised.
    pub alerts: Alerts,
    /// Latency percentiles by name (`relay`, `capture_to_center` from the
    /// center's histograms over the window; the alert latencies from the ledger).
    pub latency_ms: HashMap<String, Percentiles>,
    /// The baselines lookout's figures are compared with.
    pub baselines: BaselineFigures,
    /// Lookout's figures over their baselines.
    pub ratios: Ratios,
    /// The objectives and whether the run met them.
    pub slo: Slo,
    /// The link emulator's counters at the end; `null` over plain loopback.
    /// Keys sorted, as the report has always had them.
    #[serde(serialize_with = "sorted_keys")]
    pub link: Option<LinkStats>,
    /// Each fault window (partition, center outage): gateway memory before
    /// and during it, and when each camera was live again after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultReport>,
    /// The simulated gauge's alerts: posted, confirmed, in the ledger; absent
    /// from the file without a gauge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_alerts: Option<SensorAlerts>,
    /// With `--cascade`: what reached the upper center.
    pub cascade: Option<Cascade>,
    /// The alerts' evidence clips at the center; `null` without a detector.
    pub clips: Option<super::ClipsReport>,
    /// CPU (cores: 1.0 = one core busy) over the measured window.
    pub cpu_cores: CpuCores,
    /// Peak resident memory of the gateway and the center.
    pub memory_mib: Memory,
    /// The gateway's detector over the run.
    pub detector: DetectorFigures,
    /// Once a second: CPU and memory of each process, and the relay's delay
    /// that second (from the center's histogram buckets).
    pub timeline: Vec<TimelineEntry>,
    /// The relay's delay over the window as a cumulative distribution at the
    /// center's histogram bounds (`[{"le_ms", "share"}]`); `null` if unread.
    pub relay_cdf: Option<Vec<CdfPoint>>,
}

// The typed sections below serialize their fields in the order declared,
// which is alphabetical: the order the report had when they were built as
// JSON maps, so the files stay the same byte for byte.

/// What was run: the fleet, the detector, the link, the center's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Cameras the gateway's configuration lists.
    pub cameras: usize,
    /// `--center-outage`: when the center was killed and for how long; `null` without one.
    pub center_outage: Option<Outage>,
    /// Whether the gateway recorded alert clips (`--no-clips`: not).
    pub clips: bool,
    /// The `[[detector]]` id the gateway ran on keyframes; `null` with `--no-detect`.
    pub detector: Option<String>,
    /// How long the fleet played, warm-up included, s.
    pub duration_s: f64,
    /// How many cameras are GB/T 28181 channels the gateway INVITEs (`bodycams-gb=N`,
    /// `platform-gb=N`). Fields are in alphabetical order, as the JSON always was.
    pub gb28181: usize,
    /// The link's profile name (`loopback`, `cellular`, …).
    pub link: String,
    /// What the link emulator did to traffic, or `"loopback"` without one.
    pub link_settings: LinkSettings,
    /// Cameras per kind (`tower`, `drone`, `bodycam`, `fixed`) in the
    /// gateway's configuration.
    pub mix: BTreeMap<String, usize>,
    /// How many of them push to the gateway over RTMP (`drones-rtmp=N` in `--mix`)
    /// instead of being pulled over RTSP.
    pub pushed_rtmp: usize,
    /// The gateway's sampling for detection: always `keyframes`.
    pub sampling: &'static str,
    /// The fleet's picture size, `full` or `small`.
    pub size: String,
    /// The center's video subscription: `all` or `alerting`.
    pub subscribe: String,
    /// Latency windows and CPU figures start after this, s.
    pub warmup_s: f64,
}

/// The link emulator's settings, or `"loopback"` without one.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LinkSettings {
    /// The emulator's impairment, gateway → center (the center → gateway
    /// direction has the same but no rate cap).
    Emulated {
        /// Fixed one-way delay, ms.
        delay_ms: f64,
        /// Extra one-way delay, uniform in `0..=jitter_ms`, ms.
        jitter_ms: f64,
        /// Probability that a packet is lost, 0..1.
        loss: f64,
        /// Most traffic the rate-capped queue holds, ms to drain it (tail drop).
        queue_ms: f64,
        /// Rate cap, kbit/s; 0: none.
        rate_kbps: u64,
        /// Probability that a packet is held back and overtaken, 0..1.
        reorder: f64,
    },
    /// No emulator: always `"loopback"`.
    Loopback(&'static str),
}

impl LinkSettings {
    pub(super) fn of(link: Option<&Impairment>) -> LinkSettings {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match link {
            Some(l) => LinkSettings::Emulated {
                delay_ms: ms(l.delay),
                jitter_ms: ms(l.jitter),
                loss: l.loss,
                queue_ms: ms(l.queue),
                rate_kbps: l.rate_bps / 1000,
                reorder: l.reorder,
            },
            None => LinkSettings::Loopback("loopback"),
        }
    }
}

/// The center killed at `at_s` for `length_s`.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    /// When the center was killed, s after the fleet started.
    pub at_s: f64,
    /// How long it stayed down before it was restarted, s.
    pub length_s: f64,
}

/// The center's ledger against the alerts the gateway raised.
#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    /// Deliveries over all records.
    pub deliveries: u64,
    /// Distinct alert ids in the center's ledger.
    pub in_ledger: usize,
    /// Alerts the gateway raised that the ledger lacks.
    pub missing_from_ledger: usize,
    /// Ids in the ledger the gateway never raised.
    pub not_raised_by_gateway: usize,
    /// Alerts the gateway lists (`/api/alerts`).
    pub raised_at_gateway: usize,
    /// Ids the ledger stores more than once.
    pub stored_twice: usize,
}

/// The objectives and whether the run met them.
#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    /// The objective for capture → alert stored p99, ms (100).
    pub capture_to_alert_p99_ms: u64,
    /// Relay p99 measured and within its objective, capture → alert p99 within its own (or no alert
    /// to time), no frame lost, and every incident alerted once with no false alert.
    pub passed: bool,
    /// The objective for the relay's p99 (gateway received → center received), ms (5).
    pub relay_p99_ms: u64,
}

/// Peak resident memory, MiB; `null` when never read.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// The center's peak (VmHWM) over the samples and at the end, MiB.
    pub center_rss_peak: Option<f64>,
    /// The gateway's peak (VmHWM) over the samples and at the end, MiB.
    pub gateway_rss_peak: Option<f64>,
}

/// What reached the upper center of a cascade.
#[derive(Debug, Clone, Serialize)]
pub struct Cascade {
    /// Distinct alert ids in the upper center's ledger.
    pub alerts_in_ledger: usize,
    /// Cameras the upper center lists.
    pub cameras: usize,
    /// Frames the upper center received, summed over its cameras.
    pub frames_received: u64,
    /// Ids of the gateways the upper center lists.
    pub gateways: Vec<String>,
    /// Alerts in the center's ledger that are not in the upper one's.
    pub missing: usize,
    /// Records in the upper center's ledger beyond the first of their id.
    pub stored_twice: usize,
}

/// The fleet's frames over the whole run, hop by hop, summed over cameras
/// (the report's `frames`).
#[derive(Debug, Clone, Serialize)]
pub struct Frames {
    /// GOPs the gateway's relay reset rather than queue them late, all cameras.
    pub gops_reset: u64,
    /// Frames lost end to end: camera → gateway (0 when not counted) plus
    /// gateway → center.
    pub lost: u64,
    /// Frames the numbering cameras sent that the gateway never received;
    /// `null` when no camera numbers its frames.
    pub lost_camera_to_gateway: Option<u64>,
    /// Frames the relay sent that the center did not receive (sent − received,
    /// at least 0).
    pub lost_gateway_to_center: u64,
    /// Frames the center received from the gateway.
    pub received_at_center: u64,
    /// Access units the gateway received from the cameras.
    pub received_at_gateway: u64,
    /// Frames the gateway's relay sent to the center.
    pub sent: u64,
    /// What the numbering cameras sent from the first frame the gateway
    /// received to the last (received + lost); `null` when no camera numbers
    /// its frames.
    pub sent_by_cameras: Option<u64>,
}

/// The baselines of the run (the report's `baselines`); `null`: not measured
/// (no `--baselines`, no detector, or the measurement failed).
#[derive(Debug, Clone, Serialize)]
pub struct BaselineFigures {
    /// The camera → gateway (RTSP) hop of the same frames, from the center's
    /// histogram over the window; keys sorted, as the report has always had them.
    #[serde(serialize_with = "sorted_keys")]
    pub camera_to_gateway_ms: Percentiles,
    /// CPU of bare GStreamer RTSP clients on every camera, cores.
    pub gst_ingest_cpu_cores: Option<f64>,
    /// Bare ONNX Runtime on the detector's model, inferences per second.
    pub ort_raw_inferences_per_s: Option<f64>,
    /// The measured window's length, s; `null` when the run ended during the
    /// warm-up.
    pub window_s: Option<f64>,
}

/// Lookout's figures over their baselines (the report's `ratios`); `null`
/// when either side was not measured or the baseline is 0.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Inferences per second through the gateway's detector path over bare
    /// ONNX Runtime's.
    pub detector_vs_ort_raw: Option<f64>,
    /// The whole gateway's CPU (ingest, decode, detection, relay) over bare
    /// GStreamer clients reading the same streams.
    pub gateway_cpu_vs_gst: Option<f64>,
    /// The gateway's ingest threads' CPU (the whole gateway's when its metrics
    /// have no breakdown) over bare GStreamer clients.
    pub ingest_cpu_vs_gst: Option<f64>,
    /// The relay's p99 over the camera → gateway hop's p99.
    pub relay_p99_vs_camera_hop_p99: Option<f64>,
}

/// The simulated gauge's alerts (`--sensor-alerts`): posted through the
/// gateway's `POST /api/alerts`, confirmed, and found in the center's ledger.
#[derive(Debug, Clone, Serialize)]
pub struct SensorAlerts {
    /// Alerts the gateway confirmed (201/200: on its disk).
    pub confirmed: usize,
    /// Gauge alerts in the center's ledger.
    pub in_ledger: usize,
    /// Confirmed alerts the ledger lacks.
    pub missing_from_ledger: usize,
    /// The first 20 of those ids.
    pub missing_ids: Vec<String>,
    /// Alerts the feed posted (retries of one id count once).
    pub posted: usize,
    /// Raised at the gauge → stored in the ledger; keys sorted, as the report
    /// has always had them.
    #[serde(serialize_with = "sorted_keys")]
    pub raise_to_stored_ms: Percentiles,
}

/// CPU over the measured window, cores (1.0 = one core busy); `null` when the
/// run ended before the warm-up did (or a figure was not a finite number).
#[derive(Debug, Clone, Serialize)]
pub struct CpuCores {
    /// The center process.
    pub center: Option<f64>,
    /// The fleet simulator process.
    pub fleet: Option<f64>,
    /// The gateway process.
    pub gateway: Option<f64>,
    /// The gateway's own CPU by thread role (`lookout_cpu_seconds_total{role}`:
    /// ingest, decode, detect, runtime, other); absent when its metrics were not
    /// read at both ends of the window (an older gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_by_role: Option<BTreeMap<String, Option<f64>>>,
}

/// One figure for each process of the run, in the report's (alphabetical) order.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ByProcess<T> {
    /// The center's.
    pub center: T,
    /// The fleet simulator's.
    pub fleet: T,
    /// The gateway's.
    pub gateway: T,
}

/// One second of the run (`timeline[]`): the differences between two
/// readings about a second apart.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// CPU of each process over the second, cores.
    pub cpu_cores: ByProcess<f64>,
    /// The whole machine's CPUs over the second.
    pub machine: MachineShare,
    /// The relay's delay that second, from the center's histogram buckets;
    /// `null` when the center's metrics were not read.
    pub relay_ms: Option<DelaySummary>,
    /// Resident memory now.
    pub rss_mib: RssMib,
    /// Thread-seconds per second each process's threads waited for a CPU
    /// (`/proc/<pid>/schedstat`): above 0, it had work and no core to run it
    /// on; `null` when unreadable.
    pub run_queue_wait: ByProcess<Option<f64>>,
    /// When the second ended, s since the fleet started.
    pub t_s: f64,
}

/// Share of the machine's CPU time (`/proc/stat`) over one second, 0 to 1;
/// `null` when `/proc/stat` was unreadable or did not move.
#[derive(Debug, Clone, Serialize)]
pub struct MachineShare {
    /// Busy: not idle, not waiting for I/O and not stolen.
    pub busy: Option<f64>,
    /// Stolen by the hypervisor for other guests.
    pub steal: Option<f64>,
}

/// Resident memory (VmRSS) of the gateway and the center, MiB; `null` when
/// unreadable.
#[derive(Debug, Clone, Serialize)]
pub struct RssMib {
    /// The center's.
    pub center: Option<f64>,
    /// The gateway's.
    pub gateway: Option<f64>,
}

/// The report's summary on stdout.
pub(super) fn print(r: &RelayReport) {
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
    // A percentile as the report's file has it: `null` (here 0) unmeasured.
    let measured = |p: &Percentiles, v: f64| {
        (p.count > 0)
            .then_some(v)
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
    };
    println!();
    if let Some(s) = &r.sensor_alerts {
        let d = &s.raise_to_stored_ms;
        println!(
            "sensor alerts (POST /api/alerts): {} posted, {} confirmed, {} in the ledger, {} missing; raised → stored p50 {:.1} p99 {:.1} max {:.1} ms",
            s.posted,
            s.confirmed,
            s.in_ledger,
            s.missing_from_ledger,
            measured(d, d.p50),
            measured(d, d.p99),
            measured(d, d.max),
        );
    }
    for f in &r.faults {
        let v = &f.video_recovery_s;
        println!(
            "fault {} at {:.1} s for {:.1} s: video live again after {:.2} s (slowest of {} cameras, not recovered {}); gateway RSS {:.1} MiB before, peak during {}",
            f.kind,
            f.start_s,
            f.length_s,
            v.slowest,
            v.cameras,
            json_text(&v.not_recovered),
            f.gateway_rss_before_mib
                .filter(|m| m.is_finite())
                .unwrap_or(0.0),
            f.gateway_rss_peak_during_mib
                .filter(|m| m.is_finite())
                .map_or("not sampled".to_string(), |m| format!("{m:.1} MiB")),
        );
    }
    println!(
        "relay latency, gateway received → center received:  {}",
        p("relay")
    );
    let hop = &r.baselines.camera_to_gateway_ms;
    println!(
        "baseline, camera → gateway (ingest, same frames):   p50 {:.2}  p99 {:.2}  p99.9 {:.2} ms",
        measured(hop, hop.p50),
        measured(hop, hop.p99),
        measured(hop, hop.p999),
    );
    println!(
        "capture → center:                                   {}",
        p("capture_to_center")
    );
    println!(
        "frames: {} sent, {} received at the center, {} lost; GOPs reset: {}",
        r.frames.sent, r.frames.received_at_center, r.frames.lost, r.frames.gops_reset
    );
    println!(
        "alerts: {} raised, {} in the ledger ({} missing, {} stored twice, {} deliveries)",
        r.alerts.raised_at_gateway,
        r.alerts.in_ledger,
        r.alerts.missing_from_ledger,
        r.alerts.stored_twice,
        r.alerts.deliveries
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
    if let Some(c) = &r.clips {
        let opt = |v: Option<u64>| v.map_or("not measured".to_string(), |n| n.to_string());
        println!(
            "clips: {} of {} alerts at the center ({} recorded, {} failed, {} skipped at the gateway), {} playable, {:.1}–{:.1} s, {} of {} incidents' clips start before the onset; the last at the center {} ms after the alerts had arrived",
            c.at_center,
            c.alerts,
            c.recorded_at_gateway,
            c.failed_at_gateway,
            c.skipped_at_gateway,
            opt(c.playable),
            c.duration_s_min.unwrap_or(0.0),
            c.duration_s_max.unwrap_or(0.0),
            opt(c.start_before_onset),
            c.incidents_with_clip,
            c.settled_ms
        );
        for p in &c.problems {
            println!("  clip problem: {p}");
        }
    }
    if let Some(c) = &r.cascade {
        println!(
            "cascade, upper center: {} alerts in its ledger ({} missing, {} stored twice), {} cameras, {} frames received, from {}",
            c.alerts_in_ledger,
            c.missing,
            c.stored_twice,
            c.cameras,
            c.frames_received,
            serde_json::to_string(&c.gateways).unwrap_or_default()
        );
    }
    for (id, c) in &r.cameras {
        println!(
            "  {id:<14} frames {:>6} sent {:>6} received   GOPs {:>4} sent {:>4} reset {:>4} skipped",
            c.sent, c.received_at_center, c.gops_sent, c.gops_reset, c.gops_skipped
        );
    }
}

/// The report from what the phases measured, drained, and checked.
pub(super) fn build(
    args: &RelayArgs,
    s: &Stack,
    m: Measured,
    d: Drained,
    b: Baselines,
    c: Checked,
) -> RelayReport {
    let cameras = c.cameras;
    let sent: u64 = cameras.values().map(|c| c.sent).sum();
    let received: u64 = cameras.values().map(|c| c.received_at_center).sum();
    let hops = FrameHops::of(&cameras);
    let reset: u64 = cameras.values().map(|c| c.gops_reset).sum();
    let lost = hops.lost_camera_to_gateway.unwrap_or(0) + sent.saturating_sub(received);

    let timing = c.timing;
    let capture_to_alert_p99 = timing.capture_to_alert.p99_measured();
    let mut latency_ms = HashMap::new();
    let relay = center_percentiles(&m.latency["gateway_to_center"]);
    let hop = center_percentiles(&m.latency["camera_to_gateway"]);
    latency_ms.insert("relay".to_string(), relay.clone());
    latency_ms.insert(
        "capture_to_center".to_string(),
        center_percentiles(&m.latency["capture_to_center"]),
    );
    latency_ms.extend(timing.latencies());
    let gw_cores = m.cpu_cores.gateway;
    // The gateway's ingest threads (RTSP/RTP, depayload, parse, fan-out) against bare
    // GStreamer clients doing the RTSP/RTP part alone; the whole gateway when its
    // metrics had no breakdown (an older gateway).
    let ingest_cores = m
        .cpu_cores
        .gateway_by_role
        .as_ref()
        .and_then(|roles| roles.get("ingest").copied().flatten())
        .or(gw_cores);
    let incidents_clean = timing.incidents.missed == 0
        && timing.incidents.false_alerts == 0
        && timing.incidents.duplicate_alerts == 0;
    let ledger = &c.ledger;
    RelayReport {
        provenance: Provenance::now(ReportKind::Run, s.models.clone()),
        started_at: m.started_at,
        machine: machine(),
        memory_mib: Memory {
            center_rss_peak: m.peak[1],
            gateway_rss_peak: m.peak[0],
        },
        detector: detector_figures(&d.end.gw_metrics, s.detector.is_some(), args.duration),
        timeline: m.timeline,
        relay_cdf: m.relay_cdf,
        setup: Setup {
            cameras: s.watched,
            clips: args.clips,
            center_outage: args.center_outage.map(|(a, l)| Outage {
                at_s: a.as_secs_f64(),
                length_s: l.as_secs_f64(),
            }),
            detector: s.detector.as_ref().map(|(id, _)| id.clone()),
            duration_s: args.duration.as_secs_f64(),
            link: args.link_name.clone(),
            link_settings: LinkSettings::of(args.link.as_ref()),
            mix: mix_counts(&s.gw_config),
            pushed_rtmp: pushed_rtmp_count(&s.gw_config),
            gb28181: gb28181_count(&s.gw_config),
            sampling: "keyframes",
            size: args.size.clone(),
            subscribe: args.subscribe.clone(),
            warmup_s: args.warmup.as_secs_f64(),
        },
        frames: Frames {
            gops_reset: reset,
            lost,
            lost_camera_to_gateway: hops.lost_camera_to_gateway,
            lost_gateway_to_center: sent.saturating_sub(received),
            received_at_center: received,
            received_at_gateway: hops.received_at_gateway,
            sent,
            sent_by_cameras: hops.sent_by_cameras,
        },
        cameras,
        incidents: timing.incidents,
        alerts: Alerts {
            deliveries: ledger.deliveries,
            in_ledger: ledger.per_id.len(),
            missing_from_ledger: ledger.missing,
            not_raised_by_gateway: ledger.invented,
            raised_at_gateway: ledger.raised.len(),
            stored_twice: ledger.doubled,
        },
        latency_ms,
        baselines: BaselineFigures {
            camera_to_gateway_ms: hop.clone(),
            gst_ingest_cpu_cores: b.gst_cores,
            ort_raw_inferences_per_s: b.ort_raw,
            window_s: m.window_s,
        },
        ratios: Ratios {
            detector_vs_ort_raw: ratio(b.det_path, b.ort_raw),
            // The gateway's ingest threads over bare GStreamer clients reading the
            // same streams; and the whole gateway (ingest, decode, detection, relay)
            // over the same baseline.
            gateway_cpu_vs_gst: ratio(gw_cores, b.gst_cores),
            ingest_cpu_vs_gst: ratio(ingest_cores, b.gst_cores),
            relay_p99_vs_camera_hop_p99: ratio(relay.p99_measured(), hop.p99_measured()),
        },
        slo: Slo {
            capture_to_alert_p99_ms: 100,
            // An SLO met by missing an incident, or by alerting on nothing or
            // twice, is not met: the command center would act on it.
            passed: relay.p99_measured().is_some_and(|p| p <= 5.0)
                // No alert at all: judged by the incidents (none scripted, or missed).
                && capture_to_alert_p99.is_none_or(|p| p <= 100.0)
                // End to end: frames lost camera → gateway count too.
                && lost == 0
                && incidents_clean,
            relay_p99_ms: 5,
        },
        link: d.link_stats,
        faults: s.watch.report(),
        sensor_alerts: c.sensor_alerts,
        cascade: d.cascade,
        clips: d.clips,
        cpu_cores: m.cpu_cores,
    }
}

#[cfg(test)]
mod tests;
