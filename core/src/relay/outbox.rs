//! The gateway's durable alert outbox (PROTOCOL.md §9, gateway rules 1–4): one SQLite
//! file per upstream command center, holding every alert revision and snapshot until
//! that center has acknowledged it.
//!
//! The relay writes an alert here *before* sending it, sends from here in `seq` order,
//! and deletes entries only on `AlertAck` / `SnapshotAck`. An entry the center refused
//! (`AlertRefused`) stays, marked with the center's code and reason ([`Outbox::refused`])
//! for the gateway's status and metrics, and goes out again on the next connection; it
//! is never dropped for being refused. After a reconnect it sends
//! everything still waiting again, oldest first (`pending(0, n)`, then pages with
//! `after` = the last `seq` sent). Commits use `synchronous=FULL` in WAL mode, so an
//! alert that no center has acknowledged survives a crash or a power cut.
//!
//! Neighbours: the alerts come from `crate::alert::hub` (whose JSON record is the
//! `payload_json`), the messages are `lookout_codecs::relay::{Alert, Snapshot}`, and
//! the receiving end of the protocol is `lookout_center::ledger`, which de-duplicates
//! what this outbox re-sends. The API is synchronous: call it from `spawn_blocking`.

use crate::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use lookout_codecs::relay::{Alert, Snapshot};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// `PRAGMA application_id` of an outbox ("LKOB"), so that another SQLite file (a
/// center's ledger, say) given as an outbox path is refused rather than written to.
const APPLICATION_ID: i64 = 0x4c4b_4f42;

/// `entries.kind` of an alert revision.
const KIND_ALERT: i64 = 0;
/// `entries.kind` of a separately sent snapshot.
const KIND_SNAPSHOT: i64 = 1;

/// Version 1. `entries` is the queue itself; `seq` is AUTOINCREMENT so it is never
/// reused, even after the newest entry was acknowledged and deleted. `queued` remembers,
/// per alert id, the highest revision and whether a snapshot was ever queued, after the
/// entries themselves are gone: re-feeding the hub after a lag then queues nothing twice.
const SCHEMA_V1: &str = "
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1)),
    alert_id TEXT NOT NULL,
    revision INTEGER,
    payload_json TEXT,
    jpeg BLOB
);
CREATE INDEX entries_by_alert ON entries (alert_id, kind);
CREATE TABLE queued (
    alert_id TEXT PRIMARY KEY,
    max_revision INTEGER,
    snapshot INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
";

/// Every migration, oldest first: the schema this build writes is version
/// `1 + MIGRATIONS.len()`. Only a change an older lookout could not live with
/// goes here: a newer version makes it refuse the file, and a gateway rolled
/// back must still find its outbox and send what waits in it.
const MIGRATIONS: &[&str] = &[];

/// What an entry remembers of the center's last refusal of it (`AlertRefused`,
/// PROTOCOL.md §6.14): when, the error code, the reason, and how many times, so the
/// gateway can show what it holds and why. Added after schema 1 without a new
/// version: an older lookout names its columns and never sees these.
const REFUSAL_COLUMNS: &str = "
ALTER TABLE entries ADD COLUMN refused_unix_ms INTEGER;
ALTER TABLE entries ADD COLUMN refused_code INTEGER;
ALTER TABLE entries ADD COLUMN refused_reason TEXT;
ALTER TABLE entries ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
";

/// The latest record of each recently written alert (added after schema 1; created
/// when missing, so older files gain it).
const LATEST_TABLE: &str = "
CREATE TABLE IF NOT EXISTS latest (
    alert_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    payload_json TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS latest_seq ON latest (seq);
";

/// Alerts whose latest record `latest` keeps (the gateway's API lists as many).
pub const LATEST_KEPT: usize = 1000;

/// Why the outbox could not do something. Each message names the file and the operation,
/// so a log line alone says which center's outbox failed and at what.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The file could not be opened: created, made private, checked or migrated.
    #[error("outbox {}: {cause}", .path.display())]
    Open {
        path: PathBuf,
        cause: crate::durable::OpenError,
    },
    /// SQLite failed (I/O error, disk full, not a database, locked past the busy
    /// timeout, …).
    #[error("outbox {}: {op}: {cause}", .path.display())]
    Sqlite {
        path: PathBuf,
        op: String,
        cause: rusqlite::Error,
    },
    /// A stored row does not make sense (edited by hand, or damaged).
    #[error("outbox {}: {op}: invalid stored entry: {detail}", .path.display())]
    Corrupt {
        path: PathBuf,
        op: String,
        detail: String,
    },
}

/// One waiting entry, as it goes out on the alert stream.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxEntry {
    /// An alert revision (`AlertMessage::Alert`).
    Alert { seq: u64, alert: Alert },
    /// A snapshot sent apart from its alert (`AlertMessage::Snapshot`).
    Snapshot { seq: u64, snapshot: Snapshot },
}

