//! The clip store's index: one small SQLite file (`clips/index.sqlite3`, opened through
//! `lookout_core::durable` like the ledger, so a crash never leaves it half-written and
//! another SQLite file given by mistake is refused) with one row per stored clip. It is
//! kept apart from the ledger so that a clip's transfer, which can take minutes on a
//! cellular link, never holds the ledger's lock, and so that deleting the clips folder
//! forgets the clips and nothing else.
//!
//! Rows are written only after their file is renamed into place and deleted before
//! their file is removed (`clips.rs`), so a row never names a file the store failed to
//! write; a file without a row (a crash between the two) is removed when the store opens.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::ClipStoreError;

/// `PRAGMA application_id` of a clip index ("LKCL").
const APPLICATION_ID: i64 = 0x4c4b_434c;

/// Version 1: one row per stored clip, `name` being its file's stem (the hex SHA-256 of
/// its key, `clips.rs`).
const SCHEMA_V1: &str = "
CREATE TABLE clips (
    name TEXT PRIMARY KEY,
    gateway TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    stored_at_unix_ms INTEGER NOT NULL,
    meta TEXT NOT NULL,
    UNIQUE (gateway, alert_id)
);
CREATE INDEX clips_by_age ON clips (stored_at_unix_ms);
";

/// One stored clip as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    /// The file's stem: `<name>.mp4` in the clips folder.
    pub name: String,
    pub gateway: String,
    pub alert_id: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub stored_at_unix_ms: u64,
    /// A JSON object, `{}` when the gateway sent none.
    pub meta: String,
}

/// The index file and its one connection (the store serialises access with a mutex).
pub(super) struct Index {
    conn: Connection,
    path: PathBuf,
}

const SELECT_ROW: &str =
    "SELECT name, gateway, alert_id, size, sha256, stored_at_unix_ms, meta FROM clips";

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        name: row.get(0)?,
        gateway: row.get(1)?,
        alert_id: row.get(2)?,
        size: row.get(3)?,
        sha256: row.get(4)?,
        stored_at_unix_ms: row.get(5)?,
        meta: row.get(6)?,
    })
}

/// SQLite stores integers as i64; sizes and times beyond it are clamped (never met: a
/// clip is bounded by `clip_max_bytes`, times by the clock).
fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Index {
    /// Opens (creating when new) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, ClipStoreError> {
        let schema = lookout_core::durable::Schema {
            kind: "clip index",
            application_id: APPLICATION_ID,
            create_v1: SCHEMA_V1,
            migrations: &[],
        };
        let conn =
            lookout_core::durable::open(path, &schema).map_err(|cause| ClipStoreError::Open {
                path: path.to_path_buf(),
                cause,
            })?;
        Ok(Index {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn error(&self, op: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> ClipStoreError {
        let path = self.path.clone();
        let op = op.into();
        move |cause| ClipStoreError::Index { path, op, cause }
    }

    /// The clip stored under `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Row>, ClipStoreError> {
        self.conn
            .prepare_cached(&format!("{SELECT_ROW} WHERE name = ?1"))
            .and_then(|mut stmt| stmt.query_row([name], read_row).optional())
            .map_err(self.error(format!("reading clip {name}")))
    }

    /// Only the size of the clip stored under `name`: the alert listings' lookup.
    pub fn size(&self, name: &str) -> Result<Option<u64>, ClipStoreError> {
        self.conn
            .prepare_cached("SELECT size FROM clips WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)).optional())
            .map_err(self.error(format!("reading the size of clip {name}")))
    }

    /// Stores `row`, replacing the row of the same name (a re-recorded clip).
    pub fn put(&self, row: &Row) -> Result<(), ClipStoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO clips \
                 (name, gateway, alert_id, size, sha256, stored_at_unix_ms, meta) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.name,
                    row.gateway,
                    row.alert_id,
                    sql_u64(row.size),
                    row.sha256,
                    sql_u64(row.stored_at_unix_ms),
                    row.meta
                ],
            )
            .map(drop)
            .map_err(self.error(format!("indexing clip {}", row.name)))
    }

    /// Forgets the clip stored under `name`.
    pub fn delete(&self, name: &str) -> Result<(), ClipStoreError> {
        self.conn
            .execute("DELETE FROM clips WHERE name = ?1", [name])
            .map(drop)
            .map_err(self.error(format!("removing clip {name} from the index")))
    }

    /// Every stored clip, oldest first (stored time, then insertion order): the order
    /// retention evicts in.
    pub fn oldest_first(&self) -> Result<Vec<Row>, ClipStoreError> {
        self.conn
            .prepare_cached(&format!("{SELECT_ROW} ORDER BY stored_at_unix_ms, rowid"))
            .and_then(|mut stmt| stmt.query_map([], read_row)?.collect())
            .map_err(self.error("listing clips"))
    }

    /// How many clips are stored, and their bytes together.
    pub fn totals(&self) -> Result<(u64, u64), ClipStoreError> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM clips",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.error("counting clips"))
    }
}
