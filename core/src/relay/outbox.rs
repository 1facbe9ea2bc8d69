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

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
    /// The folder the file goes in could not be created.
    #[error("outbox {}: creating its folder: {cause}", .path.display())]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file could not be created, or made private (0600).
    #[error("outbox {}: making it readable by its owner only (0600): {cause}", .path.display())]
    Permissions {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// SQLite failed (I/O error, disk full, not a database, locked past the busy
    /// timeout, …).
    #[error("outbox {}: {op}: {cause}", .path.display())]
    Sqlite {
        path: PathBuf,
        op: String,
        cause: rusqlite::Error,
    },
    /// The file cannot be put in write-ahead-log mode (so commits would not be durable
    /// the way this module assumes).
    #[error("outbox {}: cannot use write-ahead logging (journal mode stays `{mode}`)", .path.display())]
    NoWal { path: PathBuf, mode: String },
    /// The file was written by a newer lookout with a schema this build does not know.
    #[error(
        "outbox {}: schema version {found} is newer than this build's {supported}; run a newer lookout or move the file away",
        .path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The file is an SQLite database, but not an outbox.
    #[error(
        "outbox {}: not a lookout outbox (application_id {application_id:#x}, user_version {user_version}); refusing to use it",
        .path.display()
    )]
    Foreign {
        path: PathBuf,
        application_id: i64,
        user_version: i64,
    },
    /// A stored row does not make sense (edited by hand, or damaged).
    #[error("outbox {}: {op}: invalid stored entry: {detail}", .path.display())]
    Corrupt {
        path: PathBuf,
        op: String,
        detail: String,
    },
}

impl OutboxError {
    fn opening(path: PathBuf, e: crate::durable::OpenError) -> OutboxError {
        use crate::durable::OpenError as E;
        match e {
            E::CreateDir(cause) => OutboxError::CreateDir { path, cause },
            E::Permissions(cause) => OutboxError::Permissions { path, cause },
            E::Sqlite { op, cause } => OutboxError::Sqlite {
                path,
                op: op.to_string(),
                cause,
            },
            E::NoWal { mode } => OutboxError::NoWal { path, mode },
            E::NewerSchema { found, supported } => OutboxError::NewerSchema {
                path,
                found,
                supported,
            },
            E::Foreign {
                application_id,
                user_version,
            } => OutboxError::Foreign {
                path,
                application_id,
                user_version,
            },
        }
    }
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
            application_id: APPLICATION_ID,
            create_v1: SCHEMA_V1,
            migrations: MIGRATIONS,
        };
        let mut conn = crate::durable::open(&path, &schema)
            .map_err(|e| OutboxError::opening(path.clone(), e))?;
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
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
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
    pub seq: u64,
    pub alert_id: String,
    /// The refused `Alert`'s revision; `None` for a `Snapshot`.
    pub revision: Option<u32>,
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
mod tests {
    use super::*;

    fn alert(id: &str, revision: u32, jpeg: Option<&[u8]>) -> Alert {
        Alert {
            id: id.to_string(),
            revision,
            payload_json: format!(r#"{{"id":"{id}","revision":{revision}}}"#),
            snapshot_jpeg: jpeg.map(Bytes::copy_from_slice),
        }
    }

    fn snapshot(id: &str, jpeg: &[u8]) -> Snapshot {
        Snapshot {
            alert_id: id.to_string(),
            jpeg: Bytes::copy_from_slice(jpeg),
        }
    }

    #[test]
    fn recent_alerts_keep_the_latest_record_after_ack_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("o.sqlite3");
        {
            let outbox = Outbox::open(&path).expect("open");
            outbox.push_alert(&alert("a", 0, None)).expect("push");
            outbox.push_alert(&alert("b", 0, None)).expect("push");
            outbox.push_alert(&alert("a", 1, None)).expect("push");
            outbox.ack_alert("a", 1).expect("ack");
            // An old revision changes nothing.
            outbox.push_alert(&alert("b", 0, None)).expect("push");
        }
        let outbox = Outbox::open(&path).expect("reopen");
        assert_eq!(
            outbox.recent_alerts(10).expect("read"),
            [
                r#"{"id":"a","revision":1}"#.to_string(),
                r#"{"id":"b","revision":0}"#.to_string()
            ]
        );
        assert_eq!(outbox.recent_alerts(1).expect("read").len(), 1);
    }

