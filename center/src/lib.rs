//! `lookout center`: the command center's side of the relay. Gateways dial
//! it over QUIC with mutual TLS; it stores their alerts (with snapshots) in
//! a SQLite ledger before acknowledging them, lets operators acknowledge
//! alerts, keeps each camera's latest GOP and the live state of every camera
//! of every gateway, and serves all of it over HTTP for the video wall.
//!
//! - `config.rs`: the center's configuration file.
//! - `ledger.rs` and `ledger/`: the SQLite (WAL) alert ledger and de-duplication
//!   state (schema, storing, queries).
//! - `session.rs` and `session/`: one gateway connection: handshake, control
//!   stream, alerts, GOP streams.
//! - `latency.rs`: each frame's delay, into the per-camera Prometheus series and the
//!   whole-center HDR histograms behind `/api/latency`.
//! - `cascade.rs`: forwarding upward to another center, same protocol.
//! - `clips.rs` and `clips/`: the alerts' evidence clips (MP4), received resumably,
//!   kept under retention limits.
//! - `http.rs`: `/api/gateways`, `/api/cameras`, `/api/alerts`, acks,
//!   latest GOPs, `/metrics`, the wall's sign-in and sign-out.
//! - `wall.rs` and `wall/`: the video wall page, live video, events.

pub mod cascade;
pub mod clips;
pub mod config;
pub mod http;
pub mod latency;
pub mod ledger;
mod session;
pub mod wall;

