//! One `[[upstream]]`: the gateway's connection to a command center, kept up
//! for the life of the process (PROTOCOL.md §10). It dials with mutual TLS,
//! introduces the gateway and its cameras (`Hello`), then runs, side by
//! side until the connection ends:
//!
//! - the control stream: the center's `Subscribe`, pings both ways, camera
//!   changes as `CameraUpdate`, `Goaway` on shutdown;
//! - the alert stream: every outbox entry, oldest first, at the highest
//!   priority; entries leave the outbox only when the center acknowledges;
//!   one the center refuses (`AlertRefused` on the control stream) stays,
//!   marked, counted and shown in `/api/upstreams`, until a later
//!   connection gets it acknowledged;
//! - clips (version 2): each finished alert clip the center lacks, on a
//!   stream of its own at the lowest priority, resumed where the center's
//!   copy ends after a lost connection (`clips.rs`);
//! - video: per camera, each GOP (keyframe to keyframe) on its own
//!   unidirectional stream, written by its own task so a slow stream never
//!   holds up the camera, with the priorities and resets that the sans-IO
//!   [`Scheduler`] decides.
//!
//! A lost connection is redialled with backoff; alerts raised meanwhile wait
//! in the SQLite outbox (`outbox.rs`), video resumes at each camera's next
//! keyframe.

use crate::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use lookout_codecs::relay::StreamMessage;
use lookout_codecs::relay::{
    ALERT_STREAM_PRIORITY, Action, AlertMessage, AlertRefused, CONTROL_STREAM_PRIORITY,
    CameraChange, CameraInfo, CameraPolicy, CameraUpdate, ClassRanks, ControlMessage, ErrorCode,
    Frame, Goaway, GopHeader, GopOutcome, GopStart, Hello, PROTOCOL_VERSION, Ping, Pong, Role,
    Scheduler, VideoMessage,
};
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};

mod alerts;
mod clips;
mod control;
mod video;

pub use control::camera_changes;

use super::RelayMetrics;
use super::outbox::{Outbox, OutboxEntry, RefusedEntry};
use super::source::{Source, UnitFeed};
use super::stream::{Backoff, MessageReader, StreamError, varint, write_message};
use crate::config::UpstreamConfig;
use crate::unit::AccessUnit;

/// How long the handshake (`Hello` → `Welcome`) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one dial (QUIC + TLS) may take: this plus four round trips of
/// the last connection, at most [`DIAL_TIMEOUT_MAX`]. Short: when nothing
/// answers (a partition, a dead center) a fresh dial every second or two
/// finds the path soon after it heals, where one long attempt waits out
/// QUIC's doubling Initial retransmission timer (1 s, 2 s, 4 s …). The
/// round trips keep it long enough for a satellite hop's handshake.
const DIAL_TIMEOUT_MIN: Duration = Duration::from_millis(1500);
const DIAL_TIMEOUT_MAX: Duration = Duration::from_secs(6);
/// PROTOCOL.md §6.6: a ping at least every 10 s.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// PROTOCOL.md §6.6: no pong this long after a ping ends the connection.
const PONG_TIMEOUT: Duration = Duration::from_secs(30);
/// How often camera states are compared with what the center was told.
const CAMERA_POLL: Duration = Duration::from_millis(500);
/// Outbox entries read and sent per round.
const OUTBOX_BATCH: usize = 64;
/// Refused entries `/api/upstreams` lists per upstream (the count is whole).
const REFUSED_SHOWN: usize = 20;
/// `AlertRefused` notices waiting for the alert task; the control task
/// waits when it is full, as it would on a slow stream.
const REFUSALS_QUEUED: usize = 64;
/// How long a stopping gateway waits for the center to acknowledge alerts
/// already sent (they stay in the outbox either way).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// A superseded GOP older than this is reset when the camera sets no
/// `latency_budget_ms`.
pub const DEFAULT_LATENCY_BUDGET: Duration = Duration::from_millis(1000);