impl OutboxEntry {
    /// The entry's position in the outbox: rising, never reused; the `after` of the
    /// next `pending` page.
    pub fn seq(&self) -> u64 {
        match self {
            OutboxEntry::Alert { seq, .. } | OutboxEntry::Snapshot { seq, .. } => *seq,
        }
    }
}

/// The durable outbox towards one command center. Cheap to share (`Send + Sync`);
/// every call is one short SQLite transaction under a mutex.
pub struct Outbox {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.path).finish()
    }
}

impl Outbox {
    /// Opens the outbox at `path`, creating the file and its parent folders if needed
    /// and the schema if the file is new; refuses files that are not outboxes or come
    /// from a newer lookout.
    pub fn open(path: &Path) -> Result<Outbox, OutboxError> {
        let path = path.to_path_buf();
        let schema = crate::durable::Schema {
            kind: "outbox",
            application_id: APPLICATION_ID,
            create_v1: SCHEMA_V1,
            migrations: MIGRATIONS,
        };
        let mut conn = crate::durable::open(&path, &schema).map_err(|cause| OutboxError::Open {
            path: path.clone(),
            cause,
        })?;
        // Added after schema 1, so created here for old files too.
        conn.execute_batch(LATEST_TABLE)
            .map_err(|cause| OutboxError::Sqlite {
                path: path.clone(),
                op: "creating the latest-alerts table".into(),
                cause,
            })?;
        add_refusal_columns(&mut conn).map_err(|cause| OutboxError::Sqlite {
            path: path.clone(),
            op: "adding the refusal columns".into(),
            cause,
        })?;

        Ok(Outbox {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// The latest revision's record of the most recently written alerts (at most
    /// [`LATEST_KEPT`]), newest first, whether acknowledged or not: what a restarted
    /// gateway knows of the alerts it raised before.
    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<String>, OutboxError> {
        let conn = self.lock();
        let result = (|| -> rusqlite::Result<Vec<String>> {
            let mut stmt =
                conn.prepare("SELECT payload_json FROM latest ORDER BY seq DESC LIMIT ?1")?;
            let rows = stmt.query_map([limit.min(LATEST_KEPT) as i64], |row| row.get(0))?;
            rows.collect()
        })();
        result.map_err(|e| self.sqlite("reading recent alerts".into(), e))
    }

    /// The file this outbox lives in (for logs and metrics labels).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one alert revision; returns its `seq`, or `None` when it was not queued.
    ///
    /// Idempotent, so the relay can re-feed the hub's alerts after a lag or a restart:
    /// a revision not above the highest ever queued for this id is ignored, even when
    /// acknowledgements have long removed that entry. A lower revision of the same id
    /// still waiting is removed (the new one carries the whole record, §9 gateway rule
    /// 2); if it carried a snapshot and the new one has none, the new entry takes that
    /// snapshot. A waiting `Snapshot` entry of the id is then moved behind the new
    /// entry, so that it still goes out after an `Alert` of its id.
    ///
    /// An inherited snapshot can make the `Alert` bigger than before: the sender must
    /// still apply the 16 MiB rule (§9 gateway rule 5) when it encodes the entry.
    pub fn push_alert(&self, alert: &Alert) -> Result<Option<u64>, OutboxError> {
        let op = || format!("writing alert {} revision {}", alert.id, alert.revision);
        let mut conn = self.lock();
        let result = (|| -> rusqlite::Result<Option<u64>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let revision = i64::from(alert.revision);
            let max_revision: Option<i64> = tx
                .query_row(
                    "SELECT max_revision FROM queued WHERE alert_id = ?1",
                    [&alert.id],
                    |row| row.get(0),
                )
                .optional()?
                .flatten();
            if max_revision.is_some_and(|max| revision <= max) {
                return Ok(None);
            }
            let inherited: Option<Vec<u8>> = if alert.snapshot_jpeg.is_none() {
                tx.query_row(
                    "SELECT jpeg FROM entries WHERE kind = ?1 AND alert_id = ?2 \
                     AND jpeg IS NOT NULL ORDER BY seq DESC LIMIT 1",
                    params![KIND_ALERT, alert.id],
                    |row| row.get(0),
                )
                .optional()?
            } else {
                None
            };
            // Every waiting revision of the id is lower than this one: it is above the
            // highest ever queued.
            let superseded = tx.execute(
                "DELETE FROM entries WHERE kind = ?1 AND alert_id = ?2",
                params![KIND_ALERT, alert.id],
            )?;
            let jpeg: Option<&[u8]> = alert.snapshot_jpeg.as_deref().or(inherited.as_deref());
            tx.execute(
                "INSERT INTO entries (kind, alert_id, revision, payload_json, jpeg) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![KIND_ALERT, alert.id, revision, alert.payload_json, jpeg],
            )?;
            let seq = tx.last_insert_rowid();
            if superseded > 0 {
                tx.execute(
                    "INSERT INTO entries (kind, alert_id, jpeg) SELECT kind, alert_id, jpeg \
                     FROM entries WHERE kind = ?1 AND alert_id = ?2 AND seq < ?3 ORDER BY seq",
                    params![KIND_SNAPSHOT, alert.id, seq],
                )?;
                tx.execute(
                    "DELETE FROM entries WHERE kind = ?1 AND alert_id = ?2 AND seq < ?3",
                    params![KIND_SNAPSHOT, alert.id, seq],
                )?;
            }
            tx.execute(
                "INSERT INTO queued (alert_id, max_revision, snapshot) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (alert_id) DO UPDATE SET max_revision = excluded.max_revision, \
                 snapshot = max(snapshot, excluded.snapshot)",
                params![alert.id, revision, jpeg.is_some()],
            )?;
            tx.execute(
                "INSERT INTO latest (alert_id, seq, payload_json) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (alert_id) DO UPDATE SET seq = excluded.seq, \
                 payload_json = excluded.payload_json",
                params![alert.id, seq, alert.payload_json],
            )?;
            tx.execute(
                "DELETE FROM latest WHERE seq <= (SELECT seq FROM latest ORDER BY seq DESC \
                 LIMIT 1 OFFSET ?1)",
                [LATEST_KEPT as i64],
            )?;
            tx.commit()?;
            Ok(Some(seq_of(seq)))
        })();
        result.map_err(|cause| self.sqlite(op(), cause))
    }

    /// Queues a snapshot that goes out apart from its alert (it was not ready in time,
    /// or alert and snapshot together would exceed 16 MiB); returns its `seq`, or `None`
    /// when a snapshot of this alert id was ever queued (separately or inside an
    /// `Alert`) — the center keeps only the first one anyway.
    pub fn push_snapshot(&self, snapshot: &Snapshot) -> Result<Option<u64>, OutboxError> {
        let op = || format!("writing the snapshot of alert {}", snapshot.alert_id);
        let mut conn = self.lock();
        let result = (|| -> rusqlite::Result<Option<u64>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let queued: Option<bool> = tx
                .query_row(
                    "SELECT snapshot FROM queued WHERE alert_id = ?1",
                    [&snapshot.alert_id],
                    |row| row.get(0),
                )
                .optional()?;
            if queued == Some(true) {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO entries (kind, alert_id, jpeg) VALUES (?1, ?2, ?3)",
                params![KIND_SNAPSHOT, snapshot.alert_id, snapshot.jpeg.as_ref()],
            )?;
            let seq = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO queued (alert_id, max_revision, snapshot) VALUES (?1, NULL, 1) \
                 ON CONFLICT (alert_id) DO UPDATE SET snapshot = 1",
                [&snapshot.alert_id],
            )?;
            tx.commit()?;
            Ok(Some(seq_of(seq)))
        })();
        result.map_err(|cause| self.sqlite(op(), cause))
    }

