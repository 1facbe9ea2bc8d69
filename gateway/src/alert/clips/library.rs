//! The clips on this gateway's disk (`STORAGE/clips/`): one MP4 per alert,
//! an index in SQLite (`clips.sqlite3`: each clip, and which upstream has
//! acknowledged it), the disk budget and what is sent upstream next.
//!
//! A clip is written as `NAME.mp4.part` and renamed (after fsync) once the
//! muxer has closed it, so a file named `.mp4` is always whole; `.part`
//! files found at start were cut by a crash and are removed. Files are
//! named by the SHA-256 of the alert id (ids from `POST /api/alerts` are the
//! client's), never by the id itself.
//!
//! Budget: after each clip the oldest clips every upstream has acknowledged
//! are removed while the total is over `max_bytes`; a clip some upstream
//! still lacks is never removed. When those alone fill the budget,
//! [`Library::has_room`] says no and no new clip is recorded until one is
//! delivered.

use lookout_core::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use lookout_core::durable::{self, Schema};
use lookout_core::relay::source::{ClipEntry, ClipSource};
use lookout_core::unit::{Codec, codec_label};

/// `PRAGMA application_id` of the clip index: "LKCL".
const APPLICATION_ID: i64 = 0x4c4b_434c;

const CREATE_V1: &str = "
CREATE TABLE clips (
    alert_id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    codec TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    first_capture_ns INTEGER NOT NULL,
    last_capture_ns INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX clips_by_age ON clips (created_ms);
CREATE TABLE clip_acks (
    alert_id TEXT NOT NULL,
    upstream TEXT NOT NULL,
    acked_ms INTEGER NOT NULL,
    PRIMARY KEY (alert_id, upstream)
);";

/// A clip the recorder has closed, before it is indexed.
#[derive(Debug, Clone)]
pub struct Closed {
    pub alert_id: String,
    pub camera_id: String,
    pub codec: Codec,
    pub first_capture_unix_ns: u64,
    pub last_capture_unix_ns: u64,
}

/// What the budget did after a clip was added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub clips: u64,
    pub bytes: u64,
}

pub struct Library {
    dir: PathBuf,
    db: Mutex<Connection>,
    max_bytes: u64,
    /// Every configured upstream: a clip may go once all have it.
    upstreams: Vec<String>,
    ready: Arc<Notify>,
}

fn db_err(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("clip index: {what}: {e}")
}

