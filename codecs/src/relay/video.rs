//! Video stream messages. Each GOP of each camera (a keyframe and the frames up to the
//! next keyframe) travels on its own unidirectional QUIC stream: a [`GopHeader`], then
//! one [`Frame`] per access unit, then the end of the stream. Streams are independent,
//! so a GOP that falls behind can be reset without touching the next one, and a receiver
//! can start decoding from any stream it has from its beginning.

use super::control::{into_message, read_dimension, write_dimension};
use super::framing::StreamMessage;
use super::framing::sealed::{Order, Sealed};
use super::wire::{Encoded, MessageType, Reader, Writer};
use super::{
    DecodeError, EncodeError, MAX_ID_LEN, MAX_PARAMETER_SET_LEN, MAX_VIDEO_MESSAGE, StreamKind,
};
use crate::Codec;
use bytes::Bytes;

/// The stream limit, the longest any variable-length field of this stream can be.
const LIMIT: usize = MAX_VIDEO_MESSAGE as usize;

/// Writes a codec as one byte: 0 H.264, 1 H.265.
pub(crate) fn write_codec(w: &mut Writer, codec: Codec) {
    w.u8(match codec {
        Codec::H264 => 0,
        Codec::H265 => 1,
    });
}

/// Reads a codec byte.
pub(crate) fn read_codec(r: &mut Reader<'_>, field: &'static str) -> Result<Codec, DecodeError> {
    let at = r.offset();
    match r.u8(field)? {
        0 => Ok(Codec::H264),
        1 => Ok(Codec::H265),
        other => Err(r.invalid(field, at, other, "0 (H.264) or 1 (H.265)")),
    }
}

/// The first message of a GOP stream: whose GOP it is and what a decoder needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GopHeader {
    /// The camera's id, 1–64 bytes, as in `Hello`.
    pub camera_id: String,
    /// The GOP's number for this camera, rising by one per GOP the gateway cuts (GOPs it
    /// skips still take a number, so a gap says video was skipped).
    pub gop_seq: u64,
    /// The stream's codec.
    pub codec: Codec,
    /// Picture width in pixels, at least 1.
    pub width: u32,
    /// Picture height in pixels, at least 1.
    pub height: u32,
    /// The VPS NAL unit (header included, no start code): present for H.265 only.
    pub vps: Option<Bytes>,
    /// The SPS NAL unit (header included, no start code).
    pub sps: Bytes,
    /// The PPS NAL unit (header included, no start code).
    pub pps: Bytes,
}

/// Bit 0 of [`Frame`]'s flags: the access unit is a keyframe (IDR or IRAP).
const KEYFRAME: u8 = 0x01;

/// One access unit of the GOP, with its times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The camera's frame number at the gateway, rising by one per access unit received
    /// from the camera (a gap says the gateway dropped frames); strictly rising within a
    /// GOP stream.
    pub seq: u64,
    /// The access unit is a keyframe; the first frame of a GOP always is.
    pub keyframe: bool,
    /// Presentation time in nanoseconds on the camera stream's own clock, when known.
    pub pts_ns: Option<u64>,
    /// Capture time, nanoseconds since the Unix epoch (UTC): lookout's SEI stamp, the
    /// RTCP sender report, or the arrival time when the camera gives neither.
    pub capture_unix_ns: u64,
    /// When the gateway received the access unit, nanoseconds since the Unix epoch (UTC).
    pub received_unix_ns: u64,
    /// The Annex-B access unit exactly as the camera sent it (start codes included).
    pub data: Bytes,
}

/// A message of a video (GOP) stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoMessage {
    /// 0x20, gateway → center: first and only once.
    GopHeader(GopHeader),
    /// 0x21, gateway → center: every message after the header.
    Frame(Frame),
}

into_message!(VideoMessage: GopHeader, Frame);

impl StreamMessage for VideoMessage {
    const STREAM: StreamKind = StreamKind::Video;

    fn message_type(&self) -> MessageType {
        match self {
            VideoMessage::GopHeader(_) => MessageType::GOP_HEADER,
            VideoMessage::Frame(_) => MessageType::FRAME,
        }
    }