/// Where a connection stands, for `/api/upstreams` and logs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LinkState {
    Connecting,
    Connected {
        center_id: String,
        since_unix_ms: u64,
    },
    Backoff {
        retry_in_ms: u64,
        last_error: String,
    },
    Stopped,
}

/// One upstream's state and counters for the API.
#[derive(Debug, Clone, Serialize)]
pub struct UplinkStatus {
    /// The upstream's id (`[[upstream]] id`).
    pub id: String,
    /// The center's `host:port` as configured.
    pub address: String,
    /// Connected, connecting, backing off (with the last error) or stopped.
    #[serde(flatten)]
    pub state: LinkState,
    /// Connections established since the gateway started.
    pub connects: u64,
    /// Entries in the outbox the center has not acknowledged yet.
    pub outbox_pending: u64,
    /// Of `outbox_pending`, the entries the center refused (`AlertRefused`):
    /// held, not lost, offered again on the next connection.
    pub outbox_refused: u64,
    /// The most recently refused of them, with the center's code and reason.
    pub refused: Vec<RefusedStatus>,
    /// Alert messages written to the center since start (re-sends included).
    pub alerts_sent: u64,
    /// Of those, the ones the center acknowledged (stored in its ledger).
    pub alerts_acknowledged: u64,
    /// QUIC's smoothed round-trip time to the center, ms; `None` before the first
    /// connection.
    pub rtt_ms: Option<f64>,
}

/// One held entry as `/api/upstreams` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RefusedStatus {
    /// The gateway's id of the refused alert.
    pub alert_id: String,
    /// The refused `Alert`'s revision; absent for a `Snapshot`.
    pub revision: Option<u32>,
    /// The center's error code by name (`ALERT_ID_CONFLICT`), or its number.
    pub code: String,
    /// The center's reason, as it wrote it.
    pub reason: String,
    /// When the last refusal arrived, ms since the Unix epoch.
    pub refused_unix_ms: u64,
    /// How many times the center refused this entry.
    pub refusals: u64,
}

impl From<RefusedEntry> for RefusedStatus {
    fn from(e: RefusedEntry) -> RefusedStatus {
        RefusedStatus {
            alert_id: e.alert_id,
            revision: e.revision,
            code: code_name(e.code),
            reason: e.reason,
            refused_unix_ms: e.refused_unix_ms,
            refusals: e.refusals,
        }
    }
}

/// An error code's name for status and metric labels: `ALERT_ID_CONFLICT`,
/// or `0x2a` for a code this build does not know.
fn code_name(code: u64) -> String {
    ErrorCode::from_u64(code)
        .and_then(ErrorCode::name)
        .map_or_else(|| format!("{code:#x}"), str::to_string)
}

/// The long-lived side of one upstream; each connection gets a [`Session`].
pub struct Uplink {
    pub(super) config: UpstreamConfig,
    gateway_id: String,
    client: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    pub(super) outbox: Arc<Outbox>,
    /// Woken when the feeder put something in the outbox.
    pub(super) outbox_ready: Arc<Notify>,
    /// Per camera, the last GOP number cut: GOP numbers keep counting across
    /// connections (PROTOCOL.md §6.8) so the center can tell a gap.
    gop_seq: DashMap<Arc<str>, u64>,
    /// The cameras, video and alert states relayed.
    source: Arc<dyn Source>,
    metrics: Arc<RelayMetrics>,
    state: Mutex<LinkState>,
    connects: AtomicU64,
    alerts_sent: AtomicU64,
    alerts_acked: AtomicU64,
    rtt_us: AtomicU64,
}

