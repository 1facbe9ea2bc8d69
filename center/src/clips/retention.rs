//! The clip store's upkeep: retention (clips past `clip_max_age_days`, then the oldest
//! past `clip_max_bytes`, and partials abandoned for [`PARTIAL_MAX_IDLE`]), run when the
//! store opens, after each stored clip and hourly ([`spawn_sweeper`]); and, when the
//! store opens, bringing the index and the folder back into agreement after a crash.

use lookout_core::sync::Locked;
use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lookout_core::logging::untrusted;

use super::index::Index;
use super::{ClipStore, ClipStoreError, PARTIAL_MAX_IDLE, SWEEP_PERIOD, io_error, remove};

impl ClipStore {
    /// Applies retention now: expired and surplus clips, stale partials.
    pub fn sweep(&self) -> Result<(), ClipStoreError> {
        self.sweep_at(lookout_core::clock::unix_ms(), SystemTime::now())
    }

    pub(super) fn sweep_at(&self, now_unix_ms: u64, now: SystemTime) -> Result<(), ClipStoreError> {
        let kept = {
            let index = self.index.locked();
            let kept = self.retain(&index, now_unix_ms);
            self.refresh_gauges(&index);
            kept
        };
        let swept = self.sweep_partials(now);
        for e in [&kept, &swept].into_iter().filter_map(|r| r.as_ref().err()) {
            self.metrics.fail("retention");
            tracing::error!("clip retention: {e}");
        }
        kept.and(swept)
    }

    /// Deletes the clips past the age limit, then the oldest while over the byte
    /// limit. Each row goes before its file: a failure in between leaves a file no row
    /// names, which the next `open` removes, never a row naming no file.
    pub(super) fn retain(&self, index: &Index, now_unix_ms: u64) -> Result<(), ClipStoreError> {
        let max_age_ms = self.retention.max_age_days.saturating_mul(86_400_000);
        let cutoff = now_unix_ms.saturating_sub(max_age_ms);
        let rows = index.oldest_first()?;
        let mut total: u64 = rows.iter().map(|r| r.size).sum();
        for r in rows {
            let why = if r.stored_at_unix_ms < cutoff {
                "older than clip_max_age_days"
            } else if total > self.retention.max_bytes {
                "over clip_max_bytes"
            } else {
                break;
            };
            index.delete(&r.name)?;
            remove(&self.stored_path(&r.name))?;
            total = total.saturating_sub(r.size);
            self.metrics.evicted.inc();
            tracing::info!(
                gateway = %untrusted(&r.gateway),
                alert = %untrusted(&r.alert_id),
                bytes = r.size,
                stored_at_unix_ms = r.stored_at_unix_ms,
                "clip deleted: {why}"
            );
        }
        Ok(())
    }

    pub(super) fn refresh_gauges(&self, index: &Index) {
        match index.totals() {
            Ok((clips, bytes)) => {
                self.metrics
                    .stored
                    .set(i64::try_from(clips).unwrap_or(i64::MAX));
                self.metrics
                    .bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!("clip gauges not updated: {e}"),
        }
    }

    /// Every partial file: path, length, last modified.
    pub(super) fn partials(&self) -> Result<Vec<(PathBuf, u64, SystemTime)>, ClipStoreError> {
        let dir = &self.partial_dir;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error("listing", dir))? {
            let entry = entry.map_err(io_error("listing", dir))?;
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_file() => out.push((
                    path,
                    m.len(),
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                )),
                Ok(_) => {}
                // Removed since it was listed (completed, discarded).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("reading", &path)(e)),
            }
        }
        Ok(out)
    }

    /// Deletes partials untouched for [`PARTIAL_MAX_IDLE`]. A partial being written
    /// is touched by every append, so only abandoned ones qualify.
    fn sweep_partials(&self, now: SystemTime) -> Result<(), ClipStoreError> {
        for (path, len, modified) in self.partials()? {
            let idle = now.duration_since(modified).unwrap_or(Duration::ZERO);
            if idle > PARTIAL_MAX_IDLE {
                remove(&path)?;
                tracing::info!(
                    file = %path.display(),
                    bytes = len,
                    idle_days = idle.as_secs() / 86_400,
                    "abandoned partial clip deleted"
                );
            }
        }
        Ok(())
    }

    /// Brings the index and the folder into agreement after a crash or a hand's
    /// meddling: rows without their file are forgotten, `.mp4` files without a row
    /// removed.
    pub(super) fn reconcile(&self) -> Result<(), ClipStoreError> {
        let index = self.index.locked();
        let mut named = HashSet::new();
        for row in index.oldest_first()? {
            let path = self.stored_path(&row.name);
            let present = match fs::metadata(&path) {
                Ok(m) => m.len() == row.size,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(io_error("reading", &path)(e)),
            };
            if present {
                named.insert(row.name);
            } else {
                tracing::warn!(
                    gateway = %untrusted(&row.gateway),
                    alert = %untrusted(&row.alert_id),
                    file = %path.display(),
                    "clip missing or cut short; removed from the index"
                );
                index.delete(&row.name)?;
                remove(&path)?;
            }
        }
        let dir = &self.dir;
        for entry in fs::read_dir(dir).map_err(io_error("listing", dir))? {
            let path = entry.map_err(io_error("listing", dir))?.path();
            let orphan = path.extension().is_some_and(|e| e == "mp4")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_none_or(|s| !named.contains(s));
            if orphan {
                tracing::warn!(file = %path.display(), "clip file not in the index removed");
                remove(&path)?;
            }
        }
        self.refresh_gauges(&index);
        Ok(())
    }
}

/// Applies retention every [`SWEEP_PERIOD`] until the runtime stops (age limits need
/// it: without new clips nothing else would delete old ones).
pub fn spawn_sweeper(store: Arc<ClipStore>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate, and `open` has just swept.
        tick.tick().await;
        loop {
            tick.tick().await;
            let store = store.clone();
            // `sweep` logs and counts its own failures.
            if let Err(e) = tokio::task::spawn_blocking(move || store.sweep()).await {
                tracing::error!("clip retention task failed: {e}");
            }
        }
    })
}
