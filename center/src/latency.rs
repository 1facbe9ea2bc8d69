//! A frame's delay at the center, measured once and recorded into the two views that
//! read it:
//!
//! - per camera, Prometheus histograms `lookout_center_frame_delay_seconds` with
//!   `from="capture"` (camera clock → here) and `from="gateway"` (the gateway's receipt
//!   → here: the relay's part): cumulative and bucketed, for dashboards and alerts on
//!   the center's health;
//! - for the whole center, HDR histograms (1 µs … 1 h, 3 significant digits) behind
//!   `/api/latency`: exact percentiles, reset between the phases of a benchmark (the
//!   load test reads them), including the camera → gateway hop of the same frames, the
//!   baseline the relay's share is compared with.
//!
//! [`CameraDelays::record`] is the only place either is written.

use std::sync::Mutex;

use hdrhistogram::Histogram as Hdr;
use lookout_codecs::relay::Frame;
use lookout_core::sync::Locked;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Serialize;

/// Label pairs of a series.
type Labels = Vec<(String, String)>;

/// The buckets of `lookout_center_frame_delay_seconds`: 50 µs … ~3.3 s.
pub(crate) fn delay_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 17))
}

/// A frame's delay at `now` (Unix ns) since its capture and since the gateway received
/// it, in microseconds; zero for a stamp in the future.
pub(crate) fn delays_us(f: &Frame, now: u64) -> (u64, u64) {
    let capture_us = now.saturating_sub(f.capture_unix_ns) / 1000;
    let gateway_us = now.saturating_sub(f.received_unix_ns) / 1000;
    (capture_us, gateway_us)
}

/// HDR percentiles of a delay, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Frames measured.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest delay seen, ms.
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Hdr<u64>) -> Percentiles {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// What `/api/latency` answers: the whole center's delays since start or the last
/// reset.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// Camera clock → arrival at the center.
    pub capture_to_center: Percentiles,
    /// The gateway's receipt → arrival at the center: the relay's part.
    pub gateway_to_center: Percentiles,
    /// Camera clock → the gateway's receipt, for the same frames: the ingest hop (RTSP or RTMP).
    pub camera_to_gateway: Percentiles,
}

/// The whole center's delay histograms (µs).
pub(crate) struct Latency {
    capture: Hdr<u64>,
    gateway: Hdr<u64>,
    camera_to_gateway: Hdr<u64>,
}

impl Latency {
    pub(crate) fn new() -> Latency {
        // 1 µs … 1 h, 3 significant digits; creation cannot fail with these.
        let h = || Hdr::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid");
        Latency {
            capture: h(),
            gateway: h(),
            camera_to_gateway: h(),
        }
    }

    /// The percentiles so far; `reset` starts over after reading them.
    pub(crate) fn report(&mut self, reset: bool) -> LatencyReport {
        let out = LatencyReport {
            capture_to_center: Percentiles::of(&self.capture),
            gateway_to_center: Percentiles::of(&self.gateway),
            camera_to_gateway: Percentiles::of(&self.camera_to_gateway),
        };
        if reset {
            self.capture.reset();
            self.gateway.reset();
            self.camera_to_gateway.reset();
        }
        out
    }

    /// Records one frame; a delay past the histograms' hour counts as an hour
    /// (`saturating_record`), never dropped.
    fn record(&mut self, capture_us: u64, gateway_us: u64) {
        self.capture.saturating_record(capture_us.max(1));
        self.gateway.saturating_record(gateway_us.max(1));
        self.camera_to_gateway
            .saturating_record(capture_us.saturating_sub(gateway_us).max(1));
    }
}

/// One camera's delay series, looked up once per GOP.
pub(crate) struct CameraDelays {
    capture: Histogram,
    gateway: Histogram,
}

impl CameraDelays {
    /// The camera's series in `family` (`labels`: its gateway and camera).
    pub(crate) fn new(
        family: &Family<Labels, Histogram, fn() -> Histogram>,
        labels: &Labels,
    ) -> Self {
        let series = |from: &str| {
            let mut l = labels.clone();
            l.push(("from".to_string(), from.to_string()));
            family.get_or_create(&l).clone()
        };
        CameraDelays {
            capture: series("capture"),
            gateway: series("gateway"),
        }
    }

    /// Records one frame's delays (µs) in the camera's series and the center's.
    pub(crate) fn record(&self, center: &Mutex<Latency>, capture_us: u64, gateway_us: u64) {
        center.locked().record(capture_us, gateway_us);
        self.capture.observe(capture_us as f64 / 1e6);
        self.gateway.observe(gateway_us as f64 / 1e6);
    }
}
