//! The command center's alert ledger: one SQLite file holding every alert the center
//! received from its gateways, one record per alert id at its highest revision, with
//! its snapshot and the operator's acknowledgement. It is what operators and the wall
//! read, and it is the durable de-duplication state of PROTOCOL.md §9 (center rules
//! 1–5): the center stores a batch from the alert stream with [`Ledger::store`] (one
//! transaction, committed with `synchronous=FULL` in WAL mode) and sends `AlertAck` /
//! `SnapshotAck` only once that returned `Ok`.
//!
//! Neighbours: the messages are `lookout_codecs::relay::{Alert, Snapshot}` as the
//! gateway's `crate::relay::outbox` sent them (and re-sends them after every
//! reconnect); `payload_json` is the gateway's `crate::detect::hub::Alert` record, from
//! which a few fields are pulled out for filtering. The API is synchronous: call it from
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use lookout_codecs::relay::{Alert, Snapshot};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

/// The schema this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// `PRAGMA application_id` of a ledger ("LKLG"), so that another SQLite file (a
/// gateway's outbox, say) given as the ledger path is refused rather than written to.
const APPLICATION_ID: i64 = 0x4c4b_4c47;

/// Rows an [`Ledger::alerts`] listing returns when the query sets no limit.
pub const DEFAULT_LIMIT: usize = 500;
/// The most rows one listing returns, whatever the query asks.
pub const MAX_LIMIT: usize = 10_000;

/// Version 1. Snapshots live in their own table, keyed by alert id, so listings never
/// touch the JPEGs; a snapshot that arrives before its alert simply waits there and is
/// attached (by the join) once the alert is stored.
const SCHEMA_V1: &str = "
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    gateway TEXT NOT NULL,
    revision INTEGER NOT NULL,
    camera TEXT,
    label TEXT,
    severity TEXT,
    state TEXT,
    payload TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    updated_unix_ms INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    acked_by TEXT,
    acked_unix_ms INTEGER,
    ack_note TEXT
);
CREATE INDEX alerts_by_received ON alerts (received_unix_ms);
CREATE TABLE snapshots (
    alert_id TEXT PRIMARY KEY,
    gateway TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    jpeg BLOB NOT NULL
);
";

/// The columns of a [`LedgerAlert`], in the order `read_alert` takes them.
const SELECT_ALERT: &str = "SELECT a.id, a.gateway, a.revision, a.camera, a.label, a.severity, \
     a.state, a.payload, EXISTS (SELECT 1 FROM snapshots s WHERE s.alert_id = a.id), \
     a.received_unix_ms, a.updated_unix_ms, a.deliveries, a.acked_by, a.acked_unix_ms, \
     a.ack_note FROM alerts a";

/// Why the ledger could not do something. Each message names the file and the
/// operation; when `store` fails the center must not acknowledge the batch (and should
/// close the connection with `INTERNAL_ERROR`, so the gateway sends it again later).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The folder the file goes in could not be created.
    #[error("ledger {}: creating its folder: {cause}", .path.display())]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file could not be created, or made private (0600).
    #[error("ledger {}: making it readable by its owner only (0600): {cause}", .path.display())]
    Permissions {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// SQLite failed (I/O error, disk full, not a database, locked past the busy
    /// timeout, a stored value out of range, …).
    #[error("ledger {}: {op}: {cause}", .path.display())]
    Sqlite {
        path: PathBuf,
        op: String,
        cause: rusqlite::Error,
    },
    /// The file cannot be put in write-ahead-log mode.
    #[error("ledger {}: cannot use write-ahead logging (journal mode stays `{mode}`)", .path.display())]
    NoWal { path: PathBuf, mode: String },
    /// The file was written by a newer lookout with a schema this build does not know.
    #[error(
        "ledger {}: schema version {found} is newer than this build's {supported}; run a newer lookout or move the file away",
        .path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The file is an SQLite database, but not a ledger.
    #[error(
        "ledger {}: not a lookout alert ledger (application_id {application_id:#x}, user_version {user_version}); refusing to use it",
        .path.display()
    )]
    Foreign {
        path: PathBuf,
        application_id: i64,
        user_version: i64,
    },
}

impl LedgerError {
    fn opening(path: PathBuf, e: crate::durable::OpenError) -> LedgerError {
        use crate::durable::OpenError as E;
        match e {
            E::CreateDir(cause) => LedgerError::CreateDir { path, cause },
            E::Permissions(cause) => LedgerError::Permissions { path, cause },
            E::Sqlite { op, cause } => LedgerError::Sqlite {
                path,
                op: op.to_string(),
                cause,
            },
            E::NoWal { mode } => LedgerError::NoWal { path, mode },
            E::NewerSchema { found, supported } => LedgerError::NewerSchema {
                path,
                found,
                supported,
            },
            E::Foreign {
                application_id,
                user_version,
            } => LedgerError::Foreign {
                path,
                application_id,
                user_version,
            },
        }
    }
}