impl Uplink {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: UpstreamConfig,
        gateway_id: String,
        client: quinn::ClientConfig,
        endpoint: quinn::Endpoint,
        outbox: Arc<Outbox>,
        outbox_ready: Arc<Notify>,
        source: Arc<dyn Source>,
        metrics: Arc<RelayMetrics>,
    ) -> Uplink {
        Uplink {
            config,
            gateway_id,
            client,
            endpoint,
            outbox,
            outbox_ready,
            gop_seq: DashMap::new(),
            source,
            metrics,
            state: Mutex::new(LinkState::Connecting),
            connects: AtomicU64::new(0),
            alerts_sent: AtomicU64::new(0),
            alerts_acked: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Where this uplink stands. Counts the outbox in SQLite: call it from a
    /// blocking thread (`spawn_blocking`), not a runtime worker.
    pub fn status(&self) -> UplinkStatus {
        let rtt = self.rtt_us.load(Relaxed);
        UplinkStatus {
            id: self.config.id.clone(),
            address: self.config.address.clone(),
            state: self.state.locked().clone(),
            connects: self.connects.load(Relaxed),
            outbox_pending: self.outbox.len().unwrap_or(0),
            outbox_refused: self.outbox.refused_len().unwrap_or(0),
            refused: self
                .outbox
                .refused(REFUSED_SHOWN)
                .map(|r| r.into_iter().map(RefusedStatus::from).collect())
                .unwrap_or_default(),
            alerts_sent: self.alerts_sent.load(Relaxed),
            alerts_acknowledged: self.alerts_acked.load(Relaxed),
            rtt_ms: (rtt > 0).then(|| rtt as f64 / 1000.0),
        }
    }

    fn set_state(&self, state: LinkState) {
        let mut s = self.state.locked();
        *s = state;
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![("upstream".into(), self.config.id.clone())]
    }

    /// Dials, serves, redials with backoff, until `stop` says so.
    pub(super) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        loop {
            if *stop.borrow() {
                break;
            }
            self.set_state(LinkState::Connecting);
            let started = Instant::now();
            let result = self.connect_and_serve(&mut stop).await;
            backoff.connection_lasted(started.elapsed());
            self.metrics.connected.get_or_create(&self.labels()).set(0);
            let (delay, error) = match result {
                Ok(End::Stopped) => break,
                Ok(End::Goaway(reason)) => {
                    tracing::info!(upstream = %self.config.id, %reason, "command center said goaway");
                    (backoff.next_delay(), format!("goaway: {reason}"))
                }
                Err(e) => {
                    let delay = if e.needs_operator() {
                        backoff.max_delay()
                    } else if matches!(e.reason(), "timeout" | "reset") {
                        // Nobody answered, or a restarted center reset the
                        // old connection: nothing to overload, and the
                        // sooner the next dial, the sooner video and
                        // alerts flow again.
                        backoff.probe_delay()
                    } else {
                        backoff.next_delay()
                    };
                    tracing::warn!(
                        upstream = %self.config.id,
                        address = %self.config.address,
                        retry_in_ms = delay.as_millis() as u64,
                        "relay connection: {e}"
                    );
                    self.metrics
                        .connection_errors
                        .get_or_create(&vec![
                            ("upstream".into(), self.config.id.clone()),
                            ("reason".into(), e.reason().into()),
                        ])
                        .inc();
                    (delay, e.to_string())
                }
            };
            self.set_state(LinkState::Backoff {
                retry_in_ms: delay.as_millis() as u64,
                last_error: error,
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => break,
            }
        }
        self.set_state(LinkState::Stopped);
    }

    /// One connection: dial, handshake, then serve it until it ends.
    async fn connect_and_serve(
        self: &Arc<Self>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<End, SessionError> {
        let open = self.handshake().await?;
        self.serve(open, stop).await
    }

    /// Dials the center and runs the handshake (PROTOCOL.md §5): the control stream,
    /// `Hello` with the cameras, `Welcome` or `Refuse`, then the alert stream.
    async fn handshake(&self) -> Result<Opened, SessionError> {
        let addr = resolve(&self.config.address).await?;
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, &self.config.server_name)
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        let rtt = Duration::from_micros(self.rtt_us.load(Relaxed));
        let dial_timeout = (DIAL_TIMEOUT_MIN + rtt * 4).min(DIAL_TIMEOUT_MAX);
        let conn = tokio::time::timeout(dial_timeout, connecting)
            .await
            .map_err(|_| SessionError::Timeout("TLS handshake"))?
            .map_err(SessionError::Connection)?;

        // Every step of the handshake has to finish in time: a center that
        // grants no stream, no flow-control credit or no answer must not
        // hold the gateway in `connecting` for ever.
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let (mut ctl_send, ctl_recv) = tokio::time::timeout_at(deadline, conn.open_bi())
            .await
            .map_err(|_| SessionError::Stalled("the command center to allow a control stream"))?
            .map_err(SessionError::Connection)?;
        ctl_send.set_priority(CONTROL_STREAM_PRIORITY)?;
        let cameras = self.source.cameras();
        // PROTOCOL.md §2: Hello names the version the ALPN negotiated.
        let version = super::tls::negotiated_version(&conn).unwrap_or(PROTOCOL_VERSION);
        let hello = ControlMessage::Hello(Hello {
            protocol_version: version,
            gateway_id: self.gateway_id.clone(),
            software_version: format!("lookout {}", env!("CARGO_PKG_VERSION")),
            cameras: cameras.clone(),
        });
        tokio::time::timeout_at(deadline, write_message(&mut ctl_send, &hello))
            .await
            .map_err(|_| SessionError::Stalled("the command center to take Hello"))??;
        let mut ctl = MessageReader::<ControlMessage>::new(ctl_recv, Role::Center);
        let welcome = tokio::time::timeout_at(deadline, ctl.next())
            .await
            .map_err(|_| SessionError::Stalled("Welcome"))??;
        let center_id = match welcome {
            Some(ControlMessage::Welcome(w)) => w.center_id,
            Some(ControlMessage::Refuse(r)) => {
                conn.close(varint(r.code.value()), b"refused");
                return Err(SessionError::Refused {
                    code: r.code,
                    reason: r.reason,
                });
            }
            other => {
                let what = format!("expected Welcome, got {other:?}");
                conn.close(
                    varint(ErrorCode::PROTOCOL_VIOLATION.value()),
                    what.as_bytes(),
                );
                return Err(SessionError::Violation(what));
            }
        };
        let (alert_send, alert_recv) = tokio::time::timeout_at(deadline, conn.open_bi())
            .await
            .map_err(|_| SessionError::Stalled("the command center to allow an alert stream"))?
            .map_err(SessionError::Connection)?;
        alert_send.set_priority(ALERT_STREAM_PRIORITY)?;
        Ok(Opened {
            addr,
            conn,
            version,
            center_id,
            cameras,
            control: (ctl_send, ctl),
            alert: (alert_send, alert_recv),
        })
    }

    /// Serves a welcomed connection: the control, alert, video and timer tasks, until
    /// one of them ends it, the connection closes, or the gateway stops (then
    /// gracefully: the alert task drains acknowledgements first).
    async fn serve(
        self: &Arc<Self>,
        open: Opened,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<End, SessionError> {
        let Opened {
            addr,
            conn,
            version,
            center_id,
            cameras,
            control: (ctl_send, ctl),
            alert: (alert_send, alert_recv),
        } = open;
        self.connects.fetch_add(1, Relaxed);
        self.metrics.connected.get_or_create(&self.labels()).set(1);
        let outbox = self.outbox.clone();
        // The count is for the log line only; SQLite stays off the tokio workers.
        let waiting = match tokio::task::spawn_blocking(move || outbox.len()).await {
            Ok(Ok(n)) => n.to_string(),
            Ok(Err(e)) => format!("unknown ({e})"),
            Err(e) => format!("unknown ({e})"),
        };
        tracing::info!(
            upstream = %self.config.id,
            center = %center_id,
            address = %addr,
            cameras = cameras.len(),
            outbox = %waiting,
            "connected to command center"
        );
        self.set_state(LinkState::Connected {
            center_id: center_id.clone(),
            since_unix_ms: unix_ms(),
        });

        let session = Arc::new(Session {
            uplink: self.clone(),
            conn: conn.clone(),
            scheduler: Mutex::new(Scheduler::new(ClassRanks::default())),
            gops: DashMap::new(),
            timers: Notify::new(),
        });
        let (end_tx, mut end_rx) = mpsc::channel::<Result<End, SessionError>>(4);
        // The center's refusals come on the control stream; the alert task
        // owns what is in flight.
        let (refused_tx, refused_rx) = mpsc::channel::<AlertRefused>(REFUSALS_QUEUED);
        // The session's own stop: set when the session ends for any reason,
        // so every task of it finishes.
        let (quit_tx, quit_rx) = watch::channel(false);

        let mut tasks = tokio::task::JoinSet::new();
        {
            let s = session.clone();
            let end = end_tx.clone();
            let quit = quit_rx.clone();
            let cams: HashMap<String, CameraInfo> =
                cameras.iter().map(|c| (c.id.clone(), c.clone())).collect();
            tasks.spawn(async move {
                let r = s.control(ctl_send, ctl, cams, refused_tx, quit).await;
                report_end(&end, r).await;
            });
        }
        {
            let s = session.clone();
            let end = end_tx.clone();
            let quit = quit_rx.clone();
            tasks.spawn(async move {
                let r = s.alerts(alert_send, alert_recv, refused_rx, quit).await;
                report_end(&end, r).await;
            });
        }
        {
            let s = session.clone();
            let quit = quit_rx.clone();
            tasks.spawn(async move { s.video(quit).await });
        }
        {
            let s = session.clone();
            let quit = quit_rx.clone();
            tasks.spawn(async move { s.timers(quit).await });
        }
        if let Some(source) = self.source.clips() {
            if lookout_codecs::relay::has_clips(version) {
                let s = session.clone();
                let quit = quit_rx.clone();
                tasks.spawn(async move { s.clips(source, quit).await });
            } else {
                tracing::warn!(upstream = %self.config.id, version, "the command center speaks protocol version {version}, without clips: alert clips stay on this gateway");
            }
        }
        drop(end_tx);

        let result = tokio::select! {
            r = end_rx.recv() => r.unwrap_or(Ok(End::Stopped)),
            e = conn.closed() => Err(SessionError::Connection(e)),
            _ = stop.changed() => {
                // Graceful: tell the center, let the alert task drain acks.
                quit_tx.send_replace(true);
                let drained = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), async {
                    while let Some(r) = end_rx.recv().await {
                        if r.is_err() { break; }
                    }
                }).await;
                if drained.is_err() {
                    tracing::warn!(upstream = %self.config.id, "stopping without every acknowledgement");
                }
                conn.close(varint(ErrorCode::NO_ERROR.value()), b"gateway stopping");
                Ok(End::Stopped)
            }
        };
        quit_tx.send_replace(true);
        if let Err(e) = &result {
            conn.close(varint(e.code().value()), e.to_string().as_bytes());
        }
        // Tasks end on `quit` or with the connection; don't wait on a stuck one.
        let joined = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            tracing::warn!(upstream = %self.config.id, "a session task did not end within 2 s; aborted");
        }
        tasks.abort_all();
        result
    }

    /// The next GOP number of a camera.
    fn next_gop_seq(&self, camera: &Arc<str>) -> u64 {
        let mut e = self.gop_seq.entry(camera.clone()).or_insert(0);
        *e += 1;
        *e
    }
}

