//! Where alerts live once raised: the recent alerts and their snapshots for
//! `GET /api/alerts`, and a stream of every raised/updated/cleared event
//! for whoever forwards them (the relay to the command center, the wall).

use crate::sync::Locked;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::identity::ModelIdentity;
use super::machine::AlertEventKind;
use crate::config::{CameraKind, Location, Severity};

/// The `detector` of alerts posted from outside the video path
/// (`POST /api/alerts`).
pub const EXTERNAL_DETECTOR: &str = "external";

/// Alerts (with their snapshots) kept for the API, newest first.
pub const RECENT_ALERTS: usize = 1000;

/// The camera an alert is about, as the wall shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraRef {
    /// The camera's configured id (`[[camera]] id`), as named in the API,
    /// metrics and upstream; for an external alert, the request's `camera`.
    pub id: String,
    /// The camera's configured kind (`tower`, `drone`, `bodycam`, `fixed`)
    /// when the alert was raised.
    pub kind: CameraKind,
    /// The camera's configured human name; `None` (and left out of the
    /// JSON) when its configuration has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The camera's configured administrative group (e.g. the township);
    /// `None` when its configuration has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where the camera stands (`{ lat, lon }`, WGS 84) from its
    /// configuration; `None` when not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// The frame an alert was raised on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRef {
    /// The camera's access-unit sequence number (`AccessUnit::seq`); 0 for
    /// an external alert, which has no frame.
    pub seq: u64,
    /// Picture width the camera sent, pixels (boxes are in these pixels);
    /// 0 for an external alert.
    pub width: u32,
    /// Picture height the camera sent, pixels; 0 for an external alert.
    pub height: u32,
    /// When the picture was taken, Unix ns.
    pub capture_unix_ns: u64,
    /// When the gateway received it, Unix ns.
    pub received_unix_ns: u64,
}

/// One alert, in its latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique id, the same for all of one alert's events: a UUIDv7 made when
    /// a detector raises it, or the client's `id` (else a UUIDv7) for an
    /// external alert.
    pub id: String,
    /// `active` from raising until cleared, then `cleared`.
    pub state: AlertState,
    /// Id of the gateway that raised it (its configured gateway id).
    pub gateway: String,
    /// The camera it concerns, as configured when it was raised.
    pub camera: CameraRef,
    /// Id of the `[[detector]]` that raised it, or [`EXTERNAL_DETECTOR`]
    /// for alerts posted to `POST /api/alerts`.
    pub detector: String,
    /// The model that produced it; for an external alert the name
    /// `external`, the source as version and an empty hash.
    pub model: ModelIdentity,
    /// What was seen: one of the detector's alert labels (`smoke`,
    /// `flood`, …), or the external request's `label`.
    pub label: String,
    /// From the detector's alert policy for this label (`high` when it
    /// names none), or the external request's (`high` by default).
    pub severity: Severity,
    /// Score last reported (raised or updated).
    pub score: f32,
    /// Highest score over the raise and every update, 0..1.
    pub peak_score: f32,
    /// Boxes `[x, y, w, h]` in the camera's picture, when the model gives
    /// boxes.
    pub boxes: Vec<[f32; 4]>,
    /// Share of the picture covered (segmentation models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area: Option<f32>,
    /// The frame that raised it.
    pub frame: FrameRef,
    /// Capture time of the triggering frame (the same as `frame`'s), Unix ns.
    pub capture_unix_ns: u64,
    /// When the detector finished that frame, Unix ns.
    pub detect_unix_ns: u64,
    /// `detect_unix_ns - capture_unix_ns`, milliseconds.
    pub capture_to_detect_ms: f64,
    /// `detect_unix_ns - frame.received_unix_ns`: the gateway's own part.
    pub receive_to_detect_ms: f64,
    /// When it was raised, Unix ns: the detector's finishing time of the
    /// raising frame, or when the gateway received an external alert.
    pub raised_unix_ns: u64,
    /// When it was last updated, Unix ns; `None` until the first update
    /// (external alerts are never updated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_unix_ns: Option<u64>,
    /// When it was cleared, Unix ns; `None` while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleared_unix_ns: Option<u64>,
    /// `updated` events since it was raised (0 for external alerts); the
    /// relay derives the alert's revision from it.
    pub updates: u32,
    /// Path of the JPEG snapshot on this gateway's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Who raised an alert that came from outside the video path (a water
    /// gauge, a satellite hotspot feed, an operator's report) through
    /// `POST /api/alerts`; absent for the gateway's own detectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Free text from that source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Where an alert stands: `active` or `cleared` in its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Raised and not yet cleared.
    Active,
    /// Ended: the detector saw the label no more for `clear_after` samples,
    /// a client posted `cleared`, or the gateway restarted.
    Cleared,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Active => "active",
            AlertState::Cleared => "cleared",
        }
    }
}

