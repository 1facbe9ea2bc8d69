//! RTMP push: cameras, encoders and drones' ground stations that dial in
//! (`rtmp://GATEWAY/live/KEY`), where nothing can dial them.
//!
//! [`RtmpServer`] listens on `[gateway.rtmp] listen`. Each connection is one tokio task:
//! the RTMP handshake and session (chunk streams, AMF0 commands: `connect`,
//! `releaseStream`, `FCPublish`, `createStream`, `publish`) come from the sans-IO
//! `rml_rtmp` crate; the FLV video tags in the published stream are read by
//! `lookout_codecs::flv` (H.264, H.265 as codec id 12 and as Enhanced RTMP `hvc1`) and
//! turned into the camera's access units by the same [`UnitBuilder`] as RTSP, so a
//! pushed camera feeds the same fan-out, detection, relay and wall. Audio and metadata
//! are ignored.
//!
//! Only the application `live` is served, and a stream key must be a configured camera's
//! `push.key`: anything else is refused, logged (the key's length, never the key: it is
//! the pusher's credential) and counted in `lookout_rtmp_refused_total{reason}`. A
//! second publisher on a camera's key takes the camera over (a pusher reconnecting
//! before its old connection timed out), counted as a reconnect. Connections are
//! bounded in number, in how long the handshake and `publish` may take, and in how
//! long they may stay silent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use lookout_codecs::flv::{self, VideoTag};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use lookout_core::shutdown::Shutdown;

use super::Ingest;
use super::camera::Camera;
use super::health::{ActiveTransport, unix_now_ns};
use super::units::UnitBuilder;
use lookout_core::unit::TimestampSource;

/// The RTMP application pushed streams are published under.
pub const APP: &str = "live";

/// Connections open at once, at most; more are closed on accept and counted.
pub const MAX_CONNECTIONS: usize = 256;

/// From accept to an accepted `publish`, at most.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A publishing connection silent this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Label pairs of a series.
type Labels = Vec<(String, String)>;

/// The reasons a pushed connection is refused, each a series from the start.
pub const REFUSALS: [&str; 6] = [
    "too_many_connections",
    "handshake",
    "protocol",
    "unknown_app",
    "unknown_key",
    "timeout",
];

/// The RTMP listener's Prometheus series.
#[derive(Clone)]
pub struct RtmpMetrics {
    /// Connections refused or dropped before publishing, by reason ([`REFUSALS`]).
    pub refused: Family<Labels, Counter>,
    /// Publishes accepted, per camera.
    pub publishes: Family<Labels, Counter>,
    /// Video messages that could not be read (bad FLV tag, unsupported codec), per
    /// camera.
    pub bad_video: Family<Labels, Counter>,
}

impl Default for RtmpMetrics {
    fn default() -> Self {
        let refused: Family<Labels, Counter> = Family::default();
        for reason in REFUSALS {
            refused
                .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                .inc_by(0);
        }
        RtmpMetrics {
            refused,
            publishes: Family::default(),
            bad_video: Family::default(),
        }
    }
}

impl RtmpMetrics {
    /// Registers the series as `lookout_rtmp_*`.
    pub fn register(&self, m: &lookout_core::metrics::Metrics) {
        m.register(
            "rtmp_refused",
            "RTMP connections refused or dropped before publishing, by reason",
            self.refused.clone(),
        );
        m.register(
            "rtmp_publishes",
            "RTMP publishes accepted, per camera",
            self.publishes.clone(),
        );
        m.register(
            "rtmp_bad_video",
            "RTMP video messages that could not be read, per camera",
            self.bad_video.clone(),
        );
    }

    fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    fn camera(family: &Family<Labels, Counter>, camera: &str) -> Counter {
        family
            .get_or_create(&vec![("camera".to_string(), camera.to_string())])
            .clone()
    }
}

/// The publisher holding a camera now: its connection number and how to make it let go.
struct Publisher {
    connection: u64,
    kick: watch::Sender<bool>,
}

