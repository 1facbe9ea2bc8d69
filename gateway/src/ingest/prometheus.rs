//! Camera health as Prometheus series, labelled by camera: the same figures
//! `GET /api/cameras` shows, read from the live table at scrape time (so a
//! camera removed by a reload disappears from `/metrics` with it). Registered
//! in the gateway's registry (`metrics.rs`) by the daemon.

use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Ingest;
use super::health::{CameraState, CameraStatus};

/// Reads the registry on every scrape. Holds it weakly so metrics never keep
/// a stopped ingest alive.
pub struct IngestCollector {
    ingest: Weak<Ingest>,
}

impl IngestCollector {
    pub fn new(ingest: Weak<Ingest>) -> IngestCollector {
        IngestCollector { ingest }
    }
}

impl std::fmt::Debug for IngestCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngestCollector")
    }
}

type Gauge = fn(&CameraStatus) -> f64;
type Counter = fn(&CameraStatus) -> u64;

const GAUGES: [(&str, &str, Gauge); 6] = [
    ("camera_fps", "Measured frames per second", |s| s.fps),
    ("camera_bitrate_kbps", "Measured bitrate in kbit/s", |s| {
        s.bitrate_kbps
    }),
    (
        "camera_stuck_teardowns",
        "Pipelines of the camera still stopping after the teardown limit",
        |s| s.stuck_teardowns as f64,
    ),
    ("camera_width", "Picture width from the SPS", |s| {
        f64::from(s.width)
    }),
    ("camera_height", "Picture height from the SPS", |s| {
        f64::from(s.height)
    }),
    (
        "camera_last_frame_age_seconds",
        "Seconds since the camera's last access unit (NaN before the first)",
        |s| {
            s.last_frame_age_ms
                .map_or(f64::NAN, |ms| ms as f64 / 1000.0)
        },
    ),
];

const COUNTERS: [(&str, &str, Counter); 9] = [
    ("camera_units", "Access units received", |s| s.units),
    ("camera_bytes", "Compressed bytes received", |s| s.bytes),
    ("camera_reconnects", "Reconnect attempts", |s| s.reconnects),
    (
        "camera_stalls",
        "Times the camera went silent while connected",
        |s| s.stalls,
    ),
    (
        "camera_dropped_units",
        "Units slow subscribers lost (drop-oldest)",
        |s| s.dropped_units,
    ),
    (
        "camera_malformed_nals",
        "Damaged NAL units skipped, and NAL or access units cut short",
        |s| s.malformed_nals,
    ),
    ("camera_keyframes", "Keyframes received", |s| s.keyframes),
    (
        "camera_rtsp_refusals",
        "Connections closed because the camera broke an RTSP limit",
        |s| s.rtsp_refusals,
    ),
    (
        "camera_abandoned_teardowns",
        "Pipelines that did not stop in time and were left to finish",
        |s| s.abandoned_teardowns,
    ),
];

impl Collector for IngestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(ingest) = self.ingest.upgrade() else {
            return Ok(());
        };
        let cameras = ingest.status();

        {
            let mut m = encoder.encode_descriptor(
                "camera_state",
                "1 for the camera's current state (connecting, live, stalled, backoff, failed)",
                None,
                MetricType::Gauge,
            )?;
            for c in &cameras {
                for state in CameraState::ALL {
                    let labels = [("camera", c.id.as_str()), ("state", state.as_str())];
                    let v = i64::from(c.state == state);
                    ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "camera_info",
                "Camera attributes as labels (value always 1)",
                None,
                MetricType::Gauge,
            )?;
            for c in &cameras {
                let labels = [
                    ("camera", c.id.as_str()),
                    ("kind", c.kind.as_str()),
                    ("codec", c.codec.map_or("", lookout_core::unit::codec_label)),
                    (
                        "timestamp_source",
                        c.timestamp_source.map_or("", |t| t.as_str()),
                    ),
                    ("transport", c.transport.map_or("", |t| t.as_str())),
                ];
                ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, get) in GAUGES {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for c in &cameras {
                let labels = [("camera", c.id.as_str())];
                ConstGauge::new(get(c)).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            // Only cameras that number their frames can be counted; the
            // others have no series rather than a 0 that would claim it.
            let mut m = encoder.encode_descriptor(
                "ingest_lost_frames",
                "Frames the camera numbered (capture stamp) that never reached the gateway",
                None,
                MetricType::Counter,
            )?;
            for c in &cameras {
                if let Some(lost) = c.lost_frames {
                    let labels = [("camera", c.id.as_str())];
                    ConstCounter::new(lost).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, get) in COUNTERS {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for c in &cameras {
                let labels = [("camera", c.id.as_str())];
                ConstCounter::new(get(c)).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
