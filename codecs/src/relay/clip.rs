//! Clip stream messages (version 2). An alert's evidence clip — an MP4 file the gateway
//! recorded around the alert — travels on a bidirectional stream of its own, opened by
//! the gateway at the lowest priority, so a clip never goes ahead of an alert or of live
//! video. The exchange resumes rather than restarts after a lost connection:
//!
//! 1. gateway → center: [`ClipOffer`] — which alert, how large, its SHA-256;
//! 2. center → gateway: [`ClipWant`] with the bytes it already holds of that file (0 for
//!    none), or [`ClipAck`] at once when it holds the whole clip already;
//! 3. gateway → center: [`ClipData`] chunks from that offset to the end, then FIN;
//! 4. center → gateway: [`ClipAck`] once the whole file is stored durably and its
//!    SHA-256 matches; the gateway may then evict its copy.
//!
//! A lost connection leaves what the center stored in place; the next offer of the same
//! clip gets a `ClipWant` from there.

use super::control::into_message;
use super::framing::StreamMessage;
use super::framing::sealed::{Order, Sealed};
use super::video::{read_codec, write_codec};
use super::wire::{Encoded, MessageType, Reader, Writer};
use super::{DecodeError, EncodeError, MAX_CLIP_CHUNK, MAX_ID_LEN, StreamKind};
use crate::Codec;
use bytes::Bytes;

/// The QUIC priority of a clip stream on the gateway's side (PROTOCOL.md §7): below
/// every GOP stream (0 … 2047), so clips use only what live video leaves of the link.
pub const CLIP_STREAM_PRIORITY: i32 = -1;

/// Largest clip a gateway offers, in bytes (1 TiB): far above any clip, small enough
/// that offsets and sizes never overflow anything.
pub const MAX_CLIP_SIZE: u64 = 1 << 40;

/// Gateway → center, first on a clip stream: the clip on offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipOffer {
    /// The alert the clip belongs to (one clip per alert), 1–64 bytes, as in its `Alert`.
    pub alert_id: String,
    /// The camera it shows, 1–64 bytes, as in `Hello`.
    pub camera_id: String,
    /// The video's codec (the MP4 holds `avc1` or `hvc1` samples).
    pub codec: Codec,
    /// The file's size in bytes, 1 to [`MAX_CLIP_SIZE`].
    pub size: u64,
    /// The SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Capture time of the clip's first frame (a keyframe), Unix ns.
    pub first_capture_unix_ns: u64,
    /// Capture time of its last frame, Unix ns; not before the first.
    pub last_capture_unix_ns: u64,
}

/// Center → gateway: send the clip from `offset` on (the bytes before it are stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipWant {
    /// Bytes of the file the center holds already, below the offer's `size`.
    pub offset: u64,
}

/// Gateway → center: one piece of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipData {
    /// Where `data` starts in the file: the `ClipWant` offset for the first piece, then
    /// the end of the piece before.
    pub offset: u64,
    /// 1 to [`MAX_CLIP_CHUNK`] bytes of the file.
    pub data: Bytes,
}

/// Center → gateway, last on a clip stream: the whole clip is stored durably and its
/// SHA-256 matched the offer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipAck {}

/// A message of a clip stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClipMessage {
    /// 0x30, gateway → center: first and only once.
    ClipOffer(ClipOffer),
    /// 0x31, center → gateway: at most once, first.
    ClipWant(ClipWant),
    /// 0x32, gateway → center: every message after the offer.
    ClipData(ClipData),
    /// 0x33, center → gateway: once, last.
    ClipAck(ClipAck),
}

into_message!(ClipMessage: ClipOffer, ClipWant, ClipData, ClipAck);

impl StreamMessage for ClipMessage {
    const STREAM: StreamKind = StreamKind::Clip;

    fn message_type(&self) -> MessageType {
        match self {
            ClipMessage::ClipOffer(_) => MessageType::CLIP_OFFER,
            ClipMessage::ClipWant(_) => MessageType::CLIP_WANT,
            ClipMessage::ClipData(_) => MessageType::CLIP_DATA,
            ClipMessage::ClipAck(_) => MessageType::CLIP_ACK,
        }
    }

