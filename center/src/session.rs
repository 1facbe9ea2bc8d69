//! One gateway's connection to the center (PROTOCOL.md §4, §9, §10): the
//! TLS identity check, `Hello` → `Welcome` (or `Refuse`), then the control
//! stream, the alert stream (stored in the ledger, then acknowledged; what
//! the ledger would not store is refused with `AlertRefused`, and what it
//! could not store closes the connection, never acknowledged) and every GOP
//! stream, until the connection ends.

use lookout_core::sync::Locked;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::FutureExt;
use lookout_codecs::relay::{
    AlertAck, AlertMessage, AlertRefused, CameraChange, ControlMessage, ErrorCode, Hello,
    PROTOCOL_VERSION, Ping, Pong, Refuse, Role, SnapshotAck, VideoMessage, Welcome,
};
use tokio::sync::Mutex as AsyncMutex;

use super::ledger::{Incoming, StoreOutcome, Stored};
use super::{
    AlertKey, Center, CenterCamera, CompleteGop, GatewayLink, LiveFrame, unix_ms, unix_ns,
};
use lookout_core::relay::stream::{MessageReader, ReadBudget, StreamError, varint, write_message};
use lookout_core::relay::tls;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Alert messages stored in one ledger transaction at most.
const STORE_BATCH: usize = 256;
/// Bytes of incomplete video messages the center holds for one connection,
/// all its GOP streams together (each may announce up to 8 MiB, and a
/// gateway may open a thousand). A GOP stream that would go over it is
/// stopped with `UNWANTED` and dropped, like a GOP the wall skips; far
/// above what a gateway's GOP streams have in flight at once.
const VIDEO_BUDGET: usize = 64 << 20;

/// Accepts one connection attempt and serves it to the end. Every attempt
/// that does not end welcomed is counted by reason
/// (`lookout_center_refused_connections_total`) and logged with the peer's
/// address.
pub(super) async fn serve(center: Arc<Center>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            let reason = handshake_failure(&e);
            if reason == "tls" {
                tracing::warn!(peer = %remote, "gateway refused at the TLS handshake: {e}");
            } else {
                tracing::warn!(peer = %remote, reason, "connection attempt failed before TLS: {e}");
            }
            refused(&center, reason);
            return;
        }
    };
    let Some(identity) = tls::peer_identity(&conn) else {
        tracing::warn!(peer = %remote, "gateway without a certificate");
        refused(&center, "tls");
        conn.close(varint(ErrorCode::UNAUTHORIZED.value()), b"no certificate");
        return;
    };
    match handshake(&center, &conn, &identity).await {
        Ok((link, ctl_send, ctl)) => {
            run(&center, &conn, &link, ctl_send, ctl).await;
            if link.conn.lock().is_ok_and(|c| {
                c.as_ref()
                    .is_some_and(|c| c.stable_id() == conn.stable_id())
            }) {
                link.connected.store(false, Relaxed);
                link.last_seen_unix_ms.store(unix_ms(), Relaxed);
                center.metrics.gateways_connected.dec();
            }
            tracing::info!(gateway = %link.id, peer = %remote, reason = ?conn.close_reason(), "gateway disconnected");
        }
        Err(r) => {
            refused(&center, r.reason);
            tracing::warn!(
                peer = %remote,
                certificate = %lookout_core::logging::untrusted(identity.common_name.as_deref().unwrap_or("(no common name)")),
                reason = r.reason,
                "gateway connection refused: {}",
                // Names the gateway id the peer claimed: its words, escaped.
                lookout_core::logging::untrusted(&r.why)
            );
        }
    }
}

