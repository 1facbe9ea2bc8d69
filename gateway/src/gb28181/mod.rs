//! GB/T 28181, lookout as the upper platform: devices and lower platforms that cannot
//! be dialled (body cameras and deployable PTZ cameras behind carrier NAT, departments'
//! video platforms) register to it over SIP.
//!
//! What runs today (docs/GB28181.md has the protocol coverage):
//! - SIP over UDP and TCP on `[gateway.gb28181] sip_listen` (`lookout_codecs::sip`
//!   reads the messages, bounded);
//! - `REGISTER` with digest authentication (`digest.rs`: 401 challenge, single-use
//!   nonces), expiry, re-registration from a new address after a NAT rebinding, and
//!   unregistering (`Expires: 0`);
//! - keepalive `MESSAGE`s; a device that misses them for `keepalive_timeout_s`, or whose
//!   registration expires, goes `offline`;
//! - a catalog query after each registration, and the catalog answers (`manscdp.rs`),
//!   which `GET /api/gb28181/devices` lists with each channel's name and status;
//! - live video of channels configured as cameras (`[[camera]] gb28181 = { device,
//!   channel }`): `play.rs` INVITEs each while its device is online (`invite.rs`: SDP
//!   offer, ACK, BYE), and `rtp.rs` turns the PS over RTP (UDP, or TCP passive) into the
//!   camera's access units.
//!
//! Every refusal answers the device with a SIP status that says why, is logged with the
//! device id and reason (never the password or a nonce) and counted in
//! `lookout_gb28181_refused_total{reason}`.

pub mod adopt;
pub mod digest;
pub mod invite;
pub mod manscdp;
mod play;
mod register;
pub mod rtp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use lookout_codecs::sip::{self, Limits, Message, StartLine, StreamReader};
use lookout_core::shutdown::Shutdown;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use self::digest::Verifier;

/// Channels one device's catalog may list, at most.
pub const MAX_CHANNELS: usize = 4096;

/// TCP connections open at once, at most.
pub const MAX_TCP_CONNECTIONS: usize = 1024;

/// Outgoing messages waiting for one TCP device's connection, at most.
const TCP_QUEUE: usize = 64;

/// A TCP connection that sends nothing this long is closed (devices keep alive every
/// 60 s by default).
const TCP_IDLE: Duration = Duration::from_secs(300);

/// Registration lifetime when the device asks for none.
const DEFAULT_EXPIRES_S: u64 = 3600;

/// What the SIP side needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen (UDP and TCP).
    pub listen: SocketAddr,
    /// lookout's own 20-digit SIP id.
    pub id: String,
    /// lookout's 10-digit SIP domain (the digest realm).
    pub domain: String,
    /// The password devices register with.
    pub password: String,
    /// Devices (and lower platforms) known at once, at most.
    pub max_devices: usize,
    /// A device that sends no keepalive this long goes offline.
    pub keepalive_timeout: Duration,
    /// The address offered for media; `None`: see [`SipServer::media_ip`].
    pub media_ip: Option<std::net::IpAddr>,
    /// A playing stream with no RTP this long is ended and INVITEd again.
    pub stall_timeout: Duration,
    /// Digest algorithms offered (in this order) and accepted.
    pub digest: Vec<digest::DigestAlgorithm>,
}

/// The reasons a request is refused, each a series from the start.
pub const REFUSALS: [&str; 9] = [
    "malformed",
    "bad_id",
    "wrong_password",
    "stale_nonce",
    "bad_credentials",
    "unregistered",
    "too_many_devices",
    "too_many_channels",
    "too_many_connections",
];

/// The SIP side's Prometheus series.
#[derive(Clone, Default)]
pub struct GbMetrics {
    /// Requests refused, by reason ([`REFUSALS`]).
    pub refused: Family<Vec<(String, String)>, Counter>,
    /// Requests handled, by method.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Devices online now.
    pub online: Gauge,
    /// Devices known (online or not).
    pub known: Gauge,
    /// INVITEs lookout sent (answered or not).
    pub invites: Counter,
    /// INVITEs that brought no stream, by SIP status or `timeout`.
    pub invite_failed: Family<Vec<(String, String)>, Counter>,
}

