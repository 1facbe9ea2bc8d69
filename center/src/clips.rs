//! Alert evidence clips: the MP4 (H.264 `avc1` or H.265 `hvc1`, as the camera encoded
//! it) a gateway records around each alert, received whole over QUIC and kept for the
//! operators and the wall (`GET …/alerts/{id}/clip.mp4`, `http/clips.rs`). One clip per
//! alert, keyed by (gateway id, alert id) like the ledger.
//!
//! The transfer is resumable, and the store is what makes it so. For each clip the
//! gateway offers ([`ClipOffer`]: key, size, SHA-256, metadata), the session asks
//! [`ClipStore::have`] and tells the gateway where to start:
//! - [`ClipHave::Complete`]: a clip with this SHA-256 is stored; nothing to send.
//! - [`ClipHave::Partial`]`(n)`: the center holds the first `n` bytes of *this* offer
//!   (0: none); the gateway sends the rest, each chunk through [`ClipStore::append`]
//!   at the offset the store holds (any other offset is refused, naming both), never
//!   past the offered size; then [`ClipStore::complete`] checks the SHA-256 and stores
//!   the clip. A restarted center, or a connection lost half-way, answers `have` with
//!   what reached its disk, and the transfer goes on from there.
//!
//! Which offer a partial file belongs to is in its name, so an offer of another size
//! or SHA-256 for the same key (the gateway recorded the alert again) discards the old
//! partial rather than appending to it. A stored clip is *replaced* by such an offer
//! once the new one is complete: until then the old clip stays served, afterwards the
//! new file is renamed over it (a reader that opened the old one keeps reading it).
//! Appends are not fsynced: a power cut can at worst lose or corrupt the tail of a
//! partial, after which `have` reports what is on disk, and corruption fails the
//! SHA-256 check at `complete`, which discards the partial so the gateway sends it
//! again. The stored file is fsynced before it is renamed into place, its folder after.
//!
//! Files under `STORAGE/clips/`, all the owner's alone (0600, folders 0700):
//! - `index.sqlite3`: one row per stored clip (`clips/index.rs`): gateway, alert id,
//!   size, SHA-256, when stored, and the gateway's metadata (a JSON object of at most
//!   4 KiB: camera, first capture time, duration…; opaque to the center).
//! - `<name>.mp4`: a stored clip, `<name>` being the hex SHA-256 of its key (the
//!   gateway id's length as 8 bytes big-endian, the gateway id, the alert id). Ids come
//!   from peers and may hold `/`, `..` or anything else, so they never become paths.
//! - `partial/<name>.<size>.<sha256>.part`: a clip being received.
//!
//! Retention ([`ClipRetention`], `[center] clip_max_age_days` and `clip_max_bytes`):
//! clips stored longer ago than the age limit are deleted, then the oldest stored
//! clips while all of them together exceed the byte limit; partials untouched for
//! [`PARTIAL_MAX_IDLE`] are deleted. It runs when the store opens, after every
//! completed clip, and hourly from [`spawn_sweeper`]. An offer larger than the byte
//! limit is refused by `have`: it could never be kept.
//!
//! The API is synchronous (SQLite, file I/O, hashing): call it from `spawn_blocking`.
//! Calls for different clips run concurrently; calls for the same clip wait for each
//! other (`KeyLocks`). Failures are counted by reason
//! (`lookout_center_clip_failures_total{reason}`, [`CLIP_FAILURES`]).

mod index;
mod locks;
mod metrics;
mod retention;
#[cfg(test)]
mod tests;

pub use retention::spawn_sweeper;

use lookout_core::sync::Locked;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use lookout_codecs::relay::MAX_ID_LEN;
use lookout_core::logging::untrusted;
use sha2::{Digest, Sha256};

use index::{Index, Row};
use locks::KeyLocks;
use metrics::ClipMetrics;

/// A partial clip untouched for this long is deleted: its gateway gave up on it (the
/// alert was deleted there, or the gateway was replaced).
pub const PARTIAL_MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most bytes of metadata JSON an offer may carry.
pub const MAX_META_JSON: usize = 4096;

/// How often [`spawn_sweeper`] applies retention.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(3600);