use lookout_core::sync::Locked;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use dashmap::DashMap;
use lookout_codecs::relay::{CameraInfo, ErrorCode, Frame, GopHeader, Subscribe, SubscribeMode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::broadcast;

use config::{CenterConfig, SubscribeSetting};
use ledger::Ledger;
use lookout_core::metrics::Metrics;
use lookout_core::relay::stream::varint;
use lookout_core::relay::{stream, tls};

type Labels = Vec<(String, String)>;

/// The center's Prometheus series.
pub struct CenterMetrics {
    /// Gateways connected now.
    pub gateways_connected: Gauge,
    /// Connections refused, by reason (`tls`, `unauthorized`, `version`, …).
    pub refused: Family<Labels, Counter>,
    /// Protocol violations by welcomed gateways, per gateway and stream
    /// (`control`, `alert`, `video`, `connection`): the connection (or, for
    /// video, the GOP stream) was closed for each.
    pub protocol_violations: Family<Labels, Counter>,
    /// Alert messages by outcome: `inserted`, `updated`, `duplicate`,
    /// `conflict` (refused, see `alerts_refused`).
    pub alerts: Family<Labels, Counter>,
    /// Alert-stream messages not stored, hence never acknowledged, per
    /// gateway and reason: `conflict` (the gateway reused an alert id for
    /// another record; answered `AlertRefused`), `storage` (the ledger
    /// failed, e.g. disk full; the connection is closed with
    /// `INTERNAL_ERROR` and the gateway sends them again).
    pub alerts_refused: Family<Labels, Counter>,
    /// Frames received, per gateway and camera.
    pub frames: Family<Labels, Counter>,
    /// Bytes of frame data received, per gateway and camera.
    pub bytes: Family<Labels, Counter>,
    /// GOP streams by outcome: `complete`, `reset`, `invalid`, `shed` (over
    /// the connection's buffer budget); `late` ones
    /// (header after a newer GOP's) are also counted as such.
    pub gops: Family<Labels, Counter>,
    /// Per frame: `from="capture"` (camera clock → here) and
    /// `from="gateway"` (the gateway received it → here: the relay's part).
    pub frame_delay: Family<Labels, Histogram, fn() -> Histogram>,
    /// Bytes of frame data in the latest complete GOPs kept (at most one
    /// per camera), all cameras together: memory that grows with the number
    /// of cameras whose video the center has received, not with time.
    pub latest_gop_bytes: Gauge,
    /// Clip streams by outcome: `stored` (whole, hash checked, acknowledged),
    /// `had` (stored already, acknowledged at once), `interrupted` (the
    /// connection or stream ended first; what arrived is kept and the next
    /// offer resumes after it), `invalid` (broke the protocol), `failed`
    /// (storage, or a hash that did not match), per gateway.
    pub clip_transfers: Family<Labels, Counter>,
    /// Clip bytes received and stored, per gateway.
    pub clip_bytes: Family<Labels, Counter>,
}

/// The reasons a gateway connection is refused (`session.rs`), each a
/// series of `lookout_center_refused_connections_total` from the start, so
/// the README's list and a dashboard's panels exist before the first
/// refusal of each kind.
pub const CONNECTION_REFUSALS: [&str; 8] = [
    "tls",
    "quic",
    "no_hello",
    "protocol",
    "version",
    "unauthorized",
    "conflict",
    "lost",
];

impl Default for CenterMetrics {
    fn default() -> Self {
        let refused: Family<Labels, Counter> = Family::default();
        for reason in CONNECTION_REFUSALS {
            refused
                .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                .inc_by(0);
        }
        CenterMetrics {
            gateways_connected: Gauge::default(),
            refused,
            protocol_violations: Family::default(),
            alerts: Family::default(),
            alerts_refused: Family::default(),
            frames: Family::default(),
            bytes: Family::default(),
            gops: Family::default(),
            frame_delay: Family::new_with_constructor(latency::delay_histogram),
            latest_gop_bytes: Gauge::default(),
            clip_transfers: Family::default(),
            clip_bytes: Family::default(),
        }
    }
}

impl CenterMetrics {
    fn register(&self, m: &Metrics) {
        m.register(
            "center_gateways_connected",
            "Gateways connected now",
            self.gateways_connected.clone(),
        );
        m.register(
            "center_refused_connections",
            "Gateway connections refused, by reason",
            self.refused.clone(),
        );
        m.register(
            "center_protocol_violations",
            "Protocol violations by connected gateways, by gateway and stream",
            self.protocol_violations.clone(),
        );
        m.register(
            "center_alert_messages",
            "Alert messages received, by outcome",
            self.alerts.clone(),
        );
        m.register(
            "center_alerts_refused",
            "Alert-stream messages not stored and not acknowledged, by gateway and reason: conflict, storage",
            self.alerts_refused.clone(),
        );
        m.register(
            "center_frames",
            "Video frames received",
            self.frames.clone(),
        );
        m.register("center_bytes", "Video bytes received", self.bytes.clone());
        m.register(
            "center_clip_transfers",
            "Clip streams by outcome: stored, had, interrupted (resumed on the next offer), invalid, failed",
            self.clip_transfers.clone(),
        );
        m.register(
            "center_clip_bytes",
            "Clip bytes received and stored",
            self.clip_bytes.clone(),
        );
        m.register(
            "center_gops",
            "GOP streams by outcome: complete, reset, invalid; shed (over the connection's buffer budget); late (after a newer GOP, not played live)",
            self.gops.clone(),
        );
        m.register(
            "center_frame_delay_seconds",
            "Per frame: from capture, or from the gateway's receipt, to arrival here",
            self.frame_delay.clone(),
        );
        m.register(
            "center_latest_gop_bytes",
            "Bytes of frame data in the latest complete GOP kept per camera, all cameras together",
            self.latest_gop_bytes.clone(),
        );
    }
}

/// A GOP received whole, kept as the camera's latest.
#[derive(Debug)]
pub struct CompleteGop {
    /// The GOP's header: camera, codec, picture size, parameter sets.
    pub header: GopHeader,
    /// Its frames in order, keyframe first.
    pub frames: Vec<Frame>,
    /// When its last frame arrived, ms since the Unix epoch.
    pub received_unix_ms: u64,
    /// Its frame bytes, counted in `lookout_center_latest_gop_bytes` for as
    /// long as the GOP is kept.
    pub held: HeldBytes,
}

/// Bytes counted in a gauge for as long as this value lives.
#[derive(Debug)]
pub struct HeldBytes {
    gauge: Gauge,
    bytes: i64,
}

impl HeldBytes {
    /// Adds `bytes` to `gauge` until the returned value is dropped.
    pub fn new(gauge: &Gauge, bytes: usize) -> HeldBytes {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        gauge.inc_by(bytes);
        HeldBytes {
            gauge: gauge.clone(),
            bytes,
        }
    }

    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes.unsigned_abs()
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

/// A frame as the wall's live view gets it.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    /// The GOP this frame belongs to (the gateway's number, per camera).
    pub gop_seq: u64,
    /// That GOP's header (a viewer joining mid-GOP needs its parameter sets).
    pub header: Arc<GopHeader>,
    /// The frame as the gateway sent it.
    pub frame: Frame,
}

/// One camera of one gateway, as the center knows it.
pub struct CenterCamera {
    /// The gateway's id.
    pub gateway: String,
    /// What the gateway last said of the camera (`Hello`, `CameraUpdate`).
    pub info: Mutex<CameraInfo>,
    /// The last GOP received whole, for `/api/cameras/{id}/gop` and a viewer's start.
    pub latest_gop: Mutex<Option<Arc<CompleteGop>>>,
    /// Highest `gop_seq` started: older GOP streams arriving later are not
    /// played live.
    pub playing: AtomicU64,
    /// Frames received since the center started.
    pub frames: AtomicU64,
    /// Bytes of frame data received since the center started.
    pub bytes: AtomicU64,
    /// GOP streams received whole.
    pub gops_complete: AtomicU64,
    /// GOP streams that failed before their end (reset by the gateway, invalid).
    pub gops_dropped: AtomicU64,
    /// When the last frame arrived, ns since the Unix epoch; 0: none yet.
    pub last_frame_unix_ns: AtomicU64,
    /// That frame's capture → center delay, µs.
    pub last_capture_delay_us: AtomicU64,
    /// Frames as they arrive, for live viewers.
    pub live: broadcast::Sender<LiveFrame>,
}

impl CenterCamera {
    fn new(gateway: &str, info: CameraInfo) -> CenterCamera {
        CenterCamera {
            gateway: gateway.to_string(),
            info: Mutex::new(info),
            latest_gop: Mutex::new(None),
            playing: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            gops_complete: AtomicU64::new(0),
            gops_dropped: AtomicU64::new(0),
            last_frame_unix_ns: AtomicU64::new(0),
            last_capture_delay_us: AtomicU64::new(0),
            live: broadcast::channel(256).0,
        }
    }
}

/// One gateway, connected or not (kept after it goes away, so the wall
/// shows its cameras as offline rather than forgetting them).
pub struct GatewayLink {
    /// The gateway's id (from its certificate and `Hello`).
    pub id: String,
    /// Who its certificate says it is.
    pub identity: Mutex<tls::PeerIdentity>,
    /// Its address on the last connection.
    pub remote: Mutex<SocketAddr>,
    /// The software it announced in `Hello` (`lookout 0.x`).
    pub software: Mutex<String>,
    /// Whether it is connected now.
    pub connected: AtomicBool,
    /// The live connection, to close it when the gateway reconnects.
    conn: Mutex<Option<quinn::Connection>>,
    /// When its current (or last) connection started, ms since the Unix epoch.
    pub since_unix_ms: AtomicU64,
    /// When it last connected or sent a control message, ms since the Unix epoch.
    pub last_seen_unix_ms: AtomicU64,
    /// Connections it has made since the center started.
    pub connections: AtomicU64,
    /// QUIC's smoothed round-trip time to it, µs.
    pub rtt_us: AtomicU64,
    /// Its cameras by id, kept while it is away.
    pub cameras: DashMap<String, Arc<CenterCamera>>,
}

/// Names one alert in the ledger: alert ids are the gateways' own, so only
/// the pair is unique (PROTOCOL.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlertKey {
    /// The gateway that raised the alert.
    pub gateway: String,
    /// The alert's id, the gateway's own.
    pub id: String,
}