impl GbMetrics {
    /// Registers the series as `lookout_gb28181_*`, every refusal reason at 0.
    pub fn register(&self, m: &lookout_core::metrics::Metrics) {
        for r in REFUSALS {
            self.refused
                .get_or_create(&vec![("reason".to_string(), r.to_string())])
                .inc_by(0);
        }
        m.register(
            "gb28181_refused",
            "GB/T 28181 SIP requests refused, by reason",
            self.refused.clone(),
        );
        m.register(
            "gb28181_requests",
            "GB/T 28181 SIP requests handled, by method",
            self.requests.clone(),
        );
        m.register(
            "gb28181_devices_online",
            "GB/T 28181 devices registered and keeping alive",
            self.online.clone(),
        );
        m.register(
            "gb28181_devices_known",
            "GB/T 28181 devices known, online or not",
            self.known.clone(),
        );
        m.register(
            "gb28181_invites",
            "GB/T 28181 INVITEs sent to play channels",
            self.invites.clone(),
        );
        m.register(
            "gb28181_invite_failed",
            "GB/T 28181 INVITEs that brought no stream, by SIP status or timeout",
            self.invite_failed.clone(),
        );
    }

    fn invite_failed(&self, status: &str) {
        self.invite_failed
            .get_or_create(&vec![("status".to_string(), status.to_string())])
            .inc();
    }

    fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

/// One channel of a device's catalog, as `/api/gb28181/devices` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Channel {
    /// The channel's 20-digit id.
    pub id: String,
    /// Its name (`Name`).
    pub name: Option<String>,
    /// `ON` or `OFF` as the device reports it.
    pub status: Option<String>,
    /// The maker the device names.
    pub manufacturer: Option<String>,
    /// The model the device names.
    pub model: Option<String>,
    /// The parent (device or directory) id, for lower platforms' trees.
    pub parent: Option<String>,
}

/// How a device reaches lookout, and so how lookout reaches it.
#[derive(Debug, Clone)]
enum Path {
    Udp,
    Tcp(mpsc::Sender<Vec<u8>>),
}

/// One device or lower platform.
#[derive(Debug, Clone)]
struct Device {
    address: SocketAddr,
    path: Path,
    /// The SIP domain in its `From` URI, used to address it.
    domain: String,
    user_agent: Option<String>,
    registered_unix_ms: u64,
    expires_s: u64,
    expires_at: Instant,
    last_keepalive: Instant,
    last_keepalive_unix_ms: Option<u64>,
    online: bool,
    channels: BTreeMap<String, Channel>,
    /// `SumNum` of the last catalog answer.
    catalog_total: Option<usize>,
}

/// A device as `GET /api/gb28181/devices` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// The device's 20-digit id.
    pub id: String,
    /// `online` or `offline`.
    pub status: &'static str,
    /// Where its last registration came from.
    pub address: String,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// The `User-Agent` it sent.
    pub user_agent: Option<String>,
    /// When it last registered, ms since the Unix epoch.
    pub registered_unix_ms: u64,
    /// The registration's lifetime it asked for, s.
    pub expires_s: u64,
    /// Its last keepalive, ms since the Unix epoch; `null` before the first.
    pub last_keepalive_unix_ms: Option<u64>,
    /// `SumNum` of its catalog: how many channels it says it has.
    pub catalog_total: Option<usize>,
    /// The channels its catalog listed so far.
    pub channels: Vec<Channel>,
}