/// A welcomed connection, ready to serve.
struct Opened {
    addr: SocketAddr,
    conn: quinn::Connection,
    /// The protocol version negotiated (ALPN).
    version: u32,
    center_id: String,
    /// The cameras announced in `Hello`.
    cameras: Vec<CameraInfo>,
    /// The control stream, `Welcome` read.
    control: (quinn::SendStream, MessageReader<ControlMessage>),
    /// The alert stream.
    alert: (quinn::SendStream, quinn::RecvStream),
}

/// Hands a task's end to the session; once the session has ended on an earlier one it
/// no longer listens, and this end changes nothing.
async fn report_end(end: &mpsc::Sender<Result<End, SessionError>>, r: Result<End, SessionError>) {
    if let Err(mpsc::error::SendError(r)) = end.send(r).await {
        tracing::debug!("session task ended after the session: {r:?}");
    }
}

/// How a connection ended without an error.
#[derive(Debug)]
enum End {
    /// The gateway is stopping.
    Stopped,
    /// The center sent `Goaway`.
    Goaway(String),
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot dial: {0}")]
    Connect(String),
    #[error("{0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The center answered the dial, then stopped short in the handshake:
    /// unlike a dial nobody answers, retried with the growing backoff.
    #[error("timed out waiting for {0}")]
    Stalled(&'static str),
    #[error("refused by the command center ({code}): {reason}")]
    Refused { code: ErrorCode, reason: String },
    #[error("protocol violation by the command center: {0}")]
    Violation(String),
    /// Reading or writing a stream failed; the center's protocol
    /// violations are [`SessionError::Violation`] instead.
    #[error("{0}")]
    Stream(StreamError),
    #[error("no pong for {0:?}")]
    PingTimeout(Duration),
    #[error("outbox: {0}")]
    Outbox(String),
}

/// Bytes from the center that break the protocol are its violation, and
/// say so; a stream that failed because its connection ended is that
/// connection's error (a restarted center's reset is a reset, whichever
/// stream saw it first); other stream errors stay what they are.
impl From<StreamError> for SessionError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Protocol(p) => SessionError::Violation(p.to_string()),
            StreamError::Read(quinn::ReadError::ConnectionLost(c))
            | StreamError::Write(quinn::WriteError::ConnectionLost(c)) => {
                SessionError::Connection(c)
            }
            e => SessionError::Stream(e),
        }
    }
}