/// What storing one `Alert` message did to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreOutcome {
    /// The first revision of this id the center has seen.
    Inserted,
    /// A higher revision replaced the stored record (in place: same id on the wall).
    Updated,
    /// The revision is not above the stored one (a re-send or an older revision
    /// arriving late), or the id belongs to another gateway's alert: nothing changed.
    /// It is acknowledged all the same.
    Duplicate,
}

/// One alert as the ledger holds it: the latest revision received, and what the
/// center knows about it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerAlert {
    pub id: String,
    /// The gateway that sent it (its authenticated `gateway_id`).
    pub gateway: String,
    /// The highest revision stored.
    pub revision: u32,
    /// `camera.id` of the payload, for filtering; `None` when absent.
    pub camera: Option<String>,
    /// `label` of the payload; `None` when absent.
    pub label: Option<String>,
    /// `severity` of the payload; `None` when absent.
    pub severity: Option<String>,
    /// `state` of the payload (`active` / `cleared`); `None` when absent.
    pub state: Option<String>,
    /// The payload JSON of the latest revision as received; a payload that is not JSON
    /// is kept anyway and shows here as a JSON string.
    pub alert: Value,
    /// Whether a snapshot of this alert is stored ([`Ledger::snapshot`]).
    pub has_snapshot: bool,
    /// When the first revision of this id was stored.
    pub received_unix_ms: u64,
    /// When the latest higher revision was stored.
    pub updated_unix_ms: u64,
    /// How many `Alert` messages with this id arrived, duplicates included: the proof
    /// of de-duplication in tests, and a metric of re-sends.
    pub deliveries: u64,
    /// The operator who acknowledged the alert at the center, if one did.
    pub acked_by: Option<String>,
    pub acked_unix_ms: Option<u64>,
    pub ack_note: Option<String>,
}

/// Which alerts a listing wants; every field set narrows it.
#[derive(Debug, Default, Clone)]
pub struct LedgerQuery {
    pub gateway: Option<String>,
    pub camera: Option<String>,
    pub label: Option<String>,
    pub state: Option<String>,
    /// Only alerts no operator has acknowledged yet.
    pub unacknowledged_only: bool,
    /// At most this many ([`DEFAULT_LIMIT`] when `None`, never above [`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

/// What an operator's acknowledgement did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// Recorded now.
    Acknowledged,
    /// Someone was first; their acknowledgement stays.
    AlreadyAcknowledged { by: String, at_unix_ms: u64 },
    /// No alert with that id.
    NotFound,
}

/// A message of the alert stream to store.
#[derive(Debug, Clone)]
pub enum Incoming {
    Alert(Alert),
    Snapshot(Snapshot),
}

/// What storing one message did, in the order of the batch. Every one of them is
/// acknowledged once `store` returned `Ok`: `AlertAck {id, revision}` for an `Alert`
/// (with the revision received, whatever the outcome), and `SnapshotAck` for a
/// `Snapshot` and for an `Alert` that carried `snapshot_jpeg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Alert {
        id: String,
        revision: u32,
        outcome: StoreOutcome,
    },
    Snapshot {
        alert_id: String,
        /// `false`: the alert had a snapshot already (or belongs to another gateway).
        stored: bool,
    },
}

/// The command center's alert ledger. Cheap to share (`Send + Sync`); every call is one
/// SQLite transaction under a mutex.
pub struct Ledger {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Ledger {
    /// Opens the ledger at `path`, creating the file and its parent folders if needed
    /// and the schema if the file is new; refuses files that are not ledgers or come
    /// from a newer lookout.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        let path = path.to_path_buf();
        let schema = crate::durable::Schema {
            application_id: APPLICATION_ID,
            version: SCHEMA_VERSION,
            create_v1: SCHEMA_V1,
        };
        let conn = crate::durable::open(&path, &schema)
            .map_err(|e| LedgerError::opening(path.clone(), e))?;

