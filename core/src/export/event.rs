//! One alert event as exports carry it, and its JSON message.

use serde_json::{Value, json};

use crate::alert::machine::AlertEventKind;

/// One revision of one alert, as the event log stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportEvent {
    /// Its place in the log (increasing, never reused).
    pub seq: u64,
    /// The gateway that raised the alert.
    pub gateway: String,
    /// The alert's id (unique with `gateway`).
    pub alert_id: String,
    /// The alert's revision this event is.
    pub revision: u32,
    /// The alert record at this revision (the gateway's `Alert` JSON).
    pub alert: Value,
    /// When the log stored it, Unix ms.
    pub stored_unix_ms: u64,
}

impl ExportEvent {
    /// `raised` for revision 0 (the relay's revisions count from 0: the
    /// updates, plus one once cleared), `cleared` once the record says so,
    /// else `updated`.
    pub fn kind(&self) -> AlertEventKind {
        if self.alert.get("state").and_then(Value::as_str) == Some("cleared") {
            AlertEventKind::Cleared
        } else if self.revision == 0 {
            AlertEventKind::Raised
        } else {
            AlertEventKind::Updated
        }
    }

    /// A string field of the alert record.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.alert.get(name).and_then(Value::as_str)
    }

    /// The camera's id, from the record (`camera.id`).
    pub fn camera(&self) -> &str {
        self.alert
            .get("camera")
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
    }

    /// The event's JSON message (docs/EXPORTS.md): the keys a consumer
    /// de-duplicates on (`gateway`, `id`, `revision`), what happened, and the
    /// whole alert record.
    pub fn json(&self, origin: &str) -> Value {
        json!({
            "origin": origin,
            "gateway": self.gateway,
            "id": self.alert_id,
            "revision": self.revision,
            "event": self.kind().as_str(),
            "camera": self.camera(),
            "label": self.field("label"),
            "severity": self.field("severity"),
            "state": self.field("state"),
            "alert": self.alert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u32, state: &str) -> ExportEvent {
        ExportEvent {
            seq: 1,
            gateway: "gw".into(),
            alert_id: "a1".into(),
            revision,
            alert: json!({"state": state, "label": "smoke", "camera": {"id": "tower-01"}}),
            stored_unix_ms: 0,
        }
    }

    #[test]
    fn the_kind_follows_revision_and_state() {
        assert_eq!(event(0, "active").kind(), AlertEventKind::Raised);
        assert_eq!(event(1, "active").kind(), AlertEventKind::Updated);
        assert_eq!(event(3, "active").kind(), AlertEventKind::Updated);
        assert_eq!(event(4, "cleared").kind(), AlertEventKind::Cleared);
        let j = event(3, "active").json("center-1");
        assert_eq!(j["id"], "a1");
        assert_eq!(j["revision"], 3);
        assert_eq!(j["camera"], "tower-01");
        assert_eq!(j["event"], "updated");
    }
}
