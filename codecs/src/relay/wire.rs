//! The field encodings every relay message is built from, and the message envelope:
//! `type` (varint), `length` (varint), payload. [`Reader`] walks a payload and turns every
//! shortfall into a [`DecodeError`] naming the message, the field and the stream offset;
//! [`Writer`] builds a payload, checking the same limits, and hands large byte fields
//! (video access units, JPEG snapshots) through as their own [`Bytes`] chunks instead of
//! copying them.
//!
//! | encoding | bytes |
//! |----------|-------|
//! | varint   | QUIC variable-length integer, 1, 2, 4 or 8 bytes |
//! | u8       | one byte |
//! | u64      | 8 bytes, big-endian |
//! | f64      | IEEE 754 binary64, 8 bytes, big-endian |
//! | flag     | one byte, 0 or 1 |
//! | bytes    | varint length, then that many bytes |
//! | string   | bytes holding UTF-8 |
//! | optional | flag; the value follows when it is 1 |
//! | list     | varint count, then that many items |

use super::varint::{decode_varint, encode_varint, varint_len};
use super::{DecodeError, EncodeError, Role, StreamKind};
use bytes::{BufMut, Bytes, BytesMut};

/// A relay message type, the varint in front of every message. The constants are the
/// types version 1 defines; any other value is an unknown type (skipped on the control
/// stream, a protocol violation elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageType(pub u64);

impl MessageType {
    /// Control, gateway → center: the gateway introduces itself and its cameras.
    pub const HELLO: MessageType = MessageType(0x01);
    /// Control, center → gateway: the session is accepted.
    pub const WELCOME: MessageType = MessageType(0x02);
    /// Control, center → gateway: the session is refused.
    pub const REFUSE: MessageType = MessageType(0x03);
    /// Control, center → gateway: which cameras' video the center wants.
    pub const SUBSCRIBE: MessageType = MessageType(0x04);
    /// Control, gateway → center: cameras added, changed, removed or changing state.
    pub const CAMERA_UPDATE: MessageType = MessageType(0x05);
    /// Control, either way: asks for a `Pong`.
    pub const PING: MessageType = MessageType(0x06);
    /// Control, either way: answers a `Ping`.
    pub const PONG: MessageType = MessageType(0x07);
    /// Control, either way: the sender is about to close the connection.
    pub const GOAWAY: MessageType = MessageType(0x08);
    /// Control, center → gateway: an alert or snapshot was not stored and will not be
    /// acknowledged. Advisory (added within version 1): a gateway that skips it loses
    /// nothing, the entry just stays unacknowledged.
    pub const ALERT_REFUSED: MessageType = MessageType(0x09);
    /// Alerts, gateway → center: one revision of an alert record.
    pub const ALERT: MessageType = MessageType(0x10);
    /// Alerts, gateway → center: the snapshot of an alert sent earlier.
    pub const SNAPSHOT: MessageType = MessageType(0x11);
    /// Alerts, center → gateway: an alert revision is stored durably.
    pub const ALERT_ACK: MessageType = MessageType(0x12);
    /// Alerts, center → gateway: a snapshot is stored durably.
    pub const SNAPSHOT_ACK: MessageType = MessageType(0x13);
    /// Video, gateway → center: the first message of a GOP stream.
    pub const GOP_HEADER: MessageType = MessageType(0x20);
    /// Video, gateway → center: one access unit.
    pub const FRAME: MessageType = MessageType(0x21);
    /// Clip (version 2), gateway → center: the clip on offer.
    pub const CLIP_OFFER: MessageType = MessageType(0x30);
    /// Clip (version 2), center → gateway: send from this offset.
    pub const CLIP_WANT: MessageType = MessageType(0x31);
    /// Clip (version 2), gateway → center: a piece of the file.
    pub const CLIP_DATA: MessageType = MessageType(0x32);
    /// Clip (version 2), center → gateway: the clip is stored durably.
    pub const CLIP_ACK: MessageType = MessageType(0x33);

    /// Every type version 2 defines.
    pub const ALL: [MessageType; 19] = [
        MessageType::HELLO,
        MessageType::WELCOME,
        MessageType::REFUSE,
        MessageType::SUBSCRIBE,
        MessageType::CAMERA_UPDATE,
        MessageType::PING,
        MessageType::PONG,
        MessageType::GOAWAY,
        MessageType::ALERT_REFUSED,
        MessageType::ALERT,
        MessageType::SNAPSHOT,
        MessageType::ALERT_ACK,
        MessageType::SNAPSHOT_ACK,
        MessageType::GOP_HEADER,
        MessageType::FRAME,
        MessageType::CLIP_OFFER,
        MessageType::CLIP_WANT,
        MessageType::CLIP_DATA,
        MessageType::CLIP_ACK,
    ];