        Ok(Ledger {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The file this ledger lives in (for logs).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a batch of alert-stream messages from one gateway in one transaction and
    /// returns, in order, what happened to each. When this returns `Ok` the batch is
    /// committed and fsynced, and every message in it may be acknowledged (§9 center
    /// rule 3); on `Err` nothing of the batch is stored and nothing may be acknowledged.
    ///
    /// An alert id unknown so far is inserted; a higher revision replaces the record's
    /// payload, revision and extracted fields, keeping its first-received time and its
    /// operator acknowledgement; an equal or lower revision changes nothing but the
    /// delivery count. A snapshot (in `Alert::snapshot_jpeg` or a `Snapshot` message) is
    /// stored only if the id has none yet, even if it arrives before its alert.
    ///
    /// Ids are compared as bytes across all gateways (they are UUIDv7s). A message from
    /// gateway B about an id that gateway A's alert holds never changes A's record: it
    /// counts as `Duplicate` / not stored, and is logged.
    pub fn store(
        &self,
        gateway: &str,
        messages: &[Incoming],
        now_unix_ms: u64,
    ) -> Result<Vec<Stored>, LedgerError> {
        let now = ms_to_sql(now_unix_ms);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|cause| {
                self.sqlite(
                    format!("starting to store a batch from gateway {gateway}"),
                    cause,
                )
            })?;
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            let stored = match message {
                Incoming::Alert(alert) => {
                    store_alert(&tx, gateway, alert, now).map_err(|cause| {
                        self.sqlite(
                            format!(
                                "storing alert {} revision {} from gateway {gateway}",
                                alert.id, alert.revision
                            ),
                            cause,
                        )
                    })?
                }
                Incoming::Snapshot(snapshot) => store_snapshot(&tx, gateway, snapshot, now)
                    .map_err(|cause| {
                        self.sqlite(
                            format!(
                                "storing the snapshot of alert {} from gateway {gateway}",
                                snapshot.alert_id
                            ),
                            cause,
                        )
                    })?,
            };
            results.push(stored);
        }
        tx.commit().map_err(|cause| {
            self.sqlite(
                format!(
                    "committing a batch of {} messages from gateway {gateway}",
                    messages.len()
                ),
                cause,
            )
        })?;
        Ok(results)
    }

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

    /// One alert by id.
    pub fn alert(&self, id: &str) -> Result<Option<LedgerAlert>, LedgerError> {
        self.lock()
            .query_row(&format!("{SELECT_ALERT} WHERE a.id = ?1"), [id], read_alert)
            .optional()
            .map_err(|cause| self.sqlite(format!("reading alert {id}"), cause))
    }

    /// The JPEG snapshot of an alert, if the ledger has both the alert and a snapshot.
    pub fn snapshot(&self, id: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.lock()
            .query_row(
                "SELECT s.jpeg FROM snapshots s JOIN alerts a ON a.id = s.alert_id \
                 WHERE s.alert_id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|cause| self.sqlite(format!("reading the snapshot of alert {id}"), cause))
    }

    /// Records that `operator` has taken charge of an alert. The first acknowledgement
    /// wins and is kept across later revisions; a second one is told who was first.
    pub fn acknowledge(
        &self,
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
                    "SELECT acked_by, acked_unix_ms FROM alerts WHERE id = ?1",
                    [id],
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
                        "UPDATE alerts SET acked_by = ?2, acked_unix_ms = ?3, ack_note = ?4 \
                         WHERE id = ?1",
                        params![id, operator, ms_to_sql(now_unix_ms), note],
                    )?;
                    AckOutcome::Acknowledged
                }
            };
            tx.commit()?;
            Ok(outcome)
        })()
        .map_err(|cause| self.sqlite(format!("acknowledging alert {id} for {operator}"), cause))
    }

    /// How many alert records the ledger holds (one per id).
    pub fn count(&self) -> Result<u64, LedgerError> {
        self.lock()
            .query_row("SELECT count(*) FROM alerts", [], |row| row.get(0))
            .map_err(|cause| self.sqlite("counting alerts".to_string(), cause))
    }

    /// The connection. A panic while it was held cannot leave a transaction open (a
    /// dropped `Transaction` rolls back), so a poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sqlite(&self, op: String, cause: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            op,
            cause,
        }
    }
}

