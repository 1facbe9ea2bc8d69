//! Alert stream messages. The gateway opens this bidirectional stream right after the
//! handshake and keeps it for the connection's life; it carries the highest QUIC
//! priority. Alerts go out, acknowledgements come back once the center has stored what
//! it got durably. The gateway keeps every unacknowledged alert revision and snapshot
//! and sends it again on the next connection; the center de-duplicates by alert id and
//! revision, so no alert is lost and none is shown twice.

use super::control::into_message;
use super::framing::StreamMessage;
use super::framing::sealed::Sealed;
use super::wire::{Encoded, MessageType, Reader, Writer};
use super::{DecodeError, EncodeError, MAX_ALERT_MESSAGE, MAX_ID_LEN, StreamKind};
use bytes::Bytes;

/// The stream limit, the longest any variable-length field of this stream can be.
const LIMIT: usize = MAX_ALERT_MESSAGE as usize;

/// Gateway → center: one revision of an alert record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// The alert's id, 1–64 bytes: the gateway writes a UUID (v7) in its canonical
    /// lowercase hyphenated form; the center compares ids as bytes.
    pub id: String,
    /// The record's revision: 0 when raised, one more at each update (and at clearing).
    /// The center keeps the highest revision of each id it has stored.
    pub revision: u32,
    /// The alert record as JSON text (the gateway's `/api/alerts/{id}` body); the
    /// protocol carries it without interpreting it. At least 1 byte.
    pub payload_json: String,
    /// The frame that raised the alert, as JPEG, when it is ready in time.
    pub snapshot_jpeg: Option<Bytes>,
}

/// Gateway → center: the JPEG snapshot of an alert whose `Alert` went out without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The alert's id.
    pub alert_id: String,
    /// The JPEG, at least 1 byte.
    pub jpeg: Bytes,
}

/// Center → gateway: every revision up to `revision` of alert `id` is stored durably
/// (sent as well for revisions the center already had).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AlertAck {
    /// The alert's id.
    pub id: String,
    /// The revision acknowledged.
    pub revision: u32,
}

/// Center → gateway: alert `alert_id`'s snapshot is stored durably (sent as well when the
/// center already had one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotAck {
    /// The alert's id.
    pub alert_id: String,
}

/// A message of the alert stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertMessage {
    /// 0x10, gateway → center.
    Alert(Alert),
    /// 0x11, gateway → center.
    Snapshot(Snapshot),
    /// 0x12, center → gateway.
    AlertAck(AlertAck),
    /// 0x13, center → gateway.
    SnapshotAck(SnapshotAck),
}

into_message!(AlertMessage: Alert, Snapshot, AlertAck, SnapshotAck);

impl StreamMessage for AlertMessage {
    const STREAM: StreamKind = StreamKind::Alerts;

    fn message_type(&self) -> MessageType {
        match self {
            AlertMessage::Alert(_) => MessageType::ALERT,
            AlertMessage::Snapshot(_) => MessageType::SNAPSHOT,
            AlertMessage::AlertAck(_) => MessageType::ALERT_ACK,
            AlertMessage::SnapshotAck(_) => MessageType::SNAPSHOT_ACK,
        }
    }

    fn encode(&self) -> Result<Encoded, EncodeError> {
        let msg_type = self.message_type();
        let mut w = Writer::new(msg_type.name().unwrap_or("alert message"));
        match self {
            AlertMessage::Alert(alert) => {
                w.string("id", &alert.id, 1, MAX_ID_LEN)?;
                w.varint("revision", u64::from(alert.revision))?;
                w.string("payload_json", &alert.payload_json, 1, LIMIT)?;
                w.flag(alert.snapshot_jpeg.is_some());
                if let Some(jpeg) = &alert.snapshot_jpeg {
                    w.bytes("snapshot_jpeg", jpeg, 1, LIMIT)?;
                }
            }
            AlertMessage::Snapshot(snapshot) => {
                w.string("alert_id", &snapshot.alert_id, 1, MAX_ID_LEN)?;
                w.bytes("jpeg", &snapshot.jpeg, 1, LIMIT)?;
            }
            AlertMessage::AlertAck(ack) => {
                w.string("id", &ack.id, 1, MAX_ID_LEN)?;
                w.varint("revision", u64::from(ack.revision))?;
            }
            AlertMessage::SnapshotAck(ack) => {
                w.string("alert_id", &ack.alert_id, 1, MAX_ID_LEN)?;
            }
        }
        w.finish(msg_type, StreamKind::Alerts)
    }
}

impl Sealed for AlertMessage {
    fn decode_payload(msg_type: MessageType, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match msg_type {
            MessageType::ALERT => AlertMessage::Alert(Alert {
                id: r.string("id", 1, MAX_ID_LEN)?,
                revision: r.varint_u32("revision")?,
                payload_json: r.string("payload_json", 1, LIMIT)?,
                snapshot_jpeg: if r.flag("snapshot_jpeg")? {
                    Some(r.bytes("snapshot_jpeg", 1, LIMIT)?)
                } else {
                    None
                },
            }),
            MessageType::SNAPSHOT => AlertMessage::Snapshot(Snapshot {
                alert_id: r.string("alert_id", 1, MAX_ID_LEN)?,
                jpeg: r.bytes("jpeg", 1, LIMIT)?,
            }),
            MessageType::ALERT_ACK => AlertMessage::AlertAck(AlertAck {
                id: r.string("id", 1, MAX_ID_LEN)?,
                revision: r.varint_u32("revision")?,
            }),
            MessageType::SNAPSHOT_ACK => AlertMessage::SnapshotAck(SnapshotAck {
                alert_id: r.string("alert_id", 1, MAX_ID_LEN)?,
            }),
            other => {
                return Err(DecodeError::UnknownType {
                    stream: StreamKind::Alerts,
                    msg_type: other.0,
                    offset: r.offset(),
                });
            }
        })
    }
}