/// The refusal reason of a failed QUIC handshake: `tls` when TLS refused
/// the peer (no or a foreign certificate, no common ALPN: a crypto error
/// code, whichever side sent it), `no_hello` when the peer closed or went
/// silent before the handshake ended (as it may before `Hello`), and `quic`
/// for packets that only looked like QUIC (an Initial that does not
/// authenticate, a malformed one).
fn handshake_failure(e: &quinn::ConnectionError) -> &'static str {
    use quinn::ConnectionError as E;
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    match e {
        E::TransportError(t) if crypto(u64::from(t.code)) => "tls",
        E::ConnectionClosed(c) if crypto(u64::from(c.error_code)) => "tls",
        E::ConnectionClosed(_) | E::ApplicationClosed(_) | E::Reset | E::TimedOut => "no_hello",
        E::TransportError(_) | E::VersionMismatch | E::LocallyClosed | E::CidsExhausted => "quic",
    }
}

fn refused(center: &Center, reason: &str) {
    center
        .metrics
        .refused
        .get_or_create(&vec![("reason".into(), reason.into())])
        .inc();
}

/// Why a connection was not welcomed: the `reason` it is counted under
/// (`no_hello`, `protocol`, `version`, `unauthorized`, `conflict`, `lost`)
/// and what happened, for the log. The connection is closed already.
struct Refusal {
    reason: &'static str,
    why: String,
}

/// Closes `conn` with `PROTOCOL_VIOLATION` and says so.
fn violation(conn: &quinn::Connection, why: String) -> Refusal {
    close(conn, ErrorCode::PROTOCOL_VIOLATION, &why);
    Refusal {
        reason: "protocol",
        why,
    }
}

/// Resolves when the gateway opens a stream it may not open before
/// `Welcome` (PROTOCOL.md §4 rule 1 and 3): any unidirectional stream, and a
/// second bidirectional one once the control stream is open.
async fn early_stream(conn: &quinn::Connection, control_open: bool) -> String {
    tokio::select! {
        Ok(_) = conn.accept_uni() => "a unidirectional stream opened before Welcome".into(),
        Ok(_) = conn.accept_bi(), if control_open => {
            "a second bidirectional stream opened before Welcome".into()
        }
        else => std::future::pending().await,
    }
}

type Control = (
    Arc<GatewayLink>,
    quinn::SendStream,
    MessageReader<ControlMessage>,
);

