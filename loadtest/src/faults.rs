//! What `lookout-loadtest relay` measures around faults:
//!
//! - [`SensorFeed`]: alerts from a simulated river gauge, posted through the
//!   gateway's `POST /api/alerts` at a steady rate for the whole run, so the
//!   alert path is exercised (and its delivery timed) during every fault,
//!   independently of video detection. Each id is confirmed by the gateway
//!   (`201` = on disk) and must be in the center's ledger exactly once.
//! - [`FaultWatch`]: for each fault window (a link partition, a center
//!   outage), the gateway's memory before and during it, and how long after
//!   it ends every camera is live again at the center (its newest frame
//!   fresh and less than [`LIVE_MS`] behind capture).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

/// A camera counts as live again when its newest frame at the center is at
/// most this old and was captured at most this long before it arrived.
pub const LIVE_MS: f64 = 1000.0;

/// The label of the simulated sensor's alerts (never a detector's class,
/// so they don't count as detections).
pub const SENSOR_LABEL: &str = "river-gauge";

/// One alert posted by the feed.
#[derive(Debug, Clone)]
pub struct Posted {
    /// The alert's id, `gauge-N` (N counts from 0); the same on every retry.
    pub id: String,
    /// The gateway answered 201/200: it is on disk there.
    pub confirmed: bool,
}

/// The sensor alert feed, running on its own thread.
pub struct SensorFeed {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Posted>>,
}

impl SensorFeed {
    /// Posts `rate` alerts per second to `gateway_http`, cycling through
    /// `cameras`, until stopped or `limit` has passed. A request that fails
    /// is sent again with the same id (up to 5 times), as a real client
    /// does.
    pub fn start(
        gateway_http: &str,
        cameras: Vec<String>,
        rate: f64,
        limit: Duration,
    ) -> SensorFeed {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://{gateway_http}/api/alerts");
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut posted = Vec::new();
            if cameras.is_empty() || rate.is_nan() || rate <= 0.0 {
                return posted;
            }
            let period = Duration::from_secs_f64(1.0 / rate.min(1000.0));
            let start = Instant::now();
            let mut n = 0usize;
            while !flag.load(Ordering::Relaxed) && start.elapsed() < limit {
                let id = format!("gauge-{n}");
                let body = json!({
                    "id": id,
                    "camera": cameras[n % cameras.len()],
                    "label": SENSOR_LABEL,
                    "source": "loadtest-gauge",
                    "severity": "high",
                    "note": "water level over the warning mark",
                })
                .to_string();
                let confirmed = (0..5).any(|attempt| {
                    if attempt > 0 {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    ureq::post(&url)
                        .header("Content-Type", "application/json")
                        .send(body.as_str())
                        .is_ok()
                });
                posted.push(Posted { id, confirmed });
                n += 1;
                let next = start + period * n as u32;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            posted
        });
        SensorFeed { stop, handle }
    }

    pub fn stop(self) -> Vec<Posted> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// A window in which the link or the center is down.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What fails: `partition` (the link emulator drops everything) or `center-outage`.
    pub kind: &'static str,
    /// When the window begins, since the fleet started.
    pub start: Duration,
    /// When it ends (the link or the center is back), since the fleet started.
    pub end: Duration,
}

#[derive(Debug, Default, Clone)]
struct Watched {
    rss_before_mib: Option<f64>,
    /// `None` when no sample fell inside the window (a center outage is
    /// waited out without sampling).
    rss_peak_during_mib: Option<f64>,
    /// Seconds after the end at which each camera was live again.
    recovered: BTreeMap<String, f64>,
    cameras: Vec<String>,
    ended: bool,
}

/// Follows every fault window through the run (call [`FaultWatch::observe`]
/// a few times a second).
pub struct FaultWatch {
    faults: Vec<(Fault, Watched)>,
}