/// The reasons counted in `lookout_center_clip_failures_total{reason}`, each a series
/// from the start: `invalid` (an offer with a bad id, size or metadata), `offset` (an
/// append not at the held length), `past_end` (an append beyond the offered size),
/// `incomplete` (`complete` before all bytes arrived), `sha256` (the bytes did not
/// match the offer; the partial was discarded), `already_complete` (an append to a
/// stored clip), `storage` (disk or index failed), `retention` (deleting an expired
/// clip failed).
pub const CLIP_FAILURES: [&str; 8] = [
    "invalid",
    "offset",
    "past_end",
    "incomplete",
    "sha256",
    "already_complete",
    "storage",
    "retention",
];

/// A clip a gateway offers: which alert it is of, and what its bytes will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipOffer {
    /// The gateway's id (1–64 bytes).
    pub gateway: String,
    /// The alert's id, the gateway's own (1–64 bytes of UTF-8, any characters).
    pub alert_id: String,
    /// The clip's length in bytes: at least 1, at most `clip_max_bytes`.
    pub size: u64,
    /// The SHA-256 of all `size` bytes.
    pub sha256: [u8; 32],
    /// The gateway's metadata (camera, first capture time, duration…): a JSON object
    /// of at most 4 KiB, or empty for none. Kept as sent and shown by the API.
    pub meta_json: String,
}

/// What the center holds of an offer ([`ClipStore::have`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipHave {
    /// A clip with the offer's SHA-256 and size is stored.
    Complete,
    /// The first `n` bytes of this offer are held; `Partial(0)`: nothing yet.
    Partial(u64),
}

pub use crate::config::ClipRetention;

/// A stored clip ([`ClipStore::find`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClip {
    pub gateway: String,
    pub alert_id: String,
    /// The file (readers should go through [`ClipStore::open_clip`], which opens it
    /// under the index's lock: retention may delete it at any time).
    pub path: PathBuf,
    pub size: u64,
    /// Lowercase hex; also the HTTP entity tag.
    pub sha256: String,
    pub stored_at_unix_ms: u64,
    /// The gateway's metadata, a JSON object (`{}` when it sent none).
    pub meta_json: String,
}

/// The store's figures ([`ClipStore::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClipStats {
    /// Clips stored.
    pub clips: u64,
    /// Their bytes together.
    pub bytes: u64,
    /// Clips deleted by retention since the store opened.
    pub evicted: u64,
    /// Partial files (clips being received, or abandoned and not yet swept).
    pub partials: u64,
    /// Their bytes together.
    pub partial_bytes: u64,
}

/// Why the store could not do something. Each message names the clip (alert and
/// gateway, escaped) or the file and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ClipStoreError {
    /// The index could not be opened, created or migrated.
    #[error("clip index {}: {cause}", .path.display())]
    Open {
        path: PathBuf,
        cause: lookout_core::durable::OpenError,
    },
    /// SQLite failed on the index.
    #[error("clip index {}: {op}: {cause}", .path.display())]
    Index {
        path: PathBuf,
        op: String,
        cause: rusqlite::Error,
    },
    /// A file or folder operation failed (disk full, permissions, …).
    #[error("clip store: {op} {}: {cause}", .path.display())]
    Io {
        op: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The offer itself is unacceptable.
    #[error("{clip}: {why}")]
    Invalid { clip: String, why: String },
    /// An append not at the end of what is held.
    #[error(
        "{clip}: data for offset {offset}, but the center holds {have} bytes; resume at {have}"
    )]
    Offset {
        clip: String,
        offset: u64,
        have: u64,
    },
    /// An append that would run past the offered size.
    #[error("{clip}: {len} bytes at offset {offset} run past the offered size of {size} bytes")]
    PastEnd {
        clip: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// `complete` before every byte arrived.
    #[error("{clip}: incomplete, {have} of {size} bytes held")]
    Incomplete { clip: String, have: u64, size: u64 },
    /// The bytes received are not the offered ones.
    #[error(
        "{clip}: its {size} bytes have SHA-256 {got}, not the offered {expected}; the partial file was discarded, send it again from 0"
    )]
    Sha256 {
        clip: String,
        size: u64,
        expected: String,
        got: String,
    },
    /// An append to a clip already stored whole.
    #[error("{clip}: already stored whole; nothing more to append")]
    AlreadyComplete { clip: String },
}