/// The command center.
pub struct Center {
    /// The center's id (`[center] id`), told to gateways in `Welcome`.
    pub id: String,
    /// The alert ledger every gateway's alerts are stored in.
    pub ledger: Arc<Ledger>,
    /// The alerts' evidence clips (`STORAGE/clips`).
    pub clips: Arc<clips::ClipStore>,
    /// Every gateway that has connected, by id.
    pub gateways: DashMap<String, Arc<GatewayLink>>,
    /// The center's Prometheus series.
    pub metrics: CenterMetrics,
    subscribe: Subscribe,
    latency: Mutex<latency::Latency>,
    /// When the center started (uptime).
    pub started: Instant,
    /// Ledger changes (which gateway's alert), for live views and the cascade.
    pub alert_events: broadcast::Sender<AlertKey>,
    /// Centers above this one, when it forwards upward.
    pub upstreams: std::sync::OnceLock<Arc<lookout_core::relay::Relay>>,
    /// The `[[export]]`s, when any are configured.
    pub exports: std::sync::OnceLock<Arc<lookout_core::export::Exports>>,
    /// This center as exports name it (CAP sender, links).
    pub origin: lookout_core::export::Origin,
    /// The CAP area radius of the first export that has one, for `cap.xml`.
    pub exports_radius_km: Option<f64>,
}

