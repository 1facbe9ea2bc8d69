//! The sending side of the relay to command centers (PROTOCOL.md), for a
//! gateway and for a center that cascades upward: one [`Uplink`] per
//! `[[upstream]]`, each with its own durable alert outbox, and the journal
//! that writes every alert event into every outbox before the gateway
//! announces it or sends anything. What is relayed comes from a
//! [`source::Source`]: the gateway's is `lookout::relay`.
//!
//! - `tls.rs`: mutual TLS from the operator's CA (`lookout certs` makes it).
//! - `outbox.rs`: the SQLite (WAL) outbox of unacknowledged alerts.
//! - `stream.rs`: quinn stream reading/writing, transport settings, backoff.
//! - `congestion.rs`: BBR capped near the path's BDP, so alerts never wait
//!   behind a full bottleneck buffer.
//! - `uplink.rs`: the connection: control, alerts, GOP streams.
//! - `source.rs`: what an uplink relays (a gateway's cameras, or a center's
//!   in a cascade).

pub mod congestion;
pub mod outbox;
pub mod source;
pub mod stream;
pub mod tls;
pub mod uplink;

use crate::alert::hub::AlertState;
use crate::sync::Locked;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lookout_codecs::relay::{Alert, Snapshot};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::alert::hub::{AlertEvent, AlertHub, Journal};
use crate::alert::machine::AlertEventKind;
use crate::config::UpstreamConfig;
use crate::metrics::Metrics;
use outbox::Outbox;
pub use uplink::{Uplink, UplinkStatus};

type Labels = Vec<(String, String)>;

fn rtt_histogram() -> Histogram {
    // 100 µs … ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The relay's Prometheus series.
pub struct RelayMetrics {
    /// 1 while connected, per upstream.
    pub connected: Family<Labels, Gauge>,
    /// Failed or lost connections, by reason (`tls`, `refused`, `timeout`…).
    pub connection_errors: Family<Labels, Counter>,
    /// Alert-stream messages written (re-sends included), per upstream.
    pub alerts_sent: Family<Labels, Counter>,
    /// `AlertAck`s received from the center, per upstream: alert revisions
    /// it has stored, which the outbox then drops (snapshot acks are not
    /// counted).
    pub alerts_acked: Family<Labels, Counter>,
    /// Entries waiting for an acknowledgement.
    pub outbox_depth: Family<Labels, Gauge>,
    /// `AlertRefused` notices received, per upstream and code
    /// (`ALERT_ID_CONFLICT`, `INTERNAL_ERROR`, …): alerts the center did not
    /// store. Each one stays in the outbox.
    pub alerts_refused: Family<Labels, Counter>,
    /// Waiting entries whose last delivery a center refused: held in the
    /// outbox, offered again on the next connection, needing an operator
    /// when the code is `ALERT_ID_CONFLICT`.
    pub outbox_refused: Family<Labels, Gauge>,
    /// GOPs per camera by outcome: `sent` (all acknowledged), `reset`
    /// (latency budget or the center stopped it), `skipped` (not subscribed).
    pub gops: Family<Labels, Counter>,
    /// Access units handed to GOP streams, per upstream and camera.
    pub frames: Family<Labels, Counter>,
    /// Bytes of those access units (compressed, as the camera sent them),
    /// per upstream and camera.
    pub bytes: Family<Labels, Counter>,
    /// Application round trip (Ping → Pong).
    pub rtt: Family<Labels, Histogram, fn() -> Histogram>,
    /// Clip transfers per upstream by outcome: `acknowledged` (the center
    /// stores the whole clip), `interrupted` (the stream or connection
    /// ended first: offered again, resumed where the center's copy ends),
    /// `failed` (refused or unreadable: offered again after a pause).
    pub clips: Family<Labels, Counter>,
    /// Clip bytes written to the upstream (resumed transfers count only
    /// what they sent).
    pub clip_bytes: Family<Labels, Counter>,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        RelayMetrics {
            connected: Family::default(),
            connection_errors: Family::default(),
            alerts_sent: Family::default(),
            alerts_acked: Family::default(),
            outbox_depth: Family::default(),
            alerts_refused: Family::default(),
            outbox_refused: Family::default(),
            gops: Family::default(),
            frames: Family::default(),
            bytes: Family::default(),
            rtt: Family::new_with_constructor(rtt_histogram),
            clips: Family::default(),
            clip_bytes: Family::default(),
        }
    }
}

