//! Alerts that come from outside the video path, through `POST /api/alerts`:
//! a river gauge over its threshold, a satellite hotspot feed, an operator's
//! report from a body camera. Each names the camera it concerns, so the wall
//! shows it next to that camera's video, and travels the same way as a
//! detector's alert: journal (every outbox, on disk) first, then the API,
//! the wall and the command center.
//!
//! Delivery is idempotent by id: a client that did not get an answer (the
//! gateway crashed, the connection broke) sends the same request again with
//! the same `id`, and the command center's ledger still holds the alert
//! once. The answer `201 Created` is given only after the alert is on disk.

use crate::alert::hub::AlertState;
use serde::Deserialize;

use crate::alert::hub::{Alert, AlertHub, CameraRef, FrameRef};
use crate::alert::identity::ModelIdentity;
use crate::alert::machine::AlertEventKind;
use crate::config::{CameraConfig, Severity};
use crate::logging::untrusted;

/// The `detector` of alerts that came through the API.
pub use lookout_core::alert::hub::EXTERNAL_DETECTOR as DETECTOR;

/// Longest accepted `id`, `source` and `label`.
const MAX_ID: usize = 128;
/// Longest accepted `note`.
const MAX_NOTE: usize = 2000;

/// The body of `POST /api/alerts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAlert {
    /// The client's id for this alert (letters, digits, `.`, `_`, `:`, `-`),
    /// so that a retry is recognised; one is made when absent.
    pub id: Option<String>,
    /// The configured camera it concerns.
    pub camera: String,
    /// What it is: `flood`, `smoke`, `sos`, …
    pub label: String,
    /// Who raised it: `gauge-17`, `satellite:viirs`, `operator:li`.
    pub source: String,
    /// How urgent it is; `high` when absent.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// Confidence 0..1; 1 when absent.
    pub score: Option<f32>,
    /// When it was observed, Unix ns; when received when absent.
    pub observed_unix_ns: Option<u64>,
    /// Free text for the operator (at most 2000 bytes), kept in the alert;
    /// with `cleared`, it replaces the alert's note.
    pub note: Option<String>,
    /// `active` (the default) raises it; `cleared` ends an active one.
    #[serde(default)]
    pub state: ExternalState,
}

/// The state a request asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalState {
    /// Raise the alert (a retry of one already here changes nothing).
    #[default]
    Active,
    /// End the active alert with this `id`.
    Cleared,
}

fn default_severity() -> Severity {
    Severity::High
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// New, or newly cleared: written and announced.
    Written(Alert),
    /// This state of this id was already here (a retry): nothing changed.
    Unchanged(Alert),
}

/// Why a request was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A field breaks its rule, or the `id` belongs to another camera or
    /// label (`422`).
    Invalid(String),
    /// No such camera, or no alert with that `id` to clear (`404`).
    NotFound(String),
    /// The journal failed: the alert is announced here but may not survive
    /// a crash, so the client must not count it as delivered.
    NotDurable(String),
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

impl ExternalAlert {
    fn check(&self) -> Result<(), Refusal> {
        let bad = |field: &str, rule: &str| Err(Refusal::Invalid(format!("`{field}`: {rule}")));
        let token_rule = "1 to 128 letters, digits, `.`, `_`, `:` or `-`";
        if self.id.as_deref().is_some_and(|id| !valid_token(id)) {
            return bad("id", token_rule);
        }
        if !valid_token(&self.label) {
            return bad("label", token_rule);
        }
        if !valid_token(&self.source) {
            return bad("source", token_rule);
        }
        if self
            .score
            .is_some_and(|s| !(s.is_finite() && (0.0..=1.0).contains(&s)))
        {
            return bad("score", "a number from 0 to 1");
        }
        if self.note.as_deref().is_some_and(|n| n.len() > MAX_NOTE) {
            return bad("note", "at most 2000 bytes");
        }
        Ok(())
    }
}

