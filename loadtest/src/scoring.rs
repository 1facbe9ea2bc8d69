//! Alerts against the ground truth: the default incident script, the
//! onsets the fleet wrote, scoring alerts against them (alerted, missed,
//! false, duplicate), and the center's ledger checked against the alerts
//! the gateway raised.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::fleet::incidents::Onset;
use crate::stats::{Percentiles, histogram, percentiles, record};

/// How the alerts compare with the ground truth.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Score {
    /// Incidents that began (onsets in the fleet's ground truth).
    pub scripted: usize,
    /// Incidents with at least one matching alert (same camera and class, captured in the
    /// incident's span).
    pub alerted: usize,
    /// Incidents without a matching alert.
    pub missed: usize,
    /// Alerts that match no incident (a clean camera, the wrong class, or captured before the
    /// onset).
    pub false_alerts: usize,
    /// Matching alerts beyond an incident's first (by time raised).
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
    /// The alert's id, as the gateway raised it and the ledger keys it.
    pub id: String,
    /// The camera's id (`camera.id` in the alert).
    pub camera: String,
    /// The class detected (`smoke`, `flood`) or the sensor's label.
    pub label: String,
    /// When the frame that raised it was captured (its stamp), Unix ns.
    pub capture_unix_ns: u64,
    /// When the gateway's detector decided on that frame, Unix ns.
    pub detect_unix_ns: u64,
    /// When the gateway raised the alert, Unix ns.
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

/// The incidents that have begun so far, from the fleet's ground truth;
/// `None` while it cannot be read.
pub(crate) fn read_onsets(ground_truth: &Path) -> Option<Vec<Onset>> {
    serde_json::from_str(&std::fs::read_to_string(ground_truth).ok()?).ok()
}

/// The ids of the alerts in an `/api/alerts` answer, in its order.
pub(crate) fn alert_ids(alerts: &Value) -> Vec<String> {
    alerts["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The center's ledger against the alerts the gateway raised.
pub(crate) struct LedgerCheck {
    /// Alert ids the gateway lists.
    pub raised: HashSet<String>,
    /// The ledger's records.
    pub records: Vec<Value>,
    /// Records per alert id.
    pub per_id: HashMap<String, usize>,
    /// Raised by the gateway, not in the ledger.
    pub missing: usize,
    /// Ids stored more than once.
    pub doubled: usize,
    /// Ids in the ledger the gateway did not raise.
    pub invented: usize,
    /// Deliveries over all records.
    pub deliveries: u64,
    /// When the center stored each alert, Unix ms, by id.
    pub received_ms: HashMap<String, u64>,
    /// The alerts as stored.
    pub stored: Vec<SeenAlert>,
}

impl LedgerCheck {
    pub(crate) fn new(gw_alerts: &Value, ledger: &Value) -> LedgerCheck {
        let raised: HashSet<String> = alert_ids(gw_alerts).into_iter().collect();
        let records = ledger["alerts"].as_array().cloned().unwrap_or_default();
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for r in &records {
            if let Some(id) = r["id"].as_str() {
                *per_id.entry(id.to_string()).or_default() += 1;
            }
        }
        let missing = raised.iter().filter(|id| !per_id.contains_key(*id)).count();
        let doubled = per_id.values().filter(|n| **n > 1).count();
        let invented = per_id.keys().filter(|id| !raised.contains(*id)).count();
        let deliveries: u64 = records
            .iter()
            .filter_map(|r| r["deliveries"].as_u64())
            .sum();
        let stored: Vec<SeenAlert> = records
            .iter()
            .filter_map(|r| SeenAlert::from_json(&r["alert"]))
            .collect();
        let received_ms: HashMap<String, u64> = records
            .iter()
            .filter_map(|r| {
                Some((
                    r["id"].as_str()?.to_string(),
                    r["received_unix_ms"].as_u64()?,
                ))
            })
            .collect();
        LedgerCheck {
            raised,
            records,
            per_id,
            missing,
            doubled,
            invented,
            deliveries,
            received_ms,
            stored,
        }
    }

    /// `alerts` (some of `stored`) scored against the scripted incidents,
    /// and their latencies to being stored in the ledger. Every alert is scored; only
    /// those raised at or after `since_unix_ns` (the end of the warm-up, when the
    /// cameras' first seconds of backlog are through) are timed, as the relay's
    /// latencies are.
    pub(crate) fn timing(
        &self,
        onsets: &[Onset],
        alerts: &[SeenAlert],
        since_unix_ns: u64,
    ) -> AlertTiming {
        let (incidents, matched) = score(onsets, alerts);
        let mut cap = histogram();
        let mut raise = histogram();
        for a in alerts.iter().filter(|a| a.raised_unix_ns >= since_unix_ns) {
            let Some(at_ms) = self.received_ms.get(&a.id) else {
                continue;
            };
            let at_us = at_ms * 1000;
            let capture_to_stored = at_us.saturating_sub(a.capture_unix_ns / 1000).max(1);
            record(&mut cap, capture_to_stored, "capture → alert stored");
            let raise_to_stored = at_us.saturating_sub(a.raised_unix_ns / 1000).max(1);
            record(&mut raise, raise_to_stored, "alert raised → stored");
        }
        let mut onset_h = histogram();
        for (o, a) in &matched {
            if let Some(at_ms) = self.received_ms.get(&a.id) {
                let onset_to_stored = (at_ms * 1000)
                    .saturating_sub(o.onset_capture_unix_ns / 1000)
                    .max(1);
                record(&mut onset_h, onset_to_stored, "onset → alert stored");
            }
        }
        AlertTiming {
            incidents,
            capture_to_alert: percentiles(&cap),
            raise_to_stored: percentiles(&raise),
            onset_to_alert: percentiles(&onset_h),
        }
    }
}

/// Alerts scored against the incidents, and how long they took to be
/// stored.
pub(crate) struct AlertTiming {
    /// Every alert given scored against the scripted incidents.
    pub incidents: Score,
    /// Capture of the frame → stored in the ledger.
    pub capture_to_alert: Percentiles,
    /// Raised by the gateway → stored in the ledger.
    pub raise_to_stored: Percentiles,
    /// The incident's first frame → its alert stored in the ledger.
    pub onset_to_alert: Percentiles,
}

impl AlertTiming {
    /// The three latencies under their report names.
    pub(crate) fn latencies(&self) -> [(String, Percentiles); 3] {
        [
            ("capture_to_alert".into(), self.capture_to_alert.clone()),
            ("raise_to_stored".into(), self.raise_to_stored.clone()),
            ("onset_to_alert".into(), self.onset_to_alert.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::incidents::Onset;

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
        assert_eq!(crate::prom::sum(text, "lookout_detect_frames_total"), 15.0);
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
        let (id, block) = crate::stack::detector_block(&f).expect("block");
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