impl ClipStoreError {
    /// Its `reason` label in `lookout_center_clip_failures_total` ([`CLIP_FAILURES`]).
    pub fn reason(&self) -> &'static str {
        match self {
            ClipStoreError::Open { .. }
            | ClipStoreError::Index { .. }
            | ClipStoreError::Io { .. } => "storage",
            ClipStoreError::Invalid { .. } => "invalid",
            ClipStoreError::Offset { .. } => "offset",
            ClipStoreError::PastEnd { .. } => "past_end",
            ClipStoreError::Incomplete { .. } => "incomplete",
            ClipStoreError::Sha256 { .. } => "sha256",
            ClipStoreError::AlreadyComplete { .. } => "already_complete",
        }
    }
}

fn io_error(op: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> ClipStoreError {
    let op = op.into();
    let path = path.to_path_buf();
    move |cause| ClipStoreError::Io { op, path, cause }
}

/// How messages name a clip: its alert and gateway, escaped (peers choose both).
fn describe(gateway: &str, alert_id: &str) -> String {
    format!(
        "clip of alert {} of gateway {}",
        untrusted(alert_id),
        untrusted(gateway)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The file stem of a key's clip: the hex SHA-256 of the gateway id's length (8 bytes,
/// big-endian), the gateway id and the alert id. The length makes it unambiguous
/// whatever the ids hold (`a` + `b\nc` and `a\nb` + `c` differ); the hash makes it a
/// safe file name whatever they hold.
pub fn clip_name(gateway: &str, alert_id: &str) -> String {
    let mut h = Sha256::new();
    h.update((gateway.len() as u64).to_be_bytes());
    h.update(gateway.as_bytes());
    h.update(alert_id.as_bytes());
    hex(&h.finalize())
}

/// Checks an offer; `Ok` is its clip's name.
fn check(offer: &ClipOffer, max_bytes: u64) -> Result<String, ClipStoreError> {
    let invalid = |why: String| ClipStoreError::Invalid {
        clip: describe(&offer.gateway, &offer.alert_id),
        why,
    };
    for (what, id) in [
        ("gateway id", &offer.gateway),
        ("alert id", &offer.alert_id),
    ] {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(invalid(format!(
                "the {what} is {} bytes; 1 to {MAX_ID_LEN} expected",
                id.len()
            )));
        }
    }
    if offer.size == 0 {
        return Err(invalid("an empty clip (size 0)".to_string()));
    }
    if offer.size > max_bytes {
        return Err(invalid(format!(
            "{} bytes is more than clip_max_bytes ({max_bytes}): it could never be kept",
            offer.size
        )));
    }
    if offer.meta_json.len() > MAX_META_JSON {
        return Err(invalid(format!(
            "metadata of {} bytes; at most {MAX_META_JSON}",
            offer.meta_json.len()
        )));
    }
    if !offer.meta_json.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&offer.meta_json) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(invalid("metadata: a JSON object expected".to_string())),
            Err(e) => return Err(invalid(format!("metadata: not JSON: {e}"))),
        }
    }
    Ok(clip_name(&offer.gateway, &offer.alert_id))
}

/// The center's clips (see the module's documentation).
pub struct ClipStore {
    dir: PathBuf,
    partial_dir: PathBuf,
    index: Mutex<Index>,
    retention: ClipRetention,
    turns: KeyLocks,
    metrics: ClipMetrics,
}

fn make_dir(path: &Path) -> Result<(), ClipStoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_error("creating the folder", path))
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ClipStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing the folder", dir))
}

/// Removes `path`; one already gone is fine.
fn remove(path: &Path) -> Result<(), ClipStoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("removing", path)(e)),
        _ => Ok(()),
    }
}

