//! The exports' durable event log: the SQL both sides share, on whichever SQLite file
//! holds it (the center's ledger, `center/src/ledger/export.rs`; a gateway's
//! `exports.sqlite3`, [`ExportLog`]), and the gateway's file itself. Each export's cursor
//! is the last event it delivered; an export configured for the first time starts at
//! the end of the log; one no longer configured loses its cursor, so it cannot hold
//! events back; events every cursor has passed are deleted.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, Transaction, params};

use super::{EventLog, ExportEvent};
use crate::alert::hub::{AlertEvent, Journal};
use crate::alert::machine::AlertEventKind;
use crate::sync::Locked;

/// The log's two tables, as the center's ledger (its version 3) and a gateway's file
/// (its version 1) create them. Never edited: a change to them is a migration of each
/// file.
pub const TABLES: &str = "
CREATE TABLE export_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    payload TEXT NOT NULL,
    stored_unix_ms INTEGER NOT NULL
);
CREATE TABLE export_cursors (
    export_id TEXT PRIMARY KEY,
    delivered_seq INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Appends one alert revision (once: where a unique index says it is there already,
/// nothing).
pub fn append(
    tx: &Transaction<'_>,
    gateway: &str,
    alert_id: &str,
    revision: u32,
    payload: &str,
    now_unix_ms: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO export_events (gateway, alert_id, revision, payload, stored_unix_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![gateway, alert_id, i64::from(revision), payload, now_unix_ms],
    )?;
    Ok(())
}

/// Cursors for `exports` (new ones at the end of the log), none for any other, and the
/// events every remaining cursor passed deleted (all of them with no export).
pub fn enable(tx: &Transaction<'_>, exports: &[String]) -> rusqlite::Result<()> {
    let end: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM export_events", [], |r| {
        r.get(0)
    })?;
    let existing: Vec<String> = {
        let mut stmt = tx.prepare("SELECT export_id FROM export_cursors")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for id in existing.iter().filter(|id| !exports.contains(id)) {
        tx.execute("DELETE FROM export_cursors WHERE export_id = ?1", [id])?;
    }
    for id in exports {
        tx.execute(
            "INSERT OR IGNORE INTO export_cursors (export_id, delivered_seq) VALUES (?1, ?2)",
            params![id, end],
        )?;
    }
    prune(tx)
}

/// Deletes the events every cursor has passed.
fn prune(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM export_events WHERE seq <= \
         (SELECT COALESCE(MIN(delivered_seq), (SELECT COALESCE(MAX(seq), 0) FROM export_events)) \
          FROM export_cursors)",
        [],
    )?;
    Ok(())
}

/// One event from its row's values.
pub fn event(
    seq: i64,
    gateway: String,
    alert_id: String,
    revision: i64,
    payload: &str,
    stored_unix_ms: i64,
) -> ExportEvent {
    ExportEvent {
        seq: u64::try_from(seq).unwrap_or(0),
        gateway,
        alert_id,
        revision: u32::try_from(revision).unwrap_or(0),
        // A payload that is not JSON is exported as a JSON string, as the ledger shows it.
        alert: serde_json::from_str(payload)
            .unwrap_or_else(|_| serde_json::Value::String(payload.to_string())),
        stored_unix_ms: u64::try_from(stored_unix_ms).unwrap_or(0),
    }
}

/// Up to `limit` events after `export`'s cursor, oldest first.
pub fn pending(
    conn: &Connection,
    export: &str,
    limit: usize,
) -> rusqlite::Result<Vec<ExportEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.seq, e.gateway, e.alert_id, e.revision, e.payload, e.stored_unix_ms \
         FROM export_events e, export_cursors c \
         WHERE c.export_id = ?1 AND e.seq > c.delivered_seq ORDER BY e.seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![export, limit as i64], |r| {
        Ok(event(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            &r.get::<_, String>(4)?,
            r.get(5)?,
        ))
    })?;
    rows.collect()
}

/// Moves `export`'s cursor to `seq` (never back) and prunes.
pub fn delivered(tx: &Transaction<'_>, export: &str, seq: u64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE export_cursors SET delivered_seq = MAX(delivered_seq, ?2) WHERE export_id = ?1",
        params![export, i64::try_from(seq).unwrap_or(i64::MAX)],
    )?;
    prune(tx)
}

