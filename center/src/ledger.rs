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
//!
//! The module's parts: `schema.rs` (the file's tables and their migrations),
//! `store.rs` ([`Ledger::store`]: de-duplication, conflicts, snapshots, upward ids) and
//! `query.rs` (listings, single alerts, snapshots, acknowledgements, the count) and
//! `export.rs` (the exports' durable event log, filled by `store`).

mod export;
mod query;
mod schema;
mod store;
#[cfg(test)]
mod tests;

use lookout_core::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lookout_codecs::relay::{Alert, Snapshot};
use rusqlite::Connection;
use serde_json::Value;

/// Rows an [`Ledger::alerts`] listing returns when the query sets no limit.
pub const DEFAULT_LIMIT: usize = 500;
/// The most rows one listing returns, whatever the query asks.
pub const MAX_LIMIT: usize = 10_000;

/// operation; when `store` fails the center must not acknowledge the batch (and should
/// close the connection with `INTERNAL_ERROR`, so the gateway sends it again later).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file could not be opened: created, made private, checked or migrated.
    #[error("ledger {}: {cause}", .path.display())]
    Open {
        path: PathBuf,
        cause: lookout_core::durable::OpenError,
    },
    /// SQLite failed (I/O error, disk full, not a database, locked past the busy
    /// timeout, a stored value out of range, …).
    #[error("ledger {}: {op}: {cause}", .path.display())]
    Sqlite {
        path: PathBuf,
        op: String,
        cause: rusqlite::Error,
    },
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
    /// Whether stored revisions are appended to the exports' event log
    /// ([`Ledger::enable_exports`]).
    exporting: std::sync::atomic::AtomicBool,
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
            kind: "alert ledger",
            application_id: schema::APPLICATION_ID,
            create_v1: schema::SCHEMA_V1,
            migrations: schema::MIGRATIONS,
        };
        let conn =
            lookout_core::durable::open(&path, &schema).map_err(|cause| LedgerError::Open {
                path: path.clone(),
                cause,
            })?;

        Ok(Ledger {
            path,
            conn: Mutex::new(conn),
            exporting: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The file this ledger lives in (for logs).
    pub fn path(&self) -> &Path {
        &self.path
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

/// Milliseconds as SQLite stores them (an INTEGER is an i64; saturates in 292 million
/// years).
fn ms_to_sql(unix_ms: u64) -> i64 {
    i64::try_from(unix_ms).unwrap_or(i64::MAX)
}
