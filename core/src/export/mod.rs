//! Alert exports: every alert event, delivered at least once to the county's
//! other systems — an MQTT broker, a webhook receiver — as lookout's JSON or
//! as OASIS CAP 1.2, from a durable event log.
//!
//! The log is the side's own SQLite file (the center's ledger, a gateway's
//! `exports.sqlite3`): an event is
//! appended in the same transaction that stores the alert revision, before
//! anything acknowledges it, and each export keeps a cursor there: the
//! highest event it has delivered. An export reads what lies after its
//! cursor, delivers it (an MQTT PUBACK, a 2xx answer), and only then moves
//! the cursor. A crash, a kill -9, a broker down for hours: the events wait
//! in the file and go out, in order, when the destination is back; an event
//! delivered just before a crash may go out twice, so every message carries
//! the alert's id and revision for the consumer to de-duplicate.
//!
//! Each export is a task of its own with its own cursor, so a destination
//! that is down holds back only itself: never detection, the QUIC relay or
//! another export. Its backlog, the age of its oldest undelivered event and
//! its failures are metrics and show in `GET /api/exports`.
//!
//! - `config.rs`: the `[[export]]` entries.
//! - `event.rs`: the event and its JSON.
//! - `cap.rs`: the CAP 1.2 document and the Atom feed.
//! - `mqtt.rs`, `webhook.rs`: the destinations.
//! - `log.rs`: the event log's SQL, and a gateway's log file.
//! - `run.rs`: the loop that moves an export's cursor, with its status.

pub mod cap;
pub mod config;
mod event;
pub mod log;
mod mqtt;
mod run;
mod webhook;

pub use config::{ExportConfig, ExportFormat, ExportKind, MqttVersion};
pub use event::ExportEvent;
pub use run::{ExportStatus, Exports, Origin};

/// Where exports read their events and record what they delivered. The calls
/// block (SQLite): the exports call them on blocking threads.
pub trait EventLog: Send + Sync + 'static {
    /// Up to `limit` events after `export`'s cursor, oldest first. An export
    /// seen for the first time starts at the end of the log: it gets the
    /// events stored from then on, not the history.
    fn pending(&self, export: &str, limit: usize) -> Result<Vec<ExportEvent>, String>;
    /// Moves `export`'s cursor to `seq` (every event up to it delivered).
    fn delivered(&self, export: &str, seq: u64) -> Result<(), String>;
    /// Events after `export`'s cursor, and when the oldest of them was
    /// stored (Unix ms).
    fn backlog(&self, export: &str) -> Result<(u64, Option<u64>), String>;
}