/// Center rules 1 and 2 for one `Alert`.
fn store_alert(
    tx: &Transaction<'_>,
    gateway: &str,
    alert: &Alert,
    now: i64,
) -> rusqlite::Result<Stored> {
    let revision = i64::from(alert.revision);
    let existing: Option<(String, i64)> = tx
        .query_row(
            "SELECT gateway, revision FROM alerts WHERE id = ?1",
            [&alert.id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let fields = Extracted::from_payload(&alert.payload_json);
    let outcome = match existing {
        None => {
            tx.execute(
                "INSERT INTO alerts (id, gateway, revision, camera, label, severity, state, \
                 payload, received_unix_ms, updated_unix_ms, deliveries) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 1)",
                params![
                    alert.id,
                    gateway,
                    revision,
                    fields.camera,
                    fields.label,
                    fields.severity,
                    fields.state,
                    alert.payload_json,
                    now
                ],
            )?;
            // A snapshot another gateway sent ahead for this id is not this alert's.
            tx.execute(
                "DELETE FROM snapshots WHERE alert_id = ?1 AND gateway <> ?2",
                params![alert.id, gateway],
            )?;
            StoreOutcome::Inserted
        }
        Some((owner, _)) if owner != gateway => {
            tracing::warn!(
                alert = %alert.id,
                revision = alert.revision,
                gateway,
                owner = %owner,
                "alert id already belongs to another gateway's alert; ignored"
            );
            return Ok(Stored::Alert {
                id: alert.id.clone(),
                revision: alert.revision,
                outcome: StoreOutcome::Duplicate,
            });
        }
        Some((_, stored)) if revision > stored => {
            tx.execute(
                "UPDATE alerts SET revision = ?2, camera = ?3, label = ?4, severity = ?5, \
                 state = ?6, payload = ?7, updated_unix_ms = ?8, deliveries = deliveries + 1 \
                 WHERE id = ?1",
                params![
                    alert.id,
                    revision,
                    fields.camera,
                    fields.label,
                    fields.severity,
                    fields.state,
                    alert.payload_json,
                    now
                ],
            )?;
            StoreOutcome::Updated
        }
        Some(_) => {
            tx.execute(
                "UPDATE alerts SET deliveries = deliveries + 1 WHERE id = ?1",
                [&alert.id],
            )?;
            StoreOutcome::Duplicate
        }
    };
    if let Some(jpeg) = &alert.snapshot_jpeg {
        insert_snapshot(tx, &alert.id, gateway, jpeg, now)?;
    }
    Ok(Stored::Alert {
        id: alert.id.clone(),
        revision: alert.revision,
        outcome,
    })
}

/// Center rule 2 for one `Snapshot`.
fn store_snapshot(
    tx: &Transaction<'_>,
    gateway: &str,
    snapshot: &Snapshot,
    now: i64,
) -> rusqlite::Result<Stored> {
    let owner: Option<String> = tx
        .query_row(
            "SELECT gateway FROM alerts WHERE id = ?1",
            [&snapshot.alert_id],
            |row| row.get(0),
        )
        .optional()?;
    let stored = match owner {
        Some(owner) if owner != gateway => {
            tracing::warn!(
                alert = %snapshot.alert_id,
                gateway,
                owner = %owner,
                "snapshot for another gateway's alert; ignored"
            );
            false
        }
        _ => insert_snapshot(tx, &snapshot.alert_id, gateway, &snapshot.jpeg, now)?,
    };
    Ok(Stored::Snapshot {
        alert_id: snapshot.alert_id.clone(),
        stored,
    })
}

/// Stores a snapshot unless the id has one; returns whether it did.
fn insert_snapshot(
    tx: &Transaction<'_>,
    alert_id: &str,
    gateway: &str,
    jpeg: &[u8],
    now: i64,
) -> rusqlite::Result<bool> {
    let inserted = tx.execute(
        "INSERT INTO snapshots (alert_id, gateway, received_unix_ms, jpeg) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (alert_id) DO NOTHING",
        params![alert_id, gateway, now, jpeg],
    )?;
    Ok(inserted > 0)
}

/// One row of `SELECT_ALERT`.
fn read_alert(row: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerAlert> {
    let payload: String = row.get(7)?;
    Ok(LedgerAlert {
        id: row.get(0)?,
        gateway: row.get(1)?,
        revision: row.get(2)?,
        camera: row.get(3)?,
        label: row.get(4)?,
        severity: row.get(5)?,
        state: row.get(6)?,
        alert: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        has_snapshot: row.get(8)?,
        received_unix_ms: row.get(9)?,
        updated_unix_ms: row.get(10)?,
        deliveries: row.get(11)?,
        acked_by: row.get(12)?,
        acked_unix_ms: row.get(13)?,
        ack_note: row.get(14)?,
    })
}

/// The payload fields the ledger filters on, pulled out of the hub's alert JSON.
#[derive(Default)]
struct Extracted {
    camera: Option<String>,
    label: Option<String>,
    severity: Option<String>,
    state: Option<String>,
}

impl Extracted {
    /// All `None` when the payload is not a JSON object: it is stored all the same.
    fn from_payload(payload_json: &str) -> Extracted {
        let Ok(value) = serde_json::from_str::<Value>(payload_json) else {
            return Extracted::default();
        };
        let text = |pointer: &str| match value.pointer(pointer)? {
            Value::String(s) => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        };
        Extracted {
            camera: text("/camera/id"),
            label: text("/label"),
            severity: text("/severity"),
            state: text("/state"),
        }
    }
}

/// Milliseconds as SQLite stores them (an INTEGER is an i64; saturates in 292 million
/// years).
fn ms_to_sql(unix_ms: u64) -> i64 {
    i64::try_from(unix_ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn payload(id: &str, revision: u32, camera: &str, label: &str, state: &str) -> String {
        serde_json::json!({
            "id": id,
            "state": state,
            "gateway": "gw-1",
            "camera": {"id": camera, "kind": "fixed", "name": "North gate"},
            "detector": "fire",
            "label": label,
            "severity": "critical",
            "score": 0.9,
            "updates": revision,
        })
        .to_string()
    }

    fn alert(id: &str, revision: u32) -> Alert {
        Alert {
            id: id.to_string(),
            revision,
            payload_json: payload(id, revision, "cam-1", "smoke", "active"),
            snapshot_jpeg: None,
        }
    }

    fn with_jpeg(mut a: Alert, jpeg: &[u8]) -> Alert {
        a.snapshot_jpeg = Some(Bytes::copy_from_slice(jpeg));
        a
    }

    fn snapshot(id: &str, jpeg: &[u8]) -> Incoming {
        Incoming::Snapshot(Snapshot {
            alert_id: id.to_string(),
            jpeg: Bytes::copy_from_slice(jpeg),
        })
    }

    fn outcome(id: &str, revision: u32, outcome: StoreOutcome) -> Stored {
        Stored::Alert {
            id: id.to_string(),
            revision,
            outcome,
        }
    }

    fn open_temp() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&dir.path().join("center/ledger.sqlite3")).expect("open");
        (dir, ledger)
    }

    fn get(ledger: &Ledger, id: &str) -> LedgerAlert {
        ledger.alert(id).expect("alert").expect("stored")
    }

    #[test]
    fn ledger_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ledger>();
    }

    #[test]
    fn insert_duplicate_and_update_outcomes_count_deliveries() {
        let (_dir, ledger) = open_temp();
        let stored = ledger
            .store("gw-1", &[Incoming::Alert(alert("a", 1))], 1_000)
            .expect("store");
        assert_eq!(stored, vec![outcome("a", 1, StoreOutcome::Inserted)]);
        let stored = ledger
            .store(
                "gw-1",
                &[
                    Incoming::Alert(alert("a", 1)),
                    Incoming::Alert(alert("a", 0)),
                    Incoming::Alert(alert("a", 2)),
                    Incoming::Alert(alert("a", 2)),
                ],
                2_000,
            )
            .expect("store");
        assert_eq!(
            stored,
            vec![
                outcome("a", 1, StoreOutcome::Duplicate),
                outcome("a", 0, StoreOutcome::Duplicate),
                outcome("a", 2, StoreOutcome::Updated),
                outcome("a", 2, StoreOutcome::Duplicate),
            ]
        );
        let a = get(&ledger, "a");
        assert_eq!(a.revision, 2);
        assert_eq!(a.deliveries, 5);
        assert_eq!(a.received_unix_ms, 1_000);
        assert_eq!(a.updated_unix_ms, 2_000);
        assert_eq!(a.gateway, "gw-1");
        assert_eq!(a.alert["updates"], 2);
        assert_eq!(ledger.count().expect("count"), 1);
    }

    #[test]
    fn replaying_the_same_messages_leaves_one_record_per_id() {
        let (_dir, ledger) = open_temp();
        let batch = vec![
            Incoming::Alert(with_jpeg(alert("a", 0), b"a0")),
            Incoming::Alert(alert("b", 0)),
            snapshot("b", b"b-late"),
            Incoming::Alert(alert("a", 1)),
            Incoming::Alert(alert("c", 3)),
        ];
        let first = ledger.store("gw-1", &batch, 10).expect("store");
        let second = ledger.store("gw-1", &batch, 20).expect("store again");
        assert_eq!(
            first,
            vec![
                outcome("a", 0, StoreOutcome::Inserted),
                outcome("b", 0, StoreOutcome::Inserted),
                Stored::Snapshot {
                    alert_id: "b".into(),
                    stored: true
                },
                outcome("a", 1, StoreOutcome::Updated),
                outcome("c", 3, StoreOutcome::Inserted),
            ]
        );
        assert_eq!(
            second,
            vec![
                outcome("a", 0, StoreOutcome::Duplicate),
                outcome("b", 0, StoreOutcome::Duplicate),
                Stored::Snapshot {
                    alert_id: "b".into(),
                    stored: false
                },
                outcome("a", 1, StoreOutcome::Duplicate),
                outcome("c", 3, StoreOutcome::Duplicate),
            ]
        );
        assert_eq!(ledger.count().expect("count"), 3);
        let all = ledger.alerts(&LedgerQuery::default()).expect("alerts");
        let mut ids: Vec<_> = all.iter().map(|a| a.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(get(&ledger, "a").deliveries, 4);
        assert_eq!(get(&ledger, "a").revision, 1);
        assert_eq!(get(&ledger, "a").updated_unix_ms, 10);
        assert_eq!(
            ledger.snapshot("a").expect("snapshot").as_deref(),
            Some(&b"a0"[..])
        );
        assert_eq!(
            ledger.snapshot("b").expect("snapshot").as_deref(),
            Some(&b"b-late"[..])
        );
        assert!(!get(&ledger, "c").has_snapshot);
        assert_eq!(ledger.snapshot("c").expect("snapshot"), None);
    }

    #[test]
    fn snapshot_before_its_alert_is_attached_when_the_alert_comes() {
        let (_dir, ledger) = open_temp();
        let stored = ledger
            .store("gw-1", &[snapshot("a", b"early")], 1)
            .expect("store");
        assert_eq!(
            stored,
            vec![Stored::Snapshot {
                alert_id: "a".into(),
                stored: true
            }]
        );
        assert_eq!(ledger.count().expect("count"), 0);
        assert_eq!(
            ledger.snapshot("a").expect("snapshot"),
            None,
            "no alert yet"
        );
        // The alert's own snapshot comes second: the first one stays.
        ledger
            .store(
                "gw-1",
                &[Incoming::Alert(with_jpeg(alert("a", 0), b"inline"))],
                2,
            )
            .expect("store");
        let a = get(&ledger, "a");
        assert!(a.has_snapshot);
        assert_eq!(
            ledger.snapshot("a").expect("snapshot").as_deref(),
            Some(&b"early"[..])
        );
    }

    #[test]
    fn acknowledge_outcomes() {
        let (_dir, ledger) = open_temp();
        assert_eq!(
            ledger.acknowledge("a", "op-1", None, 5).expect("ack"),
            AckOutcome::NotFound
        );
        ledger
            .store("gw-1", &[Incoming::Alert(alert("a", 0))], 1)
            .expect("store");
        assert_eq!(
            ledger
                .acknowledge("a", "op-1", Some("crew sent"), 5)
                .expect("ack"),
            AckOutcome::Acknowledged
        );
        assert_eq!(
            ledger.acknowledge("a", "op-2", None, 6).expect("ack"),
            AckOutcome::AlreadyAcknowledged {
                by: "op-1".into(),
                at_unix_ms: 5
            }
        );
        // A later revision keeps the acknowledgement and the first-received time.
        ledger
            .store("gw-1", &[Incoming::Alert(alert("a", 1))], 9)
            .expect("store");
        let a = get(&ledger, "a");
        assert_eq!(a.revision, 1);
        assert_eq!(a.acked_by.as_deref(), Some("op-1"));
        assert_eq!(a.acked_unix_ms, Some(5));
        assert_eq!(a.ack_note.as_deref(), Some("crew sent"));
        assert_eq!(a.received_unix_ms, 1);
        assert_eq!(a.updated_unix_ms, 9);
        assert_eq!(
            serde_json::to_value(AckOutcome::AlreadyAcknowledged {
                by: "x".into(),
                at_unix_ms: 1
            })
            .expect("json"),
            serde_json::json!({"already_acknowledged": {"by": "x", "at_unix_ms": 1}})
        );
    }

    #[test]
    fn query_filters_and_order() {
        let (_dir, ledger) = open_temp();
        let make = |id: &str, camera: &str, label: &str, state: &str| {
            Incoming::Alert(Alert {
                id: id.to_string(),
                revision: 0,
                payload_json: payload(id, 0, camera, label, state),
                snapshot_jpeg: None,
            })
        };
        ledger
            .store("gw-1", &[make("a", "cam-1", "smoke", "active")], 100)
            .expect("store");
        ledger
            .store(
                "gw-1",
                &[
                    make("b", "cam-2", "smoke", "cleared"),
                    make("c", "cam-1", "fire", "active"),
                ],
                200,
            )
            .expect("store");
        ledger
            .store("gw-2", &[make("d", "cam-1", "smoke", "active")], 300)
            .expect("store");
        ledger.acknowledge("c", "op", None, 250).expect("ack");

        let ids = |q: LedgerQuery| -> Vec<String> {
            ledger
                .alerts(&q)
                .expect("alerts")
                .into_iter()
                .map(|a| a.id)
                .collect()
        };
        assert_eq!(ids(LedgerQuery::default()), ["d", "c", "b", "a"]);
        assert_eq!(
            ids(LedgerQuery {
                gateway: Some("gw-1".into()),
                ..Default::default()
            }),
            ["c", "b", "a"]
        );
        assert_eq!(
            ids(LedgerQuery {
                camera: Some("cam-1".into()),
                label: Some("smoke".into()),
                ..Default::default()
            }),
            ["d", "a"]
        );
        assert_eq!(
            ids(LedgerQuery {
                state: Some("cleared".into()),
                ..Default::default()
            }),
            ["b"]
        );
        assert_eq!(
            ids(LedgerQuery {
                camera: Some("cam-1".into()),
                unacknowledged_only: true,
                ..Default::default()
            }),
            ["d", "a"]
        );
        assert_eq!(
            ids(LedgerQuery {
                limit: Some(2),
                ..Default::default()
            }),
            ["d", "c"]
        );
        assert!(
            ids(LedgerQuery {
                camera: Some("nope".into()),
                ..Default::default()
            })
            .is_empty()
        );

        let c = get(&ledger, "c");
        assert_eq!(c.camera.as_deref(), Some("cam-1"));
        assert_eq!(c.label.as_deref(), Some("fire"));
        assert_eq!(c.severity.as_deref(), Some("critical"));
        assert_eq!(c.state.as_deref(), Some("active"));
    }

    #[test]
    fn ledger_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.sqlite3");
        {
            let ledger = Ledger::open(&path).expect("open");
            ledger
                .store(
                    "gw-1",
                    &[
                        Incoming::Alert(with_jpeg(alert("a", 3), b"jpeg")),
                        snapshot("z", b"early"),
                    ],
                    7,
                )
                .expect("store");
            ledger.acknowledge("a", "op", None, 8).expect("ack");
        }
        let ledger = Ledger::open(&path).expect("reopen");
        assert_eq!(ledger.path(), path);
        // The de-duplication state survived: a re-send is a duplicate.
        let stored = ledger
            .store(
                "gw-1",
                &[
                    Incoming::Alert(alert("a", 3)),
                    Incoming::Alert(alert("z", 0)),
                ],
                9,
            )
            .expect("store");
        assert_eq!(
            stored,
            vec![
                outcome("a", 3, StoreOutcome::Duplicate),
                outcome("z", 0, StoreOutcome::Inserted),
            ]
        );
        let a = get(&ledger, "a");
        assert_eq!((a.revision, a.deliveries, a.has_snapshot), (3, 2, true));
        assert_eq!(a.acked_by.as_deref(), Some("op"));
        assert!(get(&ledger, "z").has_snapshot);
    }

    #[test]
    fn batch_with_a_payload_that_is_not_json_still_stores() {
        let (_dir, ledger) = open_temp();
        let broken = Alert {
            id: "x".into(),
            revision: 0,
            payload_json: "{not json".into(),
            snapshot_jpeg: None,
        };
        let stored = ledger
            .store(
                "gw-1",
                &[Incoming::Alert(alert("a", 0)), Incoming::Alert(broken)],
                1,
            )
            .expect("store");
        assert_eq!(stored[1], outcome("x", 0, StoreOutcome::Inserted));
        let x = get(&ledger, "x");
        assert_eq!(x.alert, Value::String("{not json".into()));
        assert_eq!(
            (x.camera, x.label, x.severity, x.state),
            (None, None, None, None)
        );
        assert_eq!(ledger.count().expect("count"), 2);
        let listed = serde_json::to_value(ledger.alerts(&LedgerQuery::default()).expect("alerts"))
            .expect("serialize");
        assert_eq!(listed.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn another_gateway_cannot_replace_or_decorate_an_alert() {
        let (_dir, ledger) = open_temp();
        ledger
            .store("gw-1", &[Incoming::Alert(alert("a", 0))], 1)
            .expect("store");
        let stored = ledger
            .store(
                "gw-evil",
                &[
                    Incoming::Alert(with_jpeg(alert("a", 9), b"fake")),
                    snapshot("a", b"fake"),
                ],
                2,
            )
            .expect("store");
        assert_eq!(
            stored,
            vec![
                outcome("a", 9, StoreOutcome::Duplicate),
                Stored::Snapshot {
                    alert_id: "a".into(),
                    stored: false
                },
            ]
        );
        let a = get(&ledger, "a");
        assert_eq!(
            (a.gateway.as_str(), a.revision, a.deliveries),
            ("gw-1", 0, 1)
        );
        assert!(!a.has_snapshot);
        // A snapshot another gateway sent ahead is dropped when the real alert comes.
        ledger
            .store("gw-evil", &[snapshot("b", b"fake")], 3)
            .expect("store");
        ledger
            .store(
                "gw-1",
                &[Incoming::Alert(with_jpeg(alert("b", 0), b"real"))],
                4,
            )
            .expect("store");
        assert_eq!(
            ledger.snapshot("b").expect("snapshot").as_deref(),
            Some(&b"real"[..])
        );
    }

    #[test]
    fn corrupt_or_foreign_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("garbage.sqlite3");
        std::fs::write(&path, vec![0xa5u8; 4096]).expect("write");
        let message = Ledger::open(&path).expect_err("garbage").to_string();
        assert!(message.starts_with("ledger "), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");

        // A gateway outbox is not a ledger.
        let outbox = dir.path().join("outbox.sqlite3");
        drop(crate::relay::outbox::Outbox::open(&outbox).expect("outbox"));
        let err = Ledger::open(&outbox).expect_err("foreign");
        assert!(matches!(err, LedgerError::Foreign { .. }), "{err}");
    }

    /// Random interleavings of revisions, re-sends and snapshots of several ids, in
    /// random batches, across a reopen: one record per id, at its highest revision, and
    /// every delivery counted.
    #[test]
    fn random_interleavings_keep_the_highest_revision_once_per_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        for seed in [1u64, 0x5eed, 0xdead_beef, 42] {
            let path = dir.path().join(format!("ledger-{seed}.sqlite3"));
            let mut rng = XorShift(seed);
            let ids: Vec<String> = (0..6).map(|i| format!("0189-{seed}-{i}")).collect();
            let mut max = vec![None::<u32>; ids.len()];
            let mut deliveries = vec![0u64; ids.len()];
            let mut ledger = Ledger::open(&path).expect("open");
            for round in 0..60 {
                if round == 30 {
                    drop(ledger);
                    ledger = Ledger::open(&path).expect("reopen");
                }
                let mut batch = Vec::new();
                let mut expected = Vec::new();
                for _ in 0..rng.below(8) {
                    let i = rng.below(ids.len() as u64) as usize;
                    if rng.below(5) == 0 {
                        batch.push(snapshot(&ids[i], b"jpeg"));
                        continue;
                    }
                    let revision = rng.below(10) as u32;
                    let want = match max[i] {
                        None => StoreOutcome::Inserted,
                        Some(m) if revision > m => StoreOutcome::Updated,
                        Some(_) => StoreOutcome::Duplicate,
                    };
                    max[i] = max[i].max(Some(revision));
                    deliveries[i] += 1;
                    batch.push(Incoming::Alert(alert(&ids[i], revision)));
                    expected.push(outcome(&ids[i], revision, want));
                }
                let stored = ledger.store("gw-1", &batch, round).expect("store");
                let alerts: Vec<Stored> = stored
                    .into_iter()
                    .filter(|s| matches!(s, Stored::Alert { .. }))
                    .collect();
                assert_eq!(alerts, expected, "seed {seed} round {round}");
            }
            let listed = ledger
                .alerts(&LedgerQuery {
                    limit: Some(MAX_LIMIT),
                    ..Default::default()
                })
                .expect("alerts");
            let seen = max.iter().filter(|m| m.is_some()).count();
            assert_eq!(listed.len(), seen, "seed {seed}");
            assert_eq!(ledger.count().expect("count"), seen as u64);
            for (i, id) in ids.iter().enumerate() {
                let records: Vec<_> = listed.iter().filter(|a| &a.id == id).collect();
                match max[i] {
                    None => assert!(records.is_empty()),
                    Some(m) => {
                        assert_eq!(records.len(), 1, "seed {seed} id {id}");
                        assert_eq!(records[0].revision, m, "seed {seed} id {id}");
                        assert_eq!(records[0].deliveries, deliveries[i], "seed {seed} id {id}");
                        assert_eq!(records[0].alert["updates"], m, "seed {seed} id {id}");
                    }
                }
            }
        }
    }

    /// A small deterministic RNG (xorshift64*), so the tests need no extra crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }
}