impl RelayMetrics {
    pub fn register(&self, m: &Metrics) {
        m.register(
            "relay_connected",
            "1 while connected to the upstream command center",
            self.connected.clone(),
        );
        m.register(
            "relay_connection_errors",
            "Failed or lost relay connections, by reason",
            self.connection_errors.clone(),
        );
        m.register(
            "relay_alerts_sent",
            "Alert messages written to the upstream (re-sends included)",
            self.alerts_sent.clone(),
        );
        m.register(
            "relay_alerts_acknowledged",
            "Alert acknowledgements received",
            self.alerts_acked.clone(),
        );
        m.register(
            "relay_outbox_entries",
            "Alert outbox entries waiting for an acknowledgement",
            self.outbox_depth.clone(),
        );
        m.register(
            "relay_alerts_refused",
            "Alerts and snapshots the command center refused to store (AlertRefused), by code; each stays in the outbox",
            self.alerts_refused.clone(),
        );
        m.register(
            "relay_outbox_refused_entries",
            "Alert outbox entries held after the command center refused them",
            self.outbox_refused.clone(),
        );
        m.register(
            "relay_gops",
            "GOPs per camera by outcome: sent, reset, skipped",
            self.gops.clone(),
        );
        m.register(
            "relay_frames",
            "Access units handed to GOP streams",
            self.frames.clone(),
        );
        m.register(
            "relay_bytes",
            "Access-unit bytes handed to GOP streams",
            self.bytes.clone(),
        );
        m.register(
            "relay_clips",
            "Clip transfers by outcome: acknowledged, interrupted (resumed on the next connection), failed",
            self.clips.clone(),
        );
        m.register(
            "relay_clip_bytes",
            "Clip bytes written to the upstream",
            self.clip_bytes.clone(),
        );
        m.register(
            "relay_rtt_seconds",
            "Application round trip to the command center (Ping to Pong)",
            self.rtt.clone(),
        );
    }
}

/// One upstream opened by [`Relay::open`]: its outbox, and the signal that
/// wakes its uplink when the journal adds to it.
struct Upstream {
    config: UpstreamConfig,
    client: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    outbox: Arc<Outbox>,
    ready: Arc<Notify>,
}

/// Every upstream opened, nothing connected yet.
pub struct Opened {
    id: String,
    upstreams: Vec<Upstream>,
}

impl Opened {
    /// The journal that writes each alert event into every outbox (`None`
    /// without upstreams): what the alert hub is built with.
    pub fn journal(&self) -> Option<Arc<dyn Journal>> {
        if self.upstreams.is_empty() {
            return None;
        }
        Some(Arc::new(OutboxJournal {
            outboxes: self
                .upstreams
                .iter()
                .map(|u| (u.config.id.clone(), u.outbox.clone(), u.ready.clone()))
                .collect(),
        }))
    }

    /// The first upstream's outbox: where the alerts raised before this
    /// start are read back from.
    pub fn first_outbox(&self) -> Option<&Outbox> {
        self.upstreams.first().map(|u| &*u.outbox)
    }

    /// Starts one connection task per upstream, relaying what `source` has,
    /// and the task `feeder` starts to fill the outboxes.
    pub fn start(
        self,
        source: Arc<dyn source::Source>,
        metrics: Arc<RelayMetrics>,
        feeder: impl FnOnce(Vec<Arc<Uplink>>, watch::Receiver<bool>) -> Option<JoinHandle<()>>,
    ) -> Arc<Relay> {
        let uplinks: Vec<Arc<Uplink>> = self
            .upstreams
            .into_iter()
            .map(|u| {
                Arc::new(Uplink::new(
                    u.config,
                    self.id.clone(),
                    u.client,
                    u.endpoint,
                    u.outbox,
                    u.ready,
                    source.clone(),
                    metrics.clone(),
                ))
            })
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if !uplinks.is_empty()
            && let Some(t) = feeder(uplinks.clone(), stop_rx.clone())
        {
            tasks.push(t);
        }
        for u in &uplinks {
            tasks.push(tokio::spawn(u.clone().run(stop_rx.clone())));
        }
        Arc::new(Relay {
            uplinks,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        })
    }
}