/// Applies a request: `camera` is the configured camera it names (`None`:
/// there is no such camera). Blocking (the journal writes to disk).
pub fn apply(
    hub: &AlertHub,
    gateway_id: &str,
    camera: Option<&CameraConfig>,
    req: ExternalAlert,
    now_ns: u64,
) -> Result<Outcome, Refusal> {
    req.check()?;
    let Some(camera) = camera else {
        return Err(Refusal::NotFound(format!(
            "`camera`: this gateway has no camera `{}`",
            req.camera
        )));
    };
    let existing = req.id.as_deref().and_then(|id| hub.get(id));
    if let Some(a) = &existing
        && (a.camera.id != req.camera || a.label != req.label)
    {
        return Err(Refusal::Invalid(format!(
            "`id`: alert {} exists for camera `{}`, label `{}`",
            a.id, a.camera.id, a.label
        )));
    }
    match (req.state, existing) {
        (ExternalState::Active, Some(a)) => unchanged(hub, &a),
        (ExternalState::Cleared, Some(a)) if a.state == AlertState::Cleared => unchanged(hub, &a),
        (ExternalState::Cleared, Some(a)) => {
            let mut a = (*a).clone();
            a.state = AlertState::Cleared;
            a.cleared_unix_ns = Some(now_ns);
            if req.note.is_some() {
                a.note = req.note;
            }
            publish(hub, AlertEventKind::Cleared, a)
        }
        (ExternalState::Cleared, None) => Err(Refusal::NotFound(format!(
            "`id`: no alert {} here to clear",
            req.id.as_deref().unwrap_or("(none given)")
        ))),
        (ExternalState::Active, None) => {
            let id = req
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let observed = req.observed_unix_ns.unwrap_or(now_ns).min(now_ns);
            let score = req.score.unwrap_or(1.0);
            let alert = Alert {
                id,
                state: AlertState::Active,
                gateway: gateway_id.to_string(),
                camera: CameraRef {
                    id: camera.id.clone(),
                    kind: camera.kind,
                    name: camera.name.clone(),
                    group: camera.group.clone(),
                    location: camera.location,
                },
                detector: DETECTOR.into(),
                model: ModelIdentity {
                    name: "external".into(),
                    version: req.source.clone(),
                    sha256: String::new(),
                },
                label: req.label.clone(),
                severity: req.severity,
                score,
                peak_score: score,
                boxes: Vec::new(),
                area: None,
                frame: FrameRef {
                    seq: 0,
                    width: 0,
                    height: 0,
                    capture_unix_ns: observed,
                    received_unix_ns: now_ns,
                },
                capture_unix_ns: observed,
                detect_unix_ns: now_ns,
                capture_to_detect_ms: now_ns.saturating_sub(observed) as f64 / 1e6,
                receive_to_detect_ms: 0.0,
                raised_unix_ns: now_ns,
                updated_unix_ns: None,
                cleared_unix_ns: None,
                updates: 0,
                snapshot: None,
                source: Some(req.source.clone()),
                note: req.note.clone(),
            };
            // Checked to a narrow alphabet above; escaped all the same, so
            // a future field or a looser rule cannot forge a log line.
            tracing::warn!(
                alert = %untrusted(&alert.id),
                camera = %untrusted(&alert.camera.id),
                label = %untrusted(&alert.label),
                source = %untrusted(&req.source),
                severity = alert.severity.as_str(),
                "external alert raised"
            );
            publish(hub, AlertEventKind::Raised, alert)
        }
    }
}

/// A retry: made durable again (a no-op when it is already) before the
/// client is told so.
fn unchanged(hub: &AlertHub, a: &std::sync::Arc<Alert>) -> Result<Outcome, Refusal> {
    hub.rejournal(a).map_err(Refusal::NotDurable)?;
    Ok(Outcome::Unchanged((**a).clone()))
}

