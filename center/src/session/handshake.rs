//! The handshake of a gateway connection (PROTOCOL.md §4, §6): the control
//! stream and its `Hello` within `HANDSHAKE_TIMEOUT`, no other stream before
//! `Welcome`, the protocol version, the certificate's right to the gateway
//! id, one connection per gateway id (the same certificate replaces the old
//! one, another is refused), then `Welcome` (and `Subscribe`) and the
//! gateway marked connected. Whatever goes wrong is a [`Refusal`].

use lookout_core::sync::Locked;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::FutureExt;
use lookout_codecs::relay::{
    CameraInfo, ControlMessage, ErrorCode, Hello, PROTOCOL_VERSION, Refuse, Role, Welcome,
};

use super::close;
use crate::{Center, CenterCamera, GatewayLink, unix_ms};
use lookout_core::relay::stream::{MessageReader, StreamError, varint, write_message};
use lookout_core::relay::tls;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection was not welcomed: the `reason` it is counted under
/// (`no_hello`, `protocol`, `version`, `unauthorized`, `conflict`, `lost`)
/// and what happened, for the log. The connection is closed already.
pub(super) struct Refusal {
    pub(super) reason: &'static str,
    pub(super) why: String,
}

/// Closes `conn` with `PROTOCOL_VIOLATION` and says so.
fn violation(conn: &quinn::Connection, why: String) -> Refusal {
    close(conn, ErrorCode::PROTOCOL_VIOLATION, &why);
    Refusal {
        reason: "protocol",
        why,
    }
}

/// The gateway went away or stayed silent before its `Hello`.
fn no_hello(why: String) -> Refusal {
    Refusal {
        reason: "no_hello",
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

/// A welcomed gateway: its link, and both halves of its control stream.
pub(super) type Control = (
    Arc<GatewayLink>,
    quinn::SendStream,
    MessageReader<ControlMessage>,
);

/// Reads `Hello`, checks it against the certificate and the gateways
/// already connected, and answers `Welcome` (or `Refuse`).
pub(super) async fn handshake(
    center: &Arc<Center>,
    conn: &quinn::Connection,
    identity: &tls::PeerIdentity,
) -> Result<Control, Refusal> {
    let (mut send, ctl, mut hello) = read_hello(conn).await?;
    check_hello(conn, &mut send, identity, &hello).await?;
    let link = claim_link(center, conn, &mut send, identity, &hello).await?;
    record_hello(&link, conn, identity, &mut hello);
    welcome(center, conn, &link, &mut send, &hello).await?;
    Ok((link, send, ctl))
}

/// Accepts the control stream and reads its first message, which must be
/// `Hello`, all within `HANDSHAKE_TIMEOUT`, with no other stream opened.
async fn read_hello(
    conn: &quinn::Connection,
) -> Result<(quinn::SendStream, MessageReader<ControlMessage>, Hello), Refusal> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let (send, recv) = tokio::select! {
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
    Ok((send, ctl, hello))
}

/// Refuses a `Hello` of another protocol version, or with a gateway id the
/// certificate may not use.
async fn check_hello(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    identity: &tls::PeerIdentity,
    hello: &Hello,
) -> Result<(), Refusal> {
    // PROTOCOL.md §2: the version in Hello is the one the ALPN negotiated.
    let negotiated = tls::negotiated_version(conn).unwrap_or(PROTOCOL_VERSION);
    if hello.protocol_version != negotiated {
        let why = format!(
            "protocol version {} in Hello over ALPN lookout/{negotiated}; this center speaks 1 and {PROTOCOL_VERSION}",
            hello.protocol_version
        );
        refuse(conn, send, ErrorCode::UNSUPPORTED_VERSION, &why).await;
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
        refuse(conn, send, ErrorCode::UNAUTHORIZED, &why).await;
        return Err(Refusal {
            reason: "unauthorized",
            why,
        });
    }
    Ok(())
}

/// The gateway's link, new or known. Same id connected already: the same
/// certificate replaces the old connection (a gateway that lost its link
/// and redialled), another certificate is refused.
async fn claim_link(
    center: &Arc<Center>,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    identity: &tls::PeerIdentity,
    hello: &Hello,
) -> Result<Arc<GatewayLink>, Refusal> {
    let Some(link) = center.gateways.get(&hello.gateway_id).map(|g| g.clone()) else {
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
        return Ok(center
            .gateways
            .entry(hello.gateway_id.clone())
            .or_insert(link)
            .clone());
    };
    let same = link.identity.locked().sha256_fingerprint == identity.sha256_fingerprint;
    if link.connected.load(Relaxed) && !same {
        let why = format!(
            "gateway id `{}` is connected with another certificate",
            hello.gateway_id
        );
        refuse(conn, send, ErrorCode::GATEWAY_ID_CONFLICT, &why).await;
        return Err(Refusal {
            reason: "conflict",
            why,
        });
    }
    let old = link.conn.locked().clone();
    if let Some(old) = old {
        old.close(
            varint(ErrorCode::REPLACED.value()),
            b"replaced by a new connection",
        );
    }
    Ok(link)
}

/// Takes what `Hello` says into the link: the certificate and address it
/// came with, the software version and the camera list, which is complete
/// in every `Hello` (cameras it no longer lists are dropped).
fn record_hello(
    link: &GatewayLink,
    conn: &quinn::Connection,
    identity: &tls::PeerIdentity,
    hello: &mut Hello,
) {
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
    let listed: std::collections::HashSet<&str> =
        hello.cameras.iter().map(|c| c.id.as_str()).collect();
    link.cameras.retain(|id, _| listed.contains(id.as_str()));
    for info in std::mem::take(&mut hello.cameras) {
        upsert_camera(link, info);
    }
}

/// Sends `Welcome` (and `Subscribe` unless the center wants everything),
/// then marks the gateway connected: only once `Welcome` is on its way, so a
/// connection lost before that leaves no gateway shown as connected.
async fn welcome(
    center: &Center,
    conn: &quinn::Connection,
    link: &GatewayLink,
    send: &mut quinn::SendStream,
    hello: &Hello,
) -> Result<(), Refusal> {
    let lost = |e: StreamError| Refusal {
        reason: "lost",
        why: format!("connection lost before Welcome: {e}"),
    };
    write_message(
        send,
        &ControlMessage::Welcome(Welcome {
            // Checked equal to the negotiated version (`check_hello`).
            protocol_version: hello.protocol_version,
            center_id: center.id.clone(),
        }),
    )
    .await
    .map_err(lost)?;
    if center.subscribe.mode != lookout_codecs::relay::SubscribeMode::All {
        write_message(send, &ControlMessage::Subscribe(center.subscribe.clone()))
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
    Ok(())
}

/// Adds a camera to the gateway's list, or replaces what the list says of it.
pub(super) fn upsert_camera(link: &GatewayLink, info: CameraInfo) {
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

/// PROTOCOL.md §6.3: `Refuse`, finish, give the gateway a moment to read
/// it, close with the same code.
async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    why: &str,
) {
    // The connection is closed with the same code whatever happens to the message:
    // a gateway that cannot read `Refuse` still learns why from the close.
    let refuse = ControlMessage::Refuse(Refuse {
        code,
        reason: why.chars().take(512).collect(),
    });
    if let Err(e) = write_message(send, &refuse).await {
        tracing::debug!("Refuse not sent: {e}");
    } else if send.finish().is_ok()
        && tokio::time::timeout(Duration::from_secs(1), send.stopped())
            .await
            .is_err()
    {
        tracing::debug!("the gateway did not read Refuse within 1 s");
    }
    close(conn, code, why);
}
