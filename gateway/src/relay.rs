//! The gateway's relay: its cameras and alerts as the uplinks' [`Source`]
//! (ingest's cameras and access units, the alert hub's active alerts); [`open`]
//! opens the uplinks' outboxes (`lookout_core::relay`), [`hub`] builds the
//! alert hub with them as its journal, and [`start`] connects.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lookout_codecs::relay::{CameraInfo, CameraPolicy, Location as WireLocation};
use tokio::sync::broadcast;

pub use lookout_core::relay::*;

use crate::alert::hub::{AlertHub, AlertQuery};
use crate::alert::machine::AlertEventKind;
use crate::config::{Config, UpstreamConfig};
use crate::ingest::{AccessUnit, CameraStatus, Ingest, Subscription};
use lookout_core::relay::source::{ClipSource, LocalFeed, Source, UnitFeed};
use lookout_core::relay::uplink::DEFAULT_LATENCY_BUDGET;

/// Opens every upstream's outbox and TLS identity (any problem is an error
/// naming the upstream and file, before anything starts); nothing connects
/// yet. The alert hub is built with [`Opened::journal`], so even the first
/// alert is on disk before it is announced.
pub fn open(config: &Config) -> anyhow::Result<Opened> {
    let upstreams: Vec<UpstreamConfig> = config
        .upstreams
        .iter()
        .map(|u| u.resolved(|p| config.resolve(p)))
        .collect();
    Relay::open(
        &config.gateway.id,
        &upstreams,
        &config.resolve(&config.gateway.storage),
    )
}

/// The alert hub of a gateway whose relay is `opened`: journaled into every
/// outbox and the exports' log (when exports are configured), holding the
/// alerts raised before this start (read back from the first outbox).
/// Detector alerts that were still active are cleared, since their detector
/// starts afresh.
pub fn hub(
    opened: &Opened,
    exports: Option<Arc<lookout_core::export::log::ExportLog>>,
) -> Arc<AlertHub> {
    let journal: Option<Arc<dyn crate::alert::hub::Journal>> = match (opened.journal(), exports) {
        (j, None) => j,
        (None, Some(e)) => Some(e),
        (Some(j), Some(e)) => Some(Arc::new(crate::alert::hub::Journals(vec![j, e]))),
    };
    let hub = Arc::new(AlertHub::with_journal(journal));
    for a in restore(&hub, opened.first_outbox()) {
        if let Err(e) = hub.publish(AlertEventKind::Cleared, a) {
            tracing::error!("clearing an alert left active by the last run: {e}");
        }
    }
    hub
}

/// Starts one connection task per upstream, relaying this gateway's cameras
/// and alerts.
pub fn start(
    opened: Opened,
    ingest: Arc<Ingest>,
    hub: Arc<AlertHub>,
    metrics: Arc<RelayMetrics>,
    clips: Option<Arc<dyn ClipSource>>,
) -> Arc<Relay> {
    let source = GatewaySource::new(ingest, hub, clips);
    opened.start(source, metrics, |_, _| None)
}

/// Ingest's subscription as an uplink's feed.
struct IngestFeed(Subscription);

impl LocalFeed for IngestFeed {
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Option<AccessUnit>> + Send + '_>> {
        Box::pin(self.0.recv())
    }
}

/// A gateway's own cameras.
pub struct GatewaySource {
    ingest: Arc<Ingest>,
    hub: Arc<AlertHub>,
    changes: broadcast::Sender<String>,
    clips: Option<Arc<dyn ClipSource>>,
}

impl GatewaySource {
    pub fn new(
        ingest: Arc<Ingest>,
        hub: Arc<AlertHub>,
        clips: Option<Arc<dyn ClipSource>>,
    ) -> Arc<GatewaySource> {
        let (changes, _) = broadcast::channel(256);
        let source = Arc::new(GatewaySource {
            ingest,
            hub: hub.clone(),
            changes: changes.clone(),
            clips,
        });
        // Alert events name their camera.
        let mut events = hub.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    // No receiver: no connection to a center now, nobody to tell.
                    Ok(e) => {
                        changes.send(e.alert.camera.id.clone()).ok();
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Someone must re-check everything: say so per camera.
                        for a in hub.list(&AlertQuery::default()) {
                            changes.send(a.camera.id.clone()).ok();
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        source
    }
}

impl Source for GatewaySource {
    fn cameras(&self) -> Vec<CameraInfo> {
        cameras_now(&self.ingest)
    }

    fn policies(&self) -> Vec<(String, CameraPolicy)> {
        let set = self.ingest.cameras().borrow().clone();
        set.iter()
            .map(|c| {
                (
                    c.id.clone(),
                    CameraPolicy {
                        class: c.priority.unwrap_or(c.kind).into(),
                        latency_budget: c
                            .latency_budget_ms
                            .map_or(DEFAULT_LATENCY_BUDGET, Duration::from_millis),
                    },
                )
            })
            .collect()
    }

    fn video(&self, id: &str) -> Option<UnitFeed> {
        // From the current GOP's keyframe: after a (re)connect the center
        // has a picture at once, not after the next keyframe.
        self.ingest
            .subscribe_from_keyframe(id)
            .map(|s| UnitFeed::Local(Box::new(IngestFeed(s))))
    }

    fn alerting(&self, id: &str) -> bool {
        !self
            .hub
            .list(&AlertQuery {
                camera: Some(id.to_string()),
                active_only: true,
                limit: Some(1),
                ..Default::default()
            })
            .is_empty()
    }

    fn alert_changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    fn clips(&self) -> Option<Arc<dyn ClipSource>> {
        self.clips.clone()
    }
}

/// Every configured camera as `Hello` and `CameraUpdate` describe it.
pub fn cameras_now(ingest: &Ingest) -> Vec<CameraInfo> {
    ingest
        .status()
        .iter()
        .map(|c| {
            let location = ingest.camera(&c.id).and_then(|cam| cam.config().location);
            camera_info(c, location)
        })
        .collect()
}

/// A camera as `Hello` and `CameraUpdate` describe it.
pub fn camera_info(c: &CameraStatus, location: Option<crate::config::Location>) -> CameraInfo {
    let format = match (c.codec, c.width, c.height) {
        (Some(codec), w, h) if w > 0 && h > 0 => Some(lookout_codecs::relay::VideoFormat {
            codec,
            width: w,
            height: h,
        }),
        _ => None,
    };
    CameraInfo {
        id: c.id.clone(),
        kind: c.kind.into(),
        state: c.state.into(),
        name: c.name.clone(),
        group: c.group.clone(),
        location: location.map(|l| WireLocation {
            lat: l.lat,
            lon: l.lon,
        }),
        format,
    }
}