/// Reads `Hello`, checks it against the certificate and the gateways
/// already connected, and answers `Welcome` (or `Refuse`).
async fn handshake(
    center: &Arc<Center>,
    conn: &quinn::Connection,
    identity: &tls::PeerIdentity,
) -> Result<Control, Refusal> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let no_hello = |why: String| Refusal {
        reason: "no_hello",
        why,
    };
    let (mut send, recv) = tokio::select! {
        r = tokio::time::timeout_at(deadline, conn.accept_bi()) => match r {
            Err(_) => {
                let why = format!("no control stream within {HANDSHAKE_TIMEOUT:?}");
                close(conn, ErrorCode::PROTOCOL_VIOLATION, &why);
                return Err(no_hello(why));
            }
            Ok(Err(e)) => return Err(no_hello(format!("connection ended before Hello: {e}"))),
            Ok(Ok(s)) => s,
        },
        why = early_stream(conn, false) => return Err(violation(conn, why)),
    };
    let mut ctl = MessageReader::<ControlMessage>::new(recv, Role::Gateway);
    let first = tokio::select! {
        r = tokio::time::timeout_at(deadline, ctl.next()) => match r {
            Err(_) => {
                let why = format!("no Hello within {HANDSHAKE_TIMEOUT:?}");
                close(conn, ErrorCode::PROTOCOL_VIOLATION, &why);
                return Err(no_hello(why));
            }
            Ok(r) => r,
        },
        why = early_stream(conn, true) => return Err(violation(conn, why)),
    };
    let hello: Hello = match first {
        Ok(Some(ControlMessage::Hello(h))) => h,
        Ok(Some(other)) => {
            return Err(violation(conn, format!("expected Hello, got {other:?}")));
        }
        Ok(None) => {
            return Err(violation(
                conn,
                "control stream finished before Hello".into(),
            ));
        }
        Err(StreamError::Protocol(p)) => return Err(violation(conn, p.to_string())),
        Err(StreamError::Read(quinn::ReadError::Reset(code))) => {
            return Err(violation(
                conn,
                format!("control stream reset ({code}) before Hello"),
            ));
        }
        Err(e) => return Err(no_hello(format!("connection ended before Hello: {e}"))),
    };
    // Sent with Hello, before Welcome could have arrived: also too early.
    if let Some(why) = early_stream(conn, true).now_or_never() {
        return Err(violation(conn, why));
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        let why = format!(
            "protocol version {} in Hello; this center speaks {PROTOCOL_VERSION}",
            hello.protocol_version
        );
        refuse(conn, &mut send, ErrorCode::UNSUPPORTED_VERSION, &why).await;
        return Err(Refusal {
            reason: "version",
            why,
        });
    }
    if !identity.may_use_id(&hello.gateway_id) {
        let why = format!(
            "certificate {:?} may not use gateway id `{}`",
            identity.common_name, hello.gateway_id
        );
        refuse(conn, &mut send, ErrorCode::UNAUTHORIZED, &why).await;
        return Err(Refusal {
            reason: "unauthorized",
            why,
        });
    }
    // Same id connected already: the same certificate replaces the old
    // connection (a gateway that lost its link and redialled), another
    // certificate is refused.
    let link = match center.gateways.get(&hello.gateway_id).map(|g| g.clone()) {
        Some(link) => {
            let same = link
                .identity
                .lock()
                .is_ok_and(|i| i.sha256_fingerprint == identity.sha256_fingerprint);
            if link.connected.load(Relaxed) && !same {
                let why = format!(
                    "gateway id `{}` is connected with another certificate",
                    hello.gateway_id
                );
                refuse(conn, &mut send, ErrorCode::GATEWAY_ID_CONFLICT, &why).await;
                return Err(Refusal {
                    reason: "conflict",
                    why,
                });
            }
            if let Ok(Some(old)) = link.conn.lock().map(|c| c.clone()) {
                old.close(
                    varint(ErrorCode::REPLACED.value()),
                    b"replaced by a new connection",
                );
            }
            link
        }
        None => {
            let link = Arc::new(GatewayLink {
                id: hello.gateway_id.clone(),
                identity: std::sync::Mutex::new(identity.clone()),
                remote: std::sync::Mutex::new(conn.remote_address()),
                software: std::sync::Mutex::new(String::new()),
                connected: Default::default(),
                conn: std::sync::Mutex::new(None),
                since_unix_ms: Default::default(),
                last_seen_unix_ms: Default::default(),
                connections: Default::default(),
                rtt_us: Default::default(),
                cameras: Default::default(),
            });
            center
                .gateways
                .entry(hello.gateway_id.clone())
                .or_insert(link)
                .clone()
        }
    };
    {
        let mut i = link.identity.locked();
        *i = identity.clone();
    }
    {
        let mut r = link.remote.locked();
        *r = conn.remote_address();
    }
    {
        let mut s = link.software.locked();
        *s = hello.software_version.clone();
    }
    // The camera list is complete in every Hello.
    let listed: std::collections::HashSet<&str> =
        hello.cameras.iter().map(|c| c.id.as_str()).collect();
    link.cameras.retain(|id, _| listed.contains(id.as_str()));
    for info in hello.cameras {
        upsert_camera(&link, info);
    }
    // Marked connected only once Welcome is on its way: a connection lost
    // before that leaves no gateway shown as connected.
    let lost = |e: StreamError| Refusal {
        reason: "lost",
        why: format!("connection lost before Welcome: {e}"),
    };
    write_message(
        &mut send,
        &ControlMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            center_id: center.id.clone(),
        }),
    )
    .await
    .map_err(lost)?;
    if center.subscribe.mode != lookout_codecs::relay::SubscribeMode::All {
        write_message(
            &mut send,
            &ControlMessage::Subscribe(center.subscribe.clone()),
        )
        .await
        .map_err(lost)?;
    }
    {
        let mut c = link.conn.locked();
        if !link.connected.swap(true, Relaxed) {
            center.metrics.gateways_connected.inc();
        }
        *c = Some(conn.clone());
    }
    link.since_unix_ms.store(unix_ms(), Relaxed);
    link.last_seen_unix_ms.store(unix_ms(), Relaxed);
    link.connections.fetch_add(1, Relaxed);
    tracing::info!(
        gateway = %link.id,
        peer = %conn.remote_address(),
        cameras = link.cameras.len(),
        software = %hello.software_version,
        "gateway connected"
    );
    Ok((link, send, ctl))
}