impl Alert {
    /// An alert from its JSON record (as the outbox keeps it).
    pub fn from_record(json: &str) -> Result<Alert, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }
}

/// What happened, with the alert as it stands after it.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    /// What happened: raised, updated, cleared, or its snapshot is ready.
    pub kind: AlertEventKind,
    /// The alert as it stands after the event.
    pub alert: Arc<Alert>,
    /// The JPEG, with `snapshot` events.
    pub snapshot: Option<Bytes>,
}

#[derive(Default)]
struct Store {
    /// Newest first.
    alerts: VecDeque<(Arc<Alert>, Option<Bytes>)>,
}

/// Where every alert event is made durable before anyone sees it: the
/// relay's outboxes. `record` returns only once the event is on disk (or has
/// failed), so an alert that the API lists, the wall shows or a client was
/// told about survives a crash of the gateway right after.
pub trait Journal: Send + Sync {
    /// Writes the event durably. Blocking: called on the thread that raises
    /// the alert (a detector thread, or a blocking task for the HTTP API).
    fn record(&self, event: &AlertEvent) -> Result<(), String>;
}

/// Several journals as one: each event goes to every one of them (the
/// relay's outboxes, the exports' log); the errors of those that failed are
/// joined, after all were tried.
pub struct Journals(pub Vec<Arc<dyn Journal>>);