impl FaultWatch {
    pub fn new(faults: Vec<Fault>) -> FaultWatch {
        FaultWatch {
            faults: faults
                .into_iter()
                .map(|f| (f, Watched::default()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// `t`: time since the run started; `cameras`: the center's
    /// `/api/cameras` answer; `gateway_rss_mib`: the gateway's RSS now.
    pub fn observe(&mut self, t: Duration, cameras: &Value, gateway_rss_mib: f64) {
        let live: BTreeMap<String, bool> = cameras["cameras"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| {
                        let id = c["id"].as_str()?.to_string();
                        let age = c["last_frame_age_ms"].as_f64().unwrap_or(f64::MAX);
                        let delay = c["capture_delay_ms"].as_f64().unwrap_or(f64::MAX);
                        Some((id, age <= LIVE_MS && delay <= LIVE_MS))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (f, w) in &mut self.faults {
            if t < f.start {
                w.rss_before_mib = Some(gateway_rss_mib);
                w.cameras = live.keys().cloned().collect();
            } else if t < f.end {
                w.rss_peak_during_mib = Some(
                    w.rss_peak_during_mib
                        .map_or(gateway_rss_mib, |p| p.max(gateway_rss_mib)),
                );
            } else {
                w.ended = true;
                let after = (t - f.end).as_secs_f64();
                for (id, is_live) in &live {
                    if *is_live && !w.recovered.contains_key(id) {
                        w.recovered.insert(id.clone(), after);
                    }
                }
            }
        }
    }

    /// One entry per fault: memory before/during, per-camera recovery, the
    /// slowest camera, and cameras never live again.
    pub fn report(&self) -> Vec<FaultReport> {
        self.faults
            .iter()
            .map(|(f, w)| {
                let not_recovered: Vec<String> = w
                    .cameras
                    .iter()
                    .filter(|c| !w.recovered.contains_key(*c))
                    .cloned()
                    .collect();
                let slowest = w
                    .cameras
                    .iter()
                    .filter_map(|c| w.recovered.get(c))
                    .fold(0.0f64, |a, b| a.max(*b));
                FaultReport {
                    ended_during_run: w.ended,
                    gateway_rss_before_mib: w.rss_before_mib,
                    gateway_rss_peak_during_mib: w.rss_peak_during_mib,
                    kind: f.kind,
                    length_s: (f.end - f.start).as_secs_f64(),
                    start_s: f.start.as_secs_f64(),
                    video_recovery_s: VideoRecovery {
                        cameras: w.cameras.len(),
                        not_recovered,
                        per_camera: w.recovered.clone(),
                        slowest,
                    },
                }
            })
            .collect()
    }
}

/// One fault window in the run's report (`faults[]`). Fields in alphabetical
/// order, the order the report has always had.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// Whether a sample fell after the window's end (else the run stopped
    /// during the fault and `video_recovery_s` says nothing).
    pub ended_during_run: bool,
    /// The gateway's resident memory at the last sample before the window,
    /// MiB; `null` when no sample fell before it.
    pub gateway_rss_before_mib: Option<f64>,
    /// The gateway's highest resident memory sampled inside the window, MiB;
    /// `null` when no sample fell inside (a center outage is waited out
    /// without sampling).
    pub gateway_rss_peak_during_mib: Option<f64>,
    /// What failed: `partition` (the link) or `center-outage`.
    pub kind: &'static str,
    /// The window's length, s.
    pub length_s: f64,
    /// When the window began, s after the fleet started.
    pub start_s: f64,
    /// How long after the window's end the cameras were live again at the center.
    pub video_recovery_s: VideoRecovery,
}

/// The cameras' video after a fault window ([`FaultReport::video_recovery_s`]).
#[derive(Debug, Clone, Serialize)]
pub struct VideoRecovery {
    /// Cameras the center listed at the last sample before the window.
    pub cameras: usize,
    /// Of those, the ids never live again before the run ended.
    pub not_recovered: Vec<String>,
    /// Seconds after the window's end at which each camera was first live
    /// again (by camera id; a camera seen only after the fault is included).
    pub per_camera: BTreeMap<String, f64>,
    /// The slowest recovery among `cameras`, s; 0 when none recovered.
    pub slowest: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cams(list: &[(&str, f64, f64)]) -> Value {
        json!({ "cameras": list.iter().map(|(id, age, delay)| json!({
            "id": id, "last_frame_age_ms": age, "capture_delay_ms": delay,
        })).collect::<Vec<_>>() })
    }

    #[test]
    fn recovery_is_counted_from_the_end_of_the_fault() {
        let mut w = FaultWatch::new(vec![Fault {
            kind: "partition",
            start: Duration::from_secs(10),
            end: Duration::from_secs(20),
        }]);
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        w.observe(s(9), &cams(&[("a", 10.0, 5.0), ("b", 10.0, 5.0)]), 100.0);
        w.observe(
            s(15),
            &cams(&[("a", 5000.0, 5.0), ("b", 5000.0, 5.0)]),
            130.0,
        );
        // Stale frames arriving after the fault are not "live".
        w.observe(
            s(20) + ms(250),
            &cams(&[("a", 10.0, 4000.0), ("b", 6000.0, 5.0)]),
            120.0,
        );
        w.observe(
            s(20) + ms(500),
            &cams(&[("a", 10.0, 20.0), ("b", 6000.0, 5.0)]),
            120.0,
        );
        w.observe(s(21), &cams(&[("a", 10.0, 20.0), ("b", 30.0, 8.0)]), 120.0);
        let r = serde_json::to_value(w.report()).expect("serializes");
        let f = &r[0];
        assert_eq!(f["gateway_rss_before_mib"], 100.0);
        assert_eq!(f["gateway_rss_peak_during_mib"], 130.0);
        assert_eq!(f["video_recovery_s"]["per_camera"]["a"], 0.5);
        assert_eq!(f["video_recovery_s"]["slowest"], 1.0);
        assert_eq!(f["video_recovery_s"]["not_recovered"], json!([]));
    }

    #[test]
    fn a_camera_never_live_again_is_named() {
        let mut w = FaultWatch::new(vec![Fault {
            kind: "center-outage",
            start: Duration::from_secs(1),
            end: Duration::from_secs(2),
        }]);
        w.observe(Duration::ZERO, &cams(&[("a", 10.0, 5.0)]), 1.0);
        w.observe(Duration::from_secs(3), &cams(&[("a", 9000.0, 5.0)]), 1.0);
        assert_eq!(
            serde_json::to_value(w.report()).expect("serializes")[0]["video_recovery_s"]["not_recovered"],
            json!(["a"])
        );
    }

    /// The typed entry writes what the JSON map it replaced wrote.
    #[test]
    fn an_entry_writes_the_same_json_as_before() {
        let mut w = FaultWatch::new(vec![Fault {
            kind: "partition",
            start: Duration::from_secs(1),
            end: Duration::from_secs(2),
        }]);
        w.observe(
            Duration::ZERO,
            &cams(&[("a", 10.0, 5.0), ("b", 10.0, 5.0)]),
            50.0,
        );
        w.observe(
            Duration::from_secs(3),
            &cams(&[("a", 10.0, 5.0), ("b", 9000.0, 5.0)]),
            60.0,
        );
        assert_eq!(
            serde_json::to_string(&w.report()[0]).expect("serializes"),
            json!({
                "kind": "partition",
                "start_s": 1.0,
                "length_s": 1.0,
                "ended_during_run": true,
                "gateway_rss_before_mib": 50.0,
                "gateway_rss_peak_during_mib": null,
                "video_recovery_s": {
                    "cameras": 2,
                    "slowest": 1.0,
                    "per_camera": {"a": 1.0},
                    "not_recovered": ["b"],
                },
            })
            .to_string()
        );
    }
}