    fn encode(&self) -> Result<Encoded, EncodeError> {
        match self {
            ClipMessage::ClipOffer(offer) => {
                let mut w = Writer::new("ClipOffer");
                w.string("alert_id", &offer.alert_id, 1, MAX_ID_LEN)?;
                w.string("camera_id", &offer.camera_id, 1, MAX_ID_LEN)?;
                write_codec(&mut w, offer.codec);
                if !(1..=MAX_CLIP_SIZE).contains(&offer.size) {
                    return Err(w.invalid("size", offer.size, "1 to 2^40"));
                }
                w.varint("size", offer.size)?;
                w.bytes("sha256", &Bytes::copy_from_slice(&offer.sha256), 32, 32)?;
                if offer.last_capture_unix_ns < offer.first_capture_unix_ns {
                    return Err(w.invalid(
                        "last_capture_unix_ns",
                        offer.last_capture_unix_ns,
                        "not before first_capture_unix_ns",
                    ));
                }
                w.u64(offer.first_capture_unix_ns);
                w.u64(offer.last_capture_unix_ns);
                w.finish(MessageType::CLIP_OFFER, StreamKind::Clip)
            }
            ClipMessage::ClipWant(want) => {
                let mut w = Writer::new("ClipWant");
                if want.offset >= MAX_CLIP_SIZE {
                    return Err(w.invalid("offset", want.offset, "below 2^40"));
                }
                w.varint("offset", want.offset)?;
                w.finish(MessageType::CLIP_WANT, StreamKind::Clip)
            }
            ClipMessage::ClipData(data) => {
                let mut w = Writer::new("ClipData");
                if data.offset >= MAX_CLIP_SIZE {
                    return Err(w.invalid("offset", data.offset, "below 2^40"));
                }
                w.varint("offset", data.offset)?;
                w.bytes("data", &data.data, 1, MAX_CLIP_CHUNK)?;
                w.finish(MessageType::CLIP_DATA, StreamKind::Clip)
            }
            ClipMessage::ClipAck(ClipAck {}) => {
                Writer::new("ClipAck").finish(MessageType::CLIP_ACK, StreamKind::Clip)
            }
        }
    }
}

