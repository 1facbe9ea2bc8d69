//! A cascade: this center forwards upward (county → city → province) over
//! the same protocol, as if it were one big gateway. Upward it introduces
//! every camera of every gateway connected to it, as `GATEWAY/CAMERA`
//! (group `GATEWAY`, or `GATEWAY / GROUP`), relays their GOPs as they
//! arrive (access units unchanged, capture and receive times kept, so the
//! upper center measures latency from the camera), and forwards every alert
//! once its own ledger has stored it, through its own durable outbox per
//! upstream, so an alert survives an outage of either link. Upward all of
//! them come from one gateway (this center), so each goes under the
//! ledger's `upward_id` for it — its own id unless another gateway's alert
//! had taken that (PROTOCOL.md §11) — and two gateways' alerts with the same
//! id stay two alerts above too.

use lookout_core::sync::Locked;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use lookout_codecs::relay::{Alert, CameraInfo, CameraPolicy, CameraState, Snapshot};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::ledger::{LedgerAlert, LedgerQuery};
use super::{AlertKey, Center, LiveFrame};
use lookout_core::relay::source::{Source, UnitFeed};
use lookout_core::relay::uplink::{DEFAULT_LATENCY_BUDGET, Uplink};
use lookout_core::relay::{OutboxItem, store};
use lookout_core::unit::{AccessUnit, CodecParams, TimestampSource};

/// Longest id the protocol carries.
const MAX_ID: usize = lookout_codecs::relay::MAX_ID_LEN;

/// The id a gateway's camera has upward.
fn upward_id(gateway: &str, camera: &str) -> Option<String> {
    let id = format!("{gateway}/{camera}");
    (id.len() <= MAX_ID).then_some(id)
}

/// Every camera of every gateway of a center.
pub struct CenterSource {
    center: Arc<Center>,
    changes: broadcast::Sender<String>,
}