impl ClipStore {
    /// Opens the store in `dir` (`STORAGE/clips`), creating it when new; forgets index
    /// rows whose file is gone, removes clip files no row names (a crash between the
    /// rename and the index), then applies retention. Fails when the folder or the
    /// index cannot be created, opened or read.
    pub fn open(dir: PathBuf, retention: ClipRetention) -> Result<ClipStore, ClipStoreError> {
        let partial_dir = dir.join("partial");
        make_dir(&dir)?;
        make_dir(&partial_dir)?;
        let index = Index::open(&dir.join("index.sqlite3"))?;
        let store = ClipStore {
            dir,
            partial_dir,
            index: Mutex::new(index),
            retention,
            turns: KeyLocks::default(),
            metrics: ClipMetrics::new(),
        };
        store.reconcile()?;
        // A sweep that fails (a file that cannot be deleted) is logged and counted by
        // `sweep_at` and tried again hourly; it does not keep the center from starting.
        if store
            .sweep_at(lookout_core::clock::unix_ms(), SystemTime::now())
            .is_err()
        {
            tracing::warn!("clip store opened without applying retention; retrying hourly");
        }
        let stats = store.stats();
        tracing::info!(
            dir = %store.dir.display(),
            clips = stats.clips,
            bytes = stats.bytes,
            partials = stats.partials,
            "clip store open"
        );
        Ok(store)
    }

