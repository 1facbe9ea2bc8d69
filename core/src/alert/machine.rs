//! From per-frame detections to alerts an operator can act on.
//!
//! Per camera, detector and label a small state machine:
//! - zones first: detections whose box centre falls in an `exclude` zone, or
//!   outside every `include` zone, do not count;
//! - **debounce**: the alert is *raised* when at least `raise_after` of the
//!   last `window` samples saw the label — one cloud-shaped frame is not a
//!   fire;
//! - while it is active it is *updated* (at most every `update_interval_s`,
//!   and only when the score rose or the region grew) rather than raised
//!   again;
//! - it is *cleared* after `clear_after` samples in a row without the label;
//! - **cooldown**: after clearing, the same camera and label stay quiet for
//!   `cooldown_s`, so a flickering detection cannot page the wall every
//!   minute.
//!
//! This file is pure logic (time is passed in); [`super::hub`] keeps the
//! alerts, their snapshots and the stream of events.

use std::collections::{HashMap, VecDeque};

use crate::config::{AlertPolicy, Severity, ZoneConfig, ZoneMode};

use super::Detection;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEventKind {
    /// A new alert: `raise_after` of the last `window` samples saw the label
    /// (outside any cooldown), or an external alert was posted.
    Raised,
    /// An active alert's score rose or its region grew, reported at most
    /// every `update_interval_s`.
    Updated,
    /// The alert ended (`clear_after` samples in a row without the label,
    /// or an external `cleared`).
    Cleared,
    /// The alert's snapshot is ready (it follows `raised`/`updated`).
    Snapshot,
}

impl AlertEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEventKind::Raised => "raised",
            AlertEventKind::Updated => "updated",
            AlertEventKind::Cleared => "cleared",
            AlertEventKind::Snapshot => "snapshot",
        }
    }
}

/// One sample's evidence for one label, in source-picture pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Best score among the label's detections in this frame.
    pub score: f32,
    /// Boxes `[x, y, w, h]` in the camera's picture (detection and
    /// segmentation models).
    pub boxes: Vec<[f32; 4]>,
    /// Share of the picture (segmentation).
    pub area: Option<f32>,
}

/// A transition the state machine decided on.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Raised, updated or cleared (never `snapshot`).
    pub kind: AlertEventKind,
    /// The alert label the track follows (one of the detector's alert
    /// labels).
    pub label: String,
    /// The policy's severity for `label`, `high` when it names none.
    pub severity: Severity,
    /// The evidence of the frame that caused the transition (the last
    /// positive one for `cleared`).
    pub evidence: Evidence,
    /// Positive samples in the window when it happened.
    pub positives: usize,
    /// The alert's sequence number for this camera, detector and label,
    /// the same for all of one alert's events.
    pub occurrence: u64,
}

#[derive(Debug, Default)]
struct Track {
    window: VecDeque<bool>,
    negatives_in_row: usize,
    active: bool,
    occurrence: u64,
    last_evidence: Option<Evidence>,
    /// Score and area last reported (raised or updated).
    reported_score: f32,
    reported_area: f32,
    last_report_ns: u64,
    quiet_until_ns: u64,
}

/// All tracks of one detector on one camera.
#[derive(Debug)]
pub struct CameraAlerts {
    policy: AlertPolicy,
    alert_labels: Vec<String>,
    zones: Vec<ZoneConfig>,
    tracks: HashMap<String, Track>,
}

