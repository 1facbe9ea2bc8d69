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