impl Center {
    pub fn new(
        id: &str,
        ledger: Arc<Ledger>,
        clips: Arc<clips::ClipStore>,
        config: &CenterConfig,
    ) -> Center {
        let subscribe = Subscribe {
            mode: match config.center.subscribe {
                SubscribeSetting::All => SubscribeMode::All,
                SubscribeSetting::List => SubscribeMode::List,
                SubscribeSetting::Alerting => SubscribeMode::AlertingOnly,
            },
            cameras: config.center.cameras.clone(),
        };
        Center {
            id: id.to_string(),
            ledger,
            clips,
            gateways: DashMap::new(),
            metrics: CenterMetrics::default(),
            subscribe,
            latency: Mutex::new(latency::Latency::new()),
            started: Instant::now(),
            alert_events: broadcast::channel(1024).0,
            upstreams: std::sync::OnceLock::new(),
            exports: std::sync::OnceLock::new(),
            origin: lookout_core::export::Origin {
                id: id.to_string(),
                public_url: config.center.public_url.clone(),
            },
            exports_radius_km: config.exports.first().map(|e| e.cap_radius_km),
        }
    }

    /// Capture → center and gateway → center delay percentiles since start
    /// or the last reset.
    pub fn latency(&self, reset: bool) -> latency::LatencyReport {
        self.latency.locked().report(reset)
    }

    /// Every camera of every gateway, for the API.
    pub fn cameras(&self) -> Vec<serde_json::Value> {
        let now_ns = unix_ns();
        let mut out = Vec::new();
        let mut gateways: Vec<Arc<GatewayLink>> =
            self.gateways.iter().map(|g| g.value().clone()).collect();
        gateways.sort_by(|a, b| a.id.cmp(&b.id));
        for g in gateways {
            let connected = g.connected.load(Relaxed);
            let mut cams: Vec<Arc<CenterCamera>> =
                g.cameras.iter().map(|c| c.value().clone()).collect();
            cams.sort_by_key(|c| c.info.locked().id.clone());
            for c in cams {
                let info = c.info.locked().clone();
                let last = c.last_frame_unix_ns.load(Relaxed);
                let latest = c.latest_gop.locked().as_ref().map(|g| {
                    serde_json::json!({
                        "gop_seq": g.header.gop_seq,
                        "frames": g.frames.len(),
                        "bytes": g.held.bytes(),
                        "received_unix_ms": g.received_unix_ms,
                    })
                });
                out.push(serde_json::json!({
                    "gateway": g.id,
                    "id": info.id,
                    "kind": info.kind.name(),
                    "state": if connected { info.state.name() } else { "offline" },
                    "name": info.name,
                    "group": info.group,
                    "location": info.location.map(|l| serde_json::json!({"lat": l.lat, "lon": l.lon})),
                    "codec": info.format.map(|f| lookout_core::unit::codec_label(f.codec)),
                    "width": info.format.map(|f| f.width),
                    "height": info.format.map(|f| f.height),
                    "frames": c.frames.load(Relaxed),
                    "bytes": c.bytes.load(Relaxed),
                    "gops_complete": c.gops_complete.load(Relaxed),
                    "gops_dropped": c.gops_dropped.load(Relaxed),
                    "last_frame_age_ms": (last > 0).then(|| now_ns.saturating_sub(last) / 1_000_000),
                    "capture_delay_ms": (last > 0).then(|| c.last_capture_delay_us.load(Relaxed) as f64 / 1000.0),
                    "latest_gop": latest,
                }));
            }
        }
        out
    }

