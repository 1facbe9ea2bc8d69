//! Alert evidence clips. Every camera that records clips (one with a
//! detector, or with `clip` set) keeps its last `pre_s` seconds of whole
//! GOPs in a [`ring::Ring`]; when an alert is raised on it, a recording
//! takes the ring from the keyframe at or before `pre_s` ahead of the alert's
//! frame, follows the camera until `post_s` after that frame — pushed on by
//! each update, up to `max_s` in all — and writes it to an MP4 without
//! re-encoding ([`writer`]). The closed file goes into the [`library`],
//! which the uplinks send to the command centers at the lowest priority.
//!
//! A recording ends early, keeping what it has, when the camera is removed
//! or silent for `IDLE`, when its parameter sets change (another
//! resolution: a new file would be needed), or when the gateway stops.

pub mod library;
pub mod ring;
pub mod writer;

use lookout_core::sync::Locked;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{broadcast, watch};

use crate::alert::hub::{Alert, AlertEvent, AlertHub};
use crate::alert::machine::AlertEventKind;
use crate::config::{ClipSettings, ClipsSection};
use crate::ingest::{Filter, Ingest};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use library::{Closed, Library};
use lookout_core::unit::AccessUnit;
use ring::Ring;
use writer::ClipWriter;

/// A camera that sends nothing this long ends the recordings of its alerts
/// (as long as a live camera may stay silent before it is declared stalled).
const IDLE: Duration = Duration::from_secs(5);

type Labels = Vec<(String, String)>;

/// The clips' Prometheus series.
#[derive(Default)]
struct ClipMetrics {
    /// Recordings by outcome: `recorded`, `failed`, `skipped` (no room
    /// under the disk budget, or no video to start with).
    clips: Family<Labels, Counter>,
    /// Clips removed to keep to the disk budget (every upstream had them).
    evicted: Counter,
    /// Bytes of clips on disk.
    disk_bytes: Gauge,
    /// Recordings in progress.
    recording: Gauge,
}

/// The clip recorder and library of one gateway.
pub struct Clips {
    library: Arc<Library>,
    section: ClipsSection,
    /// Each recording camera's ring and settings.
    rings: DashMap<String, (Arc<Ring>, ClipSettings)>,
    /// The end (capture time, Unix ns) of each recording in progress, by
    /// alert id; an update moves it on.
    recordings: Mutex<HashMap<String, watch::Sender<u64>>>,
    metrics: ClipMetrics,
}

impl Clips {
    /// Opens `STORAGE/clips/` and starts a ring per recording camera (and
    /// follows the camera set through reloads) and the recorder, woken by
    /// `hub`'s events; `None` when `[gateway.clips] enabled = false`.
    pub fn start(
        section: &ClipsSection,
        storage: &Path,
        upstreams: Vec<String>,
        ingest: Arc<Ingest>,
        hub: &AlertHub,
        metrics: &Metrics,
        shutdown: Shutdown,
    ) -> anyhow::Result<Option<Arc<Clips>>> {
        if !section.enabled {
            return Ok(None);
        }
        let (library, cut) = Library::open(&storage.join("clips"), section.max_bytes, upstreams)
            .map_err(anyhow::Error::msg)?;
        let clips = Arc::new(Clips {
            library: Arc::new(library),
            section: section.clone(),
            rings: DashMap::new(),
            recordings: Mutex::new(HashMap::new()),
            metrics: ClipMetrics::default(),
        });
        clips.register(metrics);
        if cut > 0 {
            clips.count("failed").inc_by(cut as u64);
        }
        clips.refresh_disk_bytes();
        tokio::spawn(clips.clone().follow_cameras(ingest, shutdown.clone()));
        tokio::spawn(clips.clone().recorder(hub.subscribe(), shutdown));
        Ok(Some(clips))
    }

    /// What the uplinks send.
    pub fn library(&self) -> Arc<Library> {
        self.library.clone()
    }

