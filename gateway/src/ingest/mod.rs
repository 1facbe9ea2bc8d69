//! Camera ingest: holds every configured camera's RTSP feed and hands its
//! compressed access units on, without copying them, to whoever subscribes
//! (the QUIC relay, the detector's sampler, `lookout probe`).
//!
//! - `unit.rs`: [`AccessUnit`], [`CodecParams`], [`TimestampSource`].
//! - `pipeline.rs`: one GStreamer connection (rtspsrc → depay → parse →
//!   appsink), run on GStreamer's threads.
//! - `camera.rs`: one task per camera, the state machine and reconnects.
//! - `guard.rs`: the RTSP guard between rtspsrc and the camera: bounded
//!   reading of what the camera sends, and a socket lookout can close.
//! - `backoff.rs`: capped exponential backoff with jitter.
//! - `units.rs`: an access unit's bytes to the camera's [`AccessUnit`] (parameters,
//!   capture time, numbering, health), whatever carried it.
//! - `truncation.rs`: NAL units and access units cut short, seen on RTP.
//! - `fanout.rs`: per-camera bounded fan-out, [`Subscription`], [`Filter`].
//! - `health.rs`: [`CameraHealth`], [`CameraStatus`] for the API.
//! - `prometheus.rs`: the same as Prometheus series.
//! - `rtmp.rs`: the RTMP listener pushed cameras dial (`[gateway.rtmp]`);
//!   `push.rs`: a pushed camera's task, which only watches (`waiting` / `live`).
//! - `probe.rs`: `lookout probe URL`.
//!
//! [`Ingest`] is the registry: a `DashMap` of live cameras, a `watch` of the
//! configured camera set, and [`Ingest::apply`] for reloads, which touches
//! only the cameras whose configuration changed.

mod backoff;
mod camera;
mod fanout;
mod guard;
mod health;
mod pipeline;
pub mod probe;
mod prometheus;
mod push;
pub mod rtmp;
mod truncation;
mod units;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use backoff::BackoffPolicy;
pub use camera::Camera;
pub use fanout::{FANOUT_CAPACITY, Filter, Subscription, TryRecv};
pub use health::{ActiveTransport, CameraHealth, CameraState, CameraStatus};
pub use lookout_core::unit::{AccessUnit, Codec, CodecParams, TimestampSource, codec_label};
pub use prometheus::IngestCollector;
pub(crate) use units::UnitBuilder;

use crate::config::{CameraConfig, GatewaySection};

/// Timing every camera task reads at the start of each attempt; a reload
/// that changes them applies to the next attempt, without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    /// No unit for this long (also while connecting) means stalled.
    pub stall_timeout: Duration,
    /// Reconnect delays after a failed attempt, from
    /// `reconnect_initial_ms` and `reconnect_max_ms`.
    pub backoff: BackoffPolicy,
}

impl IngestSettings {
    pub fn from_config(g: &GatewaySection) -> IngestSettings {
        IngestSettings {
            stall_timeout: Duration::from_millis(g.stall_timeout_ms),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(g.reconnect_initial_ms),
                max: Duration::from_millis(g.reconnect_max_ms),
            },
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            stall_timeout: Duration::from_secs(5),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(250),
                max: Duration::from_secs(4),
            },
        }
    }
}

/// The configured cameras, in configuration order; a new value is published
/// on every reload that changes anything.
pub type CameraSet = Arc<[Arc<CameraConfig>]>;

/// Why ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// `gstreamer::init` failed; its message.
    #[error("ingest: cannot initialise GStreamer: {0}")]
    GStreamer(String),
    /// A required GStreamer element (a plugin not installed), by name.
    #[error("ingest: GStreamer element `{0}` is missing (install gstreamer1.0-plugins-good/-bad)")]
    MissingElement(&'static str),
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Ids of cameras new in the configuration: started.
    pub added: Vec<String>,
    /// Ids of cameras no longer configured: stopped and dropped (their
    /// counters with them).
    pub removed: Vec<String>,
    /// Connection settings changed: the camera was reconnected.
    pub restarted: Vec<String>,
    /// Only fields outside ingest changed (name, sampling, …): no reconnect.
    pub updated: Vec<String>,
    /// How many cameras' configurations were identical: left alone.
    pub unchanged: usize,
}