/// The SIP listener and the devices registered to it.
pub struct SipServer {
    settings: Settings,
    limits: Limits,
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    devices: DashMap<String, Device>,
    verifier: std::sync::Mutex<Verifier>,
    metrics: GbMetrics,
    cseq: AtomicU32,
    tcp_open: AtomicU32,
    /// Per Call-ID, the INVITE waiting for its answers.
    transactions: DashMap<String, mpsc::Sender<Message>>,
    /// Per Call-ID, the calls lookout made that are up: told when the device hangs up.
    dialogs: DashMap<String, tokio::sync::watch::Sender<bool>>,
}

/// UDP and TCP on one port: `listen`'s, or for port 0 one free for both. A port the
/// system picks for UDP may be taken for TCP by another program; with port 0 another
/// is tried (at most 16 times), with a fixed port that is an error naming it.
async fn bind_udp_and_tcp(
    listen: SocketAddr,
) -> anyhow::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind(listen).await.map_err(|e| {
            anyhow::anyhow!("[gateway.gb28181] sip_listen = \"{listen}\" (UDP): {e}")
        })?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries < 16 =>
            {
                tries += 1;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "[gateway.gb28181] sip_listen = \"{local}\" (TCP): {e}"
                ));
            }
        }
    }
}

/// Where a request came from, and how to answer it.
#[derive(Clone)]
struct Origin {
    peer: SocketAddr,
    path: Path,
}

impl SipServer {
    /// Binds UDP and TCP on `settings.listen` and starts serving until shutdown; plays
    /// `ingest`'s GB/T 28181 cameras.
    pub async fn start(
        settings: Settings,
        metrics: GbMetrics,
        ingest: Arc<crate::ingest::Ingest>,
        stop: Shutdown,
    ) -> anyhow::Result<Arc<SipServer>> {
        let (udp, tcp, local) = bind_udp_and_tcp(settings.listen).await?;
        let verifier = std::sync::Mutex::new(Verifier::new(
            &settings.domain,
            &settings.password,
            &settings.digest,
        ));
        let server = Arc::new(SipServer {
            settings,
            limits: Limits::default(),
            udp: Arc::new(udp),
            local,
            devices: DashMap::new(),
            verifier,
            metrics,
            cseq: AtomicU32::new(1),
            tcp_open: AtomicU32::new(0),
            transactions: DashMap::new(),
            dialogs: DashMap::new(),
        });
        tracing::info!(sip = %local, id = %server.settings.id, domain = %server.settings.domain, "GB/T 28181 SIP listening (UDP and TCP)");
        tokio::spawn(server.clone().udp_loop(stop.clone()));
        tokio::spawn(server.clone().tcp_loop(tcp, stop.clone()));
        tokio::spawn(server.clone().expiry_loop(stop.clone()));
        tokio::spawn(play::supervise(server.clone(), ingest, stop));
        Ok(server)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Every device, by id.
    pub fn devices(&self) -> Vec<DeviceStatus> {
        let mut out: Vec<DeviceStatus> = self
            .devices
            .iter()
            .map(|e| {
                let d = e.value();
                DeviceStatus {
                    id: e.key().clone(),
                    status: if d.online { "online" } else { "offline" },
                    address: d.address.to_string(),
                    transport: match d.path {
                        Path::Udp => "udp",
                        Path::Tcp(_) => "tcp",
                    },
                    user_agent: d.user_agent.clone(),
                    registered_unix_ms: d.registered_unix_ms,
                    expires_s: d.expires_s,
                    last_keepalive_unix_ms: d.last_keepalive_unix_ms,
                    catalog_total: d.catalog_total,
                    channels: d.channels.values().cloned().collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    async fn udp_loop(self: Arc<Self>, mut stop: Shutdown) {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, peer) = tokio::select! {
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP errors from earlier sends surface here on Linux.
                        tracing::debug!("SIP UDP receive: {e}");
                        continue;
                    }
                },
                _ = stop.signalled() => return,
            };
            let datagram = &buf[..n];
            // Keep-alive CRLFs (RFC 5626) carry nothing.
            if datagram.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            match sip::parse(datagram, &self.limits) {
                Ok(m) => {
                    self.handle(
                        m,
                        Origin {
                            peer,
                            path: Path::Udp,
                        },
                    )
                    .await
                }
                Err(e) => {
                    self.metrics.refuse("malformed");
                    tracing::warn!(%peer, "SIP datagram refused: {e}");
                }
            }
        }
    }

    async fn tcp_loop(self: Arc<Self>, listener: TcpListener, mut stop: Shutdown) {
        loop {
            let (socket, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("SIP TCP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.signalled() => return,
            };
            if self.tcp_open.fetch_add(1, Relaxed) as usize >= MAX_TCP_CONNECTIONS {
                self.tcp_open.fetch_sub(1, Relaxed);
                self.metrics.refuse("too_many_connections");
                tracing::warn!(%peer, "SIP TCP connection refused: {MAX_TCP_CONNECTIONS} open");
                continue;
            }
            let server = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = server.tcp_connection(socket, peer, stop).await {
                    tracing::debug!(%peer, "SIP TCP connection ended: {e}");
                }
                server.tcp_open.fetch_sub(1, Relaxed);
            });
        }
    }