fn upsert_camera(link: &GatewayLink, info: lookout_codecs::relay::CameraInfo) {
    match link.cameras.get(&info.id) {
        Some(c) => {
            let mut i = c.info.locked();
            *i = info;
        }
        None => {
            link.cameras
                .insert(info.id.clone(), Arc::new(CenterCamera::new(&link.id, info)));
        }
    }
}

fn close(conn: &quinn::Connection, code: ErrorCode, why: &str) {
    let reason: Vec<u8> = why.bytes().take(512).collect();
    conn.close(varint(code.value()), &reason);
}

/// PROTOCOL.md §6.3: `Refuse`, finish, give the gateway a moment to read
/// it, close with the same code.
async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    why: &str,
) {
    let _ = write_message(
        send,
        &ControlMessage::Refuse(Refuse {
            code,
            reason: why.chars().take(512).collect(),
        }),
    )
    .await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    close(conn, code, why);
}

/// How a welcomed connection ended early.
enum Ending {
    /// The gateway broke the protocol: `stream` is `control`, `alert` or
    /// `connection` (streams it may not open or finish).
    Violation { stream: &'static str, why: String },
    /// This side failed (the ledger): `INTERNAL_ERROR`.
    Internal(String),
    /// The connection is gone already (closed, replaced, timed out).
    Lost(String),
}

/// Sorts a stream error on `stream`: bytes that break the protocol, or a
/// connection that went away.
fn ending(stream: &'static str) -> impl Fn(StreamError) -> Ending {
    move |e| match e {
        StreamError::Protocol(p) => Ending::Violation {
            stream,
            why: p.to_string(),
        },
        StreamError::Read(quinn::ReadError::Reset(code)) => Ending::Violation {
            stream,
            why: format!("{stream} stream reset ({code})"),
        },
        StreamError::Encode(e) => Ending::Internal(format!("{stream} stream: {e}")),
        e => Ending::Lost(format!("{stream} stream: {e}")),
    }
}

/// The connected gateway: control, alerts and video until the connection
/// ends. A protocol violation closes it with `PROTOCOL_VIOLATION` and is
/// counted per gateway and stream.
async fn run(
    center: &Arc<Center>,
    conn: &quinn::Connection,
    link: &Arc<GatewayLink>,
    ctl_send: quinn::SendStream,
    ctl: MessageReader<ControlMessage>,
) {
    let ctl_send = Arc::new(AsyncMutex::new(ctl_send));
    let control = control(conn, link, ctl_send.clone(), ctl);
    let streams = streams(center, conn, link, ctl_send.clone());
    let pings = pings(link, ctl_send);
    let result: Result<(), Ending> = tokio::select! {
        r = control => r,
        r = streams => r,
        r = pings => r,
        e = conn.closed() => Err(Ending::Lost(e.to_string())),
    };
    match result {
        Ok(()) => {}
        Err(Ending::Lost(why)) => tracing::debug!(gateway = %link.id, "connection ended: {why}"),
        Err(Ending::Violation { stream, why }) => {
            violated(center, &link.id, stream);
            tracing::warn!(gateway = %link.id, peer = %conn.remote_address(), stream, "protocol violation, closing the connection: {why}");
            close(conn, ErrorCode::PROTOCOL_VIOLATION, &why);
        }
        Err(Ending::Internal(why)) => {
            tracing::error!(gateway = %link.id, "closing the connection: {why}");
            close(conn, ErrorCode::INTERNAL_ERROR, &why);
        }
    }
}

/// Counts a protocol violation by a welcomed gateway.
fn violated(center: &Center, gateway: &str, stream: &str) {
    center
        .metrics
        .protocol_violations
        .get_or_create(&vec![
            ("gateway".into(), gateway.into()),
            ("stream".into(), stream.into()),
        ])
        .inc();
}

async fn pings(
    link: &Arc<GatewayLink>,
    send: Arc<AsyncMutex<quinn::SendStream>>,
) -> Result<(), Ending> {
    let mut nonce = 0u64;
    loop {
        tokio::time::sleep(PING_INTERVAL).await;
        nonce += 1;
        let mut s = send.lock().await;
        write_message(&mut s, &ControlMessage::Ping(Ping { nonce }))
            .await
            .map_err(ending("control"))?;
        drop(s);
        link.last_seen_unix_ms.store(unix_ms(), Relaxed);
    }
}

async fn control(
    conn: &quinn::Connection,
    link: &Arc<GatewayLink>,
    send: Arc<AsyncMutex<quinn::SendStream>>,
    mut ctl: MessageReader<ControlMessage>,
) -> Result<(), Ending> {
    let violation = |why: String| Ending::Violation {
        stream: "control",
        why,
    };
    loop {
        let message = ctl.next().await.map_err(ending("control"))?;
        link.last_seen_unix_ms.store(unix_ms(), Relaxed);
        match message {
            Some(ControlMessage::Ping(p)) => {
                let mut s = send.lock().await;
                write_message(&mut s, &ControlMessage::Pong(Pong { nonce: p.nonce }))
                    .await
                    .map_err(ending("control"))?;
            }
            Some(ControlMessage::Pong(_)) => {
                link.rtt_us.store(conn.rtt().as_micros() as u64, Relaxed);
            }
            Some(ControlMessage::CameraUpdate(update)) => {
                for change in update.changes {
                    match change {
                        CameraChange::Upsert(info) => upsert_camera(link, info),
                        CameraChange::State { id, state } => {
                            if let Some(c) = link.cameras.get(&id)
                                && let Ok(mut i) = c.info.lock()
                            {
                                i.state = state;
                            }
                        }
                        CameraChange::Removed { id } => {
                            link.cameras.remove(&id);
                        }
                    }
                }
            }
            Some(ControlMessage::Goaway(g)) => {
                tracing::info!(gateway = %link.id, reason = %g.reason, "gateway says goaway");
                // Keep storing and acknowledging until it closes.
                std::future::pending::<()>().await;
            }
            // The decoder refuses whatever else a gateway could send here.
            Some(other) => return Err(violation(format!("{other:?} on the control stream"))),
            None => return Err(violation("control stream finished".into())),
        }
    }
}

/// Accepts the alert stream, then every GOP stream; a third bidirectional
/// stream is a protocol violation.
async fn streams(
    center: &Arc<Center>,
    conn: &quinn::Connection,
    link: &Arc<GatewayLink>,
    ctl_send: Arc<AsyncMutex<quinn::SendStream>>,
) -> Result<(), Ending> {
    let lost = |e: quinn::ConnectionError| Ending::Lost(e.to_string());
    // GOP streams are accepted from the start: the alert stream becomes
    // visible only once the gateway writes on it (its first alert).
    let budget = ReadBudget::new(VIDEO_BUDGET);
    let video = async {
        loop {
            let recv = conn.accept_uni().await.map_err(lost)?;
            let reader = MessageReader::new(recv, Role::Gateway).with_budget(budget.clone());
            tokio::spawn(read_gop(center.clone(), link.clone(), reader));
        }
    };
    let bidirectional = async {
        let (send, recv) = conn.accept_bi().await.map_err(lost)?;
        let extra = async {
            let _ = conn.accept_bi().await.map_err(lost)?;
            Err::<(), Ending>(Ending::Violation {
                stream: "connection",
                why: "a third bidirectional stream".into(),
            })
        };
        tokio::select! {
            r = alerts(center, link, send, recv, ctl_send) => r,
            r = extra => r,
        }
    };
    tokio::select! {
        r = video => r,
        r = bidirectional => r,
    }
}

/// Stores alert messages in the ledger, batched, and acknowledges each once
/// its transaction has committed — each that was stored: an alert the
/// ledger refused (a conflict) gets `AlertRefused` on the control stream
/// instead, and a batch the ledger could not store gets nothing (the
/// connection closes with `INTERNAL_ERROR`; the gateway re-sends it).
async fn alerts(
    center: &Arc<Center>,
    link: &Arc<GatewayLink>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    ctl_send: Arc<AsyncMutex<quinn::SendStream>>,
) -> Result<(), Ending> {
    let mut reader = MessageReader::<AlertMessage>::new(recv, Role::Gateway);
    loop {
        let Some(first) = reader.next().await.map_err(ending("alert"))? else {
            return Err(Ending::Violation {
                stream: "alert",
                why: "alert stream finished".into(),
            });
        };
        let mut batch = vec![first];
        while batch.len() < STORE_BATCH {
            match reader.try_next().map_err(ending("alert"))? {
                Some(m) => batch.push(m),
                None => break,
            }
        }
        let incoming: Vec<Incoming> = batch
            .into_iter()
            .filter_map(|m| match m {
                AlertMessage::Alert(a) => {
                    // The protocol does not interpret the record: it is
                    // stored as text all the same, but someone should know.
                    if serde_json::from_str::<serde::de::IgnoredAny>(&a.payload_json).is_err() {
                        tracing::warn!(gateway = %link.id, alert = %a.id, revision = a.revision, "alert payload is not JSON; stored as text");
                    }
                    Some(Incoming::Alert(a))
                }
                AlertMessage::Snapshot(s) => Some(Incoming::Snapshot(s)),
                // The decoder refuses acks from a gateway.
                _ => None,
            })
            .collect();
        let ledger = center.ledger.clone();
        let gateway = link.id.clone();
        let messages = incoming.len();
        let stored =
            tokio::task::spawn_blocking(move || ledger.store(&gateway, &incoming, unix_ms()))
                .await
                .map_err(|e| Ending::Internal(format!("ledger task: {e}")))?;
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                // Nothing of the batch is stored, so nothing is acknowledged:
                // closing makes the gateway send it all again once it redials.
                center
                    .metrics
                    .alerts_refused
                    .get_or_create(&vec![
                        ("gateway".into(), link.id.clone()),
                        ("reason".into(), "storage".into()),
                    ])
                    .inc_by(messages as u64);
                return Err(Ending::Internal(format!(
                    "ledger: {e}; {messages} alert messages not stored, none acknowledged"
                )));
            }
        };
        for s in stored {
            match s {
                Stored::Alert {
                    id,
                    revision,
                    outcome,
                } => {
                    let what = match &outcome {
                        StoreOutcome::Inserted => "inserted",
                        StoreOutcome::Updated => "updated",
                        StoreOutcome::Duplicate => "duplicate",
                        StoreOutcome::Conflict { .. } => "conflict",
                    };
                    center
                        .metrics
                        .alerts
                        .get_or_create(&vec![
                            ("gateway".into(), link.id.clone()),
                            ("outcome".into(), what.into()),
                        ])
                        .inc();
                    if let StoreOutcome::Conflict { why } = outcome {
                        refuse_alert(center, link, &ctl_send, id, revision, why).await?;
                        continue;
                    }
                    if outcome != StoreOutcome::Duplicate {
                        tracing::info!(gateway = %link.id, alert = %id, revision, "alert stored ({what})");
                        announce(center, &link.id, &id);
                    }
                    write_message(
                        &mut send,
                        &AlertMessage::AlertAck(AlertAck { id, revision }),
                    )
                    .await
                    .map_err(ending("alert"))?;
                }
                Stored::Snapshot { alert_id, .. } => {
                    announce(center, &link.id, &alert_id);
                    write_message(
                        &mut send,
                        &AlertMessage::SnapshotAck(SnapshotAck { alert_id }),
                    )
                    .await
                    .map_err(ending("alert"))?;
                }
            }
        }
    }
}