impl CenterSource {
    pub fn new(center: Arc<Center>) -> Arc<CenterSource> {
        let (changes, _) = broadcast::channel(256);
        let source = Arc::new(CenterSource {
            center: center.clone(),
            changes: changes.clone(),
        });
        // Ledger changes name alerts; the uplink wants cameras.
        let mut events = center.alert_events.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(key) => {
                        let ledger = center.ledger.clone();
                        let found = tokio::task::spawn_blocking(move || {
                            ledger.alert(&key.gateway, &key.id)
                        })
                        .await;
                        if let Ok(Ok(Some(a))) = found
                            && let Some(camera) = a.camera.as_deref()
                            && let Some(id) = upward_id(&a.gateway, camera)
                        {
                            // No receiver: no upward connection now; a new
                            // one rescans the ledger.
                            changes.send(id).ok();
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // Which alerts changed is lost: every camera may have,
                        // so the uplink re-checks them all.
                        tracing::warn!(
                            missed,
                            "cascade: alert events came faster than they were read; re-checking every camera"
                        );
                        for id in every_camera(&center) {
                            if changes.send(id).is_err() {
                                break;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        source
    }

    fn split<'a>(&self, id: &'a str) -> Option<(&'a str, &'a str)> {
        id.split_once('/')
    }
}

/// The upward id of every camera of every gateway connected now or before.
fn every_camera(center: &Center) -> Vec<String> {
    let mut ids = Vec::new();
    for g in center.gateways.iter() {
        for c in g.cameras.iter() {
            let camera = c.info.locked().id.clone();
            if let Some(id) = upward_id(&g.id, &camera) {
                ids.push(id);
            }
        }
    }
    ids
}

impl Source for CenterSource {
    fn cameras(&self) -> Vec<CameraInfo> {
        let mut out = Vec::new();
        let mut gateways: Vec<_> = self
            .center
            .gateways
            .iter()
            .map(|g| g.value().clone())
            .collect();
        gateways.sort_by(|a, b| a.id.cmp(&b.id));
        for g in gateways {
            let connected = g.connected.load(Relaxed);
            let mut cams: Vec<CameraInfo> =
                g.cameras.iter().map(|c| c.info.locked().clone()).collect();
            cams.sort_by(|a, b| a.id.cmp(&b.id));
            for mut info in cams {
                let Some(id) = upward_id(&g.id, &info.id) else {
                    continue;
                };
                info.id = id;
                info.group = Some(match &info.group {
                    Some(group) => format!("{} / {group}", g.id),
                    None => g.id.clone(),
                });
                if !connected {
                    // Its gateway is away: the camera is not reachable.
                    info.state = CameraState::Backoff;
                }
                out.push(info);
            }
        }
        out
    }

    fn policies(&self) -> Vec<(String, CameraPolicy)> {
        self.cameras()
            .into_iter()
            .map(|c| {
                (
                    c.id,
                    CameraPolicy {
                        class: c.kind,
                        latency_budget: DEFAULT_LATENCY_BUDGET,
                    },
                )
            })
            .collect()
    }

    fn video(&self, id: &str) -> Option<UnitFeed> {
        let (gateway, camera) = self.split(id)?;
        let link = self.center.gateways.get(gateway)?.clone();
        let cam = link.cameras.get(camera)?.clone();
        let mut live = cam.live.subscribe();
        // Frames become access units again, as the gateway had them.
        let (tx, rx) = broadcast::channel(256);
        let upward: Arc<str> = Arc::from(id);
        tokio::spawn(async move {
            let mut params: Option<(Arc<lookout_codecs::relay::GopHeader>, Arc<CodecParams>)> =
                None;
            loop {
                let f: LiveFrame = match live.recv().await {
                    Ok(f) => f,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let p = match &params {
                    Some((h, p)) if Arc::ptr_eq(h, &f.header) => p.clone(),
                    _ => {
                        let p = Arc::new(CodecParams {
                            codec: f.header.codec,
                            vps: f.header.vps.clone(),
                            sps: Some(f.header.sps.clone()),
                            pps: Some(f.header.pps.clone()),
                            width: f.header.width,
                            height: f.header.height,
                        });
                        params = Some((f.header.clone(), p.clone()));
                        p
                    }
                };
                let unit = AccessUnit {
                    camera: upward.clone(),
                    seq: f.frame.seq,
                    session: 1,
                    keyframe: f.frame.keyframe,
                    params: p,
                    data: f.frame.data,
                    pts: f.frame.pts_ns.map(Duration::from_nanos),
                    received_unix_ns: f.frame.received_unix_ns,
                    capture_unix_ns: f.frame.capture_unix_ns,
                    capture_source: TimestampSource::Sei,
                };
                if tx.send(unit).is_err() {
                    // The uplink stopped reading this camera.
                    return;
                }
            }
        });
        Some(UnitFeed::Relayed(rx))
    }

    fn alerting(&self, id: &str) -> bool {
        let Some((gateway, camera)) = self.split(id) else {
            return false;
        };
        self.center
            .ledger
            .alerts(&LedgerQuery {
                gateway: Some(gateway.to_string()),
                camera: Some(camera.to_string()),
                state: Some("active".into()),
                limit: Some(1),
                ..Default::default()
            })
            .is_ok_and(|a| !a.is_empty())
    }

    fn alert_changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

/// A gateway's alert, as the messages that forward it (none when the ledger
/// cannot read it now: it goes with its next change, or the next start's
/// backlog).
fn forward(center: &Center, key: &AlertKey) -> Vec<OutboxItem> {
    match center.ledger.alert(&key.gateway, &key.id) {
        Ok(Some(a)) => forward_record(center, a),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(gateway = %key.gateway, alert = %key.id, "not forwarded now: {e}");
            Vec::new()
        }
    }
}

/// The ledger's record of an alert as the messages that forward it, under
/// its `upward_id`.
fn forward_record(center: &Center, a: LedgerAlert) -> Vec<OutboxItem> {
    let payload_json = match &a.alert {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let mut items = vec![OutboxItem::Alert(Alert {
        id: a.upward_id.clone(),
        revision: a.revision,
        payload_json,
        snapshot_jpeg: None,
    })];
    if a.has_snapshot {
        match center.ledger.snapshot(&a.gateway, &a.id) {
            Ok(Some(jpeg)) => items.push(OutboxItem::Snapshot(Snapshot {
                alert_id: a.upward_id,
                jpeg: jpeg.into(),
            })),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(gateway = %a.gateway, alert = %a.id, "snapshot not forwarded now: {e}");
            }
        }
    }
    items
}

/// Fills the upward outboxes from the ledger: first everything it holds
/// (the outbox ignores what it already queued, so a restart neither loses
/// nor doubles anything), then every change as it is stored.
pub fn feeder(
    center: Arc<Center>,
) -> impl FnOnce(Vec<Arc<Uplink>>, watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    move |uplinks, mut stop| {
        let mut events = center.alert_events.subscribe();
        Some(tokio::spawn(async move {
            let c = center.clone();
            let backlog = tokio::task::spawn_blocking(move || {
                let mut all = c
                    .ledger
                    .alerts(&LedgerQuery {
                        limit: Some(super::ledger::MAX_LIMIT),
                        ..Default::default()
                    })
                    .unwrap_or_default();
                all.reverse(); // oldest first
                all.into_iter()
                    .flat_map(|a| forward_record(&c, a))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            store(&uplinks, backlog).await;
            loop {
                let key = tokio::select! {
                    e = events.recv() => match e {
                        Ok(key) => key,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = stop.changed() => return,
                };
                let c = center.clone();
                let items = tokio::task::spawn_blocking(move || forward(&c, &key))
                    .await
                    .unwrap_or_default();
                store(&uplinks, items).await;
            }
        }))
    }
}