impl Library {
    /// Opens (creating) the clip folder and index; removes what a crash cut
    /// short. Returns the library and how many cut files were removed.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        upstreams: Vec<String>,
    ) -> Result<(Library, usize), String> {
        let schema = Schema {
            kind: "clip index",
            application_id: APPLICATION_ID,
            create_v1: CREATE_V1,
            migrations: &[],
        };
        let db = durable::open(&dir.join("clips.sqlite3"), &schema)
            .map_err(|e| format!("{}: {e}", dir.join("clips.sqlite3").display()))?;
        let library = Library {
            dir: dir.to_path_buf(),
            db: Mutex::new(db),
            max_bytes,
            upstreams,
            ready: Arc::new(Notify::new()),
        };
        let cut = library.clean()?;
        Ok((library, cut))
    }

    /// Removes `.part` files and index rows whose file is gone.
    fn clean(&self) -> Result<usize, String> {
        let mut cut = 0;
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("reading {}: {e}", self.dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "part") {
                tracing::warn!(file = %path.display(), "removing a clip a stop or crash cut short");
                std::fs::remove_file(&path)
                    .map_err(|e| format!("removing {}: {e}", path.display()))?;
                cut += 1;
            }
        }
        let db = self.db.locked();
        let mut stmt = db
            .prepare("SELECT alert_id, file FROM clips")
            .map_err(db_err("listing"))?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err("listing"))?
            .collect::<Result<_, _>>()
            .map_err(db_err("listing"))?;
        for (id, file) in rows {
            if !self.dir.join(&file).exists() {
                tracing::warn!(alert = %id, file, "clip file missing; dropped from the index");
                forget(&db, &id)?;
            }
        }
        Ok(cut)
    }

    fn name(alert_id: &str) -> String {
        let hash = Sha256::digest(alert_id.as_bytes());
        let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}.mp4")
    }

    /// Where the recorder writes an alert's clip until it is closed.
    pub fn part_path(&self, alert_id: &str) -> PathBuf {
        self.dir.join(format!("{}.part", Library::name(alert_id)))
    }

    /// The whole clip of an alert, when this gateway has it.
    #[cfg(test)]
    pub fn clip(&self, alert_id: &str) -> Result<Option<(PathBuf, u64)>, String> {
        use rusqlite::OptionalExtension;
        let db = self.db.locked();
        let row: Option<(String, i64)> = db
            .query_row(
                "SELECT file, size FROM clips WHERE alert_id = ?1",
                [alert_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db_err("reading"))?;
        Ok(row.map(|(f, size)| (self.dir.join(f), size.max(0) as u64)))
    }

    /// Whether a new clip may be recorded: the clips some upstream still
    /// lacks leave room under the budget.
    pub fn has_room(&self) -> Result<bool, String> {
        let db = self.db.locked();
        Ok(self.unevictable_bytes(&db)? < self.max_bytes)
    }

    fn unevictable_bytes(&self, db: &Connection) -> Result<u64, String> {
        if self.upstreams.is_empty() {
            return Ok(0);
        }
        let n: i64 = db
            .query_row(
                "SELECT COALESCE(SUM(size), 0) FROM clips c WHERE \
                 (SELECT COUNT(*) FROM clip_acks a WHERE a.alert_id = c.alert_id) < ?1",
                [self.upstreams.len() as i64],
                |r| r.get(0),
            )
            .map_err(db_err("summing"))?;
        Ok(n.max(0) as u64)
    }

    /// Bytes of every clip on disk.
    pub fn bytes(&self) -> Result<u64, String> {
        let db = self.db.locked();
        let n: i64 = db
            .query_row("SELECT COALESCE(SUM(size), 0) FROM clips", [], |r| r.get(0))
            .map_err(db_err("summing"))?;
        Ok(n.max(0) as u64)
    }

    /// Makes a closed clip whole: fsync, rename into place, hash, index;
    /// then keeps to the budget and wakes the uplinks. Blocking.
    pub fn add(&self, closed: &Closed) -> Result<(ClipEntry, Evicted), String> {
        let part = self.part_path(&closed.alert_id);
        let name = Library::name(&closed.alert_id);
        let path = self.dir.join(&name);
        let io = |what: &'static str| move |e: std::io::Error| format!("clip {what}: {e}");
        let file = std::fs::File::open(&part).map_err(io("opening"))?;
        file.sync_all().map_err(io("syncing"))?;
        drop(file);
        std::fs::rename(&part, &path).map_err(io("renaming"))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing its folder"))?;
        let (size, sha256) = hash_file(&path).map_err(io("hashing"))?;
        let entry = ClipEntry {
            alert_id: closed.alert_id.clone(),
            camera_id: closed.camera_id.clone(),
            codec: closed.codec,
            path,
            size,
            sha256,
            first_capture_unix_ns: closed.first_capture_unix_ns,
            last_capture_unix_ns: closed.last_capture_unix_ns,
        };
        let evicted = {
            let db = self.db.locked();
            db.execute(
                "INSERT OR REPLACE INTO clips (alert_id, camera, codec, file, size, sha256, \
                 first_capture_ns, last_capture_ns, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    entry.alert_id,
                    entry.camera_id,
                    codec_label(entry.codec),
                    name,
                    size as i64,
                    &sha256[..],
                    entry.first_capture_unix_ns as i64,
                    entry.last_capture_unix_ns as i64,
                    lookout_core::clock::unix_ms() as i64,
                ],
            )
            .map_err(db_err("adding"))?;
            // A clip recorded again replaces the old one, whoever had it.
            db.execute(
                "DELETE FROM clip_acks WHERE alert_id = ?1",
                [&entry.alert_id],
            )
            .map_err(db_err("adding"))?;
            self.keep_to_budget(&db)?
        };
        self.ready.notify_waiters();
        Ok((entry, evicted))
    }

    /// Removes the oldest clips every upstream has, while over the budget.
    fn keep_to_budget(&self, db: &Connection) -> Result<Evicted, String> {
        let mut total: i64 = db
            .query_row("SELECT COALESCE(SUM(size), 0) FROM clips", [], |r| r.get(0))
            .map_err(db_err("summing"))?;
        let mut evicted = Evicted::default();
        if total.max(0) as u64 <= self.max_bytes {
            return Ok(evicted);
        }
        let mut stmt = db
            .prepare(
                "SELECT alert_id, file, size FROM clips c WHERE \
                 (SELECT COUNT(*) FROM clip_acks a WHERE a.alert_id = c.alert_id) >= ?1 \
                 ORDER BY created_ms",
            )
            .map_err(db_err("choosing what to evict"))?;
        let old: Vec<(String, String, i64)> = stmt
            .query_map([self.upstreams.len() as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(db_err("choosing what to evict"))?
            .collect::<Result<_, _>>()
            .map_err(db_err("choosing what to evict"))?;
        for (id, file, size) in old {
            if total.max(0) as u64 <= self.max_bytes {
                break;
            }
            let path = self.dir.join(&file);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("evicting clip {}: {e}", path.display()));
                }
                _ => {}
            }
            forget(db, &id)?;
            tracing::info!(alert = %id, bytes = size, "clip evicted (disk budget; every upstream has it)");
            total -= size;
            evicted.clips += 1;
            evicted.bytes += size.max(0) as u64;
        }
        Ok(evicted)
    }
}

fn forget(db: &Connection, alert_id: &str) -> Result<(), String> {
    db.execute("DELETE FROM clips WHERE alert_id = ?1", [alert_id])
        .map_err(db_err("removing"))?;
    db.execute("DELETE FROM clip_acks WHERE alert_id = ?1", [alert_id])
        .map_err(db_err("removing"))?;
    Ok(())
}

