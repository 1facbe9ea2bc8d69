//! The Prometheus registry every stage registers its series in, and the
//! gateway-wide series. `GET /metrics` encodes it in the text format.

use crate::sync::Locked;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The registry, behind a mutex only because stages register series while the
/// daemon runs (cameras added by a reload); encoding holds it briefly.
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Metrics {
    pub fn new(version: &str, gstreamer: &str, onnxruntime: &str) -> Self {
        let mut registry = Registry::with_prefix("lookout");
        let info: Family<Vec<(String, String)>, Gauge> = Family::default();
        info.get_or_create(&vec![
            ("version".to_string(), version.to_string()),
            ("gstreamer".to_string(), gstreamer.to_string()),
            ("onnxruntime".to_string(), onnxruntime.to_string()),
        ])
        .set(1);
        registry.register("build_info", "Versions this gateway runs with", info);
        registry.register_collector(Box::new(MemoryCollector));
        Metrics {
            registry: Mutex::new(registry),
        }
    }

    /// Registers a series under the `lookout_` prefix.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let mut r = self.registry.locked();
        r.register(name, help, metric);
    }

    /// Registers a collector read on every scrape (series whose label sets
    /// come and go, like per-camera health).
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        let mut r = self.registry.locked();
        r.register_collector(collector);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        {
            let r = self.registry.locked();
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }
}

/// Where a process's memory goes, read on every scrape: what the allocator
/// has handed out, what it holds free without returning it to the system,
/// and SQLite's share (its page caches for the ledger or the outboxes). A
/// soak tells a leak (heap in use climbing) from a cache filling to its
/// bound or from the allocator keeping freed pages (RSS up, heap in use
/// flat) with these.
#[derive(Debug)]
pub struct MemoryCollector;

impl prometheus_client::collector::Collector for MemoryCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::gauge::ConstGauge;
        let heap = heap();
        for (name, help, value) in [
            (
                "process_heap_in_use_bytes",
                "Bytes the allocator has handed out and not had back (glibc mallinfo2: \
                 uordblks + hblkhd)",
                heap.map(|h| h.0),
            ),
            (
                "process_heap_free_bytes",
                "Bytes the allocator holds free without returning them to the system \
                 (glibc mallinfo2: fordblks)",
                heap.map(|h| h.1),
            ),
            (
                "sqlite_memory_bytes",
                "Bytes SQLite has allocated (page caches, statements), all connections",
                sqlite_memory(),
            ),
        ] {
            let Some(v) = value else { continue };
            let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m)?;
        }
        if heap.is_some() {
            let m = encoder.encode_descriptor(
                "process_heap_trimmed_bytes",
                "Bytes the resident size fell across the periodic heap trims (glibc malloc_trim)",
                None,
                MetricType::Counter,
            )?;
            prometheus_client::metrics::counter::ConstCounter::new(
                TRIMMED.load(std::sync::atomic::Ordering::Relaxed),
            )
            .encode(m)?;
        }
        Ok(())
    }
}

/// Bytes [`trim_heap`] has handed back, for the counter above.
static TRIMMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How often the daemons trim their heaps.
pub const HEAP_TRIM_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// Every `period`, hands the free pages glibc keeps in its arenas back to
/// the system. glibc returns memory only from the top of each arena on its
/// own; a daemon whose many threads (GStreamer's, the detectors', tokio's)
/// free buffers in the middle of theirs would otherwise see its resident
/// size creep up over hours with nothing leaking (the 30-minute soak of
/// 81a1982: the center's heap in use +1.4 MiB, free held +2.3 MiB, RSS
/// +6.2 %). The walk runs on a blocking thread and takes about a
/// millisecond for a heap of a few hundred MiB. Ends with the runtime.
pub fn spawn_heap_trim(period: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = tokio::task::spawn_blocking(trim_heap).await {
                tracing::warn!("heap trim did not run: {e}");
            }
        }
    });
}

/// Trims the heap once; returns by how much the resident size fell across
/// it (0 where the allocator is not glibc's or `/proc` cannot be read; other
/// threads allocating meanwhile can hide some of it). The free pages stay
/// the allocator's (its free-held figure keeps them), but not resident.
pub fn trim_heap() -> u64 {
    let before = resident_bytes();
    trim();
    let back = before
        .zip(resident_bytes())
        .map_or(0, |(b, a)| b.saturating_sub(a));
    TRIMMED.fetch_add(back, std::sync::atomic::Ordering::Relaxed);
    back
}

/// This process's resident size, bytes (`VmRSS` in `/proc/self/status`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes the allocator's own locks; it frees nothing
    // that is in use.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Bytes SQLite has allocated in this process (every connection's page cache
/// and statements).
fn sqlite_memory() -> Option<u64> {
    // SAFETY: sqlite3_memory_used reads a counter; it is thread-safe in the
    // bundled build (SQLITE_THREADSAFE=1).
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).ok()
}

/// `(in use, free held)` bytes of the glibc heap; `None` elsewhere.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap() -> Option<(u64, u64)> {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    Some(((m.uordblks + m.hblkhd) as u64, m.fordblks as u64))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap() -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_trim_hands_freed_pages_in_the_middle_of_the_heap_back() {
        // Many mid-sized blocks (below the mmap threshold, so on the heap);
        // free every other one, and the last one stays: the freed pages sit
        // between blocks in use, where glibc keeps them resident on its own.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 64 * 1024]).collect();
        let mut kept = Vec::new();
        for (i, b) in blocks.into_iter().enumerate() {
            if i % 2 == 1 {
                kept.push(b);
            }
        }
        let before = super::resident_bytes().expect("VmRSS");
        let back = super::trim_heap();
        let after = super::resident_bytes().expect("VmRSS");
        assert!(kept.iter().all(|b| b.len() == 64 * 1024));
        // 2048 freed blocks of 64 KiB: 128 MiB; at least half of it back.
        assert!(
            before.saturating_sub(after) > 64 << 20 && back > 64 << 20,
            "resident {before} -> {after}, counted {back}"
        );
    }
}