/// Whether the point `(x, y)` lies inside the polygon (even-odd rule).
pub fn point_in_polygon(x: f64, y: f64, poly: &[[f64; 2]]) -> bool {
    let mut inside = false;
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let [xi, yi] = poly[i];
        let [xj, yj] = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Whether a detection of `label` with box `bbox` (source pixels) counts
/// under `zones`. Detections without a box (whole-frame classification)
/// always count.
pub fn zones_allow(zones: &[ZoneConfig], label: &str, bbox: Option<[f32; 4]>) -> bool {
    let Some([x, y, w, h]) = bbox else {
        return true;
    };
    let (cx, cy) = (f64::from(x + w / 2.0), f64::from(y + h / 2.0));
    let applies = |z: &&ZoneConfig| z.labels.is_empty() || z.labels.iter().any(|l| l == label);
    let mut includes = zones
        .iter()
        .filter(applies)
        .filter(|z| z.mode == ZoneMode::Include)
        .peekable();
    if includes.peek().is_some() && !includes.any(|z| point_in_polygon(cx, cy, &z.polygon)) {
        return false;
    }
    !zones
        .iter()
        .filter(applies)
        .filter(|z| z.mode == ZoneMode::Exclude)
        .any(|z| point_in_polygon(cx, cy, &z.polygon))
}

impl CameraAlerts {
    pub fn new(policy: AlertPolicy, alert_labels: Vec<String>, zones: Vec<ZoneConfig>) -> Self {
        CameraAlerts {
            policy,
            alert_labels,
            zones,
            tracks: HashMap::new(),
        }
    }

    /// New zones (the camera was reconfigured); alerts in progress go on.
    pub fn set_zones(&mut self, zones: Vec<ZoneConfig>) {
        self.zones = zones;
    }

    /// Whether an alert is active for `label`.
    pub fn active(&self, label: &str) -> bool {
        self.tracks.get(label).is_some_and(|t| t.active)
    }

    /// Feeds one sample's detections (boxes already in source pixels) taken
    /// at `now_ns`; returns the transitions it caused.
    pub fn observe(&mut self, detections: &[Detection], now_ns: u64) -> Vec<Transition> {
        let mut out = Vec::new();
        for label in &self.alert_labels {
            let mut evidence: Option<Evidence> = None;
            for d in detections.iter().filter(|d| &d.label == label) {
                if !zones_allow(&self.zones, label, d.bbox) {
                    continue;
                }
                let e = evidence.get_or_insert(Evidence {
                    score: d.score,
                    boxes: Vec::new(),
                    area: None,
                });
                e.score = e.score.max(d.score);
                if let Some(b) = d.bbox {
                    e.boxes.push(b);
                }
                if let Some(a) = d.area {
                    e.area = Some(e.area.unwrap_or(0.0) + a);
                }
            }
            let severity = self
                .policy
                .severity
                .get(label)
                .copied()
                .unwrap_or(Severity::High);
            let track = self.tracks.entry(label.clone()).or_default();
            let positive = evidence.is_some();
            track.window.push_back(positive);
            while track.window.len() > self.policy.window {
                track.window.pop_front();
            }
            let positives = track.window.iter().filter(|p| **p).count();
            let emit = |kind, ev: Evidence, t: &Track| Transition {
                kind,
                label: label.clone(),
                severity,
                evidence: ev,
                positives,
                occurrence: t.occurrence,
            };
            if let Some(ev) = evidence {
                track.negatives_in_row = 0;
                let area = ev.area.unwrap_or_else(|| box_area(&ev.boxes));
                if !track.active {
                    if positives >= self.policy.raise_after && now_ns >= track.quiet_until_ns {
                        track.active = true;
                        track.occurrence += 1;
                        track.reported_score = ev.score;
                        track.reported_area = area;
                        track.last_report_ns = now_ns;
                        track.last_evidence = Some(ev.clone());
                        out.push(emit(AlertEventKind::Raised, ev, track));
                    }
                } else {
                    let due = now_ns.saturating_sub(track.last_report_ns)
                        >= (self.policy.update_interval_s * 1e9) as u64;
                    let grew = ev.score >= track.reported_score + 0.05
                        || area > track.reported_area * 1.25 + 1e-6;
                    track.last_evidence = Some(ev.clone());
                    if due && grew {
                        track.reported_score = ev.score;
                        track.reported_area = area;
                        track.last_report_ns = now_ns;
                        out.push(emit(AlertEventKind::Updated, ev, track));
                    }
                }
            } else {
                track.negatives_in_row += 1;
                if track.active && track.negatives_in_row >= self.policy.clear_after {
                    track.active = false;
                    track.quiet_until_ns =
                        now_ns.saturating_add((self.policy.cooldown_s * 1e9) as u64);
                    track.window.clear();
                    let ev = track.last_evidence.take().unwrap_or(Evidence {
                        score: 0.0,
                        boxes: Vec::new(),
                        area: None,
                    });
                    out.push(emit(AlertEventKind::Cleared, ev, track));
                }
            }
        }
        out
    }
}

/// Summed box area in pixels (a growth measure for updates).
fn box_area(boxes: &[[f32; 4]]) -> f32 {
    boxes.iter().map(|b| b[2].max(0.0) * b[3].max(0.0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy() -> AlertPolicy {
        AlertPolicy {
            raise_after: 2,
            window: 3,
            clear_after: 2,
            cooldown_s: 30.0,
            update_interval_s: 5.0,
            severity: [("flood".to_string(), Severity::Critical)].into(),
        }
    }

    fn det(label: &str, score: f32, bbox: Option<[f32; 4]>) -> Detection {
        Detection {
            label: label.to_string(),
            score,
            bbox,
            area: None,
        }
    }

    fn alerts(zones: Vec<ZoneConfig>) -> CameraAlerts {
        CameraAlerts::new(policy(), vec!["smoke".into(), "flood".into()], zones)
    }

    fn kinds(t: &[Transition]) -> Vec<(AlertEventKind, &str)> {
        t.iter().map(|t| (t.kind, t.label.as_str())).collect()
    }

    #[test]
    fn one_positive_frame_is_not_an_alert() {
        let mut a = alerts(vec![]);
        let smoke = [det("smoke", 0.9, None)];
        assert!(a.observe(&smoke, 0).is_empty());
        assert!(a.observe(&[], S).is_empty());
        assert!(a.observe(&[], 2 * S).is_empty());
        assert!(a.observe(&smoke, 3 * S).is_empty());
        assert!(!a.active("smoke"));
    }

    #[test]
    fn raise_update_clear_and_cooldown() {
        let mut a = alerts(vec![]);
        let at = |s: f32| [det("smoke", s, None)];
        assert!(a.observe(&at(0.6), 0).is_empty());
        let t = a.observe(&at(0.7), S);
        assert_eq!(kinds(&t), vec![(AlertEventKind::Raised, "smoke")]);
        assert_eq!(t[0].severity, Severity::High);
        assert_eq!(t[0].positives, 2);
        // Still positive: no new alert; a higher score only after the
        // update interval.
        assert!(a.observe(&at(0.9), 2 * S).is_empty());
        let t = a.observe(&at(0.95), 7 * S);
        assert_eq!(kinds(&t), vec![(AlertEventKind::Updated, "smoke")]);
        assert_eq!(t[0].occurrence, 1);
        // Same score later: nothing to say.
        assert!(a.observe(&at(0.95), 20 * S).is_empty());
        // One miss does not clear; two in a row do.
        assert!(a.observe(&[], 21 * S).is_empty());
        let t = a.observe(&[], 22 * S);
        assert_eq!(kinds(&t), vec![(AlertEventKind::Cleared, "smoke")]);
        assert!(!a.active("smoke"));
        // Within the cooldown the same smoke stays quiet...
        for i in 0..5 {
            assert!(a.observe(&at(0.9), (23 + i) * S).is_empty());
        }
        // ...and after it, raises a new occurrence.
        let t = a.observe(&at(0.9), 60 * S);
        assert_eq!(kinds(&t), vec![(AlertEventKind::Raised, "smoke")]);
        assert_eq!(t[0].occurrence, 2);
    }

    #[test]
    fn labels_are_independent_and_severity_is_per_label() {
        let mut a = alerts(vec![]);
        let both = [det("smoke", 0.8, None), det("flood", 0.9, None)];
        a.observe(&both, 0);
        let t = a.observe(&both, S);
        assert_eq!(
            kinds(&t),
            vec![
                (AlertEventKind::Raised, "smoke"),
                (AlertEventKind::Raised, "flood")
            ]
        );
        assert_eq!(t[1].severity, Severity::Critical);
    }

    #[test]
    fn labels_outside_alert_labels_never_alert() {
        let mut a = alerts(vec![]);
        for i in 0..5 {
            assert!(a.observe(&[det("none", 0.99, None)], i * S).is_empty());
        }
    }

    fn zone(mode: ZoneMode, labels: &[&str], poly: &[[f64; 2]]) -> ZoneConfig {
        ZoneConfig {
            name: None,
            mode,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            polygon: poly.to_vec(),
        }
    }

    #[test]
    fn polygon_membership() {
        let sq = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert!(point_in_polygon(5.0, 5.0, &sq));
        assert!(!point_in_polygon(15.0, 5.0, &sq));
        // A concave L shape.
        let l = [
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 4.0],
            [4.0, 4.0],
            [4.0, 10.0],
            [0.0, 10.0],
        ];
        assert!(point_in_polygon(2.0, 8.0, &l));
        assert!(!point_in_polygon(8.0, 8.0, &l));
    }

    #[test]
    fn exclude_zone_ignores_detections_inside() {
        // A chimney at the top left always smokes.
        let chimney = zone(
            ZoneMode::Exclude,
            &["smoke"],
            &[[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]],
        );
        let mut a = alerts(vec![chimney]);
        let in_zone = [det("smoke", 0.9, Some([40.0, 40.0, 20.0, 20.0]))];
        for i in 0..4 {
            assert!(a.observe(&in_zone, i * S).is_empty());
        }
        let outside = [det("smoke", 0.9, Some([400.0, 40.0, 20.0, 20.0]))];
        a.observe(&outside, 10 * S);
        let t = a.observe(&outside, 11 * S);
        assert_eq!(kinds(&t), vec![(AlertEventKind::Raised, "smoke")]);
        assert_eq!(t[0].evidence.boxes, vec![[400.0, 40.0, 20.0, 20.0]]);
    }

    #[test]
    fn include_zone_keeps_only_detections_inside_and_only_its_labels() {
        let river = zone(
            ZoneMode::Include,
            &["flood"],
            &[[0.0, 500.0], [1280.0, 500.0], [1280.0, 720.0], [0.0, 720.0]],
        );
        let zones = vec![river];
        assert!(zones_allow(
            &zones,
            "flood",
            Some([10.0, 600.0, 50.0, 50.0])
        ));
        assert!(!zones_allow(
            &zones,
            "flood",
            Some([10.0, 10.0, 50.0, 50.0])
        ));
        // The zone is for floods only: smoke anywhere counts.
        assert!(zones_allow(&zones, "smoke", Some([10.0, 10.0, 50.0, 50.0])));
        // Whole-frame classifications have no box and always count.
        assert!(zones_allow(&zones, "flood", None));
    }
}