impl From<quinn::ClosedStream> for SessionError {
    fn from(e: quinn::ClosedStream) -> Self {
        SessionError::Stream(StreamError::Closed(e))
    }
}

impl SessionError {
    /// Refusals an operator has to fix: retrying fast won't help.
    fn needs_operator(&self) -> bool {
        matches!(self, SessionError::Refused { code, .. }
            if *code == ErrorCode::UNSUPPORTED_VERSION || *code == ErrorCode::UNAUTHORIZED)
            || self.is_tls()
    }

    /// The TLS handshake failed, on our side or the center's (a certificate
    /// the other side does not accept). TLS 1.3 lets the gateway finish its
    /// half before the center has judged its certificate, so the center's
    /// verdict arrives as a close with a crypto error code.
    fn is_tls(&self) -> bool {
        match self {
            SessionError::Connection(quinn::ConnectionError::TransportError(_)) => true,
            SessionError::Connection(quinn::ConnectionError::ConnectionClosed(c))
            | SessionError::Stream(StreamError::Write(quinn::WriteError::ConnectionLost(
                quinn::ConnectionError::ConnectionClosed(c),
            )))
            | SessionError::Stream(StreamError::Read(quinn::ReadError::ConnectionLost(
                quinn::ConnectionError::ConnectionClosed(c),
            ))) => (0x100..0x200).contains(&u64::from(c.error_code)),
            _ => false,
        }
    }

