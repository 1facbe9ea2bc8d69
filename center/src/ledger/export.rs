//! The exports' event log in the ledger (`lookout_core::export::log` has the SQL):
//! alert revisions appended by [`Ledger::store`] in the batch's own transaction while
//! exports are configured, and each export's cursor. An export configured for the first
//! time starts at the end of the log; one no longer configured loses its cursor, so it
//! cannot hold events back.

use std::sync::atomic::Ordering::Relaxed;

use lookout_core::export::log;
use lookout_core::export::{EventLog, ExportEvent};
use rusqlite::{OptionalExtension, Transaction};

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
        log::enable(&tx, exports).map_err(|e| self.export_error("enable", e))?;
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
            .query_map([limit as i64], latest_event)
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
                latest_event,
            )
            .optional()
            .map_err(|e| self.export_error("alert", e))
    }
}

/// An alert's latest revision as an event, from `gateway, id, revision, payload,
/// updated_unix_ms` (not in the log: `seq` 0).
fn latest_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportEvent> {
    Ok(log::event(
        0,
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        &r.get::<_, String>(3)?,
        r.get(4)?,
    ))
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
    log::append(tx, gateway, alert_id, revision, payload, now)
}

impl EventLog for Ledger {
    fn pending(&self, export: &str, limit: usize) -> Result<Vec<ExportEvent>, String> {
        log::pending(&self.lock(), export, limit).map_err(|e| self.export_error("read", e))
    }

    fn delivered(&self, export: &str, seq: u64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| self.export_error("record delivery", e))?;
        log::delivered(&tx, export, seq).map_err(|e| self.export_error("record delivery", e))?;
        tx.commit()
            .map_err(|e| self.export_error("record delivery", e))
    }

    fn backlog(&self, export: &str) -> Result<(u64, Option<u64>), String> {
        log::backlog(&self.lock(), export).map_err(|e| self.export_error("backlog", e))
    }
}