    /// The message's name, or `None` for a type version 1 does not define.
    pub fn name(self) -> Option<&'static str> {
        self.spec().map(|(name, _, _)| name)
    }

    /// The stream kind the type belongs to, or `None` for an unknown type.
    pub fn stream(self) -> Option<StreamKind> {
        self.spec().map(|(_, stream, _)| stream)
    }

    /// Whether `role` may send this type (`false` for an unknown type).
    pub fn sent_by(self, role: Role) -> bool {
        self.spec()
            .is_some_and(|(_, _, from)| from.is_none_or(|r| r == role))
    }

    /// Name, stream, and the only role that may send it (`None`: both may).
    fn spec(self) -> Option<(&'static str, StreamKind, Option<Role>)> {
        use Role::{Center, Gateway};
        use StreamKind::{Alerts, Clip, Control, Video};
        Some(match self {
            MessageType::HELLO => ("Hello", Control, Some(Gateway)),
            MessageType::WELCOME => ("Welcome", Control, Some(Center)),
            MessageType::REFUSE => ("Refuse", Control, Some(Center)),
            MessageType::SUBSCRIBE => ("Subscribe", Control, Some(Center)),
            MessageType::CAMERA_UPDATE => ("CameraUpdate", Control, Some(Gateway)),
            MessageType::PING => ("Ping", Control, None),
            MessageType::PONG => ("Pong", Control, None),
            MessageType::GOAWAY => ("Goaway", Control, None),
            MessageType::ALERT_REFUSED => ("AlertRefused", Control, Some(Center)),
            MessageType::ALERT => ("Alert", Alerts, Some(Gateway)),
            MessageType::SNAPSHOT => ("Snapshot", Alerts, Some(Gateway)),
            MessageType::ALERT_ACK => ("AlertAck", Alerts, Some(Center)),
            MessageType::SNAPSHOT_ACK => ("SnapshotAck", Alerts, Some(Center)),
            MessageType::GOP_HEADER => ("GopHeader", Video, Some(Gateway)),
            MessageType::FRAME => ("Frame", Video, Some(Gateway)),
            MessageType::CLIP_OFFER => ("ClipOffer", Clip, Some(Gateway)),
            MessageType::CLIP_WANT => ("ClipWant", Clip, Some(Center)),
            MessageType::CLIP_DATA => ("ClipData", Clip, Some(Gateway)),
            MessageType::CLIP_ACK => ("ClipAck", Clip, Some(Center)),
            _ => return None,
        })
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#04x})", self.0),
            None => write!(f, "unknown message type {:#x}", self.0),
        }
    }
}

/// One encoded message (`type`, `length`, payload) as a short list of [`Bytes`] chunks:
/// the framing and small fields in one, each large byte field (an access unit, a JPEG)
/// shared with the caller's buffer rather than copied. Write the chunks in order, e.g.
/// with quinn's `SendStream::write_all_chunks`, or join them with [`Encoded::to_bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    chunks: Vec<Bytes>,
}

impl Encoded {
    /// The message's length on the wire, framing included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Always `false`: a message has at least its type and length.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks, in wire order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The chunks, in wire order, for a vectored write.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// The whole message in one buffer (copied only when it is in several chunks).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [one] => one.clone(),
            chunks => {
                let mut out = BytesMut::with_capacity(self.len());
                for chunk in chunks {
                    out.extend_from_slice(chunk);
                }
                out.freeze()
            }
        }
    }
}

/// Byte fields at least this long travel as their own chunk instead of being copied.
const SHARE_AT: usize = 1024;

/// Builds one message payload, then its envelope.
pub struct Writer {
    message: &'static str,
    /// Completed payload chunks, in order.
    chunks: Vec<Bytes>,
    /// The small fields written since the last shared chunk.
    buf: BytesMut,
    /// Payload bytes so far, all chunks included.
    len: usize,
    /// The list item being written, for field names in errors: `("cameras", 3)`.
    item: Option<(&'static str, usize)>,
}

impl Writer {
    /// Starts the payload of the message called `message` in errors.
    pub fn new(message: &'static str) -> Writer {
        Writer {
            message,
            chunks: Vec::new(),
            buf: BytesMut::with_capacity(64),
            len: 0,
            item: None,
        }
    }

    /// Fields written from now on belong to item `index` of list `list` (for errors).
    pub fn item(&mut self, list: &'static str, index: usize) {
        self.item = Some((list, index));
    }

    /// Fields written from now on are the message's own.
    pub fn end_item(&mut self) {
        self.item = None;
    }

    fn field(&self, field: &'static str) -> String {
        field_name(self.item, field)
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) {
        self.buf.put_u8(value);
        self.len += 1;
    }

