//! The command center's alert ledger: one SQLite file holding every alert the center
//! received from its gateways, one record per (gateway, alert id) at its highest
//! revision, with its snapshot and the operator's acknowledgement. It is what operators
//! and the wall read, and it is the durable de-duplication state of PROTOCOL.md §9
//! (center rules 1–6): the center stores a batch from the alert stream with
//! [`Ledger::store`] (one transaction, committed with `synchronous=FULL` in WAL mode)
//! and sends `AlertAck` / `SnapshotAck` only once that returned `Ok`, and only for what
//! it stored: an alert reported [`StoreOutcome::Conflict`] is answered `AlertRefused`.
//!
//! Alert ids are the gateways' own (UUIDs, or whatever an API client chose for an
//! external alert), so two gateways can use the same one: the key is the pair. Each
//! record also gets an `upward_id`, unique in the whole ledger, under which a cascade
//! forwards it to the center above (`cascade.rs`), where all of this center's alerts
//! arrive from one gateway.
//!
//! Neighbours: the messages are `lookout_codecs::relay::{Alert, Snapshot}` as the
//! gateway's `lookout_core::relay::outbox` sent them (and re-sends them after every
//! reconnect); `payload_json` is the gateway's `lookout_core::alert::hub::Alert` record, from
//! which a few fields are pulled out for filtering. The API is synchronous: call it from
//! `spawn_blocking`.