    /// The gateways, for the API.
    pub fn gateways(&self) -> Vec<serde_json::Value> {
        let mut gateways: Vec<Arc<GatewayLink>> =
            self.gateways.iter().map(|g| g.value().clone()).collect();
        gateways.sort_by(|a, b| a.id.cmp(&b.id));
        gateways
            .iter()
            .map(|g| {
                let identity = g.identity.locked().clone();
                let rtt = g.rtt_us.load(Relaxed);
                serde_json::json!({
                    "id": g.id,
                    "state": if g.connected.load(Relaxed) { "connected" } else { "disconnected" },
                    "remote": g.remote.locked().to_string(),
                    "software": g.software.locked().clone(),
                    "certificate": {
                        "common_name": identity.common_name,
                        "sha256": identity.sha256_fingerprint,
                    },
                    "connected_since_unix_ms": g.since_unix_ms.load(Relaxed),
                    "last_seen_unix_ms": g.last_seen_unix_ms.load(Relaxed),
                    "connections": g.connections.load(Relaxed),
                    "cameras": g.cameras.len(),
                    "rtt_ms": (rtt > 0).then(|| rtt as f64 / 1000.0),
                })
            })
            .collect()
    }
}

pub use lookout_core::clock::{unix_ms, unix_now_ns as unix_ns};

