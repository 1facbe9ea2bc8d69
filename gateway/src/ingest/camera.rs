//! One task per camera: the connection state machine
//! connecting → live → (stalled | backoff | failed) → connecting …
//!
//! Each attempt opens a fresh GStreamer [`Connection`](super::pipeline) (on a
//! blocking thread), then watches it: bus errors and end-of-stream arrive on
//! a channel, a 200 ms tick measures frame rate and bitrate and catches the
//! half-open camera (connected, no units for the stall timeout). Whatever
//! ends an attempt, the pipeline is torn down and the camera waits out a
//! capped, jittered backoff (`backoff.rs`) before the next one. Nothing one
//! camera does reaches another: each has its own pipeline, task and counters.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::IngestSettings;
use super::backoff::{self, Backoff};
use super::fanout::Fanout;
use super::guard::{Guard, GuardSpec};
use super::health::{ActiveTransport, CameraHealth, CameraState, RateMeter};
use super::pipeline::{self, ConnectSpec, ConnectionError, PipelineEvent, Retry, StreamSink};
use crate::config::{CameraCodec, CameraConfig, Transport};
use lookout_core::unit::Codec;

/// How often the task looks at its camera's counters.
pub(super) const TICK: Duration = Duration::from_millis(200);

/// Window over which fps and bitrate are measured.
pub(super) const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Retry interval after a failure retrying cannot fix soon (wrong password:
/// many cameras lock the account after a few quick wrong attempts).
const SLOW_RETRY: Duration = Duration::from_secs(30);

/// How long a pipeline may take to stop on its own before the guard closes
/// the camera's socket under it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How much longer, after the socket is closed, before the pipeline is left
/// to its blocking thread (the camera moves on).
const CLOSE_LIMIT: Duration = Duration::from_secs(3);

/// Pipelines of one camera that may be left stopping before it stops
/// reconnecting.
const MAX_STUCK_TEARDOWNS: u64 = 2;

/// A camera as ingest holds it: shared by its task, the registry, the
/// streaming thread and subscribers.
#[derive(Debug)]
pub struct Camera {
    /// The configured id (fixed for the camera's life: a reload that
    /// changes it is a removal and an addition).
    pub id: Arc<str>,
    /// Replaced on reload when only fields outside ingest change (name,
    /// sampling, …); a change to the connection restarts the task instead.
    config: RwLock<Arc<CameraConfig>>,
    /// Live counters and state, written by the streaming thread and the
    /// camera task; kept across reconnects and restarts.
    pub health: Arc<CameraHealth>,
    /// Kept across reconnects and restarts, so subscriptions survive them.
    pub fanout: Fanout,
    /// Last sequence number handed out.
    seq: AtomicU64,
    /// Connections opened so far (the `session` of each unit).
    sessions: AtomicU32,
}

impl Camera {
    pub(crate) fn new(config: Arc<CameraConfig>, capacity: usize) -> Camera {
        Camera {
            id: Arc::from(config.id.as_str()),
            config: RwLock::new(config),
            health: Arc::new(CameraHealth::default()),
            fanout: Fanout::new(capacity),
            seq: AtomicU64::new(0),
            sessions: AtomicU32::new(0),
        }
    }

    pub fn config(&self) -> Arc<CameraConfig> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set_config(&self, config: Arc<CameraConfig>) {
        match self.config.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Relaxed) + 1
    }

    /// Numbers a new connection or push session of this camera (from 1).
    pub(crate) fn next_session(&self) -> u32 {
        self.sessions.fetch_add(1, Relaxed) + 1
    }
}

/// How one attempt ended.
enum Outcome {
    /// Ingest is stopping this camera.
    Stopped,
    /// No unit within the stall timeout.
    Stalled {
        was_live: bool,
    },
    Failed(ConnectionError),
    /// The camera ended the stream.
    Ended,
}

