//! The ledger's reads and the operator's acknowledgement: listings filtered by a
//! [`LedgerQuery`], one alert, every gateway's alert with an id, a snapshot, `acknowledge`
//! and the record count, all reading rows through `SELECT_ALERT` and `read_alert`.

use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::{
    AckOutcome, DEFAULT_LIMIT, Ledger, LedgerAlert, LedgerError, LedgerQuery, MAX_LIMIT, ms_to_sql,
};

/// The columns of a [`LedgerAlert`], in the order `read_alert` takes them.
const SELECT_ALERT: &str = "SELECT a.id, a.gateway, a.upward_id, a.revision, a.camera, \
     a.label, a.severity, a.state, a.payload, EXISTS (SELECT 1 FROM snapshots s \
     WHERE s.gateway = a.gateway AND s.alert_id = a.id), a.received_unix_ms, \
     a.updated_unix_ms, a.deliveries, a.acked_by, a.acked_unix_ms, a.ack_note FROM alerts a";

/// Why the ledger could not do something. Each message names the file and the
impl Ledger {
    /// The alerts a query wants, newest received first: the wall's and the operators'
    /// listing.
    pub fn alerts(&self, q: &LedgerQuery) -> Result<Vec<LedgerAlert>, LedgerError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut args: Vec<SqlValue> = Vec::new();
        for (column, wanted) in [
            ("a.gateway", &q.gateway),
            ("a.camera", &q.camera),
            ("a.label", &q.label),
            ("a.state", &q.state),
        ] {
            if let Some(wanted) = wanted {
                args.push(SqlValue::Text(wanted.clone()));
                conditions.push(format!("{column} = ?{}", args.len()));
            }
        }
        if q.unacknowledged_only {
            conditions.push("a.acked_by IS NULL".to_string());
        }
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        args.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let mut sql = SELECT_ALERT.to_string();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY a.received_unix_ms DESC, a.rowid DESC LIMIT ?{}",
            args.len()
        ));

        let conn = self.lock();
        (|| -> rusqlite::Result<Vec<LedgerAlert>> {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), read_alert)?;
            rows.collect()
        })()
        .map_err(|cause| self.sqlite("listing alerts".to_string(), cause))
    }

    /// One alert: gateway `gateway`'s alert `id`.
    pub fn alert(&self, gateway: &str, id: &str) -> Result<Option<LedgerAlert>, LedgerError> {
        self.lock()
            .query_row(
                &format!("{SELECT_ALERT} WHERE a.gateway = ?1 AND a.id = ?2"),
                [gateway, id],
                read_alert,
            )
            .optional()
            .map_err(|cause| self.sqlite(format!("reading alert {id} of gateway {gateway}"), cause))
    }

    /// Every gateway's alert with this id, oldest first: for the API paths that name an
    /// alert by id alone, which must tell one from several.
    pub fn alerts_with_id(&self, id: &str) -> Result<Vec<LedgerAlert>, LedgerError> {
        let conn = self.lock();
        (|| -> rusqlite::Result<Vec<LedgerAlert>> {
            let mut stmt = conn.prepare_cached(&format!(
                "{SELECT_ALERT} WHERE a.id = ?1 ORDER BY a.received_unix_ms, a.rowid"
            ))?;
            let rows = stmt.query_map([id], read_alert)?;
            rows.collect()
        })()
        .map_err(|cause| self.sqlite(format!("looking up alert id {id}"), cause))
    }

    /// The JPEG snapshot of gateway `gateway`'s alert `id`, if the ledger has both the
    /// alert and a snapshot.
    pub fn snapshot(&self, gateway: &str, id: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.lock()
            .query_row(
                "SELECT s.jpeg FROM snapshots s JOIN alerts a \
                 ON a.gateway = s.gateway AND a.id = s.alert_id \
                 WHERE s.gateway = ?1 AND s.alert_id = ?2",
                [gateway, id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|cause| {
                self.sqlite(
                    format!("reading the snapshot of alert {id} of gateway {gateway}"),
                    cause,
                )
            })
    }

    /// Records that `operator` has taken charge of gateway `gateway`'s alert `id`. The
    /// first acknowledgement wins and is kept across later revisions; a second one is
    /// told who was first.
    pub fn acknowledge(
        &self,
        gateway: &str,
        id: &str,
        operator: &str,
        note: Option<&str>,
        now_unix_ms: u64,
    ) -> Result<AckOutcome, LedgerError> {
        let mut conn = self.lock();
        (|| -> rusqlite::Result<AckOutcome> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<(Option<String>, Option<u64>)> = tx
                .query_row(
                    "SELECT acked_by, acked_unix_ms FROM alerts WHERE gateway = ?1 AND id = ?2",
                    [gateway, id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let outcome = match existing {
                None => AckOutcome::NotFound,
                Some((Some(by), at)) => AckOutcome::AlreadyAcknowledged {
                    by,
                    at_unix_ms: at.unwrap_or(0),
                },
                Some((None, _)) => {
                    tx.execute(
                        "UPDATE alerts SET acked_by = ?3, acked_unix_ms = ?4, ack_note = ?5 \
                         WHERE gateway = ?1 AND id = ?2",
                        params![gateway, id, operator, ms_to_sql(now_unix_ms), note],
                    )?;
                    AckOutcome::Acknowledged
                }
            };
            tx.commit()?;
            Ok(outcome)
        })()
        .map_err(|cause| {
            self.sqlite(
                format!("acknowledging alert {id} of gateway {gateway} for {operator}"),
                cause,
            )
        })
    }

    /// How many alert records the ledger holds (one per gateway and id).
    pub fn count(&self) -> Result<u64, LedgerError> {
        self.lock()
            .query_row("SELECT count(*) FROM alerts", [], |row| row.get(0))
            .map_err(|cause| self.sqlite("counting alerts".to_string(), cause))
    }
}

/// One row of `SELECT_ALERT`.
fn read_alert(row: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerAlert> {
    let payload: String = row.get(8)?;
    Ok(LedgerAlert {
        id: row.get(0)?,
        gateway: row.get(1)?,
        upward_id: row.get(2)?,
        revision: row.get(3)?,
        camera: row.get(4)?,
        label: row.get(5)?,
        severity: row.get(6)?,
        state: row.get(7)?,
        alert: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        has_snapshot: row.get(9)?,
        received_unix_ms: row.get(10)?,
        updated_unix_ms: row.get(11)?,
        deliveries: row.get(12)?,
        acked_by: row.get(13)?,
        acked_unix_ms: row.get(14)?,
        ack_note: row.get(15)?,
    })
}