fn publish(hub: &AlertHub, kind: AlertEventKind, alert: Alert) -> Result<Outcome, Refusal> {
    match hub.publish(kind, alert.clone()) {
        Ok(()) => Ok(Outcome::Written(alert)),
        Err(e) => Err(Refusal::NotDurable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CameraKind, Transport};

    fn req(id: Option<&str>, state: ExternalState) -> ExternalAlert {
        ExternalAlert {
            id: id.map(str::to_string),
            camera: "tower-01".into(),
            label: "flood".into(),
            source: "gauge-17".into(),
            severity: Severity::Critical,
            score: Some(0.9),
            observed_unix_ns: Some(1_000),
            note: Some("river at 4.2 m".into()),
            state,
        }
    }

    fn cam() -> CameraConfig {
        CameraConfig::bare(
            "tower-01",
            CameraKind::Tower,
            "rtsp://127.0.0.1:1/x",
            Transport::Tcp,
        )
    }

    #[test]
    fn raise_retry_clear_and_clear_again() {
        let hub = AlertHub::new();
        let mut events = hub.subscribe();
        let c = cam();
        let first = apply(
            &hub,
            "gw",
            Some(&c),
            req(Some("g17-1"), ExternalState::Active),
            5_000,
        );
        let Ok(Outcome::Written(a)) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            (a.id.as_str(), a.state, a.updates),
            ("g17-1", AlertState::Active, 0)
        );
        assert_eq!(a.source.as_deref(), Some("gauge-17"));
        assert_eq!(a.capture_to_detect_ms, 0.004);
        // A retry changes nothing and announces nothing.
        let again = apply(
            &hub,
            "gw",
            Some(&c),
            req(Some("g17-1"), ExternalState::Active),
            6_000,
        );
        assert!(matches!(again, Ok(Outcome::Unchanged(_))), "{again:?}");
        let cleared = apply(
            &hub,
            "gw",
            Some(&c),
            req(Some("g17-1"), ExternalState::Cleared),
            7_000,
        );
        assert!(
            matches!(&cleared, Ok(Outcome::Written(a)) if a.state == AlertState::Cleared && a.cleared_unix_ns == Some(7_000)),
            "{cleared:?}"
        );
        let twice = apply(
            &hub,
            "gw",
            Some(&c),
            req(Some("g17-1"), ExternalState::Cleared),
            8_000,
        );
        assert!(matches!(twice, Ok(Outcome::Unchanged(_))), "{twice:?}");
        let mut kinds = Vec::new();
        while let Ok(e) = events.try_recv() {
            kinds.push(e.kind);
        }
        assert_eq!(kinds, [AlertEventKind::Raised, AlertEventKind::Cleared]);
        assert_eq!(hub.list(&Default::default()).len(), 1);
    }

    #[test]
    fn refusals_name_the_field() {
        let hub = AlertHub::new();
        let c = cam();
        let mut r = req(Some("bad id with spaces"), ExternalState::Active);
        assert!(
            matches!(apply(&hub, "gw", Some(&c), r.clone(), 1), Err(Refusal::Invalid(m)) if m.contains("`id`"))
        );
        r.id = None;
        r.score = Some(1.5);
        assert!(
            matches!(apply(&hub, "gw", Some(&c), r.clone(), 1), Err(Refusal::Invalid(m)) if m.contains("`score`"))
        );
        r.score = None;
        assert!(
            matches!(apply(&hub, "gw", None, r.clone(), 1), Err(Refusal::NotFound(m)) if m.contains("tower-01"))
        );
        let clear_unknown = req(Some("nope"), ExternalState::Cleared);
        assert!(matches!(
            apply(&hub, "gw", Some(&c), clear_unknown, 1),
            Err(Refusal::NotFound(_))
        ));
        // No id: one is made, and the observed time never lies in the future.
        r.observed_unix_ns = Some(u64::MAX);
        let made = apply(&hub, "gw", Some(&c), r, 10);
        assert!(
            matches!(&made, Ok(Outcome::Written(a)) if a.id.len() == 36 && a.capture_unix_ns == 10),
            "{made:?}"
        );
        assert!(hub.list(&Default::default()).len() == 1);
    }

    struct Failing;
    impl crate::alert::hub::Journal for Failing {
        fn record(&self, _: &crate::alert::hub::AlertEvent) -> Result<(), String> {
            Err("disk full".into())
        }
    }

    #[test]
    fn a_failing_journal_is_not_reported_as_durable() {
        let hub = AlertHub::with_journal(Some(std::sync::Arc::new(Failing)));
        let out = apply(
            &hub,
            "gw",
            Some(&cam()),
            req(Some("x"), ExternalState::Active),
            1,
        );
        assert!(matches!(out, Err(Refusal::NotDurable(m)) if m.contains("disk full")));
    }
}
