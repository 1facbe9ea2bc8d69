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
        Ok(())
    }
}

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
