//! One gateway's connection to the center (PROTOCOL.md §4, §9, §10): the
//! TLS identity check, `Hello` → `Welcome` (or `Refuse`), then the control
//! stream, the alert stream (stored in the ledger, then acknowledged; what
//! the ledger would not store is refused with `AlertRefused`, and what it
//! could not store closes the connection, never acknowledged) and every GOP
//! stream, until the connection ends.
//!
//! Its parts: `handshake.rs` (`Hello` → `Welcome`, or a refusal), `control.rs`
//! (the control stream and pings), `alerts.rs` (the alert stream and the
//! ledger) and `video.rs` (GOP streams); this file accepts the connection,
//! runs the parts side by side and closes it as they end.

mod alerts;
mod clip;
mod control;
mod handshake;
mod video;

use lookout_core::sync::Locked;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use lookout_codecs::relay::{ControlMessage, ErrorCode, Role, has_clips};
use tokio::sync::Mutex as AsyncMutex;

use super::{Center, GatewayLink, unix_ms};
use lookout_core::relay::stream::{MessageReader, ReadBudget, StreamError, varint};
use lookout_core::relay::tls;

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
    match handshake::handshake(&center, &conn, &identity).await {
        Ok((link, ctl_send, ctl)) => {
            run(&center, &conn, &link, ctl_send, ctl).await;
            let current = link
                .conn
                .locked()
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id());
            if current {
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

fn close(conn: &quinn::Connection, code: ErrorCode, why: &str) {
    let reason: Vec<u8> = why.bytes().take(512).collect();
    conn.close(varint(code.value()), &reason);
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
    let control = control::control(conn, link, ctl_send.clone(), ctl);
    let streams = streams(center, conn, link, ctl_send.clone());
    let pings = control::pings(link, ctl_send);
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

/// Accepts the alert stream, then every GOP stream; on a version-2
/// connection every further bidirectional stream is a clip stream, on a
/// version-1 one a third bidirectional stream is a protocol violation.
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
            tokio::spawn(video::read_gop(center.clone(), link.clone(), reader));
        }
    };
    let bidirectional = async {
        let (send, recv) = conn.accept_bi().await.map_err(lost)?;
        let clips = tls::negotiated_version(conn).is_some_and(has_clips);
        let extra = async {
            loop {
                let (send, recv) = conn.accept_bi().await.map_err(lost)?;
                if !clips {
                    // Any third stream is the violation; its halves are dropped.
                    return Err::<(), Ending>(Ending::Violation {
                        stream: "connection",
                        why: "a third bidirectional stream on a version 1 connection".into(),
                    });
                }
                tokio::spawn(clip::receive(
                    center.clone(),
                    link.clone(),
                    send,
                    recv,
                    budget.clone(),
                ));
            }
        };
        tokio::select! {
            r = alerts::alerts(center, link, send, recv, ctl_send) => r,
            r = extra => r,
        }
    };
    tokio::select! {
        r = video => r,
        r = bidirectional => r,
    }
}