/// The RTMP listener.
pub struct RtmpServer {
    ingest: Arc<Ingest>,
    metrics: RtmpMetrics,
    /// Per camera id, the connection publishing to it.
    publishers: DashMap<Arc<str>, Publisher>,
    open: AtomicUsize,
    next_connection: AtomicU64,
}

impl RtmpServer {
    /// Binds `listen`; the accept loop and every connection end when shutdown is
    /// signalled.
    pub async fn start(
        listen: SocketAddr,
        ingest: Arc<Ingest>,
        metrics: RtmpMetrics,
        stop: Shutdown,
    ) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("[gateway.rtmp] listen = \"{listen}\": {e}"))?;
        let bound = listener.local_addr()?;
        let server = Arc::new(RtmpServer {
            ingest,
            metrics,
            publishers: DashMap::new(),
            open: AtomicUsize::new(0),
            next_connection: AtomicU64::new(0),
        });
        tracing::info!(listen = %bound, "RTMP push listening (rtmp://{bound}/{APP}/KEY)");
        let task = tokio::spawn(server.accept_loop(listener, stop));
        Ok((bound, task))
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, mut stop: Shutdown) {
        loop {
            let (socket, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, then go on.
                        tracing::warn!("RTMP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.signalled() => return,
            };
            if self.open.fetch_add(1, Relaxed) >= MAX_CONNECTIONS {
                self.open.fetch_sub(1, Relaxed);
                self.metrics.refuse("too_many_connections");
                tracing::warn!(%peer, "RTMP connection refused: {MAX_CONNECTIONS} already open");
                continue;
            }
            let id = self.next_connection.fetch_add(1, Relaxed) + 1;
            let server = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = server.connection(id, socket, peer, stop).await {
                    tracing::warn!(%peer, "RTMP connection ended: {e}");
                }
                server.open.fetch_sub(1, Relaxed);
            });
        }
    }

    /// One connection, from the handshake to its end.
    async fn connection(
        self: &Arc<Self>,
        id: u64,
        mut socket: TcpStream,
        peer: SocketAddr,
        mut stop: Shutdown,
    ) -> Result<(), String> {
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(%peer, "TCP_NODELAY not set: {e}");
        }
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        let leftover = match tokio::time::timeout_at(deadline, handshake(&mut socket)).await {
            Ok(Ok(rest)) => rest,
            Ok(Err(e)) => {
                self.metrics.refuse("handshake");
                return Err(format!("handshake: {e}"));
            }
            Err(_) => {
                self.metrics.refuse("timeout");
                return Err(format!("no handshake within {SETUP_TIMEOUT:?}"));
            }
        };
        let (mut session, first) =
            ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("session: {e}"))?;
        let mut conn = Connection {
            server: self.clone(),
            id,
            peer,
            camera: None,
            kicked: None,
        };
        conn.write(&mut socket, &first).await?;
        let mut pending = leftover;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if !pending.is_empty() {
                let results = session.handle_input(&pending).map_err(|e| {
                    self.metrics.refuse("protocol");
                    format!("RTMP: {e}")
                })?;
                pending.clear();
                match conn.handle(&mut session, results) {
                    Ok(replies) => conn.write(&mut socket, &replies).await?,
                    Err(refused) => {
                        // Told why, then closed; a failed write changes nothing.
                        if let Err(e) = conn.write(&mut socket, &refused.replies).await {
                            tracing::debug!(%peer, "RTMP refusal not delivered: {e}");
                        }
                        return Err(refused.why);
                    }
                }
            }
            let limit = if conn.camera.is_some() {
                tokio::time::Instant::now() + IDLE_TIMEOUT
            } else {
                deadline
            };
            let kicked = conn.kicked.clone();
            let n = tokio::select! {
                r = tokio::time::timeout_at(limit, socket.read(&mut buf)) => match r {
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return Err(format!("reading: {e}")),
                    Err(_) if conn.camera.is_some() => {
                        return Err(format!("silent for {IDLE_TIMEOUT:?}; closed"));
                    }
                    Err(_) => {
                        self.metrics.refuse("timeout");
                        return Err(format!("no publish within {SETUP_TIMEOUT:?}"));
                    }
                },
                _ = wait_kicked(kicked) => {
                    return Err("another publisher took the camera over".to_string());
                }
                _ = stop.signalled() => return Ok(()),
            };
            pending.extend_from_slice(&buf[..n]);
        }
    }
}