    fn encode(&self) -> Result<Encoded, EncodeError> {
        match self {
            VideoMessage::GopHeader(header) => {
                let mut w = Writer::new("GopHeader");
                w.string("camera_id", &header.camera_id, 1, MAX_ID_LEN)?;
                w.u64(header.gop_seq);
                write_codec(&mut w, header.codec);
                write_dimension(&mut w, "width", header.width)?;
                write_dimension(&mut w, "height", header.height)?;
                match (header.codec, &header.vps) {
                    (Codec::H264, Some(_)) => {
                        return Err(w.invalid("vps", "present", "absent for H.264"));
                    }
                    (Codec::H265, None) => {
                        return Err(w.invalid("vps", "absent", "present for H.265"));
                    }
                    _ => {}
                }
                w.flag(header.vps.is_some());
                if let Some(vps) = &header.vps {
                    w.bytes("vps", vps, 1, MAX_PARAMETER_SET_LEN)?;
                }
                w.bytes("sps", &header.sps, 1, MAX_PARAMETER_SET_LEN)?;
                w.bytes("pps", &header.pps, 1, MAX_PARAMETER_SET_LEN)?;
                w.finish(MessageType::GOP_HEADER, StreamKind::Video)
            }
            VideoMessage::Frame(frame) => {
                let mut w = Writer::new("Frame");
                w.u64(frame.seq);
                w.u8(if frame.keyframe { KEYFRAME } else { 0 });
                w.flag(frame.pts_ns.is_some());
                if let Some(pts) = frame.pts_ns {
                    w.u64(pts);
                }
                w.u64(frame.capture_unix_ns);
                w.u64(frame.received_unix_ns);
                w.bytes("data", &frame.data, 1, LIMIT)?;
                w.finish(MessageType::FRAME, StreamKind::Video)
            }
        }
    }
}

impl Sealed for VideoMessage {
    fn decode_payload(msg_type: MessageType, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match msg_type {
            MessageType::GOP_HEADER => {
                let camera_id = r.string("camera_id", 1, MAX_ID_LEN)?;
                let gop_seq = r.u64("gop_seq")?;
                let codec = read_codec(r, "codec")?;
                let width = read_dimension(r, "width")?;
                let height = read_dimension(r, "height")?;
                let at = r.offset();
                let vps = match (codec, r.flag("vps")?) {
                    (Codec::H265, true) => Some(r.bytes("vps", 1, MAX_PARAMETER_SET_LEN)?),
                    (Codec::H264, false) => None,
                    (Codec::H264, true) => {
                        return Err(r.invalid("vps", at, "present", "absent for H.264"));
                    }
                    (Codec::H265, false) => {
                        return Err(r.invalid("vps", at, "absent", "present for H.265"));
                    }
                };
                VideoMessage::GopHeader(GopHeader {
                    camera_id,
                    gop_seq,
                    codec,
                    width,
                    height,
                    vps,
                    sps: r.bytes("sps", 1, MAX_PARAMETER_SET_LEN)?,
                    pps: r.bytes("pps", 1, MAX_PARAMETER_SET_LEN)?,
                })
            }
            MessageType::FRAME => {
                let seq = r.u64("seq")?;
                let at = r.offset();
                let flags = r.u8("flags")?;
                if flags & !KEYFRAME != 0 {
                    return Err(r.invalid(
                        "flags",
                        at,
                        format!("{flags:#04x}"),
                        "only bit 0 (keyframe) set",
                    ));
                }
                let pts_ns = if r.flag("pts_ns")? {
                    Some(r.u64("pts_ns")?)
                } else {
                    None
                };
                VideoMessage::Frame(Frame {
                    seq,
                    keyframe: flags & KEYFRAME != 0,
                    pts_ns,
                    capture_unix_ns: r.u64("capture_unix_ns")?,
                    received_unix_ns: r.u64("received_unix_ns")?,
                    data: r.bytes("data", 1, LIMIT)?,
                })
            }
            other => {
                return Err(DecodeError::UnknownType {
                    stream: StreamKind::Video,
                    msg_type: other.0,
                    offset: r.offset(),
                });
            }
        })
    }

    fn check_order(&self, order: &mut Order, offset: u64) -> Result<(), DecodeError> {
        let VideoMessage::Frame(frame) = self else {
            return Ok(());
        };
        let invalid = |field: &str, at, value: String, expected| DecodeError::InvalidValue {
            message: "Frame",
            field: field.to_owned(),
            value,
            expected,
            offset: at,
        };
        match order.last_frame_seq {
            None if !frame.keyframe => {
                return Err(invalid(
                    "flags",
                    offset + 8,
                    "0x00".to_owned(),
                    "the keyframe bit on a GOP's first frame",
                ));
            }
            Some(previous) if frame.seq <= previous => {
                return Err(invalid(
                    "seq",
                    offset,
                    format!("{} after {previous}", frame.seq),
                    "above the previous frame's seq",
                ));
            }
            _ => {}
        }
        order.last_frame_seq = Some(frame.seq);
        Ok(())
    }

    fn missing_at_end(order: &Order) -> Option<&'static str> {
        if order.messages == 0 {
            Some("a GOP stream before its GopHeader")
        } else if order.last_frame_seq.is_none() {
            Some("a GOP stream without frames")
        } else {
            None
        }
    }
}