/// A running camera: the shared state plus its task.
struct Slot {
    camera: Arc<Camera>,
    /// Sending `true` (or dropping it) stops the task.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The camera registry. Create one per process with [`Ingest::new`].
pub struct Ingest {
    cameras: DashMap<Arc<str>, Slot>,
    settings: watch::Sender<IngestSettings>,
    set: watch::Sender<CameraSet>,
    /// Reloads run one at a time (a SIGHUP arriving mid-reload waits).
    reload: Mutex<()>,
    /// Fan-out ring size per camera.
    capacity: usize,
}

/// Elements every camera needs; checked once at start so a missing plugin
/// is one clear error instead of every camera failing.
const REQUIRED_ELEMENTS: [&str; 6] = [
    "rtspsrc",
    "rtph264depay",
    "rtph265depay",
    "h264parse",
    "h265parse",
    "appsink",
];

impl Ingest {
    pub fn new(settings: IngestSettings) -> Result<Arc<Ingest>, IngestError> {
        Ingest::with_capacity(settings, FANOUT_CAPACITY)
    }

    /// [`Ingest::new`] with a given per-camera fan-out ring size.
    pub fn with_capacity(
        settings: IngestSettings,
        capacity: usize,
    ) -> Result<Arc<Ingest>, IngestError> {
        gstreamer::init().map_err(|e| IngestError::GStreamer(e.to_string()))?;
        for name in REQUIRED_ELEMENTS {
            if gstreamer::ElementFactory::find(name).is_none() {
                return Err(IngestError::MissingElement(name));
            }
        }
        let empty: CameraSet = Arc::from(Vec::new());
        Ok(Arc::new(Ingest {
            cameras: DashMap::new(),
            settings: watch::Sender::new(settings),
            set: watch::Sender::new(empty),
            reload: Mutex::new(()),
            capacity,
        }))
    }

    /// Makes the running cameras match `cameras`: starts new ones, stops
    /// removed ones, reconnects those whose connection settings changed, and
    /// leaves the rest alone. The caller validated the configuration.
    pub async fn apply(&self, settings: IngestSettings, cameras: &[CameraConfig]) -> ReloadSummary {
        let _serial = self.reload.lock().await;
        self.settings.send_if_modified(|s| {
            let changed = *s != settings;
            *s = settings;
            changed
        });
        let mut summary = ReloadSummary::default();
        let wanted: HashSet<&str> = cameras.iter().map(|c| c.id.as_str()).collect();

        // Removed cameras: take them out of the map first, then stop them
        // (no map reference is held across the await).
        let gone: Vec<Arc<str>> = self
            .cameras
            .iter()
            .filter(|e| !wanted.contains(e.key().as_ref()))
            .map(|e| e.key().clone())
            .collect();
        for id in gone {
            if let Some((_, slot)) = self.cameras.remove(&id) {
                summary.removed.push(id.to_string());
                stop_slot(slot).await;
            }
        }

        let mut set = Vec::with_capacity(cameras.len());
        for config in cameras {
            let config = Arc::new(config.clone());
            set.push(config.clone());
            let existing = self
                .cameras
                .get(config.id.as_str())
                .map(|s| s.camera.clone());
            match existing {
                None => {
                    let camera = Arc::new(Camera::new(config.clone(), self.capacity));
                    self.start(camera);
                    summary.added.push(config.id.clone());
                }
                Some(camera) => {
                    let old = camera.config();
                    if *old == *config {
                        summary.unchanged += 1;
                    } else if same_connection(&old, &config) {
                        camera.set_config(config.clone());
                        summary.updated.push(config.id.clone());
                    } else {
                        if let Some((_, slot)) = self.cameras.remove(config.id.as_str()) {
                            stop_slot(slot).await;
                        }
                        camera.set_config(config.clone());
                        self.start(camera);
                        summary.restarted.push(config.id.clone());
                    }
                }
            }
        }
        self.set.send_replace(Arc::from(set));
        summary
    }

