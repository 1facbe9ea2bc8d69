//! The alert stream of a welcomed gateway (PROTOCOL.md §9): alert and
//! snapshot messages read in batches, stored in the ledger in one
//! transaction each, then acknowledged one by one — each that was stored: an
//! alert the ledger refused (a conflict) gets `AlertRefused` on the control
//! stream instead, and a batch the ledger could not store gets nothing (the
//! connection closes with `INTERNAL_ERROR`; the gateway re-sends it). Every
//! change is announced to live views and the cascade.

use std::sync::Arc;

use lookout_codecs::relay::{
    AlertAck, AlertMessage, AlertRefused, ControlMessage, ErrorCode, Role, SnapshotAck,
};
use tokio::sync::Mutex as AsyncMutex;

use super::{Ending, ending};
use crate::ledger::{Incoming, StoreOutcome, Stored};
use crate::{AlertKey, Center, GatewayLink, unix_ms};
use lookout_core::relay::stream::{MessageReader, write_message};

/// Alert messages stored in one ledger transaction at most.
const STORE_BATCH: usize = 256;

/// Stores alert messages in the ledger, batched, and acknowledges each once
/// its transaction has committed (see the module's comment), until the
/// stream or the connection ends.
pub(super) async fn alerts(
    center: &Arc<Center>,
    link: &Arc<GatewayLink>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    ctl_send: Arc<AsyncMutex<quinn::SendStream>>,
) -> Result<(), Ending> {
    let mut reader = MessageReader::<AlertMessage>::new(recv, Role::Gateway);
    loop {
        let batch = read_batch(&mut reader).await?;
        let incoming = to_incoming(&link.id, batch);
        for stored in store_batch(center, link, incoming).await? {
            acknowledge(center, link, &mut send, &ctl_send, stored).await?;
        }
    }
}

/// Waits for the next message, then takes the ones already received after
/// it, up to `STORE_BATCH` in all. The gateway never finishes the stream.
async fn read_batch(reader: &mut MessageReader<AlertMessage>) -> Result<Vec<AlertMessage>, Ending> {
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
    Ok(batch)
}

/// The messages of a batch the ledger stores, in order: alerts and
/// snapshots (the decoder refuses acks from a gateway). A payload that is
/// not JSON is stored all the same, and logged.
fn to_incoming(gateway: &str, batch: Vec<AlertMessage>) -> Vec<Incoming> {
    batch
        .into_iter()
        .filter_map(|m| match m {
            AlertMessage::Alert(a) => {
                // The protocol does not interpret the record: it is
                // stored as text all the same, but someone should know.
                if serde_json::from_str::<serde::de::IgnoredAny>(&a.payload_json).is_err() {
                    tracing::warn!(gateway = %gateway, alert = %a.id, revision = a.revision, "alert payload is not JSON; stored as text");
                }
                Some(Incoming::Alert(a))
            }
            AlertMessage::Snapshot(s) => Some(Incoming::Snapshot(s)),
            // The decoder refuses acks from a gateway.
            _ => None,
        })
        .collect()
}

/// Stores a batch in the ledger (on a blocking thread). A batch it could not
/// store ends the connection, counted under `storage`, none of it
/// acknowledged.
async fn store_batch(
    center: &Center,
    link: &GatewayLink,
    incoming: Vec<Incoming>,
) -> Result<Vec<Stored>, Ending> {
    let ledger = center.ledger.clone();
    let gateway = link.id.clone();
    let messages = incoming.len();
    let stored = tokio::task::spawn_blocking(move || ledger.store(&gateway, &incoming, unix_ms()))
        .await
        .map_err(|e| Ending::Internal(format!("ledger task: {e}")))?;
    match stored {
        Ok(stored) => Ok(stored),
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
            Err(Ending::Internal(format!(
                "ledger: {e}; {messages} alert messages not stored, none acknowledged"
            )))
        }
    }
}