    /// Appends a flag: 1 for `true`, 0 for `false`.
    pub fn flag(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    /// Appends a big-endian u64.
    pub fn u64(&mut self, value: u64) {
        self.buf.put_u64(value);
        self.len += 8;
    }

    /// Appends a big-endian IEEE 754 binary64.
    pub fn f64(&mut self, value: f64) {
        self.buf.put_f64(value);
        self.len += 8;
    }

    /// Appends a varint; `field` names it if the value is above 2^62 − 1.
    pub fn varint(&mut self, field: &'static str, value: u64) -> Result<(), EncodeError> {
        match encode_varint(value, &mut self.buf) {
            Ok(n) => {
                self.len += n;
                Ok(())
            }
            Err(_) => Err(EncodeError::InvalidValue {
                message: self.message,
                field: self.field(field),
                value: value.to_string(),
                expected: "at most 2^62 - 1",
            }),
        }
    }

    /// Appends a list's item count after checking it against `min..=max`.
    pub fn count(
        &mut self,
        field: &'static str,
        count: usize,
        min: usize,
        max: usize,
    ) -> Result<(), EncodeError> {
        self.check_len(field, count, min, max)?;
        self.varint(field, count as u64)
    }

    fn check_len(
        &self,
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    ) -> Result<(), EncodeError> {
        if (min..=max).contains(&len) {
            Ok(())
        } else {
            Err(EncodeError::BadLength {
                message: self.message,
                field: self.field(field),
                len: len as u64,
                min: min as u64,
                max: max as u64,
            })
        }
    }

    /// Appends a byte field (length, then bytes) after checking its length; a long one is
    /// shared, not copied.
    pub fn bytes(
        &mut self,
        field: &'static str,
        value: &Bytes,
        min: usize,
        max: usize,
    ) -> Result<(), EncodeError> {
        self.check_len(field, value.len(), min, max)?;
        self.varint(field, value.len() as u64)?;
        if value.len() >= SHARE_AT {
            let small = self.buf.split().freeze();
            self.chunks.push(small);
            self.chunks.push(value.clone());
        } else {
            self.buf.extend_from_slice(value);
        }
        self.len += value.len();
        Ok(())
    }

    /// Appends a string field after checking its length in bytes.
    pub fn string(
        &mut self,
        field: &'static str,
        value: &str,
        min: usize,
        max: usize,
    ) -> Result<(), EncodeError> {
        self.check_len(field, value.len(), min, max)?;
        self.varint(field, value.len() as u64)?;
        self.buf.extend_from_slice(value.as_bytes());
        self.len += value.len();
        Ok(())
    }

    /// An [`EncodeError::InvalidValue`] for `field` of the message being written.
    pub fn invalid(
        &self,
        field: &'static str,
        value: impl ToString,
        expected: &'static str,
    ) -> EncodeError {
        EncodeError::InvalidValue {
            message: self.message,
            field: self.field(field),
            value: value.to_string(),
            expected,
        }
    }

    /// Wraps the payload in its envelope, refusing payloads above `stream`'s limit.
    pub fn finish(
        mut self,
        msg_type: MessageType,
        stream: StreamKind,
    ) -> Result<Encoded, EncodeError> {
        let max = stream.max_message();
        let len = self.len as u64;
        if len > max {
            return Err(EncodeError::TooLarge {
                message: self.message,
                len,
                max,
            });
        }
        // The envelope goes in front of the first small chunk, copying only small fields.
        let head_len = varint_len(msg_type.0).unwrap_or(8) + varint_len(len).unwrap_or(8);
        let lead: Bytes = if self.chunks.is_empty() {
            self.buf.split().freeze()
        } else {
            self.chunks.remove(0)
        };
        let mut head = BytesMut::with_capacity(head_len + lead.len());
        self.varint_into(&mut head, msg_type.0)?;
        self.varint_into(&mut head, len)?;
        head.extend_from_slice(&lead);
        let mut chunks = Vec::with_capacity(self.chunks.len() + 2);
        chunks.push(head.freeze());
        chunks.append(&mut self.chunks);
        if !self.buf.is_empty() {
            chunks.push(self.buf.split().freeze());
        }
        Ok(Encoded { chunks })
    }

    fn varint_into(&self, out: &mut BytesMut, value: u64) -> Result<(), EncodeError> {
        encode_varint(value, out)
            .map(|_| ())
            .map_err(|_| EncodeError::InvalidValue {
                message: self.message,
                field: "type".to_owned(),
                value: value.to_string(),
                expected: "at most 2^62 - 1",
            })
    }
}

fn field_name(item: Option<(&'static str, usize)>, field: &'static str) -> String {
    match item {
        Some((list, index)) => format!("{list}[{index}].{field}"),
        None => field.to_owned(),
    }
}

/// Walks one message payload field by field.
pub struct Reader<'a> {
    message: &'static str,
    payload: &'a Bytes,
    pos: usize,
    /// Stream offset of the payload's first byte.
    base: u64,
    /// The list item being read, for field names in errors: `("cameras", 3)`.
    item: Option<(&'static str, usize)>,
}

impl<'a> Reader<'a> {
    /// Starts reading the payload of the message called `message`, whose first byte is at
    /// stream offset `base`.
    pub fn new(message: &'static str, payload: &'a Bytes, base: u64) -> Reader<'a> {
        Reader {
            message,
            payload,
            pos: 0,
            base,
            item: None,
        }
    }

    /// Fields read from now on belong to item `index` of list `list` (for errors).
    pub fn item(&mut self, list: &'static str, index: usize) {
        self.item = Some((list, index));
    }

    /// Fields read from now on are the message's own.
    pub fn end_item(&mut self) {
        self.item = None;
    }

    /// The stream offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn rest(&self) -> &[u8] {
        self.payload.get(self.pos..).unwrap_or_default()
    }