impl Sealed for ClipMessage {
    fn decode_payload(msg_type: MessageType, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match msg_type {
            MessageType::CLIP_OFFER => {
                let alert_id = r.string("alert_id", 1, MAX_ID_LEN)?;
                let camera_id = r.string("camera_id", 1, MAX_ID_LEN)?;
                let codec = read_codec(r, "codec")?;
                let at = r.offset();
                let size = r.varint("size")?;
                if !(1..=MAX_CLIP_SIZE).contains(&size) {
                    return Err(r.invalid("size", at, size, "1 to 2^40"));
                }
                let hash = r.bytes("sha256", 32, 32)?;
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&hash);
                let first_capture_unix_ns = r.u64("first_capture_unix_ns")?;
                let at = r.offset();
                let last_capture_unix_ns = r.u64("last_capture_unix_ns")?;
                if last_capture_unix_ns < first_capture_unix_ns {
                    return Err(r.invalid(
                        "last_capture_unix_ns",
                        at,
                        last_capture_unix_ns,
                        "not before first_capture_unix_ns",
                    ));
                }
                ClipMessage::ClipOffer(ClipOffer {
                    alert_id,
                    camera_id,
                    codec,
                    size,
                    sha256,
                    first_capture_unix_ns,
                    last_capture_unix_ns,
                })
            }
            MessageType::CLIP_WANT => {
                let at = r.offset();
                let offset = r.varint("offset")?;
                if offset >= MAX_CLIP_SIZE {
                    return Err(r.invalid("offset", at, offset, "below 2^40"));
                }
                ClipMessage::ClipWant(ClipWant { offset })
            }
            MessageType::CLIP_DATA => {
                let at = r.offset();
                let offset = r.varint("offset")?;
                if offset >= MAX_CLIP_SIZE {
                    return Err(r.invalid("offset", at, offset, "below 2^40"));
                }
                ClipMessage::ClipData(ClipData {
                    offset,
                    data: r.bytes("data", 1, MAX_CLIP_CHUNK)?,
                })
            }
            MessageType::CLIP_ACK => ClipMessage::ClipAck(ClipAck {}),
            other => {
                return Err(DecodeError::UnknownType {
                    stream: StreamKind::Clip,
                    msg_type: other.0,
                    offset: r.offset(),
                });
            }
        })
    }

    fn check_order(&self, order: &mut Order, offset: u64) -> Result<(), DecodeError> {
        match self {
            ClipMessage::ClipData(data) => {
                if let Some(next) = order.clip_next
                    && data.offset != next
                {
                    return Err(DecodeError::InvalidValue {
                        message: "ClipData",
                        field: "offset".to_owned(),
                        value: data.offset.to_string(),
                        expected: "the end of the previous ClipData",
                        offset,
                    });
                }
                order.clip_next = Some(data.offset + data.data.len() as u64);
            }
            ClipMessage::ClipAck(_) => order.refused = true,
            _ => {}
        }
        Ok(())
    }

    fn missing_at_end(order: &Order) -> Option<&'static str> {
        (order.messages == 0).then_some("a clip stream before its first message")
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FrameDecoder, Role};
    use super::*;

    fn offer() -> ClipOffer {
        ClipOffer {
            alert_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            camera_id: "tower-7".into(),
            codec: Codec::H264,
            size: 1_234_567,
            sha256: [7; 32],
            first_capture_unix_ns: 1_700_000_000_000_000_000,
            last_capture_unix_ns: 1_700_000_030_000_000_000,
        }
    }

    fn wire(messages: &[ClipMessage]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.extend_from_slice(&m.encode().expect("encodes").to_bytes());
        }
        out
    }

    fn decode(from: Role, bytes: &[u8]) -> Result<Vec<ClipMessage>, DecodeError> {
        let mut d = FrameDecoder::<ClipMessage>::new(from);
        let mut got = Vec::new();
        for piece in bytes.chunks(5) {
            d.push(piece);
            while let Some(m) = d.next_message()? {
                got.push(m);
            }
        }
        d.finish()?;
        Ok(got)
    }

    #[test]
    fn a_transfer_round_trips_in_both_directions() {
        let up = [
            ClipMessage::ClipOffer(offer()),
            ClipMessage::ClipData(ClipData {
                offset: 1000,
                data: Bytes::from(vec![1u8; 200_000]),
            }),
            ClipMessage::ClipData(ClipData {
                offset: 201_000,
                data: Bytes::from_static(b"tail"),
            }),
        ];
        assert_eq!(decode(Role::Gateway, &wire(&up)).expect("decodes"), up);
        let down = [
            ClipMessage::ClipWant(ClipWant { offset: 1000 }),
            ClipMessage::ClipAck(ClipAck {}),
        ];
        assert_eq!(decode(Role::Center, &wire(&down)).expect("decodes"), down);
    }

    #[test]
    fn stream_rules_are_enforced() {
        // Data before the offer.
        let data = ClipMessage::ClipData(ClipData {
            offset: 0,
            data: Bytes::from_static(b"x"),
        });
        let e = decode(Role::Gateway, &wire(std::slice::from_ref(&data))).unwrap_err();
        assert!(e.to_string().contains("ClipOffer"), "{e}");
        // A gap between pieces.
        let gap = [
            ClipMessage::ClipOffer(offer()),
            data.clone(),
            ClipMessage::ClipData(ClipData {
                offset: 5,
                data: Bytes::from_static(b"y"),
            }),
        ];
        let e = decode(Role::Gateway, &wire(&gap)).unwrap_err();
        assert!(
            e.to_string().contains("end of the previous ClipData"),
            "{e}"
        );
        // The center may not offer, and nothing follows its ack.
        let e = decode(Role::Center, &wire(&[ClipMessage::ClipOffer(offer())])).unwrap_err();
        assert!(e.to_string().contains("only the gateway"), "{e}");
        let after_ack = [
            ClipMessage::ClipAck(ClipAck {}),
            ClipMessage::ClipWant(ClipWant { offset: 0 }),
        ];
        let e = decode(Role::Center, &wire(&after_ack)).unwrap_err();
        assert!(e.to_string().contains("ClipAck"), "{e}");
        // A piece above the chunk limit is refused by the encoder.
        let big = ClipMessage::ClipData(ClipData {
            offset: 0,
            data: Bytes::from(vec![0u8; MAX_CLIP_CHUNK + 1]),
        });
        assert!(big.encode().is_err());
        // A clip that ends before it began.
        let mut bad = offer();
        bad.last_capture_unix_ns = bad.first_capture_unix_ns - 1;
        assert!(ClipMessage::ClipOffer(bad).encode().is_err());
    }
}