impl Journal for Journals {
    fn record(&self, event: &AlertEvent) -> Result<(), String> {
        let failed: Vec<String> = self
            .0
            .iter()
            .filter_map(|j| j.record(event).err())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

/// The gateway's alerts.
pub struct AlertHub {
    store: Mutex<Store>,
    events: broadcast::Sender<AlertEvent>,
    /// The outboxes (none without upstreams): events are written there
    /// first, then stored and announced.
    journal: Option<Arc<dyn Journal>>,
}

impl Default for AlertHub {
    fn default() -> Self {
        Self::new()
    }
}

/// Which alerts a listing wants.
#[derive(Debug, Default, Clone)]
pub struct AlertQuery {
    /// Only alerts of this camera id; `None`: every camera.
    pub camera: Option<String>,
    /// Only alerts with this label; `None`: every label.
    pub label: Option<String>,
    /// Leave out cleared alerts (`?active=true`).
    pub active_only: bool,
    /// At most this many; `None`: up to [`RECENT_ALERTS`].
    pub limit: Option<usize>,
}

impl AlertHub {
    /// A hub whose events are announced without being journaled (a gateway
    /// without upstreams, a benchmark).
    pub fn new() -> AlertHub {
        AlertHub::with_journal(None)
    }

    /// A hub that makes every event durable in `journal` before it is
    /// announced.
    pub fn with_journal(journal: Option<Arc<dyn Journal>>) -> AlertHub {
        let (events, _) = broadcast::channel(1024);
        AlertHub {
            store: Mutex::new(Store::default()),
            events,
            journal,
        }
    }

    /// Writes an alert's current state to the journal again, without
    /// announcing it: a client's retry must not be told "delivered" for an
    /// alert whose first write failed. The outboxes ignore revisions they
    /// already hold.
    pub fn rejournal(&self, alert: &Arc<Alert>) -> Result<(), String> {
        let kind = if alert.state == AlertState::Cleared {
            AlertEventKind::Cleared
        } else {
            AlertEventKind::Raised
        };
        self.journal(&AlertEvent {
            kind,
            alert: alert.clone(),
            snapshot: None,
        })
    }

    /// Writes `event` to the journal, if there is one. An error is logged
    /// and returned; the event is still announced (an operator at this
    /// gateway must see an alert even when its disk is failing).
    fn journal(&self, event: &AlertEvent) -> Result<(), String> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        j.record(event).inspect_err(|e| {
            tracing::error!(
                alert = %event.alert.id,
                event = event.kind.as_str(),
                "alert event not made durable: {e}"
            )
        })
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.events.subscribe()
    }

    /// Records a new alert or a new state of a known one, and announces it:
    /// first durably in the journal (blocking), then in memory. `Err` says
    /// the journal failed; the event was announced all the same.
    pub fn publish(&self, kind: AlertEventKind, alert: Alert) -> Result<(), String> {
        let alert = Arc::new(alert);
        let event = AlertEvent {
            kind,
            alert: alert.clone(),
            snapshot: None,
        };
        let durable = self.journal(&event);
        {
            let mut s = self.store.locked();
            match s.alerts.iter_mut().find(|(a, _)| a.id == alert.id) {
                Some(slot) => slot.0 = alert.clone(),
                None => {
                    s.alerts.push_front((alert.clone(), None));
                    s.alerts.truncate(RECENT_ALERTS);
                }
            }
        }
        self.announce(event);
        durable
    }

    /// Hands `event` to every subscriber. `send` fails only when there are
    /// none (no upstream or wall listening, a benchmark): the event is
    /// stored and journaled all the same, so nothing is lost.
    fn announce(&self, event: AlertEvent) {
        if let Err(broadcast::error::SendError(event)) = self.events.send(event) {
            tracing::debug!(
                alert = %event.alert.id,
                event = event.kind.as_str(),
                "alert event announced with no subscriber"
            );
        }
    }

    /// Stores an alert's (latest) snapshot and announces it.
    pub fn attach_snapshot(&self, id: &str, jpeg: Bytes) {
        let alert = {
            let mut s = self.store.locked();
            let Some(slot) = s.alerts.iter_mut().find(|(a, _)| a.id == id) else {
                return;
            };
            slot.1 = Some(jpeg.clone());
            slot.0.clone()
        };
        let event = AlertEvent {
            kind: AlertEventKind::Snapshot,
            alert,
            snapshot: Some(jpeg),
        };
        // Announced even when the journal failed (an operator here must see
        // it), as `publish` does; `journal` has logged the failure at error.
        if let Err(e) = self.journal(&event) {
            tracing::debug!(alert = %id, "snapshot announced without being durable: {e}");
        }
        self.announce(event);
    }

    /// Takes back alerts this gateway raised before a restart (newest first,
    /// as the outbox keeps them), without writing or announcing them: the API
    /// lists them again, a client's retry is recognised and an external
    /// alert can still be cleared. Returns how many were taken.
    pub fn restore(&self, newest_first: Vec<Alert>) -> usize {
        let mut s = self.store.locked();
        let mut n = 0;
        for a in newest_first {
            if s.alerts.len() >= RECENT_ALERTS || s.alerts.iter().any(|(b, _)| b.id == a.id) {
                continue;
            }
            s.alerts.push_back((Arc::new(a), None));
            n += 1;
        }
        n
    }

    /// Recent alerts matching `q`, newest first.
    pub fn list(&self, q: &AlertQuery) -> Vec<Arc<Alert>> {
        let s = self.store.locked();
        s.alerts
            .iter()
            .map(|(a, _)| a)
            .filter(|a| q.camera.as_deref().is_none_or(|c| a.camera.id == c))
            .filter(|a| q.label.as_deref().is_none_or(|l| a.label == l))
            .filter(|a| !q.active_only || a.state == AlertState::Active)
            .take(q.limit.unwrap_or(RECENT_ALERTS))
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Alert>> {
        let s = self.store.locked();
        s.alerts
            .iter()
            .find(|(a, _)| a.id == id)
            .map(|(a, _)| a.clone())
    }

    pub fn snapshot(&self, id: &str) -> Option<Bytes> {
        let s = self.store.locked();
        s.alerts
            .iter()
            .find(|(a, _)| a.id == id)
            .and_then(|(_, j)| j.clone())
    }
}