/// Resolves when `kicked` fires; never without one.
async fn wait_kicked(kicked: Option<watch::Receiver<bool>>) {
    match kicked {
        Some(mut k) => {
            if k.wait_for(|k| *k).await.is_err() {
                // The camera's publisher slot went with the server: nothing will kick.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// The server side of the RTMP handshake; returns the bytes that came after it.
async fn handshake(socket: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the peer closed the connection".into());
        }
        match hs.process_bytes(&buf[..n]).map_err(|e| e.to_string())? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// What a publishing connection holds.
struct Publishing {
    camera: Arc<Camera>,
    key: String,
    units: UnitBuilder,
    /// Bytes in each NAL unit's length prefix, from the configuration record.
    length_size: usize,
    /// The parameter sets, put in front of every keyframe.
    parameter_sets: Vec<Bytes>,
    /// Unix ns at RTMP timestamp 0: the first frame's arrival minus its timestamp.
    anchor_unix_ns: Option<u64>,
    bad_video: Counter,
    bad_logged: bool,
}

/// One connection's state.
struct Connection {
    server: Arc<RtmpServer>,
    id: u64,
    peer: SocketAddr,
    camera: Option<Publishing>,
    kicked: Option<watch::Receiver<bool>>,
}

/// A refusal: what to tell the peer before closing, and why (for the log).
struct Refused {
    replies: Vec<ServerSessionResult>,
    why: String,
}

impl Refused {
    /// Refuses `request_id` with an RTMP status `code` the peer can show.
    fn request(session: &mut ServerSession, request_id: u32, code: &str, why: String) -> Refused {
        let replies = match session.reject_request(request_id, code, &why) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("RTMP refusal not encoded: {e}");
                Vec::new()
            }
        };
        Refused { replies, why }
    }

    fn plain(why: String) -> Refused {
        Refused {
            replies: Vec::new(),
            why,
        }
    }
}

impl Connection {
    async fn write(
        &self,
        socket: &mut TcpStream,
        results: &[ServerSessionResult],
    ) -> Result<(), String> {
        for r in results {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                socket
                    .write_all(&packet.bytes)
                    .await
                    .map_err(|e| format!("writing: {e}"))?;
            }
        }
        Ok(())
    }

    /// Acts on the session's events; returns what to send back.
    fn handle(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<Vec<ServerSessionResult>, Refused> {
        let mut out = Vec::new();
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(_) => out.push(r),
                ServerSessionResult::RaisedEvent(event) => {
                    out.extend(self.event(session, event)?);
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(out)
    }

    fn event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, Refused> {
        let metrics = &self.server.metrics;
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                if app_name.trim_matches('/') != APP {
                    metrics.refuse("unknown_app");
                    let why = format!(
                        "refused: application `{}` (only `{APP}` is served)",
                        lookout_core::logging::untrusted(&app_name)
                    );
                    return Err(Refused::request(
                        session,
                        request_id,
                        "NetConnection.Connect.Rejected",
                        why,
                    ));
                }
                session
                    .accept_request(request_id)
                    .map_err(|e| Refused::plain(format!("accepting connect: {e}")))
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                // Encoders often append a query (`KEY?sign=…`); the key is before it.
                let key = stream_key.split('?').next().unwrap_or("").to_string();
                let Some(camera) = self.server.ingest.pushed_camera(&key) else {
                    metrics.refuse("unknown_key");
                    let why = format!(
                        "refused: no camera has this stream key ({} characters)",
                        key.chars().count()
                    );
                    return Err(Refused::request(
                        session,
                        request_id,
                        "NetStream.Publish.BadName",
                        why,
                    ));
                };
                let replies = session
                    .accept_request(request_id)
                    .map_err(|e| Refused::plain(format!("accepting publish: {e}")))?;
                self.publish(camera, key);
                Ok(replies)
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                if let Some(p) = &mut self.camera {
                    p.video(&data, timestamp.value);
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.unpublish();
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Takes `camera` for this connection, kicking a publisher it had.
    fn publish(&mut self, camera: Arc<Camera>, key: String) {
        let (kick, kicked) = watch::channel(false);
        let previous = self.server.publishers.insert(
            camera.id.clone(),
            Publisher {
                connection: self.id,
                kick,
            },
        );
        if let Some(old) = previous {
            old.kick.send_replace(true);
            tracing::info!(camera = %camera.id, peer = %self.peer, "a new RTMP publisher takes the camera over");
        }
        let session = camera.next_session();
        if session > 1 {
            camera.health.reconnects.fetch_add(1, Relaxed);
        }
        camera.health.set_transport(ActiveTransport::Rtmp);
        RtmpMetrics::camera(&self.server.metrics.publishes, &camera.id).inc();
        tracing::info!(camera = %camera.id, peer = %self.peer, session, "RTMP publish accepted");
        self.kicked = Some(kicked);
        self.camera = Some(Publishing {
            bad_video: RtmpMetrics::camera(&self.server.metrics.bad_video, &camera.id),
            units: UnitBuilder::new(camera.clone(), session),
            camera,
            key,
            length_size: 4,
            parameter_sets: Vec::new(),
            anchor_unix_ns: None,
            bad_logged: false,
        });
    }

    /// Lets go of the camera, if it is still this connection's.
    fn unpublish(&mut self) {
        if let Some(p) = self.camera.take() {
            let mine = self
                .server
                .publishers
                .remove_if(&p.camera.id, |_, v| v.connection == self.id);
            if mine.is_some() {
                tracing::info!(camera = %p.camera.id, key_len = p.key.len(), "RTMP publisher left");
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.unpublish();
    }
}

impl Publishing {
    /// One video message: an FLV video tag body at RTMP timestamp `ts` (ms).
    fn video(&mut self, data: &Bytes, ts: u32) {
        let received = unix_now_ns();
        match flv::parse_video_tag(data) {
            Ok(VideoTag::Config {
                codec,
                length_size,
                parameter_sets,
            }) => {
                self.units.set_codec(codec);
                self.camera.health.set_codec(codec);
                self.length_size = length_size;
                self.parameter_sets = parameter_sets;
            }
            Ok(VideoTag::Frame {
                keyframe,
                composition_ms,
                data,
                ..
            }) => {
                if self.parameter_sets.is_empty() {
                    // Nothing before the configuration record decodes (FLV sends it
                    // first; a publisher that does not is not served).
                    return self.bad("a frame before the decoder configuration record");
                }
                let nalus = match flv::split_nalus(&data, self.length_size) {
                    Ok(n) => n,
                    Err(e) => return self.bad(&e.to_string()),
                };
                let prefix: &[Bytes] = if keyframe { &self.parameter_sets } else { &[] };
                let au = flv::annex_b(prefix, &nalus);
                let anchor = *self
                    .anchor_unix_ns
                    .get_or_insert_with(|| received.saturating_sub(u64::from(ts) * 1_000_000));
                let capture = anchor + u64::from(ts) * 1_000_000;
                let pts_ms = i64::from(ts) + i64::from(composition_ms);
                let pts = (pts_ms >= 0).then(|| Duration::from_millis(pts_ms as u64));
                self.units.push(
                    au,
                    pts,
                    Some((capture, TimestampSource::StreamClock)),
                    received,
                );
            }
            Ok(VideoTag::EndOfSequence) => {}
            Ok(VideoTag::Ignored(what)) => {
                tracing::debug!(camera = %self.camera.id, "RTMP video message ignored: {what}");
            }
            Err(e) => self.bad(&e.to_string()),
        }
    }

    fn bad(&mut self, why: &str) {
        self.bad_video.inc();
        self.camera.health.malformed_nals.fetch_add(1, Relaxed);
        if !self.bad_logged {
            self.bad_logged = true;
            tracing::warn!(camera = %self.camera.id, stage = "rtmp", "unreadable video message skipped: {why}");
        }
    }
}