    fn open_temp() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(&dir.path().join("center-a.sqlite3")).expect("open");
        (dir, outbox)
    }

    /// (kind, id, revision) of every waiting entry, oldest first.
    fn summary(outbox: &Outbox) -> Vec<(&'static str, String, Option<u32>)> {
        outbox
            .pending(0, usize::MAX)
            .expect("pending")
            .into_iter()
            .map(|e| match e {
                OutboxEntry::Alert { alert, .. } => ("alert", alert.id, Some(alert.revision)),
                OutboxEntry::Snapshot { snapshot, .. } => ("snapshot", snapshot.alert_id, None),
            })
            .collect()
    }

    #[test]
    fn outbox_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Outbox>();
    }

    #[test]
    fn push_then_pending_returns_entries_oldest_first() {
        let (_dir, outbox) = open_temp();
        assert!(outbox.is_empty().expect("is_empty"));
        let a = alert("a", 0, Some(b"jpeg-a"));
        let b = alert("b", 0, None);
        let s = snapshot("b", b"jpeg-b");
        let seq_a = outbox.push_alert(&a).expect("push").expect("queued");
        let seq_b = outbox.push_alert(&b).expect("push").expect("queued");
        let seq_s = outbox.push_snapshot(&s).expect("push").expect("queued");
        assert!(seq_a < seq_b && seq_b < seq_s);
        assert_eq!(
            outbox.pending(0, 10).expect("pending"),
            vec![
                OutboxEntry::Alert {
                    seq: seq_a,
                    alert: a
                },
                OutboxEntry::Alert {
                    seq: seq_b,
                    alert: b
                },
                OutboxEntry::Snapshot {
                    seq: seq_s,
                    snapshot: s
                },
            ]
        );
        assert_eq!(outbox.len().expect("len"), 3);
        assert!(!outbox.is_empty().expect("is_empty"));
    }

    #[test]
    fn repushing_a_revision_not_above_the_highest_is_ignored_even_after_acks() {
        let (_dir, outbox) = open_temp();
        assert!(
            outbox
                .push_alert(&alert("a", 2, None))
                .expect("push")
                .is_some()
        );
        assert_eq!(outbox.push_alert(&alert("a", 2, None)).expect("push"), None);
        assert_eq!(outbox.push_alert(&alert("a", 1, None)).expect("push"), None);
        assert_eq!(outbox.ack_alert("a", 2).expect("ack"), 1);
        assert!(outbox.is_empty().expect("is_empty"));
        // The hub is re-fed after a lag: nothing is queued twice.
        assert_eq!(outbox.push_alert(&alert("a", 0, None)).expect("push"), None);
        assert_eq!(outbox.push_alert(&alert("a", 2, None)).expect("push"), None);
        assert!(outbox.is_empty().expect("is_empty"));
        assert!(
            outbox
                .push_alert(&alert("a", 3, None))
                .expect("push")
                .is_some()
        );
        assert_eq!(summary(&outbox), vec![("alert", "a".into(), Some(3))]);
    }

    #[test]
    fn snapshot_is_queued_once_per_alert() {
        let (_dir, outbox) = open_temp();
        assert!(
            outbox
                .push_snapshot(&snapshot("a", b"1"))
                .expect("push")
                .is_some()
        );
        assert_eq!(
            outbox.push_snapshot(&snapshot("a", b"2")).expect("push"),
            None
        );
        assert_eq!(outbox.ack_snapshot("a").expect("ack"), 1);
        assert_eq!(
            outbox.push_snapshot(&snapshot("a", b"3")).expect("push"),
            None
        );
        // A snapshot that went inside an Alert counts too.
        outbox.push_alert(&alert("b", 0, Some(b"b"))).expect("push");
        assert_eq!(
            outbox
                .push_snapshot(&snapshot("b", b"again"))
                .expect("push"),
            None
        );
        // A snapshot queued first does not stop the alert's revisions.
        assert!(
            outbox
                .push_alert(&alert("a", 0, None))
                .expect("push")
                .is_some()
        );
        assert_eq!(
            summary(&outbox),
            vec![
                ("alert", "b".into(), Some(0)),
                ("alert", "a".into(), Some(0))
            ]
        );
    }

    #[test]
    fn higher_revision_supersedes_a_waiting_one_and_keeps_its_snapshot() {
        let (_dir, outbox) = open_temp();
        outbox
            .push_alert(&alert("a", 0, Some(b"first-frame")))
            .expect("push");
        outbox.push_alert(&alert("b", 0, None)).expect("push");
        let seq = outbox
            .push_alert(&alert("a", 1, None))
            .expect("push")
            .expect("queued");
        let entries = outbox.pending(0, 10).expect("pending");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1],
            OutboxEntry::Alert {
                seq,
                alert: alert("a", 1, Some(b"first-frame")),
            }
        );
        // A new revision with its own snapshot keeps its own.
        outbox
            .push_alert(&alert("a", 2, Some(b"own")))
            .expect("push");
        let entries = outbox.pending(0, 10).expect("pending");
        assert!(matches!(&entries[1], OutboxEntry::Alert { alert, .. }
            if alert.revision == 2 && alert.snapshot_jpeg.as_deref() == Some(&b"own"[..])));
        // An ack of a superseded revision leaves the higher one waiting.
        assert_eq!(outbox.ack_alert("a", 1).expect("ack"), 0);
        assert_eq!(outbox.len().expect("len"), 2);
    }

    #[test]
    fn superseding_moves_a_waiting_snapshot_behind_the_new_revision() {
        let (_dir, outbox) = open_temp();
        outbox.push_alert(&alert("a", 0, None)).expect("push");
        outbox.push_snapshot(&snapshot("a", b"late")).expect("push");
        outbox.push_alert(&alert("a", 1, None)).expect("push");
        assert_eq!(
            summary(&outbox),
            vec![
                ("alert", "a".into(), Some(1)),
                ("snapshot", "a".into(), None)
            ]
        );
        // If the revision waiting was acknowledged already, the snapshot stays put.
        outbox.push_alert(&alert("b", 0, None)).expect("push");
        outbox.push_snapshot(&snapshot("b", b"late")).expect("push");
        outbox.ack_alert("b", 0).expect("ack");
        outbox.push_alert(&alert("b", 1, None)).expect("push");
        assert_eq!(
            summary(&outbox),
            vec![
                ("alert", "a".into(), Some(1)),
                ("snapshot", "a".into(), None),
                ("snapshot", "b".into(), None),
                ("alert", "b".into(), Some(1)),
            ]
        );
    }

    #[test]
    fn acks_remove_entries() {
        let (_dir, outbox) = open_temp();
        outbox.push_alert(&alert("a", 0, None)).expect("push");
        outbox.push_alert(&alert("b", 3, None)).expect("push");
        outbox.push_snapshot(&snapshot("a", b"x")).expect("push");
        assert_eq!(
            outbox.ack_alert("b", 2).expect("ack"),
            0,
            "lower revision acked"
        );
        assert_eq!(outbox.ack_alert("zzz", 9).expect("ack"), 0, "unknown id");
        assert_eq!(outbox.ack_alert("a", 0).expect("ack"), 1);
        assert_eq!(outbox.ack_alert("a", 0).expect("ack"), 0, "repeated ack");
        assert_eq!(outbox.ack_snapshot("b").expect("ack"), 0);
        assert_eq!(outbox.ack_snapshot("a").expect("ack"), 1);
        assert_eq!(
            outbox.ack_alert("b", 7).expect("ack"),
            1,
            "higher revision acked"
        );
        assert!(outbox.is_empty().expect("is_empty"));
    }

    #[test]
    fn entries_survive_close_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/folders/center.sqlite3");
        let (first, second) = {
            let outbox = Outbox::open(&path).expect("open");
            let first = outbox
                .push_alert(&alert("a", 4, Some(b"jpeg")))
                .expect("push");
            let second = outbox.push_snapshot(&snapshot("c", b"c")).expect("push");
            outbox.push_alert(&alert("b", 0, None)).expect("push");
            outbox.ack_alert("b", 0).expect("ack");
            (first.expect("queued"), second.expect("queued"))
        };
        let outbox = Outbox::open(&path).expect("reopen");
        assert_eq!(outbox.path(), path);
        assert_eq!(
            outbox.pending(0, 10).expect("pending"),
            vec![
                OutboxEntry::Alert {
                    seq: first,
                    alert: alert("a", 4, Some(b"jpeg")),
                },
                OutboxEntry::Snapshot {
                    seq: second,
                    snapshot: snapshot("c", b"c"),
                },
            ]
        );
        // What was queued is remembered too, and seq never goes back, even though the
        // newest entry ("b") was deleted before the restart.
        assert_eq!(outbox.push_alert(&alert("b", 0, None)).expect("push"), None);
        assert_eq!(outbox.push_alert(&alert("a", 4, None)).expect("push"), None);
        let next = outbox
            .push_alert(&alert("d", 0, None))
            .expect("push")
            .expect("queued");
        assert_eq!(next, second + 2);
    }

    #[test]
    fn pending_pages_with_after() {
        let (_dir, outbox) = open_temp();
        for i in 0..7 {
            outbox
                .push_alert(&alert(&format!("id-{i}"), 0, None))
                .expect("push");
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = outbox.pending(after, 3).expect("pending");
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            after = page.last().map(OutboxEntry::seq).expect("non-empty");
            seen.extend(page);
        }
        let ids: Vec<String> = seen
            .iter()
            .map(|e| match e {
                OutboxEntry::Alert { alert, .. } => alert.id.clone(),
                OutboxEntry::Snapshot { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(ids, (0..7).map(|i| format!("id-{i}")).collect::<Vec<_>>());
        assert!(seen.windows(2).all(|w| w[0].seq() < w[1].seq()));
        assert!(outbox.pending(u64::MAX, 10).expect("pending").is_empty());
        assert!(outbox.pending(0, 0).expect("pending").is_empty());
    }

    #[test]
    fn file_is_wal_and_fully_synchronous() {
        let (_dir, outbox) = open_temp();
        let conn = outbox.lock();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("synchronous");
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("garbage.sqlite3");
        let garbage: Vec<u8> = (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, garbage).expect("write");
        let err = Outbox::open(&path).expect_err("garbage must not open");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.starts_with("outbox "), "{message}");
    }

    #[test]
    fn another_sqlite_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("other.sqlite3");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
            .expect("other database");
        let err = Outbox::open(&path).expect_err("foreign");
        assert!(matches!(err, OutboxError::Foreign { .. }), "{err}");

        let newer = dir.path().join("newer.sqlite3");
        drop(Outbox::open(&newer).expect("open"));
        Connection::open(&newer)
            .and_then(|c| c.pragma_update(None, "user_version", 99))
            .expect("bump version");
        let err = Outbox::open(&newer).expect_err("newer");
        assert!(
            matches!(err, OutboxError::NewerSchema { found: 99, .. }),
            "{err}"
        );
    }

    /// Random revisions of a few ids, out of order and repeated, with random acks:
    /// at most one alert entry per id waits, it is the highest revision pushed and not
    /// yet acknowledged, and seq only rises.
    #[test]
    fn random_pushes_and_acks_keep_one_highest_entry_per_id() {
        let (_dir, outbox) = open_temp();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let ids = ["a", "b", "c", "d"];
        let mut highest = [None::<u32>; 4];
        let mut acked = [None::<u32>; 4];
        let mut last_seq = 0;
        for _ in 0..400 {
            let i = rng.below(ids.len() as u64) as usize;
            if rng.below(4) == 0 {
                let revision = rng.below(12) as u32;
                outbox.ack_alert(ids[i], revision).expect("ack");
                acked[i] = acked[i].max(Some(revision));
            } else {
                let revision = rng.below(12) as u32;
                let pushed = outbox
                    .push_alert(&alert(ids[i], revision, None))
                    .expect("push");
                let expect_queued = highest[i].is_none_or(|h| revision > h);
                assert_eq!(pushed.is_some(), expect_queued);
                if let Some(seq) = pushed {
                    assert!(seq > last_seq);
                    last_seq = seq;
                    highest[i] = Some(revision);
                }
            }
        }
        let waiting = summary(&outbox);
        for (i, id) in ids.iter().enumerate() {
            let mine: Vec<_> = waiting.iter().filter(|(_, w, _)| w == id).collect();
            let expected = highest[i].filter(|h| acked[i].is_none_or(|a| *h > a));
            assert_eq!(
                mine.len(),
                usize::from(expected.is_some()),
                "{id}: {mine:?}"
            );
            if let Some(h) = expected {
                assert_eq!(mine[0].2, Some(h));
            }
        }
    }

    /// A refusal never removes an entry: it is marked, listed, still sent after a
    /// reconnect, and goes only with an acknowledgement or a higher revision.
    #[test]
    fn a_refused_entry_stays_marked_until_acknowledged() {
        let (_dir, outbox) = open_temp();
        outbox.push_alert(&alert("a", 0, None)).expect("push");
        outbox.push_alert(&alert("b", 0, None)).expect("push");
        outbox.push_snapshot(&snapshot("b", b"jpeg")).expect("push");
        assert_eq!(
            outbox
                .mark_refused("a", Some(0), 8, "id in use", 100)
                .expect("mark"),
            1
        );
        assert_eq!(
            outbox
                .mark_refused("b", None, 7, "disk full", 90)
                .expect("mark"),
            1
        );
        // A revision that is not waiting marks nothing.
        assert_eq!(
            outbox
                .mark_refused("a", Some(5), 8, "x", 110)
                .expect("mark"),
            0
        );
        outbox
            .mark_refused("a", Some(0), 8, "id in use, again", 120)
            .expect("mark");
        assert_eq!(outbox.len().expect("len"), 3);
        assert_eq!(outbox.refused_len().expect("refused"), 2);
        let refused = outbox.refused(10).expect("refused");
        assert_eq!(
            refused
                .iter()
                .map(|r| (
                    r.alert_id.as_str(),
                    r.revision,
                    r.code,
                    r.reason.as_str(),
                    r.refusals
                ))
                .collect::<Vec<_>>(),
            [
                ("a", Some(0), 8, "id in use, again", 2),
                ("b", None, 7, "disk full", 1),
            ]
        );
        assert_eq!(summary(&outbox).len(), 3, "still sent after a reconnect");
        outbox.ack_alert("a", 0).expect("ack");
        outbox.ack_snapshot("b").expect("ack");
        assert_eq!(outbox.refused_len().expect("refused"), 0);
    }

    /// An outbox written before refusals were recorded gains their columns, keeps its
    /// entries waiting, and stays at schema 1, so an older gateway can still open it.
    #[test]
    fn an_outbox_without_refusal_columns_gains_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("o.sqlite3");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(SCHEMA_V1).expect("schema 1");
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .expect("pragma");
            conn.pragma_update(None, "user_version", 1).expect("pragma");
            conn.execute(
                "INSERT INTO entries (kind, alert_id, revision, payload_json) \
                 VALUES (0, 'a', 0, '{}')",
                [],
            )
            .expect("row");
        }
        let outbox = Outbox::open(&path).expect("migrates");
        assert_eq!(summary(&outbox), [("alert", "a".to_string(), Some(0))]);
        assert_eq!(outbox.refused_len().expect("refused"), 0);
        outbox
            .mark_refused("a", Some(0), 8, "id in use", 1)
            .expect("mark");
        drop(outbox);
        let outbox = Outbox::open(&path).expect("reopen");
        assert_eq!(outbox.refused(1).expect("refused")[0].reason, "id in use");
        let version: i64 = outbox
            .lock()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, 1);
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
