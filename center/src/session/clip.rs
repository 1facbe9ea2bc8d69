//! Clip streams of a welcomed version-2 gateway (PROTOCOL.md §6.15–6.18):
//! one bidirectional stream per alert clip. The center answers the offer
//! with what it holds already (`ClipWant` from that offset, or `ClipAck` when
//! it has the whole clip), writes the pieces that follow to the clip store,
//! and acknowledges once the whole file is stored and its SHA-256 matches.
//!
//! A clip stream never takes the connection down: a violation stops that
//! stream alone, and a connection lost mid-clip leaves what arrived on disk,
//! so the next offer resumes after it.

use std::sync::Arc;
use std::time::Duration;

use lookout_codecs::relay::{ClipAck, ClipMessage, ClipOffer, ClipWant, ErrorCode, Role};

use super::violated;
use crate::GatewayLink;
use crate::clips::{ClipHave, ClipOffer as StoredOffer};
use crate::{Center, unix_ms};
use lookout_core::relay::stream::{MessageReader, ReadBudget, StreamError, varint, write_message};

/// How long a gateway may take to send its offer after opening the stream.
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes received before they are handed to the store: large writes, few
/// blocking calls; what a lost connection costs is at most this much.
const FLUSH_AT: usize = 1 << 20;

/// How one clip stream ended, for `lookout_center_clip_transfers_total`.
enum Outcome {
    Stored,
    Had,
    Interrupted,
    Invalid,
    Failed,
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Had => "had",
            Outcome::Interrupted => "interrupted",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
        }
    }
}

/// Serves one clip stream to its end.
pub(super) async fn receive(
    center: Arc<Center>,
    link: Arc<GatewayLink>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    budget: ReadBudget,
) {
    let reader = MessageReader::<ClipMessage>::new(recv, Role::Gateway).with_budget(budget);
    let mut transfer = Transfer {
        center,
        link,
        send,
        reader,
    };
    let outcome = transfer.run().await;
    transfer
        .center
        .metrics
        .clip_transfers
        .get_or_create(&vec![
            ("gateway".into(), transfer.link.id.clone()),
            ("outcome".into(), outcome.as_str().into()),
        ])
        .inc();
}

struct Transfer {
    center: Arc<Center>,
    link: Arc<GatewayLink>,
    send: quinn::SendStream,
    reader: MessageReader<ClipMessage>,
}

impl Transfer {
    async fn run(&mut self) -> Outcome {
        let offer = match tokio::time::timeout(OFFER_TIMEOUT, self.reader.next()).await {
            Ok(Ok(Some(ClipMessage::ClipOffer(offer)))) => offer,
            // The decoder refuses anything else first; a stream that ended
            // without an offer is one too.
            Ok(Ok(_)) => return self.violation("clip stream ended before its ClipOffer"),
            Ok(Err(e)) => return self.stream_failed(&e, None),
            Err(_) => {
                tracing::warn!(gateway = %self.link.id, "clip stream without an offer for {OFFER_TIMEOUT:?}; stopped");
                self.reader.stop(ErrorCode::UNWANTED);
                return Outcome::Invalid;
            }
        };
        let stored = StoredOffer {
            gateway: self.link.id.clone(),
            alert_id: offer.alert_id.clone(),
            size: offer.size,
            sha256: offer.sha256,
            meta_json: meta_json(&offer),
        };
        let have = {
            let store = self.center.clips.clone();
            let o = stored.clone();
            tokio::task::spawn_blocking(move || store.have(&o)).await
        };
        let offset = match have {
            Ok(Ok(ClipHave::Complete)) => {
                return match self.answer(ClipMessage::ClipAck(ClipAck {})).await {
                    true => Outcome::Had,
                    false => Outcome::Interrupted,
                };
            }
            Ok(Ok(ClipHave::Partial(n))) => n,
            Ok(Err(e)) => return self.failed(&offer, &e.to_string()),
            Err(e) => return self.failed(&offer, &e.to_string()),
        };
        if !self
            .answer(ClipMessage::ClipWant(ClipWant { offset }))
            .await
        {
            return Outcome::Interrupted;
        }
        self.receive_data(&offer, stored, offset).await
    }