use lookout_core::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lookout_codecs::relay::{Alert, MAX_ID_LEN, Snapshot};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `PRAGMA application_id` of a ledger ("LKLG"), so that another SQLite file (a
/// gateway's outbox, say) given as the ledger path is refused rather than written to.
const APPLICATION_ID: i64 = 0x4c4b_4c47;

/// Rows an [`Ledger::alerts`] listing returns when the query sets no limit.
pub const DEFAULT_LIMIT: usize = 500;
/// The most rows one listing returns, whatever the query asks.
pub const MAX_LIMIT: usize = 10_000;

/// Version 1, as lookout wrote it until alert ids became per gateway: keyed by alert id
/// alone, so a second gateway's alert with an id already taken was dropped (and, worse,
/// acknowledged). Every file is created like this and then migrated ([`MIGRATIONS`]).
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

/// Version 1 → 2: alerts and snapshots keyed by (gateway, id). Version 1 ids were
/// unique across gateways, so each record keeps its id as its `upward_id` (what a
/// cascade has been forwarding it as) and its rowid (the listing's tie-break order).
/// `revisions` keeps a digest of every revision's payload from now on, so a reused id
/// is told from a re-send (center rule 2) even after a higher revision replaced it.
/// Snapshots still live in their own table, so listings never touch the JPEGs; one that
/// arrives before its alert waits there and is attached (by the join) once the alert is
/// stored.
const MIGRATE_V2: &str = "
CREATE TABLE alerts_v2 (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    upward_id TEXT NOT NULL UNIQUE,
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
    ack_note TEXT,
    PRIMARY KEY (gateway, id)
);
INSERT INTO alerts_v2 (rowid, gateway, id, upward_id, revision, camera, label, severity,
    state, payload, received_unix_ms, updated_unix_ms, deliveries, acked_by,
    acked_unix_ms, ack_note)
SELECT rowid, gateway, id, id, revision, camera, label, severity, state, payload,
    received_unix_ms, updated_unix_ms, deliveries, acked_by, acked_unix_ms, ack_note
FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v2 RENAME TO alerts;
CREATE INDEX alerts_by_received ON alerts (received_unix_ms);
CREATE INDEX alerts_by_id ON alerts (id);
CREATE TABLE snapshots_v2 (
    gateway TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    jpeg BLOB NOT NULL,
    PRIMARY KEY (gateway, alert_id)
);
INSERT INTO snapshots_v2 (gateway, alert_id, received_unix_ms, jpeg)
SELECT gateway, alert_id, received_unix_ms, jpeg FROM snapshots;
DROP TABLE snapshots;
ALTER TABLE snapshots_v2 RENAME TO snapshots;
CREATE TABLE revisions (
    gateway TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    payload_sha256 BLOB NOT NULL,
    PRIMARY KEY (gateway, alert_id, revision)
) WITHOUT ROWID;
";

/// Every migration, oldest first: the schema this build writes is version
/// `1 + MIGRATIONS.len()`.
const MIGRATIONS: &[&str] = &[MIGRATE_V2];

/// The columns of a [`LedgerAlert`], in the order `read_alert` takes them.
const SELECT_ALERT: &str = "SELECT a.id, a.gateway, a.upward_id, a.revision, a.camera, \
     a.label, a.severity, a.state, a.payload, EXISTS (SELECT 1 FROM snapshots s \
     WHERE s.gateway = a.gateway AND s.alert_id = a.id), a.received_unix_ms, \
     a.updated_unix_ms, a.deliveries, a.acked_by, a.acked_unix_ms, a.ack_note FROM alerts a";

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
    fn opening(path: PathBuf, e: lookout_core::durable::OpenError) -> LedgerError {
        use lookout_core::durable::OpenError as E;
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreOutcome {
    /// The first revision of this gateway's id the center has seen.
    Inserted,
    /// A higher revision replaced the stored record (in place: same alert on the wall).
    Updated,
    /// The revision is not above the stored one and, as far as the ledger can tell, the
    /// same record (a re-send, or an older revision arriving late): nothing changed but
    /// the delivery count. The center holds it, so it is acknowledged.
    Duplicate,
    /// This gateway's alert with this id holds a *different* record at this revision:
    /// the id was reused for another alert. Nothing is stored, and the message must not
    /// be acknowledged (PROTOCOL.md §9 center rule 2): the center answers
    /// `AlertRefused` with `ALERT_ID_CONFLICT`, and `why` says what differs.
    Conflict { why: String },
}

/// One alert as the ledger holds it: the latest revision received, and what the
/// center knows about it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerAlert {
    /// The alert's id, as its gateway chose it: unique with `gateway`, not alone.
    pub id: String,
    /// The gateway that sent it (its authenticated `gateway_id`).
    pub gateway: String,
    /// The id this center forwards it under to a center above (PROTOCOL.md §11):
    /// unique in the ledger, `id` itself unless another alert took it first.
    pub upward_id: String,
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
    /// How many `Alert` messages of this gateway with this id were stored or held,
    /// duplicates included: the proof of de-duplication in tests, and a metric of
    /// re-sends. Refused ones (a conflict) are not counted.
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
    /// No alert of that gateway with that id.
    NotFound,
}

/// A message of the alert stream to store.
#[derive(Debug, Clone)]
pub enum Incoming {
    Alert(Alert),
    Snapshot(Snapshot),
}

/// What storing one message did, in the order of the batch. Once `store` returned
/// `Ok`, each is acknowledged — `AlertAck {id, revision}` for an `Alert` (with the
/// revision received), `SnapshotAck` for a `Snapshot` — except an `Alert` whose outcome
/// is [`StoreOutcome::Conflict`], which was not stored and is refused instead. A
/// snapshot riding in an `Alert` goes with that alert's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Alert {
        id: String,
        revision: u32,
        outcome: StoreOutcome,
    },
    Snapshot {
        alert_id: String,
        /// `false`: the alert had a snapshot already.
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
        let schema = lookout_core::durable::Schema {
            application_id: APPLICATION_ID,
            create_v1: SCHEMA_V1,
            migrations: MIGRATIONS,
        };
        let conn = lookout_core::durable::open(&path, &schema)
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
    /// Records are keyed by (`gateway`, id): the same id from two gateways is two
    /// alerts. An id unknown so far for this gateway is inserted; a higher revision
    /// replaces the record's payload, revision and extracted fields, keeping its
    /// first-received time and its operator acknowledgement; an equal or lower revision
    /// with the payload the ledger holds for that revision changes nothing but the
    /// delivery count, and one with another payload is a [`StoreOutcome::Conflict`]
    /// that changes nothing at all. A snapshot (in `Alert::snapshot_jpeg` or a
    /// `Snapshot` message) is stored only if the alert has none yet, even if it arrives
    /// before its alert.
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

    /// The connection. A panic while it was held cannot leave a transaction open (a
    /// dropped `Transaction` rolls back), so a poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.locked()
    }

    fn sqlite(&self, op: String, cause: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            op,
            cause,
        }
    }
}

