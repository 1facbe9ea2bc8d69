//! The clip store's Prometheus series: clips and bytes stored, evictions, and failures
//! by reason, each reason's series there from the start.

use lookout_core::metrics::Metrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{CLIP_FAILURES, ClipStore};

/// The store's Prometheus series; [`ClipStore::register`] adds them to `/metrics`.
pub(super) struct ClipMetrics {
    /// Clips stored now (set from the index after every change).
    pub stored: Gauge,
    /// Their bytes together.
    pub bytes: Gauge,
    /// Clips deleted by retention.
    pub evicted: Counter,
    /// Failures by `reason` ([`CLIP_FAILURES`]).
    pub failures: Family<Vec<(String, String)>, Counter>,
}

impl ClipMetrics {
    pub(super) fn new() -> ClipMetrics {
        let failures: Family<Vec<(String, String)>, Counter> = Family::default();
        for reason in CLIP_FAILURES {
            failures
                .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                .inc_by(0);
        }
        ClipMetrics {
            stored: Gauge::default(),
            bytes: Gauge::default(),
            evicted: Counter::default(),
            failures,
        }
    }

    pub(super) fn fail(&self, reason: &str) {
        self.failures
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

impl ClipStore {
    /// Adds the store's series to `/metrics`: `lookout_center_clips_stored`,
    /// `lookout_center_clip_bytes`, `lookout_center_clips_evicted_total`,
    /// `lookout_center_clip_failures_total{reason}`.
    pub fn register(&self, m: &Metrics) {
        m.register(
            "center_clips_stored",
            "Alert evidence clips stored",
            self.metrics.stored.clone(),
        );
        m.register(
            "center_clip_bytes",
            "Bytes of the alert evidence clips stored, all together",
            self.metrics.bytes.clone(),
        );
        m.register(
            "center_clips_evicted",
            "Alert evidence clips deleted by retention (clip_max_age_days, clip_max_bytes)",
            self.metrics.evicted.clone(),
        );
        m.register(
            "center_clip_failures",
            "Clip transfers' failures, by reason: invalid, offset, past_end, incomplete, sha256, already_complete, storage, retention",
            self.metrics.failures.clone(),
        );
    }
}