/// Every upstream of this gateway.
pub struct Relay {
    uplinks: Vec<Arc<Uplink>>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Relay {
    /// The relay of anything with a [`source::Source`]: `id` is the id this
    /// side uses upward (a gateway's, or a center's in a cascade), paths in
    /// `upstreams` are resolved already, outboxes live under `storage`, and
    /// `feeder` starts the task that fills the outboxes. [`Relay::open`] and
    /// [`Opened::start`] in one step.
    pub fn start_with(
        id: &str,
        upstreams: &[UpstreamConfig],
        storage: &Path,
        source: Arc<dyn source::Source>,
        metrics: Arc<RelayMetrics>,
        feeder: impl FnOnce(Vec<Arc<Uplink>>, watch::Receiver<bool>) -> Option<JoinHandle<()>>,
    ) -> anyhow::Result<Arc<Relay>> {
        Ok(Relay::open(id, upstreams, storage)?.start(source, metrics, feeder))
    }

    /// Opens every upstream's TLS identity, outbox and UDP socket (any problem
    /// is an error naming the upstream and file, before anything starts),
    /// without connecting: the outboxes can become the alert hub's journal
    /// before the first alert.
    pub fn open(id: &str, upstreams: &[UpstreamConfig], storage: &Path) -> anyhow::Result<Opened> {
        let mut opened = Vec::new();
        for u in upstreams {
            let mut client = tls::client_config(&tls::TlsFiles::from(u))
                .with_context(|| format!("upstream `{}`: TLS identity", u.id))?;
            client.transport_config(stream::transport(0, u.congestion));
            let path = storage.join("outbox").join(format!("{}.sqlite3", u.id));
            let outbox = open_outbox(&path).with_context(|| format!("upstream `{}`", u.id))?;
            let bind: std::net::SocketAddr = if u.address.starts_with('[') {
                "[::]:0".parse()?
            } else {
                "0.0.0.0:0".parse()?
            };
            let endpoint = quinn::Endpoint::client(bind)
                .with_context(|| format!("upstream `{}`: opening a UDP socket", u.id))?;
            opened.push(Upstream {
                config: u.clone(),
                client,
                endpoint,
                outbox: Arc::new(outbox),
                ready: Arc::new(Notify::new()),
            });
        }
        Ok(Opened {
            id: id.to_string(),
            upstreams: opened,
        })
    }

    pub fn status(&self) -> Vec<UplinkStatus> {
        self.uplinks.iter().map(|u| u.status()).collect()
    }

    /// Says goaway to each center after waiting briefly for
    /// acknowledgements, and closes (alert events are in the outboxes
    /// already: the journal wrote them as they happened).
    pub async fn stop(&self) {
        // Fails only when every task has ended already (no receiver left):
        // nothing to stop.
        if self.stop.send(true).is_err() {
            tracing::debug!("relay tasks had already stopped");
        }
        let tasks: Vec<JoinHandle<()>> = self.tasks.locked().drain(..).collect();
        for t in tasks {
            if let Err(e) = t.await {
                tracing::warn!("a relay task ended abnormally: {e}");
            }
        }
    }
}

fn open_outbox(path: &Path) -> anyhow::Result<Outbox> {
    Outbox::open(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// What an alert event puts in an outbox.
pub enum OutboxItem {
    /// A raised, updated or cleared alert: its JSON record and revision.
    Alert(Alert),
    /// An alert's JPEG snapshot (non-empty).
    Snapshot(Snapshot),
}

/// Alert revisions, as PROTOCOL.md §6.10 numbers them: 0 when raised, one
/// more per update, one more when cleared.
pub fn revision(alert: &crate::alert::hub::Alert) -> u32 {
    if alert.state == AlertState::Cleared {
        alert.updates + 1
    } else {
        alert.updates
    }
}

fn items(event: &AlertEvent) -> Vec<OutboxItem> {
    match event.kind {
        AlertEventKind::Snapshot => match &event.snapshot {
            Some(jpeg) if !jpeg.is_empty() => vec![OutboxItem::Snapshot(Snapshot {
                alert_id: event.alert.id.clone(),
                jpeg: jpeg.clone(),
            })],
            _ => Vec::new(),
        },
        _ => alert_item(&event.alert, None).into_iter().collect(),
    }
}

fn alert_item(alert: &crate::alert::hub::Alert, jpeg: Option<bytes::Bytes>) -> Option<OutboxItem> {
    match serde_json::to_string(alert) {
        Ok(json) => Some(OutboxItem::Alert(Alert {
            id: alert.id.clone(),
            revision: revision(alert),
            payload_json: json,
            snapshot_jpeg: jpeg.filter(|j| !j.is_empty()),
        })),
        Err(e) => {
            tracing::error!(alert = %alert.id, "cannot encode alert for the relay: {e}");
            None
        }
    }
}

/// After a restart: the alerts this gateway raised before (as the first
/// outbox last recorded them) go back into the hub, so the API lists them, a
/// client's retry is answered "already here" and an external alert can be
/// cleared. Returns the detector alerts that were still active, cleared: the
/// caller publishes them once the journal is set (their detector starts
/// afresh and raises a new one if the smoke is still there), rather than
/// leaving them active at the center for ever.
pub fn restore(hub: &AlertHub, first: Option<&Outbox>) -> Vec<crate::alert::hub::Alert> {
    let Some(first) = first else {
        return Vec::new();
    };
    let records = match first.recent_alerts(crate::alert::hub::RECENT_ALERTS) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot read the alerts raised before this start: {e}");
            return Vec::new();
        }
    };
    let mut alerts = Vec::new();
    for json in &records {
        match crate::alert::hub::Alert::from_record(json) {
            Ok(a) => alerts.push(a),
            Err(e) => tracing::warn!(
                "an alert record in {} is unreadable: {e}",
                first.path().display()
            ),
        }
    }
    let now = crate::clock::unix_now_ns();
    let stale = alerts
        .iter()
        .filter(|a| {
            a.state == AlertState::Active && a.detector != crate::alert::hub::EXTERNAL_DETECTOR
        })
        .map(|a| crate::alert::hub::Alert {
            state: AlertState::Cleared,
            cleared_unix_ns: Some(now),
            note: Some("cleared at gateway restart: the detector starts afresh".into()),
            ..a.clone()
        })
        .collect();
    let restored = hub.restore(alerts);
    if restored > 0 {
        tracing::info!(
            alerts = restored,
            "alerts raised before this start taken back"
        );
    }
    stale
}

/// The gateway's [`Journal`]: writes each alert event into every upstream's
/// outbox (SQLite, `synchronous=FULL`) on the caller's thread, then wakes
/// the uplinks. An event is announced only after this returns, so nothing
/// the gateway has shown or confirmed can be lost to a crash.
pub struct OutboxJournal {
    /// Each upstream's id, outbox, and its uplink's wake-up.
    outboxes: Vec<(String, Arc<Outbox>, Arc<Notify>)>,
}

impl Journal for OutboxJournal {
    fn record(&self, event: &AlertEvent) -> Result<(), String> {
        let items = items(event);
        if items.is_empty() {
            return Ok(());
        }
        let mut failed = Vec::new();
        for (id, outbox, ready) in &self.outboxes {
            match push(outbox, &items) {
                Ok(()) => ready.notify_one(),
                Err(e) => failed.push(format!("upstream `{id}`: {e}")),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

fn push(outbox: &Outbox, items: &[OutboxItem]) -> Result<(), outbox::OutboxError> {
    for item in items {
        match item {
            OutboxItem::Alert(a) => {
                outbox.push_alert(a)?;
            }
            OutboxItem::Snapshot(s) => {
                outbox.push_snapshot(s)?;
            }
        }
    }
    Ok(())
}

pub async fn store(uplinks: &[Arc<Uplink>], items: Vec<OutboxItem>) {
    if items.is_empty() {
        return;
    }
    let items = Arc::new(items);
    for u in uplinks {
        let outbox = u.outbox.clone();
        let batch = items.clone();
        let id = u.id().to_string();
        let result = tokio::task::spawn_blocking(move || push(&outbox, &batch)).await;
        match result {
            Ok(Ok(())) => u.outbox_ready.notify_one(),
            Ok(Err(e)) => {
                tracing::error!(upstream = %id, "alert not queued for the command center: {e}")
            }
            Err(e) => tracing::error!(upstream = %id, "outbox writer failed: {e}"),
        }
    }
}
