//! Opening the SQLite files that must survive a crash or a power cut: the
//! gateway's alert outbox (`relay/outbox.rs`) and the center's alert ledger
//! (`lookout-center`'s `ledger.rs`). Both run in WAL mode with `synchronous=FULL` (a
//! commit is on disk when it returns), wait on locks instead of failing at
//! once, and carry an application id and a schema version, so another
//! SQLite file given by mistake, or one from a newer lookout, is refused
//! rather than written to; one from an older lookout is migrated, in the
//! same transaction as the version check, so a crash mid-way leaves it as
//! it was. The files (and SQLite's `-wal` and `-shm` next to them, which
//! SQLite creates with the database file's permissions) are the owner's
//! alone, 0600, in a folder created 0700: alerts, their snapshots and
//! operators' names are nobody else's business on a shared machine,
//! whatever the umask.

use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a file of one kind must be.
pub struct Schema {
    /// What the file is, for messages: "outbox", "alert ledger".
    pub kind: &'static str,
    /// `PRAGMA application_id`, the file kind's mark.
    pub application_id: i64,
    /// Creates version 1 in an empty file.
    pub create_v1: &'static str,
    /// `migrations[i]` turns version `i + 1` into version `i + 2`. A new
    /// file is created as version 1 and migrated like an old one, so every
    /// file of this build has the same schema, whatever its history.
    pub migrations: &'static [&'static str],
}

impl Schema {
    /// `PRAGMA user_version` this build writes: 1, plus one per migration.
    pub fn version(&self) -> i64 {
        1 + self.migrations.len() as i64
    }
}

/// Why a file could not be opened. The message says what went wrong; the caller's
/// error (`OutboxError::Open`, `LedgerError::Open`) puts the file's kind and path in
/// front of it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The folder the file goes in could not be created.
    #[error("creating its folder: {0}")]
    CreateDir(std::io::Error),
    /// Creating the file, or making an existing one private.
    #[error("making it readable by its owner only (0600): {0}")]
    Permissions(std::io::Error),
    /// SQLite failed while opening, checking or migrating the file (`op` says which).
    #[error("{op}: {cause}")]
    Sqlite {
        op: &'static str,
        cause: rusqlite::Error,
    },
    /// The file cannot be put in write-ahead-log mode (commits would not be durable
    /// the way the stores assume).
    #[error("cannot use write-ahead logging (journal mode stays `{mode}`)")]
    NoWal {
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The file was written by a newer lookout with a schema this build does not know.
    #[error(
        "schema version {found} is newer than this build's {supported}; run a newer lookout or move the file away"
    )]
    NewerSchema {
        /// The file's `user_version`.
        found: i64,
        /// The newest version this build writes.
        supported: i64,
    },
    /// The file is an SQLite database of another kind (another application id, or
    /// tables in a file with no version).
    #[error(
        "not a lookout {kind} (application_id {application_id:#x}, user_version {user_version}); refusing to use it"
    )]
    Foreign {
        /// What the file was expected to be ([`Schema::kind`]).
        kind: &'static str,
        /// The file's `application_id`.
        application_id: i64,
        /// The file's `user_version`.
        user_version: i64,
    },
}

/// Creates `path` 0600 if it is new, so SQLite never creates it (with
/// the umask's 0644) and its `-wal` and `-shm` inherit 0600; an existing
/// file and its companions from an older lookout are made 0600.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        match std::fs::set_permissions(&companion, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Opens (creating the file, its folders and its schema when new) a
/// durable SQLite file of `schema`'s kind.
pub fn open(path: &Path, schema: &Schema) -> Result<Connection, OpenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(OpenError::CreateDir)?;
    }
    make_private(path).map_err(OpenError::Permissions)?;
    let sqlite = |op: &'static str| move |cause| OpenError::Sqlite { op, cause };
    let mut conn = Connection::open(path).map_err(sqlite("opening"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite("setting the busy timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite("switching to write-ahead logging"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NoWal { mode });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite("setting synchronous=FULL"))?;

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite("reading the schema version"))?;
    let (user_version, application_id) = tx
        .query_row(
            "SELECT * FROM pragma_user_version, pragma_application_id",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )
        .map_err(sqlite("reading the schema version"))?;
    let version = schema.version();
    if user_version > version {
        return Err(OpenError::NewerSchema {
            found: user_version,
            supported: version,
        });
    }
    let foreign = if user_version == 0 {
        let objects: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(sqlite("reading the schema"))?;
        objects > 0 || application_id != 0
    } else {
        application_id != schema.application_id
    };
    if foreign {
        return Err(OpenError::Foreign {
            kind: schema.kind,
            application_id,
            user_version,
        });
    }
    if user_version < 1 {
        tx.execute_batch(schema.create_v1)
            .map_err(sqlite("creating the schema"))?;
    }
    for (from, migration) in (1..).zip(schema.migrations) {
        if user_version <= from {
            tx.execute_batch(migration)
                .map_err(sqlite("migrating the schema"))?;
        }
    }
    if user_version < version {
        tx.pragma_update(None, "application_id", schema.application_id)
            .map_err(sqlite("writing the schema version"))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(sqlite("writing the schema version"))?;
    }
    tx.commit().map_err(sqlite("committing the schema"))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SCHEMA: Schema = Schema {
        kind: "test store",
        application_id: 0x1234,
        create_v1: "CREATE TABLE t (x INTEGER);",
        migrations: &[],
    };

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn files_are_the_owners_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new/folder/x.sqlite3");
        let conn = open(&path, &SCHEMA).expect("open");
        conn.execute("INSERT INTO t VALUES (1)", []).expect("write");
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        assert_eq!(mode(&dir.path().join("new/folder")), 0o700);
        drop(conn);

        // A file an older lookout left world-readable is made private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let conn = open(&path, &SCHEMA).expect("reopen");
        assert_eq!(mode(&path), 0o600);
        drop(conn);
    }
}
