//! The run's check phase: the center's ledger against the alerts the
//! gateway raised (and the simulated gauge's alerts on their own), the
//! incidents scored, frames per camera hop by hop; and, with `--strict`,
//! the verdict that fails the run.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::Value;

use crate::faults::{Posted, SENSOR_LABEL};
use crate::prom;
use crate::scoring::{AlertTiming, LedgerCheck, SeenAlert};
use crate::stats::{histogram, percentiles, record};

use super::RelayArgs;
use super::drain::Drained;
use super::report::{CameraFrames, RelayReport, SensorAlerts};

/// What the check found.
pub(super) struct Checked {
    /// The center's ledger against the alerts the gateway raised.
    pub ledger: LedgerCheck,
    /// The detectors' alerts scored and timed (the gauge's left out).
    pub timing: AlertTiming,
    /// The gauge's alerts; `None` without a gauge.
    pub sensor_alerts: Option<SensorAlerts>,
    /// Frames per camera id, the gateway's counters next to the center's.
    pub cameras: BTreeMap<String, CameraFrames>,
}

/// Checks what the drain read; alerts are timed from `warm_unix_ns`.
pub(super) fn check(d: &Drained, warm_unix_ns: u64) -> Checked {
    // Alerts: the ledger against what the gateway raised.
    let ledger = LedgerCheck::new(&d.end.gw_alerts, &d.end.ledger);
    // The gauge's alerts are timed on their own; incidents are scored on
    // the detectors' alerts only.
    let (sensor, stored): (Vec<SeenAlert>, Vec<SeenAlert>) = ledger
        .stored
        .iter()
        .cloned()
        .partition(|a| a.label == SENSOR_LABEL);
    let timing = ledger.timing(&d.onsets, &stored, warm_unix_ns);
    let sensor_alerts = sensor_alerts(&ledger, &sensor, &d.posted);
    Checked {
        cameras: camera_frames(&d.end.gw_metrics, &d.center_cameras),
        ledger,
        timing,
        sensor_alerts,
    }
}

/// The gauge's alerts: posted, confirmed, in the ledger, and raised → stored.
fn sensor_alerts(
    ledger: &LedgerCheck,
    sensor: &[SeenAlert],
    posted: &[Posted],
) -> Option<SensorAlerts> {
    if posted.is_empty() {
        return None;
    }
    let mut sensor_h = histogram();
    for a in sensor {
        if let Some(at_ms) = ledger.received_ms.get(&a.id) {
            let us = (at_ms * 1000)
                .saturating_sub(a.raised_unix_ns / 1000)
                .max(1);
            record(&mut sensor_h, us, "sensor alert raised → stored");
        }
    }
    let confirmed: Vec<&String> = posted
        .iter()
        .filter(|p| p.confirmed)
        .map(|p| &p.id)
        .collect();
    let missing: Vec<&&String> = confirmed
        .iter()
        .filter(|id| !ledger.per_id.contains_key(id.as_str()))
        .collect();
    Some(SensorAlerts {
        confirmed: confirmed.len(),
        in_ledger: sensor.len(),
        missing_from_ledger: missing.len(),
        missing_ids: missing.iter().take(20).map(|id| id.to_string()).collect(),
        posted: posted.len(),
        raise_to_stored_ms: percentiles(&sensor_h),
    })
}

/// Video per camera: the gateway's counters next to the center's.
fn camera_frames(gw_metrics: &str, center_cameras: &Value) -> BTreeMap<String, CameraFrames> {
    let mut cameras = BTreeMap::new();
    for c in center_cameras["cameras"].as_array().into_iter().flatten() {
        let Some(id) = c["id"].as_str() else { continue };
        let count = |name: &str| prom::sum_with(gw_metrics, name, &[("camera", id)]) as u64;
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
                received_at_gateway: count("lookout_camera_units_total"),
                lost_camera_to_gateway: prom::has_series(
                    gw_metrics,
                    "lookout_ingest_lost_frames_total",
                    &[("camera", id)],
                )
                .then(|| count("lookout_ingest_lost_frames_total")),
                sent: count("lookout_relay_frames_total"),
                received_at_center: c["frames"].as_u64().unwrap_or(0),
                gops_sent: gops("sent"),
                gops_reset: gops("reset"),
                gops_skipped: gops("skipped"),
            },
        );
    }
    cameras
}

/// `--strict`: fails unless every alert is in the ledger exactly once, every
/// incident alerted, and (uncongested) every frame arrived.
pub(super) fn strict(args: &RelayArgs, report: &RelayReport) -> anyhow::Result<()> {
    let alerts = &report.alerts;
    let sent: u64 = report.cameras.values().map(|c| c.sent).sum();
    let received: u64 = report.cameras.values().map(|c| c.received_at_center).sum();
    let mut problems = Vec::new();
    if alerts.missing_from_ledger > 0 {
        problems.push(format!(
            "{} alert(s) never reached the ledger",
            alerts.missing_from_ledger
        ));
    }
    if alerts.stored_twice > 0 || alerts.not_raised_by_gateway > 0 {
        problems.push(format!(
            "ledger: {} id(s) stored twice, {} not raised by the gateway",
            alerts.stored_twice, alerts.not_raised_by_gateway
        ));
    }
    if let Some(s) = &report.sensor_alerts
        && s.missing_from_ledger > 0
    {
        problems.push(format!("sensor alerts: {}", s.missing_from_ledger));
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
        && (c.missing != 0 || c.stored_twice != 0)
    {
        problems.push(format!(
            "cascade: {}",
            serde_json::to_string(c).unwrap_or_default()
        ));
    }
    if !problems.is_empty() {
        bail!("relay check failed: {}", problems.join("; "));
    }
    Ok(())
}