    /// Waiting entries with `seq > after`, oldest first, at most `limit`: the resend
    /// after a reconnect is `pending(0, n)`, then `pending(last.seq(), n)` until empty.
    pub fn pending(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        let op = || format!("reading waiting entries after seq {after}");
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let rows = (|| -> rusqlite::Result<Vec<Row>> {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, kind, alert_id, revision, payload_json, jpeg FROM entries \
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |row| {
                Ok(Row {
                    seq: row.get(0)?,
                    kind: row.get(1)?,
                    alert_id: row.get(2)?,
                    revision: row.get(3)?,
                    payload_json: row.get(4)?,
                    jpeg: row.get(5)?,
                })
            })?;
            rows.collect()
        })()
        .map_err(|cause| self.sqlite(op(), cause))?;
        drop(conn);
        rows.into_iter()
            .map(|row| {
                row.into_entry().map_err(|detail| OutboxError::Corrupt {
                    path: self.path.clone(),
                    op: op(),
                    detail,
                })
            })
            .collect()
    }

    /// Handles an `AlertAck`: removes the waiting revisions of `id` up to `revision`
    /// (the center has them durably); returns how many entries went.
    pub fn ack_alert(&self, id: &str, revision: u32) -> Result<usize, OutboxError> {
        self.lock()
            .execute(
                "DELETE FROM entries WHERE kind = ?1 AND alert_id = ?2 AND revision <= ?3",
                params![KIND_ALERT, id, i64::from(revision)],
            )
            .map_err(|cause| {
                self.sqlite(
                    format!("acknowledging alert {id} revision {revision}"),
                    cause,
                )
            })
    }

    /// Handles a `SnapshotAck`: removes the waiting `Snapshot` entries of `alert_id`;
    /// returns how many went. A snapshot riding inside an `Alert` entry goes with that
    /// entry's `AlertAck`.
    pub fn ack_snapshot(&self, alert_id: &str) -> Result<usize, OutboxError> {
        self.lock()
            .execute(
                "DELETE FROM entries WHERE kind = ?1 AND alert_id = ?2",
                params![KIND_SNAPSHOT, alert_id],
            )
            .map_err(|cause| {
                self.sqlite(
                    format!("acknowledging the snapshot of alert {alert_id}"),
                    cause,
                )
            })
    }

    /// Handles an `AlertRefused`: marks the waiting entry the center refused — the
    /// `Alert` of `id` at `revision`, or with `None` its `Snapshot` — with the code and
    /// reason, and counts the refusal. The entry stays; returns how many were marked (0
    /// when it was acknowledged or superseded meanwhile).
    pub fn mark_refused(
        &self,
        id: &str,
        revision: Option<u32>,
        code: u64,
        reason: &str,
        now_unix_ms: u64,
    ) -> Result<usize, OutboxError> {
        let now = i64::try_from(now_unix_ms).unwrap_or(i64::MAX);
        let code = i64::try_from(code).unwrap_or(i64::MAX);
        let (kind, revision) = match revision {
            Some(r) => (KIND_ALERT, Some(i64::from(r))),
            None => (KIND_SNAPSHOT, None),
        };
        self.lock()
            .execute(
                "UPDATE entries SET refused_unix_ms = ?4, refused_code = ?5, \
                 refused_reason = ?6, refusals = refusals + 1 \
                 WHERE kind = ?1 AND alert_id = ?2 AND revision IS ?3",
                params![kind, id, revision, now, code, reason],
            )
            .map_err(|cause| {
                self.sqlite(
                    format!("marking alert {id} revision {revision:?} refused"),
                    cause,
                )
            })
    }

    /// The waiting entries a center has refused, most recently refused first, at most
    /// `limit`: what the gateway's `/api/upstreams` shows.
    pub fn refused(&self, limit: usize) -> Result<Vec<RefusedEntry>, OutboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        (|| -> rusqlite::Result<Vec<RefusedEntry>> {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, alert_id, revision, refused_unix_ms, refused_code, \
                 refused_reason, refusals FROM entries WHERE refused_unix_ms IS NOT NULL \
                 ORDER BY refused_unix_ms DESC, seq DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |row| {
                Ok(RefusedEntry {
                    seq: row.get(0)?,
                    alert_id: row.get(1)?,
                    revision: row.get(2)?,
                    refused_unix_ms: row.get(3)?,
                    code: row.get(4)?,
                    reason: row.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    refusals: row.get(6)?,
                })
            })?;
            rows.collect()
        })()
        .map_err(|cause| self.sqlite("reading refused entries".into(), cause))
    }

    /// How many waiting entries a center has refused (a metric: alerts held back).
    pub fn refused_len(&self) -> Result<u64, OutboxError> {
        self.lock()
            .query_row(
                "SELECT count(*) FROM entries WHERE refused_unix_ms IS NOT NULL",
                [],
                |row| row.get(0),
            )
            .map_err(|cause| self.sqlite("counting refused entries".into(), cause))
    }

    /// How many entries are waiting for an acknowledgement (a metric, and how far
    /// behind the center is).
    pub fn len(&self) -> Result<u64, OutboxError> {
        self.lock()
            .query_row("SELECT count(*) FROM entries", [], |row| row.get(0))
            .map_err(|cause| self.sqlite("counting waiting entries".into(), cause))
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// The connection. A panic while it was held cannot leave a transaction open (a
    /// dropped `Transaction` rolls back), so a poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.locked()
    }

    fn sqlite(&self, op: String, cause: rusqlite::Error) -> OutboxError {
        OutboxError::Sqlite {
            path: self.path.clone(),
            op,
            cause,
        }
    }
}

