//! The run's report (docs/REPORT.md): its types, building it from what the
//! phases measured, and printing its summary.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::link::Impairment;
use crate::provenance::{Provenance, ReportKind};
use crate::report::{detector_figures, machine};
use crate::scoring::Score;
use crate::stack::mix_counts;
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
    pub received_at_center: u64,
    pub gops_sent: u64,
    pub gops_reset: u64,
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

#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    /// Schema, kind, version, git revision, command line, model hashes.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// When the measured window began, UTC.
    pub started_at: String,
    pub machine: Value,
    pub setup: Setup,
    pub frames: Value,
    pub cameras: BTreeMap<String, CameraFrames>,
    pub incidents: Score,
    pub alerts: Alerts,
    pub latency_ms: HashMap<String, Percentiles>,
    pub baselines: Value,
    pub ratios: Value,
    pub slo: Slo,
    pub link: Option<Value>,
    /// Each fault window (partition, center outage): gateway memory before
    /// and during it, and when each camera was live again after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Value>,
    /// The simulated gauge's alerts: posted, confirmed, in the ledger.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub sensor_alerts: Value,
    /// With `--cascade`: what reached the upper center.
    pub cascade: Option<Cascade>,
    /// CPU (cores: 1.0 = one core busy) over the measured window.
    pub cpu_cores: Value,
    pub memory_mib: Memory,
    pub detector: Value,
    /// Once a second: CPU and memory of each process, and the relay's delay
    /// that second (from the center's histogram buckets).
    pub timeline: Vec<Value>,
    /// The relay's delay over the window as a cumulative distribution at the
    /// center's histogram bounds (`[{"le_ms", "share"}]`); `null` if unread.
    pub relay_cdf: Value,
}

// The typed sections below serialize their fields in the order declared,
// which is alphabetical: the order the report had when they were built as
// JSON maps, so the files stay the same byte for byte.

/// What was run: the fleet, the detector, the link, the center's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub cameras: usize,
    pub center_outage: Option<Outage>,
    pub detector: Option<String>,
    pub duration_s: f64,
    /// The link's profile name (`loopback`, `cellular`, …).
    pub link: String,
    pub link_settings: LinkSettings,
    /// Cameras per kind.
    pub mix: Value,
    pub sampling: &'static str,
    pub size: String,
    pub subscribe: String,
    pub warmup_s: f64,
}

/// The link emulator's settings, or `"loopback"` without one.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LinkSettings {
    Emulated {
        delay_ms: f64,
        jitter_ms: f64,
        loss: f64,
        queue_ms: f64,
        rate_kbps: u64,
        reorder: f64,
    },
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
    pub at_s: f64,
    pub length_s: f64,
}

/// The center's ledger against the alerts the gateway raised.
#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    /// Deliveries over all records.
    pub deliveries: u64,
    pub in_ledger: usize,
    pub missing_from_ledger: usize,
    pub not_raised_by_gateway: usize,
    pub raised_at_gateway: usize,
    pub stored_twice: usize,
}

/// The objectives and whether the run met them.
#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    pub capture_to_alert_p99_ms: u64,
    pub passed: bool,
    pub relay_p99_ms: u64,
}

/// Peak resident memory, MiB; `null` when never read.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub center_rss_peak: Option<f64>,
    pub gateway_rss_peak: Option<f64>,
}

/// What reached the upper center of a cascade.
#[derive(Debug, Clone, Serialize)]
pub struct Cascade {
    pub alerts_in_ledger: usize,
    pub cameras: usize,
    pub frames_received: u64,
    pub gateways: Vec<String>,
    /// Alerts in the center's ledger that are not in the upper one's.
    pub missing: usize,
    pub stored_twice: usize,
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
    let gw_cores = m.cpu_cores["gateway"].as_f64();
    // The gateway's ingest threads (RTSP/RTP, depayload, parse, fan-out) against bare
    // GStreamer clients doing the RTSP/RTP part alone; the whole gateway when its
    // metrics had no breakdown (an older gateway).
    let ingest_cores = m.cpu_cores["gateway_by_role"]["ingest"]
        .as_f64()
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
        frames: serde_json::json!({
            "sent_by_cameras": hops.sent_by_cameras,
            "received_at_gateway": hops.received_at_gateway,
            "lost_camera_to_gateway": hops.lost_camera_to_gateway,
            "sent": sent,
            "received_at_center": received,
            "lost_gateway_to_center": sent.saturating_sub(received),
            "lost": lost,
            "gops_reset": reset,
        }),
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
        baselines: serde_json::json!({
            "camera_to_gateway_ms": hop,
            "gst_ingest_cpu_cores": b.gst_cores,
            "ort_raw_inferences_per_s": b.ort_raw,
            "window_s": m.window_s,
        }),
        ratios: serde_json::json!({
            "relay_p99_vs_camera_hop_p99": ratio(relay.p99_measured(), hop.p99_measured()),
            // The gateway's ingest threads over bare GStreamer clients reading the
            // same streams; and the whole gateway (ingest, decode, detection, relay)
            // over the same baseline.
            "ingest_cpu_vs_gst": ratio(ingest_cores, b.gst_cores),
            "gateway_cpu_vs_gst": ratio(gw_cores, b.gst_cores),
            "detector_vs_ort_raw": ratio(b.det_path, b.ort_raw),
        }),
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
        link: d
            .link_stats
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null)),
        faults: s.watch.report().as_array().cloned().unwrap_or_default(),
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
        let same = |typed: String, map: Value| assert_eq!(typed, map.to_string());
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
            mix: serde_json::json!({"tower": 3, "drone": 2}),
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
}