    fn start(&self, camera: Arc<Camera>) {
        let (stop, stop_rx) = watch::channel(false);
        let dials_in = {
            let c = camera.config();
            c.push.is_some() || c.gb28181.is_some()
        };
        let task = if dials_in {
            tokio::spawn(push::run(
                camera.clone(),
                self.settings.subscribe(),
                stop_rx,
            ))
        } else {
            tokio::spawn(camera::run(
                camera.clone(),
                self.settings.subscribe(),
                stop_rx,
            ))
        };
        self.cameras
            .insert(camera.id.clone(), Slot { camera, stop, task });
    }

    /// Every unit of a camera from now on that passes `filter`; `None` for
    /// an unknown camera id.
    pub fn subscribe(&self, camera_id: &str, filter: Filter) -> Option<Subscription> {
        let slot = self.cameras.get(camera_id)?;
        let c = &slot.camera;
        Some(c.fanout.subscribe(c.id.clone(), c.health.clone(), filter))
    }

    /// Every unit of a camera, starting with the GOP in progress from its
    /// keyframe (so the first unit decodes); `None` for an unknown camera.
    pub fn subscribe_from_keyframe(&self, camera_id: &str) -> Option<Subscription> {
        let slot = self.cameras.get(camera_id)?;
        let c = &slot.camera;
        Some(
            c.fanout
                .subscribe_from_keyframe(c.id.clone(), c.health.clone()),
        )
    }

    /// The configured camera set; `changed()` fires on every reload that
    /// adds, removes or changes a camera.
    pub fn cameras(&self) -> watch::Receiver<CameraSet> {
        self.set.subscribe()
    }

    /// The camera whose `push.key` is `key`, if one is configured.
    pub fn pushed_camera(&self, key: &str) -> Option<Arc<Camera>> {
        self.cameras.iter().find_map(|slot| {
            let c = &slot.camera;
            c.config()
                .push
                .as_ref()
                .is_some_and(|p| !key.is_empty() && p.key == key)
                .then(|| c.clone())
        })
    }

    /// Every camera that is a GB/T 28181 channel (`gb28181 = { … }`).
    pub fn gb28181_cameras(&self) -> Vec<Arc<Camera>> {
        self.cameras
            .iter()
            .filter(|slot| slot.camera.config().gb28181.is_some())
            .map(|slot| slot.camera.clone())
            .collect()
    }

    pub fn camera(&self, camera_id: &str) -> Option<Arc<Camera>> {
        self.cameras.get(camera_id).map(|s| s.camera.clone())
    }

    /// Every camera's status, in configuration order.
    pub fn status(&self) -> Vec<CameraStatus> {
        let set = self.set.borrow().clone();
        set.iter()
            .filter_map(|config| {
                let camera = self.camera(&config.id)?;
                Some(camera.health.status(&camera.config()))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.cameras.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cameras.is_empty()
    }

    /// Stops every camera and waits for their pipelines to close.
    pub async fn stop(&self) {
        let _serial = self.reload.lock().await;
        let ids: Vec<Arc<str>> = self.cameras.iter().map(|e| e.key().clone()).collect();
        let mut slots = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((_, slot)) = self.cameras.remove(&id) {
                signal_stop(&slot);
                slots.push(slot);
            }
        }
        for slot in slots {
            if let Err(e) = slot.task.await {
                tracing::error!(camera = %slot.camera.id, "camera task ended abnormally: {e}");
            }
        }
        self.set.send_replace(Arc::from(Vec::new()));
    }
}

/// Tells a camera's task to stop. `send` fails only when the task has
/// dropped its receiver, i.e. it has returned already: nothing to stop.
fn signal_stop(slot: &Slot) {
    if slot.stop.send(true).is_err() {
        tracing::debug!(camera = %slot.camera.id, "camera task had already ended");
    }
}

async fn stop_slot(slot: Slot) {
    signal_stop(&slot);
    if let Err(e) = slot.task.await {
        tracing::error!(camera = %slot.camera.id, "camera task ended abnormally: {e}");
    }
}

/// Whether two configurations of one camera connect the same way.
fn same_connection(a: &CameraConfig, b: &CameraConfig) -> bool {
    a.url == b.url
        && a.push == b.push
        && a.gb28181 == b.gb28181
        && a.username == b.username
        && a.password == b.password
        && a.transport == b.transport
        && a.codec == b.codec
}