/// A waiting entry the center refused, and its last refusal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusedEntry {
    /// The entry's position in the outbox.
    pub seq: u64,
    /// The gateway's id of the refused alert.
    pub alert_id: String,
    /// The refused `Alert`'s revision; `None` for a `Snapshot`.
    pub revision: Option<u32>,
    /// When the last refusal arrived, ms since the Unix epoch.
    pub refused_unix_ms: u64,
    /// The center's error code (PROTOCOL.md §8), e.g. 8 for `ALERT_ID_CONFLICT`.
    pub code: u64,
    /// The center's reason, for people.
    pub reason: String,
    /// How many times a center refused it (once per connection at most).
    pub refusals: u64,
}

/// Adds [`REFUSAL_COLUMNS`] to a file that lacks them, in one transaction.
fn add_refusal_columns(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let present: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('entries') \
         WHERE name = 'refused_unix_ms')",
        [],
        |row| row.get(0),
    )?;
    if !present {
        tx.execute_batch(REFUSAL_COLUMNS)?;
    }
    tx.commit()
}

/// `seq` as the API gives it; AUTOINCREMENT rowids start at 1 and only rise.
fn seq_of(rowid: i64) -> u64 {
    u64::try_from(rowid).unwrap_or(0)
}

/// An `entries` row as stored, checked by `into_entry`.
struct Row {
    seq: i64,
    kind: i64,
    alert_id: String,
    revision: Option<i64>,
    payload_json: Option<String>,
    jpeg: Option<Vec<u8>>,
}