    fn reason(&self) -> &'static str {
        if self.is_tls() {
            return "tls";
        }
        match self {
            SessionError::Resolve(_) => "resolve",
            SessionError::Connect(_) => "dial",
            SessionError::Connection(quinn::ConnectionError::TimedOut) => "timeout",
            SessionError::Connection(quinn::ConnectionError::Reset) => "reset",
            SessionError::Connection(quinn::ConnectionError::TransportError(_)) => "tls",
            SessionError::Connection(_) => "connection",
            SessionError::Timeout(_) => "timeout",
            SessionError::Stalled(_) => "stalled",
            SessionError::Refused { .. } => "refused",
            SessionError::Violation(_) => "protocol",
            SessionError::Stream(_) => "stream",
            SessionError::PingTimeout(_) => "ping_timeout",
            SessionError::Outbox(_) => "outbox",
        }
    }

    /// The code to close the connection with.
    fn code(&self) -> ErrorCode {
        match self {
            SessionError::Violation(_) => ErrorCode::PROTOCOL_VIOLATION,
            SessionError::PingTimeout(_) => ErrorCode::PING_TIMEOUT,
            SessionError::Refused { code, .. } => *code,
            _ => ErrorCode::INTERNAL_ERROR,
        }
    }
}

async fn resolve(address: &str) -> Result<SocketAddr, SessionError> {
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| SessionError::Resolve(format!("{address}: {e}")))?
        .next()
        .ok_or_else(|| SessionError::Resolve(format!("{address}: no address")))
}