    fn truncated(&self, field: &'static str, at: u64) -> DecodeError {
        DecodeError::Truncated {
            message: self.message,
            field: field_name(self.item, field),
            offset: at,
        }
    }

    /// A [`DecodeError::InvalidValue`] for `field`, which started at offset `at`.
    pub fn invalid(
        &self,
        field: &'static str,
        at: u64,
        value: impl ToString,
        expected: &'static str,
    ) -> DecodeError {
        DecodeError::InvalidValue {
            message: self.message,
            field: field_name(self.item, field),
            value: value.to_string(),
            expected,
            offset: at,
        }
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let at = self.offset();
        let (bytes, _) = self
            .rest()
            .split_first_chunk::<N>()
            .ok_or_else(|| self.truncated(field, at))?;
        let bytes = *bytes;
        self.pos += N;
        Ok(bytes)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.take::<1>(field).map(|[b]| b)
    }

    /// Reads a flag; any value but 0 and 1 is an error.
    pub fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let at = self.offset();
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(field, at, other, "0 or 1")),
        }
    }

    /// Reads a big-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.take::<8>(field).map(u64::from_be_bytes)
    }

    /// Reads a big-endian IEEE 754 binary64.
    pub fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        self.take::<8>(field).map(f64::from_be_bytes)
    }

    /// Reads a varint.
    pub fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let at = self.offset();
        let (value, len) = decode_varint(self.rest()).ok_or_else(|| self.truncated(field, at))?;
        self.pos += len;
        Ok(value)
    }

    /// Reads a varint that must fit a u32.
    pub fn varint_u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let at = self.offset();
        let value = self.varint(field)?;
        u32::try_from(value).map_err(|_| self.invalid(field, at, value, "at most 2^32 - 1"))
    }

    /// Reads a list's item count, checked against `min..=max` and against the bytes left
    /// (each item takes at least `item_min_len` bytes), so a forged count cannot make the
    /// caller reserve memory the payload does not back.
    pub fn count(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
        item_min_len: usize,
    ) -> Result<usize, DecodeError> {
        let at = self.offset();
        let count = self.varint(field)?;
        self.check_len(field, at, count, min, max)?;
        let left = self.rest().len() as u64;
        if count.saturating_mul(item_min_len as u64) > left {
            return Err(self.truncated(field, at));
        }
        // At most the payload's length, so it fits.
        Ok(count as usize)
    }

    fn check_len(
        &self,
        field: &'static str,
        at: u64,
        len: u64,
        min: usize,
        max: usize,
    ) -> Result<(), DecodeError> {
        if (min as u64..=max as u64).contains(&len) {
            Ok(())
        } else {
            Err(DecodeError::BadLength {
                message: self.message,
                field: field_name(self.item, field),
                len,
                min: min as u64,
                max: max as u64,
                offset: at,
            })
        }
    }

    /// Reads a byte field whose length must be in `min..=max`; zero-copy.
    pub fn bytes(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Bytes, DecodeError> {
        let at = self.offset();
        let len = self.varint(field)?;
        self.check_len(field, at, len, min, max)?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= self.payload.len())
            .ok_or_else(|| self.truncated(field, at))?;
        self.pos = end;
        Ok(self.payload.slice(start..end))
    }

    /// Reads a UTF-8 string field whose length in bytes must be in `min..=max`.
    pub fn string(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<String, DecodeError> {
        let at = self.offset();
        let bytes = self.bytes(field, min, max)?;
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::InvalidUtf8 {
                message: self.message,
                field: field_name(self.item, field),
                offset: at,
            }),
        }
    }

    /// Checks that the payload has nothing after the last field.
    pub fn end(&self) -> Result<(), DecodeError> {
        match self.rest().len() {
            0 => Ok(()),
            len => Err(DecodeError::TrailingBytes {
                message: self.message,
                len: len as u64,
                offset: self.offset(),
            }),
        }
    }
}