/// The camera's task; returns when `stop` fires (or its sender is dropped).
pub(crate) async fn run(
    camera: Arc<Camera>,
    settings: watch::Receiver<IngestSettings>,
    mut stop: watch::Receiver<bool>,
) {
    let health = camera.health.clone();
    let mut backoff = backoff::for_camera(settings.borrow().backoff);
    // `auto` starts with UDP; once UDP is seen to fail after the camera
    // answered RTSP, this camera stays on TCP.
    let mut udp_failed = false;
    loop {
        let config = camera.config();
        let s = *settings.borrow();
        backoff.set_policy(s.backoff);
        let transport = match config.transport {
            Transport::Tcp => ActiveTransport::Tcp,
            Transport::Udp => ActiveTransport::Udp,
            Transport::Auto if udp_failed => ActiveTransport::Tcp,
            Transport::Auto => ActiveTransport::Udp,
        };
        let (location, url_user, url_pass) = pipeline::split_userinfo(&config.url);
        let spec = ConnectSpec {
            location,
            user: config.username.clone().or(url_user),
            password: config.password.clone().or(url_pass),
            transport,
            timeout: s.stall_timeout,
            expected: config.codec.map(|c| match c {
                CameraCodec::H264 => Codec::H264,
                CameraCodec::H265 => Codec::H265,
            }),
        };
        let session = camera.next_session();
        if session > 1 {
            health.reconnects.fetch_add(1, Relaxed);
        }
        health.set_state(CameraState::Connecting);
        health.set_transport(transport);
        tracing::debug!(camera = %camera.id, session, transport = transport.as_str(), url = %config.url_redacted(), "connecting");

        let sink = Arc::new(StreamSink::new(camera.clone(), session, spec.expected));
        let guard = Guard::open(GuardSpec {
            camera: camera.id.clone(),
            location: spec.location.clone(),
            allow_basic: config.basic_auth,
            deadline: s.stall_timeout,
            // Half the stall timeout: a trickled message is named for what it
            // is before the watchdog calls the camera silent.
            message_deadline: s.stall_timeout / 2,
        })
        .await;
        let mut was_live = false;
        let outcome = match guard {
            Err(e) => Outcome::Failed(e),
            Ok(guard) => {
                let mut spec = spec;
                if let Some(g) = &guard {
                    spec.location = g.local_url.clone();
                }
                let opened = {
                    let sink = sink.clone();
                    tokio::task::spawn_blocking(move || pipeline::open(&spec, sink)).await
                };
                let outcome = match opened {
                    Ok(Ok(mut conn)) => {
                        let outcome = supervise(
                            &camera,
                            &mut conn.events,
                            &s,
                            &mut stop,
                            &mut backoff,
                            &mut was_live,
                        )
                        .await;
                        close_bounded(&camera, conn, guard.as_ref()).await;
                        outcome
                    }
                    Ok(Err(e)) => Outcome::Failed(e),
                    Err(e) => Outcome::Failed(ConnectionError {
                        stage: "setup",
                        cause: format!("pipeline setup panicked: {e}"),
                        retry: Retry::Soon,
                    }),
                };
                explain(&camera, outcome, guard.as_ref())
            }
        };
        health.set_rates(0.0, 0.0);

        let (state, retry) = match outcome {
            Outcome::Stopped => return,
            Outcome::Stalled { was_live } => {
                health.stalls.fetch_add(1, Relaxed);
                let what = if was_live {
                    "no video"
                } else {
                    "no video since connecting"
                };
                let msg = format!(
                    "stalled: {what} for {} ms (half-open camera); reconnecting",
                    s.stall_timeout.as_millis()
                );
                tracing::warn!(camera = %camera.id, stage = "watchdog", transport = transport.as_str(), "{msg}");
                health.set_last_error(Some(msg));
                (CameraState::Stalled, Retry::Soon)
            }
            Outcome::Failed(e) => {
                let state = match e.retry {
                    Retry::Soon => CameraState::Backoff,
                    Retry::Slowly => CameraState::Failed,
                };
                tracing::warn!(camera = %camera.id, stage = e.stage, transport = transport.as_str(), "connection failed: {}", e.cause);
                health.set_last_error(Some(e.to_string()));
                (state, e.retry)
            }
            Outcome::Ended => {
                tracing::warn!(camera = %camera.id, stage = "rtsp", "the camera ended the stream");
                health.set_last_error(Some("rtsp: the camera ended the stream".into()));
                (CameraState::Backoff, Retry::Soon)
            }
        };
        if config.transport == Transport::Auto
            && transport == ActiveTransport::Udp
            && !was_live
            && sink.negotiated()
            && !udp_failed
        {
            udp_failed = true;
            tracing::info!(camera = %camera.id, "no video over UDP after RTSP setup; using TCP from now on");
        }
        drop(sink);
        health.set_state(state);
        let delay = match retry {
            Retry::Soon => backoff.next_delay(),
            Retry::Slowly => s.backoff.max.max(SLOW_RETRY),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !wait_for_teardowns(&camera, &mut stop).await {
            return;
        }
    }
}

/// Stops a connection's pipeline within a bounded time. Closing normally takes
/// well under [`CLOSE_GRACE`]; an rtspsrc blocked on a camera that trickles or
/// withholds bytes is freed by closing the guard's sockets under it. A pipeline
/// still not stopped after [`CLOSE_LIMIT`] is abandoned to its blocking thread
/// and counted; [`wait_for_teardowns`] caps how many one camera may have.
async fn close_bounded(camera: &Arc<Camera>, conn: pipeline::Connection, guard: Option<&Guard>) {
    let mut closing = tokio::task::spawn_blocking(move || pipeline::close(conn));
    if tokio::time::timeout(CLOSE_GRACE, &mut closing)
        .await
        .is_ok()
    {
        return;
    }
    if let Some(g) = guard {
        tracing::debug!(camera = %camera.id, stage = "teardown", "pipeline still stopping after {CLOSE_GRACE:?}; closing the camera's socket under it");
        g.cut();
    }
    if tokio::time::timeout(CLOSE_LIMIT, &mut closing)
        .await
        .is_ok()
    {
        return;
    }
    let health = camera.health.clone();
    health.abandoned_teardowns.fetch_add(1, Relaxed);
    health.stuck_teardowns.fetch_add(1, Relaxed);
    tracing::warn!(camera = %camera.id, stage = "teardown", "pipeline did not stop within {:?}; left to finish on its own", CLOSE_GRACE + CLOSE_LIMIT);
    tokio::spawn(async move {
        if let Err(e) = closing.await {
            tracing::warn!("abandoned pipeline teardown panicked: {e}");
        }
        health.stuck_teardowns.fetch_sub(1, Relaxed);
    });
}

/// Holds the next attempt while this camera has [`MAX_STUCK_TEARDOWNS`]
/// pipelines that would not stop, so a camera that wedges GStreamer cannot
/// pile up threads and sockets. `false` when ingest is stopping.
async fn wait_for_teardowns(camera: &Camera, stop: &mut watch::Receiver<bool>) -> bool {
    let health = &camera.health;
    let mut told = false;
    while health.stuck_teardowns.load(Relaxed) >= MAX_STUCK_TEARDOWNS {
        if !told {
            told = true;
            let msg = format!(
                "teardown: {MAX_STUCK_TEARDOWNS} earlier connections have not stopped; not reconnecting until they do"
            );
            tracing::warn!(camera = %camera.id, stage = "teardown", "{msg}");
            health.set_last_error(Some(msg));
            health.set_state(CameraState::Failed);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
    true
}

/// The guard knows best why a connection ended when it closed it: the camera
/// broke an RTSP limit, or asked only for Basic authentication.
fn explain(camera: &Camera, outcome: Outcome, guard: Option<&Guard>) -> Outcome {
    let Some(g) = guard else {
        return outcome;
    };
    if matches!(outcome, Outcome::Stopped) {
        return outcome;
    }
    if let Some(why) = g.refusal() {
        camera.health.rtsp_refusals.fetch_add(1, Relaxed);
        return Outcome::Failed(ConnectionError {
            stage: "rtsp",
            cause: format!("refused: the camera sent {why}; connection closed"),
            retry: Retry::Soon,
        });
    }
    if g.basic_withheld() && matches!(&outcome, Outcome::Failed(e) if e.retry == Retry::Slowly) {
        return Outcome::Failed(ConnectionError {
            stage: "rtsp",
            cause: "the camera asks for Basic authentication only, which sends the password \
                    in clear text; not answered (set `basic_auth = true` for this camera to allow it)"
                .into(),
            retry: Retry::Slowly,
        });
    }
    outcome
}

/// Watches one open connection until it fails, stalls or is stopped.
async fn supervise(
    camera: &Camera,
    events: &mut tokio::sync::mpsc::Receiver<PipelineEvent>,
    s: &IngestSettings,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
    live: &mut bool,
) -> Outcome {
    let health = &camera.health;
    let mut meter = RateMeter::new(RATE_WINDOW);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_units = health.units.load(Relaxed);
    let mut last_progress = Instant::now();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(PipelineEvent::Failed(e)) => return Outcome::Failed(e),
                Some(PipelineEvent::Ended) | None => return Outcome::Ended,
            },
            _ = stop.wait_for(|s| *s) => return Outcome::Stopped,
            _ = tick.tick() => {
                let now = Instant::now();
                let units = health.units.load(Relaxed);
                if units != last_units {
                    last_units = units;
                    last_progress = now;
                    if !*live {
                        *live = true;
                        health.set_state(CameraState::Live);
                        backoff.reset();
                        tracing::info!(camera = %camera.id, "live");
                    }
                }
                if let Some((fps, kbps)) = meter.sample(now, units, health.bytes.load(Relaxed))
                    && *live
                {
                    health.set_rates(fps, kbps);
                }
                if now.duration_since(last_progress) >= s.stall_timeout {
                    return Outcome::Stalled { was_live: *live };
                }
            }
        }
    }
}
