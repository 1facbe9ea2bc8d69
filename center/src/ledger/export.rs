//! The exports' event log in the ledger (`lookout_core::export`): alert revisions appended
//! by [`Ledger::store`] in the batch's own transaction while exports are configured, and
//! each export's cursor. An export configured for the first time starts at the end of the
//! log; one no longer configured loses its cursor, so it cannot hold events back.

use std::sync::atomic::Ordering::Relaxed;

use lookout_core::export::{EventLog, ExportEvent};
use rusqlite::{OptionalExtension, Transaction, params};

use super::Ledger;

impl Ledger {
    /// Turns the event log on for `exports` (their ids): cursors for new ones at the end
    /// of the log, none for any other; events every cursor has passed go. With no export,
    /// the log is off and emptied.
    pub fn enable_exports(&self, exports: &[String]) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| self.export_error("enable", e))?;
        let end: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM export_events", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.export_error("enable", e))?;
        let mut kept: Vec<String> = Vec::new();
        {
            let mut existing = tx
                .prepare("SELECT export_id FROM export_cursors")
                .map_err(|e| self.export_error("enable", e))?;
            let rows = existing
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.export_error("enable", e))?;
            for id in rows {
                kept.push(id.map_err(|e| self.export_error("enable", e))?);
            }
        }
        for id in kept.iter().filter(|id| !exports.contains(id)) {
            tx.execute("DELETE FROM export_cursors WHERE export_id = ?1", [id])
                .map_err(|e| self.export_error("enable", e))?;
        }
        for id in exports {
            tx.execute(
                "INSERT OR IGNORE INTO export_cursors (export_id, delivered_seq) VALUES (?1, ?2)",
                params![id, end],
            )
            .map_err(|e| self.export_error("enable", e))?;
        }
        prune(&tx).map_err(|e| self.export_error("enable", e))?;
        tx.commit().map_err(|e| self.export_error("enable", e))?;
        self.exporting.store(!exports.is_empty(), Relaxed);
        Ok(())
    }

    fn export_error(&self, op: &str, e: rusqlite::Error) -> String {
        format!("ledger {}: export log: {op}: {e}", self.path.display())
    }

    /// The latest revision of the `limit` most recently updated alerts, as export
    /// events (for the CAP feed), newest first.
    pub fn latest_events(&self, limit: usize) -> Result<Vec<ExportEvent>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT gateway, id, revision, payload, updated_unix_ms FROM alerts \
                 ORDER BY updated_unix_ms DESC, rowid DESC LIMIT ?1",
            )
            .map_err(|e| self.export_error("feed", e))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(event(
                    0,
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    &r.get::<_, String>(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(|e| self.export_error("feed", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.export_error("feed", e))
    }

    /// One alert's latest revision as an export event; `None` when there is no such alert.
    pub fn event_of(&self, gateway: &str, id: &str) -> Result<Option<ExportEvent>, String> {
        self.lock()
            .query_row(
                "SELECT gateway, id, revision, payload, updated_unix_ms FROM alerts \
                 WHERE gateway = ?1 AND id = ?2",
                [gateway, id],
                |r| {
                    Ok(event(
                        0,
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        &r.get::<_, String>(3)?,
                        r.get(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.export_error("alert", e))
    }
}

fn event(
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

/// Appends one stored revision to the log (inside [`Ledger::store`]'s transaction).
pub(super) fn append(
    tx: &Transaction<'_>,
    gateway: &str,
    alert_id: &str,
    revision: u32,
    payload: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO export_events (gateway, alert_id, revision, payload, stored_unix_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![gateway, alert_id, i64::from(revision), payload, now],
    )?;
    Ok(())
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

impl EventLog for Ledger {
    fn pending(&self, export: &str, limit: usize) -> Result<Vec<ExportEvent>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.seq, e.gateway, e.alert_id, e.revision, e.payload, e.stored_unix_ms \
                 FROM export_events e, export_cursors c \
                 WHERE c.export_id = ?1 AND e.seq > c.delivered_seq ORDER BY e.seq LIMIT ?2",
            )
            .map_err(|e| self.export_error("read", e))?;
        let rows = stmt
            .query_map(params![export, limit as i64], |r| {
                Ok(event(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    &r.get::<_, String>(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(|e| self.export_error("read", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.export_error("read", e))
    }

    fn delivered(&self, export: &str, seq: u64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| self.export_error("record delivery", e))?;
        tx.execute(
            "UPDATE export_cursors SET delivered_seq = MAX(delivered_seq, ?2) WHERE export_id = ?1",
            params![export, i64::try_from(seq).unwrap_or(i64::MAX)],
        )
        .map_err(|e| self.export_error("record delivery", e))?;
        prune(&tx).map_err(|e| self.export_error("prune", e))?;
        tx.commit()
            .map_err(|e| self.export_error("record delivery", e))
    }

    fn backlog(&self, export: &str) -> Result<(u64, Option<u64>), String> {
        let conn = self.lock();
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
        .map_err(|e| self.export_error("backlog", e))
    }
}