/// Tells live views and the cascade that a gateway's alert changed. Nobody
/// listening (no wall open, no cascade) is not an error.
fn announce(center: &Center, gateway: &str, id: &str) {
    let key = AlertKey {
        gateway: gateway.to_string(),
        id: id.to_string(),
    };
    if center.alert_events.send(key).is_err() {
        tracing::trace!(gateway, alert = id, "no one follows alert changes");
    }
}

/// PROTOCOL.md §9 center rule 2: an alert the ledger did not store is not
/// acknowledged; the gateway is told why on the control stream (it keeps
/// the entry), and the refusal is counted and logged.
async fn refuse_alert(
    center: &Center,
    link: &GatewayLink,
    ctl_send: &AsyncMutex<quinn::SendStream>,
    id: String,
    revision: u32,
    why: String,
) -> Result<(), Ending> {
    center
        .metrics
        .alerts_refused
        .get_or_create(&vec![
            ("gateway".into(), link.id.clone()),
            ("reason".into(), "conflict".into()),
        ])
        .inc();
    tracing::warn!(gateway = %link.id, alert = %id, revision, "alert refused, not stored and not acknowledged: {why}");
    let refused = ControlMessage::AlertRefused(AlertRefused {
        alert_id: id,
        revision: Some(revision),
        code: ErrorCode::ALERT_ID_CONFLICT,
        reason: truncate(&why, lookout_codecs::relay::MAX_TEXT_LEN),
    });
    let mut send = ctl_send.lock().await;
    write_message(&mut send, &refused)
        .await
        .map_err(ending("control"))
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// One GOP stream: header, frames, end. Frames go to live viewers as they
/// arrive; a whole GOP becomes the camera's latest. A reset or broken GOP
/// is dropped whole and the connection carries on.
async fn read_gop(
    center: Arc<Center>,
    link: Arc<GatewayLink>,
    mut reader: MessageReader<VideoMessage>,
) {
    let header = match reader.next().await {
        Ok(Some(VideoMessage::GopHeader(h))) => h,
        Ok(_) => return,
        Err(e) => {
            gop_failed(&center, &link, None, &e, &mut reader);
            return;
        }
    };
    let Some(camera) = link.cameras.get(&header.camera_id).map(|c| c.clone()) else {
        tracing::warn!(gateway = %link.id, camera = %header.camera_id, stream = "video", "protocol violation, GOP stream stopped: GOP for a camera not in the gateway's list");
        reader.stop(ErrorCode::PROTOCOL_VIOLATION);
        violated(&center, &link.id, "video");
        // The camera id is the peer's: not a label.
        count_gop(&center, &link.id, "(unknown)", "invalid");
        return;
    };
    // A GOP whose header comes after a newer one's (its stream was opened
    // or scheduled later, PROTOCOL.md §4.6) is still received whole — it is
    // video the gateway paid to send — but live viewers, who play forward
    // only, skip it.
    let playing = camera.playing.fetch_max(header.gop_seq, Relaxed);
    let late = playing > header.gop_seq;
    if late {
        tracing::debug!(gateway = %link.id, camera = %header.camera_id, gop = header.gop_seq, playing, "GOP arrived after a newer one; not played live");
        count_gop(&center, &link.id, &header.camera_id, "late");
    }
    let labels = vec![
        ("gateway".to_string(), link.id.clone()),
        ("camera".to_string(), header.camera_id.clone()),
    ];
    let frames_counter = center.metrics.frames.get_or_create(&labels).clone();
    let bytes_counter = center.metrics.bytes.get_or_create(&labels).clone();
    let mut from = labels.clone();
    from.push(("from".into(), "capture".into()));
    let capture_delay = center.metrics.frame_delay.get_or_create(&from).clone();
    if let Some(last) = from.last_mut() {
        last.1 = "gateway".into();
    }
    let gateway_delay = center.metrics.frame_delay.get_or_create(&from).clone();

    let header = Arc::new(header);
    let mut frames = Vec::new();
    loop {
        match reader.next().await {
            Ok(Some(VideoMessage::Frame(f))) => {
                let now = unix_ns();
                let capture_us = now.saturating_sub(f.capture_unix_ns) / 1000;
                let gateway_us = now.saturating_sub(f.received_unix_ns) / 1000;
                center.record_delay(capture_us, gateway_us);
                capture_delay.observe(capture_us as f64 / 1e6);
                gateway_delay.observe(gateway_us as f64 / 1e6);
                frames_counter.inc();
                bytes_counter.inc_by(f.data.len() as u64);
                camera.frames.fetch_add(1, Relaxed);
                camera.bytes.fetch_add(f.data.len() as u64, Relaxed);
                camera.last_frame_unix_ns.store(now, Relaxed);
                camera.last_capture_delay_us.store(capture_us, Relaxed);
                if !late {
                    let _ = camera.live.send(LiveFrame {
                        gop_seq: header.gop_seq,
                        header: header.clone(),
                        frame: f.clone(),
                    });
                }
                frames.push(f);
            }
            Ok(Some(VideoMessage::GopHeader(_))) => {
                // The decoder refuses a second header; not reached.
                return;
            }
            Ok(None) => break,
            Err(e) => {
                gop_failed(&center, &link, Some(&camera), &e, &mut reader);
                return;
            }
        }
    }
    camera.gops_complete.fetch_add(1, Relaxed);
    count_gop(&center, &link.id, &header.camera_id, "complete");
    {
        let mut latest = camera.latest_gop.locked();
        let newer = latest
            .as_ref()
            .is_none_or(|g| g.header.gop_seq < header.gop_seq);
        if newer {
            *latest = Some(Arc::new(CompleteGop {
                header: (*header).clone(),
                frames,
                received_unix_ms: unix_ms(),
            }));
        }
    }
}

fn count_gop(center: &Center, gateway: &str, camera: &str, outcome: &str) {
    center
        .metrics
        .gops
        .get_or_create(&vec![
            ("gateway".into(), gateway.into()),
            ("camera".into(), camera.into()),
            ("outcome".into(), outcome.into()),
        ])
        .inc();
}

fn gop_failed(
    center: &Center,
    link: &GatewayLink,
    camera: Option<&Arc<CenterCamera>>,
    e: &StreamError,
    reader: &mut MessageReader<VideoMessage>,
) {
    let camera_id = camera
        .and_then(|c| Some(c.info.locked()).map(|i| i.id.clone()))
        .unwrap_or_else(|| "(unknown)".into());
    if let Some(c) = camera {
        c.gops_dropped.fetch_add(1, Relaxed);
    }
    match e {
        StreamError::Read(quinn::ReadError::Reset(_)) => {
            count_gop(center, &link.id, &camera_id, "reset");
        }
        StreamError::OverBudget(_) => {
            tracing::warn!(gateway = %link.id, camera = %camera_id, "GOP stream stopped: {e}");
            reader.stop(ErrorCode::UNWANTED);
            count_gop(center, &link.id, &camera_id, "shed");
        }
        StreamError::Protocol(p) => {
            tracing::warn!(gateway = %link.id, camera = %camera_id, stream = "video", "protocol violation, GOP stream stopped: {p}");
            reader.stop(ErrorCode::PROTOCOL_VIOLATION);
            violated(center, &link.id, "video");
            count_gop(center, &link.id, &camera_id, "invalid");
        }
        // The connection went away; it is counted there.
        _ => {}
    }
}