/// The center's QUIC endpoint. Its stateless-reset key is derived from the
/// center's private key rather than drawn at random, so a restarted center
/// can reset the connections its previous process held: a gateway learns of
/// the restart from its next packet and redials at once, instead of waiting
/// out its 10 s idle timeout.
fn listen(
    server: quinn::ServerConfig,
    addr: std::net::SocketAddr,
    key_file: &Path,
) -> anyhow::Result<quinn::Endpoint> {
    use sha2::Digest;
    let key = std::fs::read(key_file)
        .with_context(|| format!("center: reading {}", key_file.display()))?;
    let mut h = sha2::Sha256::new();
    h.update(b"lookout center stateless reset v1\0");
    h.update(&key);
    let secret = h.finalize();
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config.reset_key(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &secret,
    )));
    // The connection ids carry a keyed hash that the endpoint checks before
    // anything else (packets failing it are dropped unanswered): the same key
    // after a restart, or the old connections' packets never reach the reset.
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&secret[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(addr)
        .with_context(|| format!("center: cannot listen for gateways on udp {addr}"))?;
    quinn::Endpoint::new(
        endpoint_config,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .with_context(|| format!("center: cannot listen for gateways on udp {addr}"))
}

/// Starts the `[[export]]`s on the ledger's event log, woken by every ledger change.
fn start_exports(
    center: &Arc<Center>,
    config: &CenterConfig,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    let ids: Vec<String> = config.exports.iter().map(|e| e.id.clone()).collect();
    center
        .ledger
        .enable_exports(&ids)
        .map_err(anyhow::Error::msg)?;
    if ids.is_empty() {
        return Ok(());
    }
    let resolved: Vec<lookout_core::export::ExportConfig> = config
        .exports
        .iter()
        .map(|e| e.resolved(|p| config.resolve(p)))
        .collect();
    let exports = lookout_core::export::Exports::start(
        &resolved,
        center.ledger.clone(),
        center.origin.clone(),
        metrics,
        center.alert_events.subscribe(),
    )
    .map_err(anyhow::Error::msg)?;
    if center.exports.set(exports).is_err() {
        anyhow::bail!("the exports were started twice");
    }
    Ok(())
}

/// Runs the center until SIGINT/SIGTERM.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = CenterConfig::load(config_path)
        .map_err(|p| anyhow::anyhow!("configuration has {} problem(s):\n{p}", p.0.len()))?;
    let files = tls::TlsFiles {
        ca: config.resolve(&config.center.ca),
        cert: config.resolve(&config.center.cert),
        key: config.resolve(&config.center.key),
    };
    let mut server = tls::server_config(&files).context("center TLS identity")?;
    server.transport_config(stream::transport(
        config.center.max_gop_streams,
        stream::Congestion::default(),
    ));
    let storage = config.resolve(&config.center.storage);
    let ledger_path = storage.join("ledger.sqlite3");
    let ledger = Arc::new(Ledger::open(&ledger_path).map_err(|e| anyhow::anyhow!("{e}"))?);
    let clips = clips::ClipStore::open(storage.join("clips"), config.center.clip_retention())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let center = Arc::new(Center::new(
        &config.center.id,
        ledger,
        Arc::new(clips),
        &config,
    ));
    let metrics = Arc::new(Metrics::new(
        env!("CARGO_PKG_VERSION"),
        "not loaded",
        "not loaded",
    ));
    center.metrics.register(&metrics);
    center.clips.register(&metrics);

    if !config.upstreams.is_empty() {
        let relay_metrics = Arc::new(lookout_core::relay::RelayMetrics::default());
        relay_metrics.register(&metrics);
        let upstreams: Vec<lookout_core::config::UpstreamConfig> = config
            .upstreams
            .iter()
            .map(|u| u.resolved(|p| config.resolve(p)))
            .collect();
        let relay = lookout_core::relay::Relay::start_with(
            &center.id,
            &upstreams,
            &storage,
            cascade::CenterSource::new(center.clone()),
            relay_metrics,
            cascade::feeder(center.clone()),
        )?;
        if center.upstreams.set(relay).is_err() {
            anyhow::bail!("the upward relay was started twice");
        }
    }
    let api_token = config
        .center
        .api_token_file
        .as_ref()
        .map(|f| lookout_core::auth::read_token(&config.resolve(f)).map_err(anyhow::Error::msg))
        .transpose()?;
    let endpoint = listen(server, config.center.listen, &files.key)?;
    let quic_addr = endpoint.local_addr()?;
    let (trigger, shutdown) = lookout_core::shutdown::Trigger::new();
    let sessions = Arc::new(lookout_core::sessions::Sessions::new(
        lookout_core::sessions::SessionPolicy {
            idle: Duration::from_secs(config.center.session_idle_minutes * 60),
            max_age: Duration::from_secs(config.center.session_max_hours * 3600),
            secure: config.center.tls_proxy,
        },
    ));
    let guard = http::guard(
        api_token,
        lookout_core::auth::AllowedHosts::new(
            config.center.http_listen,
            &config.center.allowed_hosts,
        ),
        sessions,
    );
    let refused_connections = guard.refusal_counter("connections");
    let (http_addr, _http) = lookout_core::http::serve(
        config.center.http_listen,
        http::router(center.clone(), metrics.clone(), guard),
        shutdown.clone(),
        refused_connections,
    )
    .await?;
    tracing::info!(
        center = %center.id,
        quic = %quic_addr,
        http = %http_addr,
        ledger = %ledger_path.display(),
        alerts = center.ledger.count().unwrap_or(0),
        upstreams = config.upstreams.len(),
        "lookout center running"
    );

    lookout_core::metrics::spawn_heap_trim(lookout_core::metrics::HEAP_TRIM_PERIOD);
    start_exports(&center, &config, &metrics)?;
    let _clip_sweeper = clips::spawn_sweeper(center.clips.clone());
    let accept = {
        let center = center.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(session::serve(center.clone(), incoming));
            }
        })
    };
    drop(shutdown);

    lookout_core::shutdown::stop_signal().await?;
    tracing::info!("stopping");
    if let Some(relay) = center.upstreams.get() {
        relay.stop().await;
    }
    for g in center.gateways.iter() {
        if let Some(conn) = g.conn.locked().clone() {
            conn.close(varint(ErrorCode::NO_ERROR.value()), b"center stopping");
        }
    }
    endpoint.close(varint(ErrorCode::NO_ERROR.value()), b"center stopping");
    if tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("gateway connections not closed within 2 s; stopping anyway");
    }
    accept.abort();
    trigger.fire_and_wait(Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
}