/// The file's size and SHA-256.
fn hash_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hasher.finalize().into()))
}

impl ClipSource for Library {
    fn pending(&self, upstream: &str) -> Result<Vec<ClipEntry>, String> {
        let db = self.db.locked();
        let mut stmt = db
            .prepare(
                "SELECT alert_id, camera, codec, file, size, sha256, first_capture_ns, \
                 last_capture_ns FROM clips c WHERE NOT EXISTS \
                 (SELECT 1 FROM clip_acks a WHERE a.alert_id = c.alert_id AND a.upstream = ?1) \
                 ORDER BY created_ms",
            )
            .map_err(db_err("listing"))?;
        let rows = stmt
            .query_map([upstream], |r| {
                let codec: String = r.get(2)?;
                let file: String = r.get(3)?;
                let hash: Vec<u8> = r.get(5)?;
                let mut sha256 = [0u8; 32];
                if hash.len() == 32 {
                    sha256.copy_from_slice(&hash);
                }
                Ok(ClipEntry {
                    alert_id: r.get(0)?,
                    camera_id: r.get(1)?,
                    codec: if codec == "h265" {
                        Codec::H265
                    } else {
                        Codec::H264
                    },
                    path: self.dir.join(file),
                    size: r.get::<_, i64>(4)?.max(0) as u64,
                    sha256,
                    first_capture_unix_ns: r.get::<_, i64>(6)?.max(0) as u64,
                    last_capture_unix_ns: r.get::<_, i64>(7)?.max(0) as u64,
                })
            })
            .map_err(db_err("listing"))?;
        rows.collect::<Result<_, _>>().map_err(db_err("listing"))
    }

    fn acknowledged(&self, upstream: &str, alert_id: &str) -> Result<(), String> {
        let db = self.db.locked();
        db.execute(
            "INSERT OR IGNORE INTO clip_acks (alert_id, upstream, acked_ms) \
             SELECT alert_id, ?2, ?3 FROM clips WHERE alert_id = ?1",
            params![alert_id, upstream, lookout_core::clock::unix_ms() as i64],
        )
        .map_err(db_err("recording an acknowledgement"))?;
        self.keep_to_budget(&db).map(|_| ())
    }

    fn ready(&self) -> Arc<Notify> {
        self.ready.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(id: &str) -> Closed {
        Closed {
            alert_id: id.into(),
            camera_id: "cam".into(),
            codec: Codec::H264,
            first_capture_unix_ns: 1,
            last_capture_unix_ns: 2,
        }
    }

    fn write(lib: &Library, id: &str, bytes: usize) -> ClipEntry {
        std::fs::write(lib.part_path(id), vec![7u8; bytes]).unwrap();
        lib.add(&closed(id)).unwrap().0
    }

    #[test]
    fn unacknowledged_clips_are_never_evicted_and_block_new_ones_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let up = vec!["center".to_string(), "city".to_string()];
        let (lib, _) = Library::open(dir.path(), 3000, up).unwrap();
        let a = write(&lib, "a", 1000);
        write(&lib, "../b", 1000);
        assert!(lib.has_room().unwrap());
        assert!(a.path.starts_with(dir.path()));
        assert!(lib.clip("../b").unwrap().unwrap().0.starts_with(dir.path()));
        // Over budget with nothing every upstream has: nothing goes, and
        // there is no room for more.
        let (_, evicted) = {
            std::fs::write(lib.part_path("c"), vec![7u8; 1500]).unwrap();
            lib.add(&closed("c")).unwrap()
        };
        assert_eq!(evicted, Evicted::default());
        assert!(!lib.has_room().unwrap());
        assert_eq!(lib.pending("center").unwrap().len(), 3);
        // One upstream's ack is not enough to evict.
        lib.acknowledged("center", "a").unwrap();
        assert_eq!(lib.bytes().unwrap(), 3500);
        assert_eq!(lib.pending("center").unwrap().len(), 2);
        // Both: the oldest goes, and the rest fits.
        lib.acknowledged("city", "a").unwrap();
        assert_eq!(lib.bytes().unwrap(), 2500);
        assert!(!a.path.exists());
        assert!(lib.clip("a").unwrap().is_none());
        assert!(lib.has_room().unwrap());
    }

    #[test]
    fn a_reopened_library_drops_cut_files_and_keeps_whole_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (lib, _) = Library::open(dir.path(), 1 << 30, vec!["c".into()]).unwrap();
        let whole = write(&lib, "whole", 100);
        std::fs::write(lib.part_path("cut"), b"half").unwrap();
        drop(lib);
        let (lib, cut) = Library::open(dir.path(), 1 << 30, vec!["c".into()]).unwrap();
        assert_eq!(cut, 1);
        let pending = lib.pending("c").unwrap();
        assert_eq!(pending, vec![whole.clone()]);
        let expect: [u8; 32] = Sha256::digest(vec![7u8; 100]).into();
        assert_eq!(pending[0].sha256, expect);
        assert_eq!(pending[0].size, 100);
    }
}