/// Events after `export`'s cursor, and when the oldest of them was stored.
pub fn backlog(conn: &Connection, export: &str) -> rusqlite::Result<(u64, Option<u64>)> {
    conn.query_row(
        "SELECT COUNT(*), MIN(e.stored_unix_ms) FROM export_events e, export_cursors c \
         WHERE c.export_id = ?1 AND e.seq > c.delivered_seq",
        [export],
        |r| {
            let n: i64 = r.get(0)?;
            let oldest: Option<i64> = r.get(1)?;
            Ok((
                u64::try_from(n).unwrap_or(0),
                oldest.and_then(|t| u64::try_from(t).ok()),
            ))
        },
    )
}

/// A gateway's export log: `exports.sqlite3` in its storage folder (WAL,
/// `synchronous=FULL`, 0600), written by the alert hub as a [`Journal`] on the thread
/// that raises each event, before the event is announced, beside the relay's outboxes.
pub struct ExportLog {
    path: PathBuf,
    gateway: String,
    conn: Mutex<Connection>,
}

/// `PRAGMA application_id` of a gateway's export log ("LKEX").
const APPLICATION_ID: i64 = 0x4c4b_4558;

/// The gateway's file after its tables: one row per (alert, revision). The hub may
/// journal a revision twice (a client's retry), which is one event; [`append`] ignores
/// the second.
const ONCE_PER_REVISION: &str =
    "CREATE UNIQUE INDEX export_events_once ON export_events (gateway, alert_id, revision);";

impl ExportLog {
    /// Opens (or creates) the log at `path` for gateway `gateway` with cursors for
    /// `exports`.
    pub fn open(path: &Path, gateway: &str, exports: &[String]) -> Result<ExportLog, String> {
        let schema = crate::durable::Schema {
            kind: "export log",
            application_id: APPLICATION_ID,
            create_v1: TABLES,
            migrations: &[ONCE_PER_REVISION],
        };
        let mut conn = crate::durable::open(path, &schema)
            .map_err(|e| format!("export log {}: {e}", path.display()))?;
        let fail = |e: rusqlite::Error| format!("export log {}: {e}", path.display());
        let tx = conn.transaction().map_err(fail)?;
        enable(&tx, exports).map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(ExportLog {
            path: path.to_path_buf(),
            gateway: gateway.to_string(),
            conn: Mutex::new(conn),
        })
    }

    fn error(&self, op: &str, e: rusqlite::Error) -> String {
        format!("export log {}: {op}: {e}", self.path.display())
    }
}

impl Journal for ExportLog {
    fn record(&self, event: &AlertEvent) -> Result<(), String> {
        if event.kind == AlertEventKind::Snapshot {
            return Ok(());
        }
        let payload = serde_json::to_string(&*event.alert)
            .map_err(|e| format!("export log: alert {}: {e}", event.alert.id))?;
        let revision = crate::relay::revision(&event.alert);
        let mut conn = self.conn.locked();
        let tx = conn.transaction().map_err(|e| self.error("append", e))?;
        append(
            &tx,
            &self.gateway,
            &event.alert.id,
            revision,
            &payload,
            i64::try_from(crate::clock::unix_ms()).unwrap_or(i64::MAX),
        )
        .map_err(|e| self.error("append", e))?;
        tx.commit().map_err(|e| self.error("append", e))
    }
}

impl EventLog for ExportLog {
    fn pending(&self, export: &str, limit: usize) -> Result<Vec<ExportEvent>, String> {
        pending(&self.conn.locked(), export, limit).map_err(|e| self.error("read", e))
    }

    fn delivered(&self, export: &str, seq: u64) -> Result<(), String> {
        let mut conn = self.conn.locked();
        let tx = conn
            .transaction()
            .map_err(|e| self.error("record delivery", e))?;
        delivered(&tx, export, seq).map_err(|e| self.error("record delivery", e))?;
        tx.commit().map_err(|e| self.error("record delivery", e))
    }

    fn backlog(&self, export: &str) -> Result<(u64, Option<u64>), String> {
        backlog(&self.conn.locked(), export).map_err(|e| self.error("backlog", e))
    }
}
