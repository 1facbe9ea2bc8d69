//! The control stream of a welcomed gateway: answers its pings, takes its
//! round-trip time from its pongs, applies its camera updates, and pings it
//! every `PING_INTERVAL` so that a dead link is noticed.

use lookout_core::sync::Locked;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use lookout_codecs::relay::{CameraChange, ControlMessage, Ping, Pong};
use tokio::sync::Mutex as AsyncMutex;

use super::handshake::upsert_camera;
use super::{Ending, ending};
use crate::{GatewayLink, unix_ms};
use lookout_core::relay::stream::{MessageReader, write_message};

/// How often the center pings a gateway on its control stream.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Pings the gateway every `PING_INTERVAL`; a ping that cannot be sent ends
/// the connection.
pub(super) async fn pings(
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

/// Serves the control stream: pongs for pings, the round-trip time from
/// pongs, camera updates, `Goaway`; anything else, or its end, is a
/// protocol violation.
pub(super) async fn control(
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
                            if let Some(c) = link.cameras.get(&id) {
                                c.info.locked().state = state;
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