    /// The pieces from `offset` to the end, then the store's verdict.
    async fn receive_data(
        &mut self,
        offer: &ClipOffer,
        stored: StoredOffer,
        offset: u64,
    ) -> Outcome {
        let mut next = offset;
        let mut pending: Vec<u8> = Vec::new();
        let mut pending_at = offset;
        loop {
            match self.reader.next().await {
                Ok(Some(ClipMessage::ClipData(d))) => {
                    if d.offset != next {
                        self.keep(&stored, pending_at, &mut pending).await;
                        return self.violation(&format!(
                            "ClipData at offset {} where {next} was due",
                            d.offset
                        ));
                    }
                    let end = next + d.data.len() as u64;
                    if end > offer.size {
                        self.keep(&stored, pending_at, &mut pending).await;
                        return self.violation(&format!(
                            "ClipData up to byte {end} of a {}-byte clip",
                            offer.size
                        ));
                    }
                    pending.extend_from_slice(&d.data);
                    next = end;
                    if pending.len() >= FLUSH_AT {
                        if let Err(why) = self.flush(&stored, pending_at, &mut pending).await {
                            return self.failed(offer, &why);
                        }
                        pending_at = next;
                    }
                }
                // The decoder refuses anything else the gateway could send.
                Ok(Some(other)) => {
                    return self.violation(&format!("{other:?} on a clip stream"));
                }
                Ok(None) => break,
                Err(e) => {
                    // Keep what arrived: the next offer resumes after it.
                    if let Err(why) = self.flush(&stored, pending_at, &mut pending).await {
                        return self.failed(offer, &why);
                    }
                    return self.stream_failed(&e, Some(offer));
                }
            }
        }
        if let Err(why) = self.flush(&stored, pending_at, &mut pending).await {
            return self.failed(offer, &why);
        }
        if next != offer.size {
            return self.violation(&format!(
                "clip stream finished at byte {next} of {}",
                offer.size
            ));
        }
        let store = self.center.clips.clone();
        let o = stored.clone();
        match tokio::task::spawn_blocking(move || store.complete(&o)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return self.failed(offer, &e.to_string()),
            Err(e) => return self.failed(offer, &e.to_string()),
        }
        // Walls showing the alert fetch it again and offer the clip.
        self.center
            .alert_events
            .send(crate::AlertKey {
                gateway: self.link.id.clone(),
                id: offer.alert_id.clone(),
            })
            .ok();
        self.center
            .metrics
            .clip_bytes
            .get_or_create(&vec![("gateway".into(), self.link.id.clone())])
            .inc_by(offer.size.saturating_sub(offset));
        tracing::info!(
            gateway = %self.link.id,
            alert = %offer.alert_id,
            camera = %offer.camera_id,
            bytes = offer.size,
            resumed_at = offset,
            "clip stored"
        );
        match self.answer(ClipMessage::ClipAck(ClipAck {})).await {
            true => Outcome::Stored,
            // Stored all the same; the next offer is answered with ClipAck.
            false => Outcome::Interrupted,
        }
    }

    /// Hands what is pending to the store, at `at`.
    async fn flush(
        &self,
        stored: &StoredOffer,
        at: u64,
        pending: &mut Vec<u8>,
    ) -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(pending);
        let store = self.center.clips.clone();
        let o = stored.clone();
        match tokio::task::spawn_blocking(move || store.append(&o, at, &data)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// [`Transfer::flush`] on the way out of a broken stream: what cannot be
    /// kept is logged, and the next offer resends it.
    async fn keep(&self, stored: &StoredOffer, at: u64, pending: &mut Vec<u8>) {
        if let Err(why) = self.flush(stored, at, pending).await {
            tracing::warn!(gateway = %self.link.id, alert = %stored.alert_id, "clip bytes received before the stream broke not kept: {why}");
        }
    }

    /// Writes the center's answer; false when the stream or connection is gone.
    async fn answer(&mut self, message: ClipMessage) -> bool {
        let last = matches!(message, ClipMessage::ClipAck(_));
        if let Err(e) = write_message(&mut self.send, &message).await {
            tracing::debug!(gateway = %self.link.id, "clip stream answer not sent: {e}");
            return false;
        }
        if last && let Err(e) = self.send.finish() {
            tracing::debug!(gateway = %self.link.id, "clip stream not finished: {e}");
        }
        true
    }

    fn violation(&mut self, why: &str) -> Outcome {
        tracing::warn!(gateway = %self.link.id, stream = "clip", "protocol violation, clip stream stopped: {why}");
        self.reader.stop(ErrorCode::PROTOCOL_VIOLATION);
        self.reset(ErrorCode::PROTOCOL_VIOLATION);
        violated(&self.center, &self.link.id, "clip");
        Outcome::Invalid
    }

    fn stream_failed(&mut self, e: &StreamError, offer: Option<&ClipOffer>) -> Outcome {
        let alert = offer.map_or("(no offer yet)", |o| o.alert_id.as_str());
        match e {
            StreamError::Protocol(p) => self.violation(&p.to_string()),
            StreamError::OverBudget(_) => {
                tracing::warn!(gateway = %self.link.id, alert = %alert, "clip stream stopped: {e}");
                self.reader.stop(ErrorCode::UNWANTED);
                Outcome::Interrupted
            }
            _ => {
                tracing::debug!(gateway = %self.link.id, alert = %alert, "clip stream interrupted: {e}");
                Outcome::Interrupted
            }
        }
    }

    /// Storage failed, or the hash did not match: nothing acknowledged, the
    /// gateway offers the clip again later.
    fn failed(&mut self, offer: &ClipOffer, why: &str) -> Outcome {
        tracing::error!(gateway = %self.link.id, alert = %offer.alert_id, "clip not stored: {why}");
        self.reader.stop(ErrorCode::INTERNAL_ERROR);
        self.reset(ErrorCode::INTERNAL_ERROR);
        Outcome::Failed
    }

    fn reset(&mut self, code: ErrorCode) {
        if let Err(e) = self.send.reset(varint(code.value())) {
            tracing::debug!(gateway = %self.link.id, "clip stream not reset: {e}");
        }
    }
}

/// What the clip store keeps beside the file, from the offer.
fn meta_json(offer: &ClipOffer) -> String {
    serde_json::json!({
        "camera": offer.camera_id,
        "codec": lookout_core::unit::codec_label(offer.codec),
        "first_capture_unix_ns": offer.first_capture_unix_ns,
        "last_capture_unix_ns": offer.last_capture_unix_ns,
        "duration_ms": (offer.last_capture_unix_ns - offer.first_capture_unix_ns) / 1_000_000,
        "received_unix_ms": unix_ms(),
    })
    .to_string()
}