    fn register(&self, m: &Metrics) {
        for outcome in ["recorded", "failed", "skipped"] {
            self.count(outcome);
        }
        m.register(
            "clips",
            "Alert clip recordings by outcome: recorded, failed, skipped (no room under the disk budget, or no video)",
            self.metrics.clips.clone(),
        );
        m.register(
            "clips_evicted",
            "Clips removed to keep to the disk budget (every upstream had them)",
            self.metrics.evicted.clone(),
        );
        m.register(
            "clip_recordings",
            "Alert clips being recorded now",
            self.metrics.recording.clone(),
        );
        m.register(
            "clip_disk_bytes",
            "Bytes of alert clips on this gateway's disk",
            self.metrics.disk_bytes.clone(),
        );
    }

    fn count(&self, outcome: &str) -> Counter {
        self.metrics
            .clips
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .clone()
    }

    fn refresh_disk_bytes(&self) {
        match self.library.bytes() {
            Ok(n) => {
                self.metrics.disk_bytes.set(n as i64);
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Keeps a ring for every camera that records clips, through reloads.
    async fn follow_cameras(self: Arc<Self>, ingest: Arc<Ingest>, mut shutdown: Shutdown) {
        let mut set = ingest.cameras();
        loop {
            let cameras = set.borrow_and_update().clone();
            let wanted: HashMap<String, ClipSettings> = cameras
                .iter()
                .filter_map(|c| Some((c.id.clone(), c.clip_settings(&self.section)?)))
                .collect();
            self.rings
                .retain(|id, (_, s)| wanted.get(id).is_some_and(|w| w == s));
            for (id, settings) in wanted {
                if self.rings.contains_key(&id) {
                    continue;
                }
                let Some(mut sub) = ingest.subscribe(&id, Filter::All) else {
                    continue;
                };
                let ring = Arc::new(Ring::new(settings.pre_s, settings.ring_max_bytes));
                self.rings.insert(id.clone(), (ring.clone(), settings));
                let me = self.clone();
                tokio::spawn(async move {
                    while let Some(unit) = sub.recv().await {
                        // A ring replaced by a reload stops here.
                        if !me.rings.get(&id).is_some_and(|r| Arc::ptr_eq(&r.0, &ring)) {
                            break;
                        }
                        ring.push(unit);
                    }
                });
            }
            tokio::select! {
                _ = shutdown.signalled() => return,
                changed = set.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Starts a recording for every raised alert and moves the end of a
    /// recording on for every update.
    async fn recorder(
        self: Arc<Self>,
        mut events: broadcast::Receiver<AlertEvent>,
        mut shutdown: Shutdown,
    ) {
        loop {
            let event = tokio::select! {
                _ = shutdown.signalled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(e) => match e.kind {
                    AlertEventKind::Raised => self.start_recording(&e.alert, &shutdown),
                    AlertEventKind::Updated => self.extend(&e.alert),
                    AlertEventKind::Cleared | AlertEventKind::Snapshot => {}
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        events = n,
                        "clip recorder fell behind the alert events; some alerts get no clip"
                    );
                    self.count("skipped").inc_by(n);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn start_recording(self: &Arc<Self>, alert: &Arc<Alert>, shutdown: &Shutdown) {
        let Some(entry) = self.rings.get(&alert.camera.id) else {
            return;
        };
        let (ring, settings) = (entry.0.clone(), entry.1);
        drop(entry);
        match self.library.has_room() {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(alert = %alert.id, camera = %alert.camera.id, "no clip recorded: the clips every upstream still lacks fill the disk budget");
                self.count("skipped").inc();
                return;
            }
            Err(e) => {
                tracing::error!(alert = %alert.id, "no clip recorded: {e}");
                self.count("failed").inc();
                return;
            }
        }
        let trigger = alert.capture_unix_ns;
        let end = trigger + secs(settings.post_s);
        let (end_tx, end_rx) = watch::channel(end);
        {
            let mut recordings = self.recordings.locked();
            if recordings.contains_key(&alert.id) {
                return;
            }
            recordings.insert(alert.id.clone(), end_tx);
        }
        let (backlog, rx) = ring.follow(trigger.saturating_sub(secs(settings.pre_s)));
        let me = self.clone();
        let alert = alert.clone();
        let shutdown = shutdown.clone();
        self.metrics.recording.inc();
        tokio::spawn(async move {
            let result = me
                .record(&alert, settings, backlog, rx, end_rx, shutdown)
                .await;
            me.recordings.locked().remove(&alert.id);
            me.closed(&alert, result).await;
            me.metrics.recording.dec();
        });
    }

    fn extend(&self, alert: &Alert) {
        let Some(settings) = self.rings.get(&alert.camera.id).map(|r| r.1) else {
            return;
        };
        let recordings = self.recordings.locked();
        if let Some(end) = recordings.get(&alert.id) {
            let at = alert.updated_unix_ns.unwrap_or(alert.capture_unix_ns);
            end.send_if_modified(|e| {
                let later = at + secs(settings.post_s);
                (later > *e).then(|| *e = later).is_some()
            });
        }
    }

    /// Writes one clip; `None` when there was no video to write.
    async fn record(
        &self,
        alert: &Alert,
        settings: ClipSettings,
        backlog: Vec<AccessUnit>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<AccessUnit>,
        end: watch::Receiver<u64>,
        mut shutdown: Shutdown,
    ) -> Result<Option<Closed>, String> {
        let path = self.library.part_path(&alert.id);
        let mut clip: Option<(ClipWriter, Arc<lookout_core::unit::CodecParams>, u64)> = None;
        let mut backlog = backlog.into_iter();
        loop {
            let unit = match backlog.next() {
                Some(u) => u,
                None => tokio::select! {
                    u = rx.recv() => match u {
                        Some(u) => u,
                        None => break,
                    },
                    _ = tokio::time::sleep(IDLE) => break,
                    _ = shutdown.signalled() => break,
                },
            };
            let (writer, params, start) = match &mut clip {
                Some(c) => c,
                None if !unit.keyframe => continue,
                None => {
                    let w = ClipWriter::create(&path, unit.params.codec)?;
                    clip.insert((w, unit.params.clone(), unit.capture_unix_ns))
                }
            };
            if !Arc::ptr_eq(params, &unit.params) && **params != *unit.params {
                tracing::info!(alert = %alert.id, camera = %alert.camera.id, "the camera's parameter sets changed; clip ends here");
                break;
            }
            writer.push(&unit)?;
            let stop = (*end.borrow()).min(*start + secs(settings.max_s));
            if unit.capture_unix_ns >= stop {
                break;
            }
        }
        let Some((writer, _, _)) = clip else {
            return Ok(None);
        };
        let codec = writer.codec();
        let written = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|e| e.to_string())??;
        Ok(Some(Closed {
            alert_id: alert.id.clone(),
            camera_id: alert.camera.id.clone(),
            codec,
            first_capture_unix_ns: written.first_capture_unix_ns,
            last_capture_unix_ns: written.last_capture_unix_ns,
        }))
    }

    /// Indexes a finished recording, or counts why there is none.
    async fn closed(&self, alert: &Alert, result: Result<Option<Closed>, String>) {
        let closed = match result {
            Ok(Some(c)) => c,
            Ok(None) => {
                tracing::warn!(alert = %alert.id, camera = %alert.camera.id, "no clip: the camera sent no keyframe");
                self.count("skipped").inc();
                return;
            }
            Err(e) => {
                tracing::error!(alert = %alert.id, camera = %alert.camera.id, "clip not written: {e}");
                self.count("failed").inc();
                if let Err(e) = std::fs::remove_file(self.library.part_path(&alert.id)) {
                    tracing::debug!("no partial clip to remove: {e}");
                }
                return;
            }
        };
        let library = self.library.clone();
        let c = closed.clone();
        match tokio::task::spawn_blocking(move || library.add(&c)).await {
            Ok(Ok((entry, evicted))) => {
                tracing::info!(
                    alert = %entry.alert_id,
                    camera = %entry.camera_id,
                    bytes = entry.size,
                    seconds = (entry.last_capture_unix_ns - entry.first_capture_unix_ns) as f64 / 1e9,
                    "clip recorded"
                );
                self.count("recorded").inc();
                self.metrics.evicted.inc_by(evicted.clips);
            }
            Ok(Err(e)) => {
                tracing::error!(alert = %closed.alert_id, "clip not kept: {e}");
                self.count("failed").inc();
            }
            Err(e) => {
                tracing::error!(alert = %closed.alert_id, "clip not kept: {e}");
                self.count("failed").inc();
            }
        }
        self.refresh_disk_bytes();
    }
}

fn secs(s: u32) -> u64 {
    u64::from(s) * 1_000_000_000
}