    async fn tcp_connection(
        self: &Arc<Self>,
        socket: TcpStream,
        peer: SocketAddr,
        mut stop: Shutdown,
    ) -> anyhow::Result<()> {
        let (mut rd, mut wr) = socket.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let mut reader = StreamReader::new(self.limits);
        let mut buf = vec![0u8; 16 * 1024];
        let result = loop {
            let n = tokio::select! {
                r = tokio::time::timeout(TCP_IDLE, rd.read(&mut buf)) => match r {
                    Ok(Ok(0)) => break Ok(()),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => break Err(e.into()),
                    Err(_) => break Err(anyhow::anyhow!("silent for {TCP_IDLE:?}")),
                },
                _ = stop.signalled() => break Ok(()),
            };
            reader.push(&buf[..n]);
            loop {
                match reader.next_message() {
                    Ok(Some(m)) => {
                        self.handle(
                            m,
                            Origin {
                                peer,
                                path: Path::Tcp(tx.clone()),
                            },
                        )
                        .await
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.metrics.refuse("malformed");
                        tracing::warn!(%peer, "SIP over TCP refused, closing: {e}");
                        drop(tx);
                        writer.abort();
                        return Ok(());
                    }
                }
            }
        };
        drop(tx);
        writer.abort();
        result
    }

    /// Sends `bytes` to a device the way it reaches lookout.
    async fn send(&self, to: SocketAddr, path: &Path, bytes: Vec<u8>) {
        match path {
            Path::Udp => {
                if let Err(e) = self.udp.send_to(&bytes, to).await {
                    tracing::debug!(%to, "SIP UDP send: {e}");
                }
            }
            Path::Tcp(tx) => {
                if tx.try_send(bytes).is_err() {
                    tracing::debug!(%to, "SIP TCP connection gone or behind; message dropped");
                }
            }
        }
    }

    async fn handle(self: &Arc<Self>, m: Message, from: Origin) {
        let method = match &m.start {
            StartLine::Request { method, .. } => method.clone(),
            // Answers to lookout's own requests: INVITEs wait for theirs.
            StartLine::Response { .. } => return self.route_response(m),
        };
        self.metrics
            .requests
            .get_or_create(&vec![("method".to_string(), method.clone())])
            .inc();
        let reply = match method.as_str() {
            "REGISTER" => self.register(&m, &from),
            "MESSAGE" => self.message(&m, &from),
            "OPTIONS" => Some(self.response(&m, 200, "OK")),
            "BYE" => Some(self.device_bye(&m)),
            // ACK, INFO and the like for sessions lookout has not opened.
            "ACK" => None,
            _ => Some(self.response(&m, 405, "Method Not Allowed")),
        };
        if let Some(r) = reply {
            self.send(from.peer, &from.path, r.encode()).await;
        }
        if method == "REGISTER"
            && let Some(device) = device_id(&m)
            && self.devices.get(&device).is_some_and(|d| d.online)
            && m.header("Authorization").is_some()
        {
            self.query_catalog(&device).await;
        }
    }

