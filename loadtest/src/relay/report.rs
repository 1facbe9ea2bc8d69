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
use crate::stack::mix_counts;
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
    /// The `[[detector]]` id the gateway ran on keyframes; `null` with `--no-detect`.
    pub detector: Option<String>,
    /// How long the fleet played, warm-up included, s.
    pub duration_s: f64,
    /// The link's profile name (`loopback`, `cellular`, …).
    pub link: String,
    /// What the link emulator did to traffic, or `"loopback"` without one.
    pub link_settings: LinkSettings,
    /// Cameras per kind (`tower`, `drone`, `bodycam`, `fixed`) in the
    /// gateway's configuration.
    pub mix: BTreeMap<String, usize>,
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
        "baseline, camera → gateway (RTSP hop, same frames):  p50 {:.2}  p99 {:.2}  p99.9 {:.2} ms",
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
            center_outage: args.center_outage.map(|(a, l)| Outage {
                at_s: a.as_secs_f64(),
                length_s: l.as_secs_f64(),
            }),
            detector: s.detector.as_ref().map(|(id, _)| id.clone()),
            duration_s: args.duration.as_secs_f64(),
            link: args.link_name.clone(),
            link_settings: LinkSettings::of(args.link.as_ref()),
            mix: mix_counts(&s.gw_config),
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
        cpu_cores: m.cpu_cores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed sections write what the JSON maps they replaced wrote.
    #[test]
    fn typed_sections_write_the_same_json_as_before() {
        let same = |typed: String, map: serde_json::Value| assert_eq!(typed, map.to_string());
        let imp = Impairment {
            rate_bps: 4_000_000,
            delay: Duration::from_millis(300),
            loss: 0.02,
            ..Default::default()
        };
        let setup = |link: Option<&Impairment>, outage: Option<Outage>| Setup {
            cameras: 8,
            center_outage: outage,
            detector: Some("smoke_flood".into()),
            duration_s: 60.0,
            link: "satellite".into(),
            link_settings: LinkSettings::of(link),
            mix: BTreeMap::from([("tower".to_string(), 3), ("drone".to_string(), 2)]),
            sampling: "keyframes",
            size: "small".into(),
            subscribe: "all".into(),
            warmup_s: 10.0,
        };
        let typed = |v: &Setup| serde_json::to_string(v).expect("serializes");
        same(
            typed(&setup(Some(&imp), None)),
            serde_json::json!({
                "cameras": 8, "mix": {"tower": 3, "drone": 2}, "sampling": "keyframes",
                "size": "small", "duration_s": 60.0, "warmup_s": 10.0,
                "detector": "smoke_flood", "link": "satellite",
                "link_settings": {
                    "rate_kbps": 4000, "delay_ms": 300.0, "jitter_ms": 0.0, "loss": 0.02,
                    "reorder": 0.0, "queue_ms": imp.queue.as_secs_f64() * 1000.0,
                },
                "subscribe": "all", "center_outage": null,
            }),
        );
        let outage = Outage {
            at_s: 20.0,
            length_s: 5.0,
        };
        let s = setup(None, Some(outage));
        assert!(
            typed(&s).contains(
                r#""center_outage":{"at_s":20.0,"length_s":5.0},"detector":"smoke_flood""#
            )
        );
        assert!(typed(&s).contains(r#""link_settings":"loopback","mix""#));
        same(
            serde_json::to_string(&Alerts {
                deliveries: 7,
                in_ledger: 5,
                missing_from_ledger: 1,
                not_raised_by_gateway: 0,
                raised_at_gateway: 6,
                stored_twice: 2,
            })
            .expect("serializes"),
            serde_json::json!({
                "raised_at_gateway": 6, "in_ledger": 5, "missing_from_ledger": 1,
                "stored_twice": 2, "not_raised_by_gateway": 0, "deliveries": 7,
            }),
        );
        same(
            serde_json::to_string(&Slo {
                capture_to_alert_p99_ms: 100,
                passed: true,
                relay_p99_ms: 5,
            })
            .expect("serializes"),
            serde_json::json!({"capture_to_alert_p99_ms": 100, "relay_p99_ms": 5, "passed": true}),
        );
        same(
            serde_json::to_string(&Memory {
                center_rss_peak: None,
                gateway_rss_peak: Some(81.5),
            })
            .expect("serializes"),
            serde_json::json!({"gateway_rss_peak": 81.5, "center_rss_peak": null}),
        );
        same(
            serde_json::to_string(&Cascade {
                alerts_in_ledger: 3,
                cameras: 8,
                frames_received: 900,
                gateways: vec!["fleet-gw".into()],
                missing: 0,
                stored_twice: 0,
            })
            .expect("serializes"),
            serde_json::json!({
                "alerts_in_ledger": 3, "stored_twice": 0, "missing": 0, "cameras": 8,
                "frames_received": 900, "gateways": ["fleet-gw"],
            }),
        );
    }

    fn pct(count: u64) -> Percentiles {
        Percentiles {
            p50: 0.5,
            p90: 0.9,
            p99: 1.25,
            p999: 3.0,
            max: 4.0,
            count,
        }
    }

    /// The sections that were JSON maps (`frames`, `baselines`, `ratios`,
    /// `sensor_alerts`, `cpu_cores`, `timeline[]`, `machine`, `detector`, `link`)
    /// write what those maps wrote: same keys, same order, integers as integers,
    /// `null` where nothing was measured.
    #[test]
    fn sections_that_were_json_maps_write_the_same_json() {
        let same = |typed: String, map: serde_json::Value| assert_eq!(typed, map.to_string());
        fn text<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).expect("serializes")
        }
        same(
            text(&Frames {
                gops_reset: 2,
                lost: 5,
                lost_camera_to_gateway: None,
                lost_gateway_to_center: 5,
                received_at_center: 95,
                received_at_gateway: 100,
                sent: 100,
                sent_by_cameras: None,
            }),
            serde_json::json!({
                "sent_by_cameras": None::<u64>,
                "received_at_gateway": 100u64,
                "lost_camera_to_gateway": None::<u64>,
                "sent": 100u64,
                "received_at_center": 95u64,
                "lost_gateway_to_center": 5u64,
                "lost": 5u64,
                "gops_reset": 2u64,
            }),
        );
        for count in [0, 7] {
            same(
                text(&BaselineFigures {
                    camera_to_gateway_ms: pct(count),
                    gst_ingest_cpu_cores: Some(0.25),
                    ort_raw_inferences_per_s: None,
                    window_s: Some(24.5),
                }),
                serde_json::json!({
                    "camera_to_gateway_ms": pct(count),
                    "gst_ingest_cpu_cores": Some(0.25),
                    "ort_raw_inferences_per_s": None::<f64>,
                    "window_s": Some(24.5),
                }),
            );
        }
        same(
            text(&Ratios {
                detector_vs_ort_raw: Some(0.9),
                gateway_cpu_vs_gst: Some(3.5),
                ingest_cpu_vs_gst: None,
                relay_p99_vs_camera_hop_p99: Some(f64::NAN),
            }),
            serde_json::json!({
                "relay_p99_vs_camera_hop_p99": Some(f64::NAN),
                "ingest_cpu_vs_gst": None::<f64>,
                "gateway_cpu_vs_gst": Some(3.5),
                "detector_vs_ort_raw": Some(0.9),
            }),
        );
        same(
            text(&SensorAlerts {
                confirmed: 9,
                in_ledger: 8,
                missing_from_ledger: 1,
                missing_ids: vec!["gauge-3".into()],
                posted: 10,
                raise_to_stored_ms: pct(8),
            }),
            serde_json::json!({
                "posted": 10,
                "confirmed": 9,
                "in_ledger": 8,
                "missing_from_ledger": 1,
                "missing_ids": ["gauge-3"],
                "raise_to_stored_ms": pct(8),
            }),
        );
        same(
            text(&CpuCores {
                center: Some(0.5),
                fleet: Some(0.25),
                gateway: Some(1.5),
                gateway_by_role: Some(BTreeMap::from([
                    ("ingest".to_string(), Some(0.75)),
                    ("decode".to_string(), Some(0.5)),
                ])),
            }),
            serde_json::json!({
                "gateway": 1.5, "fleet": 0.25, "center": 0.5,
                "gateway_by_role": {"ingest": 0.75, "decode": 0.5},
            }),
        );
        same(
            text(&CpuCores {
                center: None,
                fleet: None,
                gateway: None,
                gateway_by_role: None,
            }),
            serde_json::json!({ "gateway": null, "fleet": null, "center": null }),
        );
        let relay_ms = DelaySummary {
            count: 3,
            max: Some(6.4),
            p50: Some(0.3),
            p90: Some(0.75),
            p99: None,
            p999: None,
        };
        let entry = |relay_ms: Option<DelaySummary>, busy: Option<f64>| TimelineEntry {
            cpu_cores: ByProcess {
                center: 0.05,
                fleet: 0.125,
                gateway: 0.375,
            },
            machine: MachineShare { busy, steal: busy },
            relay_ms,
            rss_mib: RssMib {
                center: Some(26.5),
                gateway: None,
            },
            run_queue_wait: ByProcess {
                center: Some(0.0625),
                fleet: None,
                gateway: Some(0.25),
            },
            t_s: 6.5,
        };
        let old_entry = |relay_ms: serde_json::Value, busy: Option<f64>| {
            serde_json::json!({
                "t_s": 6.5,
                "cpu_cores": { "gateway": 0.375, "fleet": 0.125, "center": 0.05 },
                "rss_mib": { "gateway": None::<f64>, "center": Some(26.5) },
                "run_queue_wait": { "gateway": 0.25, "fleet": null, "center": 0.0625 },
                "machine": { "busy": busy, "steal": busy },
                "relay_ms": relay_ms,
            })
        };
        same(
            text(&entry(Some(relay_ms.clone()), Some(0.5))),
            old_entry(
                serde_json::json!({
                    "p50": 0.3, "p90": 0.75, "p99": null, "p999": null, "max": 6.4, "count": 3,
                }),
                Some(0.5),
            ),
        );
        same(
            text(&entry(None, None)),
            old_entry(serde_json::Value::Null, None),
        );
        same(
            text(&Machine {
                cpus: Some(2),
                memory_gib: Some(24.0),
                model: None,
            }),
            serde_json::json!({ "cpus": Some(2usize), "model": None::<String>, "memory_gib": Some(24.0) }),
        );
        let mut detector = detector_figures("", true, Duration::from_secs(10));
        same(
            text(&detector),
            serde_json::json!({
                "frames_in": 0u64,
                "frames_dropped": 0u64,
                "inferences_per_s": Some(0.0),
                "batch_mean": None::<f64>,
            }),
        );
        detector.stage_mean_ms = Some(crate::report::StageMeans {
            decode: Some(1.5),
            inference: Some(20.0),
            postprocess: None,
            preprocess: Some(0.5),
            queue: Some(3.0),
        });
        let mut old = serde_json::json!({
            "frames_in": 0u64,
            "frames_dropped": 0u64,
            "inferences_per_s": Some(0.0),
            "batch_mean": None::<f64>,
        });
        old["stage_mean_ms"] = serde_json::json!({
            "queue": Some(3.0),
            "decode": Some(1.5),
            "preprocess": Some(0.5),
            "inference": Some(20.0),
            "postprocess": None::<f64>,
        });
        same(text(&detector), old);
        let link = LinkStats {
            to_server: crate::link::DirStats {
                packets_in: 10,
                bytes_in: 1000,
                delivered: 9,
                lost: 1,
                queue_full: 0,
                partitioned: 0,
            },
            to_client: crate::link::DirStats::default(),
            clients: 1,
        };
        #[derive(Serialize)]
        struct WithLink {
            #[serde(serialize_with = "sorted_keys")]
            link: Option<LinkStats>,
        }
        same(
            text(&WithLink {
                link: Some(link.clone()),
            }),
            serde_json::json!({ "link": serde_json::to_value(&link).expect("serializes") }),
        );
        same(
            text(&WithLink { link: None }),
            serde_json::json!({ "link": null }),
        );
    }

    /// A whole report, every optional section present: the top level in the
    /// order the files have, nested sections that went through JSON maps with
    /// their keys sorted, and `check-report` accepting it as a run report.
    #[test]
    fn a_whole_report_keeps_its_order_and_passes_the_check() {
        let frames = CameraFrames {
            received_at_gateway: 100,
            lost_camera_to_gateway: Some(0),
            sent: 100,
            received_at_center: 100,
            gops_sent: 4,
            gops_reset: 0,
            gops_skipped: 0,
        };
        let latency_ms: HashMap<String, Percentiles> = [
            "relay",
            "capture_to_center",
            "capture_to_alert",
            "onset_to_alert",
            "raise_to_stored",
        ]
        .into_iter()
        .map(|n| (n.to_string(), pct(10)))
        .collect();
        let mut watch = crate::faults::FaultWatch::new(vec![crate::faults::Fault {
            kind: "partition",
            start: Duration::from_secs(1),
            end: Duration::from_secs(2),
        }]);
        watch.observe(Duration::ZERO, &serde_json::json!({ "cameras": [] }), 50.0);
        let report = RelayReport {
            provenance: Provenance::now(ReportKind::Run, BTreeMap::new()),
            started_at: "2025-01-01T00:00:00Z".into(),
            machine: machine(),
            setup: Setup {
                cameras: 1,
                center_outage: None,
                detector: Some("smoke_flood".into()),
                duration_s: 30.0,
                link: "cellular".into(),
                link_settings: LinkSettings::of(Some(&Impairment::default())),
                mix: BTreeMap::from([("tower".to_string(), 1)]),
                sampling: "keyframes",
                size: "small".into(),
                subscribe: "all".into(),
                warmup_s: 5.0,
            },
            frames: Frames {
                gops_reset: 0,
                lost: 0,
                lost_camera_to_gateway: Some(0),
                lost_gateway_to_center: 0,
                received_at_center: 100,
                received_at_gateway: 100,
                sent: 100,
                sent_by_cameras: Some(100),
            },
            cameras: BTreeMap::from([("tower-01".to_string(), frames)]),
            incidents: Score::default(),
            alerts: Alerts {
                deliveries: 0,
                in_ledger: 0,
                missing_from_ledger: 0,
                not_raised_by_gateway: 0,
                raised_at_gateway: 0,
                stored_twice: 0,
            },
            latency_ms,
            baselines: BaselineFigures {
                camera_to_gateway_ms: pct(10),
                gst_ingest_cpu_cores: None,
                ort_raw_inferences_per_s: None,
                window_s: Some(25.0),
            },
            ratios: Ratios {
                detector_vs_ort_raw: None,
                gateway_cpu_vs_gst: None,
                ingest_cpu_vs_gst: None,
                relay_p99_vs_camera_hop_p99: Some(1.0),
            },
            slo: Slo {
                capture_to_alert_p99_ms: 100,
                passed: true,
                relay_p99_ms: 5,
            },
            link: Some(LinkStats {
                to_server: crate::link::DirStats::default(),
                to_client: crate::link::DirStats::default(),
                clients: 1,
            }),
            faults: watch.report(),
            sensor_alerts: Some(SensorAlerts {
                confirmed: 1,
                in_ledger: 1,
                missing_from_ledger: 0,
                missing_ids: Vec::new(),
                posted: 1,
                raise_to_stored_ms: pct(1),
            }),
            cascade: None,
            cpu_cores: CpuCores {
                center: Some(0.1),
                fleet: Some(0.1),
                gateway: Some(0.2),
                gateway_by_role: None,
            },
            memory_mib: Memory {
                center_rss_peak: Some(20.0),
                gateway_rss_peak: None,
            },
            detector: detector_figures("", true, Duration::from_secs(30)),
            timeline: Vec::new(),
            relay_cdf: None,
        };
        let text = serde_json::to_string(&report).expect("serializes");
        let order = [
            "schema_version",
            "kind",
            "started_at",
            "machine",
            "setup",
            "frames",
            "cameras",
            "incidents",
            "alerts",
            "latency_ms",
            "baselines",
            "ratios",
            "slo",
            "link",
            "faults",
            "sensor_alerts",
            "cascade",
            "cpu_cores",
            "memory_mib",
            "detector",
            "timeline",
            "relay_cdf",
        ];
        // Each key after the one before it (a nested key of the same name, as
        // `setup.link`, comes earlier and is passed over).
        let mut at = 0;
        for key in order {
            let found = text[at..].find(&format!("\"{key}\":"));
            assert!(found.is_some(), "{key} out of order in {text}");
            at += found.unwrap_or(0);
        }
        assert!(text.contains(r#""link":{"clients":1,"to_client":{"bytes_in":0,"#));
        assert!(text.contains(r#""camera_to_gateway_ms":{"count":10,"max":4.0,"#));
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(crate::check::check(&value), Ok(ReportKind::Run));
        assert!(crate::html::render(&report).contains("The SLO was met."));
    }
}