/// Center rules 1 and 2 for one `Alert` of `gateway`.
fn store_alert(
    tx: &Transaction<'_>,
    gateway: &str,
    alert: &Alert,
    now: i64,
) -> rusqlite::Result<Stored> {
    let revision = i64::from(alert.revision);
    let existing: Option<(i64, String)> = tx
        .query_row(
            "SELECT revision, payload FROM alerts WHERE gateway = ?1 AND id = ?2",
            [gateway, &alert.id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let digest = payload_digest(&alert.payload_json);
    let fields = Extracted::from_payload(&alert.payload_json);
    let outcome = match existing {
        None => {
            let upward_id = choose_upward_id(tx, gateway, &alert.id)?;
            tx.execute(
                "INSERT INTO alerts (gateway, id, upward_id, revision, camera, label, \
                 severity, state, payload, received_unix_ms, updated_unix_ms, deliveries) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, 1)",
                params![
                    gateway,
                    alert.id,
                    upward_id,
                    revision,
                    fields.camera,
                    fields.label,
                    fields.severity,
                    fields.state,
                    alert.payload_json,
                    now
                ],
            )?;
            remember_revision(tx, gateway, &alert.id, revision, &digest)?;
            StoreOutcome::Inserted
        }
        Some((stored, stored_payload)) if revision > stored => {
            // The record being replaced may predate `revisions` (a migrated ledger).
            remember_revision(
                tx,
                gateway,
                &alert.id,
                stored,
                &payload_digest(&stored_payload),
            )?;
            tx.execute(
                "UPDATE alerts SET revision = ?3, camera = ?4, label = ?5, severity = ?6, \
                 state = ?7, payload = ?8, updated_unix_ms = ?9, deliveries = deliveries + 1 \
                 WHERE gateway = ?1 AND id = ?2",
                params![
                    gateway,
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
            remember_revision(tx, gateway, &alert.id, revision, &digest)?;
            StoreOutcome::Updated
        }
        Some((stored, stored_payload)) => {
            let held = if revision == stored {
                Some(payload_digest(&stored_payload).to_vec())
            } else {
                tx.query_row(
                    "SELECT payload_sha256 FROM revisions \
                     WHERE gateway = ?1 AND alert_id = ?2 AND revision = ?3",
                    params![gateway, alert.id, revision],
                    |row| row.get::<_, Vec<u8>>(0),
                )
                .optional()?
            };
            // A lower revision the ledger never saw (superseded before it arrived, or
            // older than the ledger's `revisions`) cannot be checked: the protocol's
            // own rule, that a higher revision carries the whole record, holds.
            if held.is_some_and(|held| held != digest) {
                return Ok(Stored::Alert {
                    id: alert.id.clone(),
                    revision: alert.revision,
                    outcome: StoreOutcome::Conflict {
                        why: format!(
                            "gateway {gateway}'s alert {} already holds a different record \
                             at revision {}; an alert id must not be reused for another alert",
                            alert.id, alert.revision
                        ),
                    },
                });
            }
            tx.execute(
                "UPDATE alerts SET deliveries = deliveries + 1 WHERE gateway = ?1 AND id = ?2",
                [gateway, &alert.id],
            )?;
            StoreOutcome::Duplicate
        }
    };
    if let Some(jpeg) = &alert.snapshot_jpeg {
        insert_snapshot(tx, gateway, &alert.id, jpeg, now)?;
    }
    Ok(Stored::Alert {
        id: alert.id.clone(),
        revision: alert.revision,
        outcome,
    })
}

/// Center rule 3 for one `Snapshot` of `gateway`.
fn store_snapshot(
    tx: &Transaction<'_>,
    gateway: &str,
    snapshot: &Snapshot,
    now: i64,
) -> rusqlite::Result<Stored> {
    let stored = insert_snapshot(tx, gateway, &snapshot.alert_id, &snapshot.jpeg, now)?;
    Ok(Stored::Snapshot {
        alert_id: snapshot.alert_id.clone(),
        stored,
    })
}

/// Stores a snapshot unless the alert has one; returns whether it did.
fn insert_snapshot(
    tx: &Transaction<'_>,
    gateway: &str,
    alert_id: &str,
    jpeg: &[u8],
    now: i64,
) -> rusqlite::Result<bool> {
    let inserted = tx.execute(
        "INSERT INTO snapshots (gateway, alert_id, received_unix_ms, jpeg) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (gateway, alert_id) DO NOTHING",
        params![gateway, alert_id, now, jpeg],
    )?;
    Ok(inserted > 0)
}

/// The SHA-256 of a payload, as `revisions` keeps it: enough to tell a re-send from a
/// reused id without keeping every revision's record.
fn payload_digest(payload_json: &str) -> [u8; 32] {
    Sha256::digest(payload_json.as_bytes()).into()
}

/// Remembers the payload digest of one revision (the first one stays).
fn remember_revision(
    tx: &Transaction<'_>,
    gateway: &str,
    id: &str,
    revision: i64,
    digest: &[u8; 32],
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO revisions (gateway, alert_id, revision, payload_sha256) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![gateway, id, revision, digest.as_slice()],
    )?;
    Ok(())
}

/// The `upward_id` of a new record (PROTOCOL.md §11): the alert's own id while no
/// record goes upward under it, else `GATEWAY/ID` when that fits and is free, else a
/// digest of both, numbered while taken. Chosen once and stored, so what a cascade has
/// forwarded never changes name.
fn choose_upward_id(tx: &Transaction<'_>, gateway: &str, id: &str) -> rusqlite::Result<String> {
    let taken = |candidate: &str| -> rusqlite::Result<bool> {
        tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE upward_id = ?1)",
            [candidate],
            |row| row.get(0),
        )
    };
    if !taken(id)? {
        return Ok(id.to_string());
    }
    let scoped = format!("{gateway}/{id}");
    if scoped.len() <= MAX_ID_LEN && !taken(&scoped)? {
        return Ok(scoped);
    }
    let digest = Sha256::digest(format!("{gateway}\n{id}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let hashed = format!("~{hex}");
    if !taken(&hashed)? {
        return Ok(hashed);
    }
    // Only a gateway choosing ids to collide gets here; it cannot take them all.
    let mut n = 2u64;
    loop {
        let numbered = format!("{hashed}-{n}");
        if !taken(&numbered)? {
            return Ok(numbered);
        }
        n += 1;
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
        get_of(ledger, "gw-1", id)
    }

    fn get_of(ledger: &Ledger, gateway: &str, id: &str) -> LedgerAlert {
        ledger.alert(gateway, id).expect("alert").expect("stored")
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
            ledger.snapshot("gw-1", "a").expect("snapshot").as_deref(),
            Some(&b"a0"[..])
        );
        assert_eq!(
            ledger.snapshot("gw-1", "b").expect("snapshot").as_deref(),
            Some(&b"b-late"[..])
        );
        assert!(!get(&ledger, "c").has_snapshot);
        assert_eq!(ledger.snapshot("gw-1", "c").expect("snapshot"), None);
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
            ledger.snapshot("gw-1", "a").expect("snapshot"),
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
            ledger.snapshot("gw-1", "a").expect("snapshot").as_deref(),
            Some(&b"early"[..])
        );
    }

    #[test]
    fn acknowledge_outcomes() {
        let (_dir, ledger) = open_temp();
        assert_eq!(
            ledger
                .acknowledge("gw-1", "a", "op-1", None, 5)
                .expect("ack"),
            AckOutcome::NotFound
        );
        ledger
            .store("gw-1", &[Incoming::Alert(alert("a", 0))], 1)
            .expect("store");
        assert_eq!(
            ledger
                .acknowledge("gw-1", "a", "op-1", Some("crew sent"), 5)
                .expect("ack"),
            AckOutcome::Acknowledged
        );
        assert_eq!(
            ledger
                .acknowledge("gw-1", "a", "op-2", None, 6)
                .expect("ack"),
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
        ledger
            .acknowledge("gw-1", "c", "op", None, 250)
            .expect("ack");

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
            ledger.acknowledge("gw-1", "a", "op", None, 8).expect("ack");
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

    /// Issue 19: gw1's info alert and gw2's critical flood alert chose the same id. The
    /// ledger used to keep gw1's and drop gw2's (acknowledging it all the same); now
    /// both are stored, intact, each under its own gateway.
    #[test]
    fn the_same_id_from_two_gateways_is_two_alerts() {
        let (_dir, ledger) = open_temp();
        let id = "gauge17-2026-12-07T0815";
        let record = |gateway: &str, severity: &str, label: &str| Alert {
            id: id.into(),
            revision: 0,
            payload_json: serde_json::json!({
                "id": id, "gateway": gateway, "state": "active", "label": label,
                "severity": severity, "camera": {"id": "tower-01"},
            })
            .to_string(),
            snapshot_jpeg: None,
        };
        let first = ledger
            .store("gw1", &[Incoming::Alert(record("gw1", "info", "gauge"))], 1)
            .expect("store");
        assert_eq!(first, vec![outcome(id, 0, StoreOutcome::Inserted)]);
        let second = ledger
            .store(
                "gw2",
                &[
                    Incoming::Alert(with_jpeg(record("gw2", "critical", "flood"), b"gw2")),
                    snapshot(id, b"ignored: one snapshot per alert"),
                ],
                2,
            )
            .expect("store");
        assert_eq!(
            second,
            vec![
                outcome(id, 0, StoreOutcome::Inserted),
                Stored::Snapshot {
                    alert_id: id.into(),
                    stored: false
                },
            ]
        );
        assert_eq!(ledger.count().expect("count"), 2);
        let gw1 = get_of(&ledger, "gw1", id);
        let gw2 = get_of(&ledger, "gw2", id);
        assert_eq!(
            (
                gw1.severity.as_deref(),
                gw1.label.as_deref(),
                gw1.alert["gateway"].as_str()
            ),
            (Some("info"), Some("gauge"), Some("gw1"))
        );
        assert_eq!(
            (
                gw2.severity.as_deref(),
                gw2.label.as_deref(),
                gw2.alert["gateway"].as_str()
            ),
            (Some("critical"), Some("flood"), Some("gw2"))
        );
        assert_eq!((gw1.deliveries, gw2.deliveries), (1, 1));
        // Each has its own snapshot (or none) and its own acknowledgement.
        assert!(!gw1.has_snapshot);
        assert_eq!(ledger.snapshot("gw1", id).expect("snapshot"), None);
        assert_eq!(
            ledger.snapshot("gw2", id).expect("snapshot").as_deref(),
            Some(&b"gw2"[..])
        );
        assert_eq!(
            ledger.acknowledge("gw2", id, "op", None, 3).expect("ack"),
            AckOutcome::Acknowledged
        );
        assert_eq!(get_of(&ledger, "gw1", id).acked_by, None);
        // Upward (a cascade) they need two ids: the first keeps its own.
        assert_eq!(gw1.upward_id, id);
        assert_eq!(gw2.upward_id, format!("gw2/{id}"));
        // An id alone finds both, oldest first.
        let both: Vec<String> = ledger
            .alerts_with_id(id)
            .expect("lookup")
            .into_iter()
            .map(|a| a.gateway)
            .collect();
        assert_eq!(both, ["gw1", "gw2"]);
        // A re-send from either is a duplicate of its own record only.
        let again = ledger
            .store(
                "gw2",
                &[Incoming::Alert(record("gw2", "critical", "flood"))],
                4,
            )
            .expect("store");
        assert_eq!(again, vec![outcome(id, 0, StoreOutcome::Duplicate)]);
        assert_eq!(get_of(&ledger, "gw1", id).deliveries, 1);
        assert_eq!(get_of(&ledger, "gw2", id).deliveries, 2);
    }

    /// A gateway that reuses one of its own ids for another alert (its outbox lost, an
    /// API client's id reused) gets a conflict: nothing stored, nothing to acknowledge,
    /// the held record untouched — at the stored revision and at a lower one the
    /// ledger remembers.
    #[test]
    fn a_reused_id_with_another_record_is_a_conflict_and_changes_nothing() {
        let (_dir, ledger) = open_temp();
        let other = |revision: u32| Alert {
            id: "a".into(),
            revision,
            payload_json: payload("a", revision, "cam-9", "flood", "active"),
            snapshot_jpeg: Some(Bytes::from_static(b"other")),
        };
        ledger
            .store("gw-1", &[Incoming::Alert(alert("a", 0))], 1)
            .expect("store");
        let stored = ledger
            .store("gw-1", &[Incoming::Alert(other(0))], 2)
            .expect("store");
        let [
            Stored::Alert {
                outcome: StoreOutcome::Conflict { why },
                revision: 0,
                ..
            },
        ] = stored.as_slice()
        else {
            panic!("expected a conflict, got {stored:?}");
        };
        assert!(why.contains("gw-1") && why.contains("revision 0"), "{why}");
        let a = get(&ledger, "a");
        assert_eq!((a.label.as_deref(), a.deliveries), (Some("smoke"), 1));
        assert!(!a.has_snapshot, "a refused alert's snapshot is not stored");

        // Revision 1 replaces revision 0; a different revision 0 still conflicts, the
        // real one is a late duplicate.
        ledger
            .store("gw-1", &[Incoming::Alert(alert("a", 1))], 3)
            .expect("store");
        let stored = ledger
            .store(
                "gw-1",
                &[Incoming::Alert(other(0)), Incoming::Alert(alert("a", 0))],
                4,
            )
            .expect("store");
        assert!(
            matches!(
                stored[0],
                Stored::Alert {
                    outcome: StoreOutcome::Conflict { .. },
                    ..
                }
            ),
            "{stored:?}"
        );
        assert_eq!(stored[1], outcome("a", 0, StoreOutcome::Duplicate));
        let a = get(&ledger, "a");
        assert_eq!((a.revision, a.deliveries), (1, 3));
        // Another gateway's alert "a" is no conflict at all.
        let stored = ledger
            .store("gw-2", &[Incoming::Alert(other(0))], 5)
            .expect("store");
        assert_eq!(stored, vec![outcome("a", 0, StoreOutcome::Inserted)]);
    }

    /// A ledger written before alert ids were per gateway (schema 1) opens as version 2
    /// with every record, snapshot and acknowledgement kept, each record forwarded
    /// upward under the id it always had; then a second gateway may use the same id.
    #[test]
    fn a_version_1_ledger_is_migrated_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.sqlite3");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA_V1).expect("schema 1");
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .expect("pragma");
            conn.pragma_update(None, "user_version", 1).expect("pragma");
            conn.execute(
                "INSERT INTO alerts (id, gateway, revision, camera, label, severity, state, \
                 payload, received_unix_ms, updated_unix_ms, deliveries, acked_by, \
                 acked_unix_ms, ack_note) \
                 VALUES ('a', 'gw-1', 2, 'cam-1', 'smoke', 'critical', 'active', ?1, 10, 20, 3, \
                 'op', 15, 'sent')",
                [payload("a", 2, "cam-1", "smoke", "active")],
            )
            .expect("row");
            conn.execute(
                "INSERT INTO alerts (id, gateway, revision, payload, received_unix_ms, \
                 updated_unix_ms, deliveries) VALUES ('b', 'gw-2', 0, '{}', 30, 30, 1)",
                [],
            )
            .expect("row");
            conn.execute(
                "INSERT INTO snapshots VALUES ('a', 'gw-1', 11, x'ffd8'), \
                 ('early', 'gw-2', 12, x'ffd9')",
                [],
            )
            .expect("row");
        }
        let ledger = Ledger::open(&path).expect("migrates");
        let version: i64 = ledger
            .lock()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, 2);
        let a = get(&ledger, "a");
        assert_eq!(
            (
                a.gateway.as_str(),
                a.upward_id.as_str(),
                a.revision,
                a.deliveries,
                a.acked_by.as_deref(),
                a.ack_note.as_deref(),
                a.has_snapshot,
            ),
            ("gw-1", "a", 2, 3, Some("op"), Some("sent"), true)
        );
        assert_eq!(get_of(&ledger, "gw-2", "b").upward_id, "b");
        let order: Vec<String> = ledger
            .alerts(&LedgerQuery::default())
            .expect("alerts")
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(order, ["b", "a"]);
        // The migrated record still tells a re-send from a reused id.
        let stored = ledger
            .store(
                "gw-1",
                &[
                    Incoming::Alert(alert("a", 2)),
                    Incoming::Alert(Alert {
                        payload_json: "{}".into(),
                        ..alert("a", 2)
                    }),
                ],
                40,
            )
            .expect("store");
        assert_eq!(stored[0], outcome("a", 2, StoreOutcome::Duplicate));
        assert!(matches!(
            stored[1],
            Stored::Alert {
                outcome: StoreOutcome::Conflict { .. },
                ..
            }
        ));
        // A snapshot that waited for its alert still attaches, to its gateway's.
        ledger
            .store("gw-2", &[Incoming::Alert(alert("early", 0))], 41)
            .expect("store");
        assert_eq!(
            ledger
                .snapshot("gw-2", "early")
                .expect("snapshot")
                .as_deref(),
            Some(&[0xff, 0xd9][..])
        );
        // And another gateway may now use id "a".
        ledger
            .store("gw-3", &[Incoming::Alert(alert("a", 0))], 42)
            .expect("store");
        assert_eq!(get_of(&ledger, "gw-3", "a").upward_id, "gw-3/a");
        drop(ledger);
        // Opening again migrates nothing twice.
        let ledger = Ledger::open(&path).expect("reopen");
        assert_eq!(ledger.count().expect("count"), 4);
    }

    /// Upward ids stay unique and within the protocol's 64 bytes, however the ids
    /// collide.
    #[test]
    fn upward_ids_are_unique_and_short_enough() {
        let (_dir, ledger) = open_temp();
        let long_gateway = "g".repeat(64);
        for (gateway, id) in [
            ("gw-1", "x"),
            ("gw-2", "x"),
            // Takes what gw-3's "x" would get second.
            ("gw-4", "gw-3/x"),
            ("gw-3", "x"),
            (long_gateway.as_str(), "x"),
        ] {
            ledger
                .store(gateway, &[Incoming::Alert(alert(id, 0))], 1)
                .expect("store");
        }
        let ups: Vec<String> = ledger
            .alerts(&LedgerQuery::default())
            .expect("alerts")
            .into_iter()
            .map(|a| a.upward_id)
            .collect();
        let unique: std::collections::HashSet<&String> = ups.iter().collect();
        assert_eq!(unique.len(), ups.len(), "{ups:?}");
        assert!(
            ups.iter().all(|u| !u.is_empty() && u.len() <= MAX_ID_LEN),
            "{ups:?}"
        );
        assert_eq!(get_of(&ledger, "gw-2", "x").upward_id, "gw-2/x");
        assert!(get_of(&ledger, "gw-3", "x").upward_id.starts_with('~'));
        assert!(
            get_of(&ledger, &long_gateway, "x")
                .upward_id
                .starts_with('~')
        );
    }

    /// A storage failure fails the whole batch, so the center acknowledges none of it.
    #[test]
    fn a_failed_store_stores_nothing_of_the_batch() {
        let (dir, ledger) = open_temp();
        // Another connection makes every new alert fail, as a full disk would.
        let other = Connection::open(dir.path().join("center/ledger.sqlite3")).expect("open");
        other
            .execute_batch(
                "CREATE TRIGGER full BEFORE INSERT ON alerts \
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
            .expect("trigger");
        let err = ledger
            .store(
                "gw-1",
                &[snapshot("a", b"jpeg"), Incoming::Alert(alert("a", 0))],
                1,
            )
            .expect_err("the disk is full");
        assert!(
            err.to_string()
                .contains("storing alert a revision 0 from gateway gw-1"),
            "{err}"
        );
        other.execute_batch("DROP TRIGGER full").expect("drop");
        assert_eq!(ledger.count().expect("count"), 0);
        assert_eq!(ledger.snapshot("gw-1", "a").expect("snapshot"), None);
        let stored: i64 = ledger
            .lock()
            .query_row("SELECT count(*) FROM snapshots", [], |row| row.get(0))
            .expect("count");
        assert_eq!(stored, 0, "the snapshot before the failure was rolled back");
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
        drop(lookout_core::relay::outbox::Outbox::open(&outbox).expect("outbox"));
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