    /// A response to `req`: its Via, From, Call-ID and CSeq, To with a tag.
    fn response(&self, req: &Message, code: u16, reason: &str) -> Message {
        let tag = self.cseq.fetch_add(1, Relaxed).to_string();
        Message::reply(req, code, reason, &tag).with("User-Agent", user_agent())
    }

    fn refuse(&self, req: &Message, code: u16, reason: &str, metric: &str, why: &str) -> Message {
        self.metrics.refuse(metric);
        let device = device_id(req).unwrap_or_else(|| "(no id)".into());
        tracing::warn!(device = %lookout_core::logging::untrusted(&device), reason = metric, "GB/T 28181 request refused: {why}");
        self.response(req, code, reason)
            .with("Warning", format!("399 lookout \"{why}\""))
    }

    async fn expiry_loop(self: Arc<Self>, mut stop: Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.signalled() => return,
            }
            let now = Instant::now();
            let mut changed = false;
            for mut e in self.devices.iter_mut() {
                let id = e.key().clone();
                let d = e.value_mut();
                if !d.online {
                    continue;
                }
                let why = if now >= d.expires_at {
                    Some("its registration expired")
                } else if now.duration_since(d.last_keepalive) >= self.settings.keepalive_timeout {
                    Some("no keepalive")
                } else {
                    None
                };
                if let Some(why) = why {
                    d.online = false;
                    changed = true;
                    tracing::warn!(device = %id, "GB/T 28181 device offline: {why}");
                }
            }
            if changed {
                self.update_gauges();
            }
        }
    }

    fn update_gauges(&self) {
        let online = self.devices.iter().filter(|d| d.online).count();
        self.metrics.online.set(online as i64);
        self.metrics.known.set(self.devices.len() as i64);
    }
}

/// lookout's `User-Agent`.
fn user_agent() -> String {
    format!("lookout {}", env!("CARGO_PKG_VERSION"))
}

/// The user part of the `From` URI: the device's id.
fn device_id(m: &Message) -> Option<String> {
    let from = m.header("From")?;
    let uri = from.split_once("sip:")?.1;
    let user = uri.split(['@', '>', ';']).next()?;
    (!user.is_empty()).then(|| user.chars().take(64).collect())
}

/// The host part of the `From` URI (a device's SIP domain).
fn from_domain(m: &Message) -> Option<String> {
    let from = m.header("From")?;
    let uri = from.split_once("sip:")?.1;
    let host = uri.split_once('@')?.1.split(['>', ';', ':']).next()?;
    (!host.is_empty()).then(|| host.chars().take(64).collect())
}

pub use lookout_codecs::sip::valid_gb_id as valid_id;

/// `Date` as GB/T 28181 devices set their clocks from it (local ISO time, ms).
fn sip_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

/// A random 32-bit number for tags, branches and Call-IDs.
fn rand_u32() -> u32 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Unique enough for a tag when the RNG is unavailable.
        return std::process::id() ^ (lookout_core::clock::unix_ms() as u32);
    }
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_domains_come_from_the_from_header() {
        let m = Message::request("REGISTER", "sip:34020000002000000001@3402000000")
            .with("From", "<sip:34020000001320000001@3402000000>;tag=1");
        assert_eq!(device_id(&m).as_deref(), Some("34020000001320000001"));
        assert_eq!(from_domain(&m).as_deref(), Some("3402000000"));
        assert!(valid_id("34020000001320000001"));
        assert!(!valid_id("3402000000132000000x"));
        assert!(!valid_id("123"));
    }
}