    fn stored_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.mp4"))
    }

    fn partial_path(&self, name: &str, offer: &ClipOffer) -> PathBuf {
        self.partial_dir
            .join(format!("{name}.{}.{}.part", offer.size, hex(&offer.sha256)))
    }

    /// Counts a failure by its reason and hands it on.
    fn counted<T>(&self, result: Result<T, ClipStoreError>) -> Result<T, ClipStoreError> {
        if let Err(e) = &result {
            self.metrics.fail(e.reason());
        }
        result
    }

    /// What the center holds of `offer`: [`ClipHave::Complete`] when a clip with its
    /// SHA-256 and size is stored; otherwise the length of this offer's partial (0 if
    /// none). A partial of another offer for the same key is discarded; a stored clip
    /// with another SHA-256 stays until this offer completes and replaces it.
    pub fn have(&self, offer: &ClipOffer) -> Result<ClipHave, ClipStoreError> {
        self.counted((|| {
            let name = check(offer, self.retention.max_bytes)?;
            let _turn = self.turns.take(&name);
            // Whatever the answer, this is the offer the gateway holds now.
            self.discard_other_partials(&name, offer)?;
            if self.stored_matches(&name, offer)? {
                return Ok(ClipHave::Complete);
            }
            Ok(ClipHave::Partial(self.partial_len(&name, offer)?))
        })())
    }

    /// Appends `data` at `offset` to `offer`'s partial, which must hold exactly
    /// `offset` bytes (otherwise an error naming both), never past `offer.size`.
    /// Returns the partial's new length.
    pub fn append(
        &self,
        offer: &ClipOffer,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, ClipStoreError> {
        self.counted((|| {
            let name = check(offer, self.retention.max_bytes)?;
            let _turn = self.turns.take(&name);
            let clip = || describe(&offer.gateway, &offer.alert_id);
            if self.stored_matches(&name, offer)? {
                return Err(ClipStoreError::AlreadyComplete { clip: clip() });
            }
            let have = self.partial_len(&name, offer)?;
            if offset != have {
                return Err(ClipStoreError::Offset {
                    clip: clip(),
                    offset,
                    have,
                });
            }
            let len = data.len() as u64;
            let end = offset.saturating_add(len);
            if end > offer.size {
                return Err(ClipStoreError::PastEnd {
                    clip: clip(),
                    offset,
                    len,
                    size: offer.size,
                });
            }
            let path = self.partial_path(&name, offer);
            // Created by the first append only: a partial that vanished in between
            // (swept) is an error, never a file with a hole where its start was.
            let mut file = OpenOptions::new()
                .write(true)
                .create(offset == 0)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io_error("opening the partial clip", &path))?;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(data))
                .map_err(io_error(
                    format!("writing {len} bytes at {offset} to"),
                    &path,
                ))?;
            Ok(end)
        })())
    }

    /// Stores `offer`'s clip once its partial holds all `offer.size` bytes: checks the
    /// SHA-256 (on a mismatch the partial is discarded and the error says so), fsyncs
    /// the file, renames it into place (replacing an older clip of the key), fsyncs
    /// the folders, indexes it, then applies retention (whose failures are logged and
    /// counted, not returned: the clip is stored). Does nothing if it is already stored.
    /// After `Ok` the caller should send the alert's key on `Center::alert_events`: the
    /// walls then fetch the alert again and show its clip.
    pub fn complete(&self, offer: &ClipOffer) -> Result<(), ClipStoreError> {
        self.complete_at(offer, lookout_core::clock::unix_ms())
    }

    fn complete_at(&self, offer: &ClipOffer, now_unix_ms: u64) -> Result<(), ClipStoreError> {
        self.counted((|| {
            let name = check(offer, self.retention.max_bytes)?;
            let _turn = self.turns.take(&name);
            if self.stored_matches(&name, offer)? {
                return Ok(());
            }
            let clip = || describe(&offer.gateway, &offer.alert_id);
            let have = self.partial_len(&name, offer)?;
            if have != offer.size {
                return Err(ClipStoreError::Incomplete {
                    clip: clip(),
                    have,
                    size: offer.size,
                });
            }
            let path = self.partial_path(&name, offer);
            let mut file =
                File::open(&path).map_err(io_error("opening the partial clip", &path))?;
            let digest =
                sha256_of(&mut file).map_err(io_error("reading the partial clip", &path))?;
            if digest != offer.sha256 {
                drop(file);
                remove(&path)?;
                tracing::warn!(
                    gateway = %untrusted(&offer.gateway),
                    alert = %untrusted(&offer.alert_id),
                    "clip discarded: its bytes do not match the offered SHA-256"
                );
                return Err(ClipStoreError::Sha256 {
                    clip: clip(),
                    size: offer.size,
                    expected: hex(&offer.sha256),
                    got: hex(&digest),
                });
            }
            file.sync_all()
                .map_err(io_error("syncing the partial clip", &path))?;
            drop(file);
            let meta = if offer.meta_json.is_empty() {
                "{}".to_string()
            } else {
                offer.meta_json.clone()
            };
            let row = Row {
                name: name.clone(),
                gateway: offer.gateway.clone(),
                alert_id: offer.alert_id.clone(),
                size: offer.size,
                sha256: hex(&offer.sha256),
                stored_at_unix_ms: now_unix_ms,
                meta,
            };
            // Renaming and indexing under the index's lock, which retention also
            // takes: an eviction never sees the file renamed but not yet indexed.
            let index = self.index.locked();
            let target = self.stored_path(&name);
            let replaced = index.get(&name)?;
            fs::rename(&path, &target).map_err(io_error(
                format!("moving {} into place as", path.display()),
                &target,
            ))?;
            sync_dir(&self.partial_dir)?;
            sync_dir(&self.dir)?;
            index.put(&row)?;
            tracing::info!(
                gateway = %untrusted(&offer.gateway),
                alert = %untrusted(&offer.alert_id),
                bytes = offer.size,
                replaced = replaced.is_some(),
                "clip stored"
            );
            if let Err(e) = self.retain(&index, now_unix_ms) {
                self.metrics.fail("retention");
                tracing::error!("clip retention after storing a clip: {e}");
            }
            self.refresh_gauges(&index);
            Ok(())
        })())
    }

    /// The stored clip of gateway `gateway`'s alert `alert_id`, if any.
    pub fn find(
        &self,
        gateway: &str,
        alert_id: &str,
    ) -> Result<Option<StoredClip>, ClipStoreError> {
        let name = clip_name(gateway, alert_id);
        let row = self.index.locked().get(&name)?;
        Ok(row.map(|r| self.stored_clip(r)))
    }

    /// The stored clip and its file, opened under the index's lock so retention
    /// cannot delete it in between (it may afterwards: the open file stays readable).
    pub fn open_clip(
        &self,
        gateway: &str,
        alert_id: &str,
    ) -> Result<Option<(StoredClip, File)>, ClipStoreError> {
        let name = clip_name(gateway, alert_id);
        let index = self.index.locked();
        let Some(row) = index.get(&name)? else {
            return Ok(None);
        };
        let clip = self.stored_clip(row);
        match File::open(&clip.path) {
            Ok(file) => Ok(Some((clip, file))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    gateway = %untrusted(gateway),
                    alert = %untrusted(alert_id),
                    file = %clip.path.display(),
                    "the clip index names a file that is gone; forgetting it"
                );
                index.delete(&name)?;
                self.refresh_gauges(&index);
                Ok(None)
            }
            Err(e) => Err(io_error("opening the clip", &clip.path)(e)),
        }
    }

    /// The sizes of the stored clips of these (gateway, alert id) pairs, in order, `None`
    /// where there is none: one index lookup each, for the alert listings.
    pub fn sizes<'a>(
        &self,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<Option<u64>>, ClipStoreError> {
        let index = self.index.locked();
        keys.into_iter()
            .map(|(gateway, alert_id)| index.size(&clip_name(gateway, alert_id)))
            .collect()
    }

    fn stored_clip(&self, r: Row) -> StoredClip {
        StoredClip {
            path: self.stored_path(&r.name),
            gateway: r.gateway,
            alert_id: r.alert_id,
            size: r.size,
            sha256: r.sha256,
            stored_at_unix_ms: r.stored_at_unix_ms,
            meta_json: r.meta,
        }
    }

    /// The store's figures: stored clips and bytes, evictions since it opened, and
    /// the partial files (read from the folder; a failure to read it is logged and
    /// shows as none).
    pub fn stats(&self) -> ClipStats {
        let (partials, partial_bytes) = match self.partials() {
            Ok(list) => (list.len() as u64, list.iter().map(|(_, len, _)| len).sum()),
            Err(e) => {
                tracing::warn!("clip stats: {e}");
                (0, 0)
            }
        };
        ClipStats {
            clips: self.metrics.stored.get().unsigned_abs(),
            bytes: self.metrics.bytes.get().unsigned_abs(),
            evicted: self.metrics.evicted.get(),
            partials,
            partial_bytes,
        }
    }

    /// Whether `offer`'s clip is stored: same SHA-256 and size, file present at that
    /// size. A row whose file is gone or cut short (removed by hand) is forgotten.
    fn stored_matches(&self, name: &str, offer: &ClipOffer) -> Result<bool, ClipStoreError> {
        let index = self.index.locked();
        let Some(row) = index.get(name)? else {
            return Ok(false);
        };
        let path = self.stored_path(name);
        let on_disk = match fs::metadata(&path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error("reading", &path)(e)),
        };
        if on_disk != Some(row.size) {
            tracing::warn!(
                gateway = %untrusted(&row.gateway),
                alert = %untrusted(&row.alert_id),
                file = %path.display(),
                "the clip index names a file that is gone or cut short; forgetting it"
            );
            index.delete(name)?;
            remove(&path)?;
            self.refresh_gauges(&index);
            return Ok(false);
        }
        Ok(row.size == offer.size && row.sha256 == hex(&offer.sha256))
    }

    /// Removes the partials of the key's other offers (the gateway re-recorded the
    /// clip: those bytes will never be asked for again).
    fn discard_other_partials(&self, name: &str, offer: &ClipOffer) -> Result<(), ClipStoreError> {
        let path = self.partial_path(name, offer);
        let prefix = format!("{name}.");
        for (other, _, _) in self.partials()? {
            let of_key = other
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix));
            if of_key && other != path {
                remove(&other)?;
                tracing::info!(
                    gateway = %untrusted(&offer.gateway),
                    alert = %untrusted(&offer.alert_id),
                    file = %other.display(),
                    "partial clip of an earlier offer discarded: the gateway offers another"
                );
            }
        }
        Ok(())
    }

    /// The length of `offer`'s partial (0 when there is none), after discarding the
    /// partials of other offers of the same key and a partial longer than its offer.
    fn partial_len(&self, name: &str, offer: &ClipOffer) -> Result<u64, ClipStoreError> {
        self.discard_other_partials(name, offer)?;
        let path = self.partial_path(name, offer);
        match fs::metadata(&path) {
            Ok(m) if m.len() > offer.size => {
                tracing::warn!(file = %path.display(), "partial clip longer than its offer; discarded");
                remove(&path)?;
                Ok(0)
            }
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error("reading", &path)(e)),
        }
    }
}

/// The SHA-256 of what `file` holds from its start.
fn sha256_of(file: &mut File) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}
