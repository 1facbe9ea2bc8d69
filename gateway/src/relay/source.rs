//! What an uplink relays upward: its cameras (as `Hello` and `CameraUpdate`
//! describe them), each camera's access units, and which cameras have an
//! active alert. A gateway relays its own cameras ([`GatewaySource`]: ingest
//! and the alert hub); a command center in a cascade relays every camera of
//! every gateway connected to it (`center::cascade`), over the same
//! protocol, so command platforms join tier by tier.

use std::sync::Arc;
use std::time::Duration;

use lookout_codecs::relay::{CameraInfo, CameraPolicy};
use tokio::sync::broadcast;

use crate::detect::hub::{AlertHub, AlertQuery};
use crate::ingest::{AccessUnit, Ingest, Subscription};

/// A camera's units as an uplink reads them.
pub enum UnitFeed {
    /// Straight from ingest (a gateway's own camera).
    Ingest(Subscription),
    /// Already relayed (a center forwarding a gateway's camera): lagging
    /// loses the oldest units, which the uplink sees as a gap in `seq`.
    Relayed(broadcast::Receiver<AccessUnit>),
}

impl UnitFeed {
    /// The next unit; `None` once the camera is gone.
    pub async fn recv(&mut self) -> Option<AccessUnit> {
        match self {
            UnitFeed::Ingest(s) => s.recv().await,
            UnitFeed::Relayed(rx) => loop {
                match rx.recv().await {
                    Ok(unit) => return Some(unit),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        }
    }
}

/// Everything an uplink needs to know about what it relays.
pub trait Source: Send + Sync + 'static {
    /// Every camera now, in a stable order.
    fn cameras(&self) -> Vec<CameraInfo>;
    /// Every camera's relay policy now.
    fn policies(&self) -> Vec<(String, CameraPolicy)>;
    /// A camera's units from now on.
    fn video(&self, id: &str) -> Option<UnitFeed>;
    /// Whether a camera has an active alert.
    fn alerting(&self, id: &str) -> bool;
    /// Ids of cameras whose alert state may have changed.
    fn alert_changes(&self) -> broadcast::Receiver<String>;
}

/// A gateway's own cameras.
pub struct GatewaySource {
    ingest: Arc<Ingest>,
    hub: Arc<AlertHub>,
    changes: broadcast::Sender<String>,
}

impl GatewaySource {
    pub fn new(ingest: Arc<Ingest>, hub: Arc<AlertHub>) -> Arc<GatewaySource> {
        let (changes, _) = broadcast::channel(256);
        let source = Arc::new(GatewaySource {
            ingest,
            hub: hub.clone(),
            changes: changes.clone(),
        });
        // Alert events name their camera.
        let mut events = hub.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        let _ = changes.send(e.alert.camera.id.clone());
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Someone must re-check everything: say so per camera.
                        for a in hub.list(&AlertQuery::default()) {
                            let _ = changes.send(a.camera.id.clone());
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
        super::uplink::cameras_now(&self.ingest)
    }

    fn policies(&self) -> Vec<(String, CameraPolicy)> {
        let set = self.ingest.cameras().borrow().clone();
        set.iter()
            .map(|c| {
                (
                    c.id.clone(),
                    CameraPolicy {
                        class: super::uplink::wire_kind(c.priority.unwrap_or(c.kind)),
                        latency_budget: c
                            .latency_budget_ms
                            .map_or(super::uplink::DEFAULT_LATENCY_BUDGET, Duration::from_millis),
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
            .map(UnitFeed::Ingest)
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
}