/// What the scheduler wants of a GOP's writer now. It travels on a `watch` channel:
/// the latest decision replaces the one before, so a writer far behind (a congested
/// link) holds one value, never a growing queue of them, and a reset is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GopCommand {
    /// Send at this stream priority (higher first).
    Priority(i32),
    /// Give the GOP up: reset the stream with this code.
    Reset(ErrorCode),
}

/// One connection's state.
struct Session {
    uplink: Arc<Uplink>,
    conn: quinn::Connection,
    /// Decides GOP priorities and resets; never held across an await.
    scheduler: Mutex<Scheduler>,
    /// The command of each GOP stream in flight (see [`GopCommand`]).
    gops: DashMap<(Arc<str>, u64), watch::Sender<GopCommand>>,
    /// Woken when the scheduler may have a new deadline.
    timers: Notify,
}

impl Session {
    fn camera_labels(&self, camera: &str) -> Vec<(String, String)> {
        vec![
            ("upstream".into(), self.uplink.config.id.clone()),
            ("camera".into(), camera.to_string()),
        ]
    }

    fn gop_outcome(&self, camera: &str, outcome: &str) {
        let mut l = self.camera_labels(camera);
        l.push(("outcome".into(), outcome.into()));
        self.uplink.metrics.gops.get_or_create(&l).inc();
    }

    /// Runs `f` on the scheduler, then carries out what it decided.
    fn with_scheduler<T>(&self, f: impl FnOnce(&mut Scheduler) -> T) -> Option<T> {
        let mut s = self.scheduler.locked();
        let out = f(&mut s);
        while let Some(action) = s.poll_action() {
            match action {
                Action::SetPriority {
                    camera,
                    gop_seq,
                    priority,
                } => {
                    if let Some(tx) = self.gops.get(&(camera, gop_seq)) {
                        // Never over a reset; a writer that has ended ignores it.
                        tx.send_if_modified(|c| match c {
                            GopCommand::Priority(p) if *p != priority => {
                                *c = GopCommand::Priority(priority);
                                true
                            }
                            _ => false,
                        });
                    }
                }
                Action::Reset {
                    camera,
                    gop_seq,
                    code,
                } => {
                    self.gop_outcome(&camera, "reset");
                    tracing::debug!(upstream = %self.uplink.config.id, camera = %camera, gop = gop_seq, code = %code, "GOP stream reset");
                    if let Some((_, tx)) = self.gops.remove(&(camera, gop_seq)) {
                        // Seen by the writer even after the sender is dropped here.
                        tx.send_replace(GopCommand::Reset(code));
                    }
                }
            }
        }
        Some(out)
    }
}

pub use crate::clock::unix_ms;