impl Row {
    fn into_entry(self) -> Result<OutboxEntry, String> {
        let seq = u64::try_from(self.seq).map_err(|_| format!("seq {} is negative", self.seq))?;
        match self.kind {
            KIND_ALERT => {
                let revision = self
                    .revision
                    .and_then(|r| u32::try_from(r).ok())
                    .ok_or_else(|| {
                        format!("seq {seq}: alert revision {:?} is not a u32", self.revision)
                    })?;
                let payload_json = self
                    .payload_json
                    .ok_or_else(|| format!("seq {seq}: alert without payload_json"))?;
                Ok(OutboxEntry::Alert {
                    seq,
                    alert: Alert {
                        id: self.alert_id,
                        revision,
                        payload_json,
                        snapshot_jpeg: self.jpeg.map(Bytes::from),
                    },
                })
            }
            KIND_SNAPSHOT => {
                let jpeg = self
                    .jpeg
                    .ok_or_else(|| format!("seq {seq}: snapshot without jpeg"))?;
                Ok(OutboxEntry::Snapshot {
                    seq,
                    snapshot: Snapshot {
                        alert_id: self.alert_id,
                        jpeg: Bytes::from(jpeg),
                    },
                })
            }
            other => Err(format!("seq {seq}: unknown kind {other}")),
        }
    }
}

#[cfg(test)]
mod tests;