/// Answers what storing one message did: counts and acknowledges an alert
/// (refuses it if it was a conflict), acknowledges a snapshot, and announces
/// every change.
async fn acknowledge(
    center: &Center,
    link: &GatewayLink,
    send: &mut quinn::SendStream,
    ctl_send: &AsyncMutex<quinn::SendStream>,
    stored: Stored,
) -> Result<(), Ending> {
    match stored {
        Stored::Alert {
            id,
            revision,
            outcome,
        } => {
            let what = outcome_label(&outcome);
            center
                .metrics
                .alerts
                .get_or_create(&vec![
                    ("gateway".into(), link.id.clone()),
                    ("outcome".into(), what.into()),
                ])
                .inc();
            if let StoreOutcome::Conflict { why } = outcome {
                return refuse_alert(center, link, ctl_send, id, revision, why).await;
            }
            if outcome != StoreOutcome::Duplicate {
                tracing::info!(gateway = %link.id, alert = %id, revision, "alert stored ({what})");
                announce(center, &link.id, &id);
            }
            write_message(send, &AlertMessage::AlertAck(AlertAck { id, revision }))
                .await
                .map_err(ending("alert"))
        }
        Stored::Snapshot { alert_id, .. } => {
            announce(center, &link.id, &alert_id);
            write_message(send, &AlertMessage::SnapshotAck(SnapshotAck { alert_id }))
                .await
                .map_err(ending("alert"))
        }
    }
}

/// The `outcome` label an alert is counted under
/// (`lookout_center_alerts_total`) and logged with.
fn outcome_label(outcome: &StoreOutcome) -> &'static str {
    match outcome {
        StoreOutcome::Inserted => "inserted",
        StoreOutcome::Updated => "updated",
        StoreOutcome::Duplicate => "duplicate",
        StoreOutcome::Conflict { .. } => "conflict",
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

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_codecs::relay::{Alert, Snapshot};

    #[test]
    fn outcomes_have_their_labels() {
        assert_eq!(outcome_label(&StoreOutcome::Inserted), "inserted");
        assert_eq!(outcome_label(&StoreOutcome::Updated), "updated");
        assert_eq!(outcome_label(&StoreOutcome::Duplicate), "duplicate");
        let conflict = StoreOutcome::Conflict {
            why: "reused".into(),
        };
        assert_eq!(outcome_label(&conflict), "conflict");
    }

    #[test]
    fn alerts_and_snapshots_are_stored_in_order_acks_are_not() {
        let alert = |id: &str, payload: &str| Alert {
            id: id.into(),
            revision: 1,
            payload_json: payload.into(),
            snapshot_jpeg: None,
        };
        let snapshot = Snapshot {
            alert_id: "a".into(),
            jpeg: bytes::Bytes::from_static(b"jpeg"),
        };
        let incoming = to_incoming(
            "gw-1",
            vec![
                AlertMessage::Alert(alert("a", "{}")),
                AlertMessage::AlertAck(AlertAck {
                    id: "a".into(),
                    revision: 1,
                }),
                AlertMessage::Snapshot(snapshot),
                // Not JSON: stored as text all the same.
                AlertMessage::Alert(alert("b", "{not json")),
                AlertMessage::SnapshotAck(SnapshotAck {
                    alert_id: "a".into(),
                }),
            ],
        );
        let kept: Vec<String> = incoming
            .iter()
            .map(|m| match m {
                Incoming::Alert(a) => format!("alert {} {}", a.id, a.payload_json),
                Incoming::Snapshot(s) => format!("snapshot {}", s.alert_id),
            })
            .collect();
        assert_eq!(kept, ["alert a {}", "snapshot a", "alert b {not json"]);
    }

    #[test]
    fn truncate_cuts_at_a_character_boundary() {
        assert_eq!(truncate("short", 64), "short");
        assert_eq!(truncate("abcdef", 3), "abc");
        // "é" is two bytes: a cut inside it backs off before it.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
        assert_eq!(truncate("", 0), "");
    }
}
