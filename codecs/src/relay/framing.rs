//! The envelope around every relay message and the rules of each stream kind, applied to
//! QUIC stream data as it arrives. [`FrameDecoder`] takes chunks of any size (a message
//! may be split anywhere, several may share a chunk), checks each message's type against
//! the stream it came on and the role that sent it, refuses a length above the stream's
//! limit before buffering any of the payload, skips unknown types on the control stream,
//! and hands back typed messages ([`ControlMessage`], [`AlertMessage`], [`VideoMessage`]).
//! After the first error it keeps returning that error: the stream is broken.
//!
//! [`ControlMessage`]: super::ControlMessage
//! [`AlertMessage`]: super::AlertMessage
//! [`VideoMessage`]: super::VideoMessage

use super::varint::decode_varint;
use super::wire::{Encoded, MessageType, Reader};
use super::{DecodeError, EncodeError, Role, StreamKind};
use bytes::{Buf, Bytes, BytesMut};
use std::marker::PhantomData;

pub(crate) mod sealed {
    use super::super::DecodeError;
    use super::super::wire::{MessageType, Reader};

    /// What a stream's message set tells [`FrameDecoder`](super::FrameDecoder) beyond its
    /// envelope; out of reach outside the crate, so only lookout's three sets exist.
    pub trait Sealed: Sized {
        /// Reads the payload of a message of type `msg_type`, which belongs to this stream.
        fn decode_payload(msg_type: MessageType, r: &mut Reader<'_>) -> Result<Self, DecodeError>;

        /// Checks the rules that depend on the decoded message and the ones before it,
        /// then records it in `order`. `offset` is where its payload starts.
        fn check_order(&self, order: &mut Order, offset: u64) -> Result<(), DecodeError> {
            // Not a result: the default has no rules, and this marks the
            // parameters used while keeping their names for implementors.
            let _ = (order, offset);
            Ok(())
        }

        /// What the stream still lacks if it ends now, or `None` if it may end.
        fn missing_at_end(order: &Order) -> Option<&'static str> {
            // Not a result: marks the parameter used (see `check_order`).
            let _ = order;
            None
        }
    }

    /// What one direction of a stream has carried so far.
    #[derive(Clone, Debug, Default)]
    pub struct Order {
        /// Messages decoded (unknown ones skipped are not counted).
        pub messages: u64,
        /// The center refused the session: nothing may follow.
        pub refused: bool,
        /// The `seq` of the GOP stream's last frame.
        pub last_frame_seq: Option<u64>,
        /// Where a clip stream's next `ClipData` starts.
        pub clip_next: Option<u64>,
    }
}

use sealed::Order;

/// The messages of one stream kind: [`ControlMessage`](super::ControlMessage),
/// [`AlertMessage`](super::AlertMessage) or [`VideoMessage`](super::VideoMessage).
pub trait StreamMessage: sealed::Sealed + Clone + std::fmt::Debug + PartialEq {
    /// The stream kind these messages travel on.
    const STREAM: StreamKind;

    /// The message's type on the wire.
    fn message_type(&self) -> MessageType;

    /// Encodes the message with its envelope, checking every limit the receiver checks.
    fn encode(&self) -> Result<Encoded, EncodeError>;

    /// Decodes one payload of type `msg_type` whose first byte is at stream offset
    /// `offset` (for error positions; 0 if unknown). The whole payload must be used.
    /// Stream rules (sender, order) are [`FrameDecoder`]'s business, not checked here.
    fn decode(msg_type: MessageType, payload: &Bytes, offset: u64) -> Result<Self, DecodeError> {
        let name = match (msg_type.name(), msg_type.stream()) {
            (Some(name), Some(stream)) if stream == Self::STREAM => name,
            _ => {
                return Err(DecodeError::UnknownType {
                    stream: Self::STREAM,
                    msg_type: msg_type.0,
                    offset,
                });
            }
        };
        let mut reader = Reader::new(name, payload, offset);
        let message = Self::decode_payload(msg_type, &mut reader)?;
        reader.end()?;
        Ok(message)
    }
}

/// What to do with a message whose type and length have been read.
enum Envelope {
    /// Wait for the payload, then decode it.
    Read,
    /// Discard the payload: an unknown type on the control stream.
    Skip,
}

/// Turns one direction of one QUIC stream back into messages, whatever the chunking.
///
/// Feed it with [`push`](Self::push) as data arrives, then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`; when the peer
/// finishes the stream, call [`finish`](Self::finish). It buffers at most one message
/// (plus whatever was pushed and not yet drained).
#[derive(Debug)]
pub struct FrameDecoder<M> {
    /// Who writes this direction of the stream, to refuse messages only the other end may
    /// send.
    from: Role,
    /// Received bytes not yet returned as a message.
    buf: BytesMut,
    /// Stream offset of `buf`'s first byte.
    offset: u64,
    /// Payload bytes of a skipped unknown message still to discard.
    skip: u64,
    /// Unknown messages skipped so far.
    skipped: u64,
    order: Order,
    /// The first error; the stream is unusable after it.
    error: Option<DecodeError>,
    _message: PhantomData<fn() -> M>,
}

impl<M: StreamMessage> FrameDecoder<M> {
    /// A decoder for the messages `from` writes on an `M::STREAM` stream: on the center,
    /// `FrameDecoder::<VideoMessage>::new(Role::Gateway)` reads a GOP stream.
    pub fn new(from: Role) -> FrameDecoder<M> {
        FrameDecoder {
            from,
            buf: BytesMut::new(),
            offset: 0,
            skip: 0,
            skipped: 0,
            order: Order::default(),
            error: None,
            _message: PhantomData,
        }
    }

    /// Appends stream data. Nothing is decoded until [`next_message`](Self::next_message).
    /// Data after an error is dropped.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if self.buf.is_empty() && self.skip > 0 {
            let n = data
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            data = data.get(n..).unwrap_or_default();
            self.skip -= n as u64;
            self.offset += n as u64;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` when more data is needed, or the error that
    /// broke the stream (again on every later call).
    pub fn next_message(&mut self) -> Result<Option<M>, DecodeError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match self.decode_next() {
            Ok(message) => Ok(message),
            Err(error) => {
                self.error = Some(error.clone());
                self.buf = BytesMut::new();
                Err(error)
            }
        }
    }

    fn decode_next(&mut self) -> Result<Option<M>, DecodeError> {
        loop {
            if self.skip > 0 {
                let n = self
                    .buf
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.buf.advance(n);
                self.skip -= n as u64;
                self.offset += n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let Some((msg_type, type_len)) = decode_varint(&self.buf) else {
                return Ok(None);
            };
            let Some((len, len_len)) = decode_varint(self.buf.get(type_len..).unwrap_or_default())
            else {
                return Ok(None);
            };
            let head = type_len + len_len;
            match self.check_envelope(MessageType(msg_type), len)? {
                Envelope::Skip => {
                    self.buf.advance(head);
                    self.offset += head as u64;
                    self.skip = len;
                    self.skipped += 1;
                    continue;
                }
                Envelope::Read => {}
            }
            // `len` is at most the stream's limit (16 MiB), so this cannot overflow.
            let total = head + usize::try_from(len).unwrap_or(usize::MAX - head);
            if self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            let message = self.buf.split_to(total).freeze();
            let payload = message.slice(head..);
            let payload_offset = self.offset + head as u64;
            self.offset += total as u64;
            let message = M::decode(MessageType(msg_type), &payload, payload_offset)?;
            message.check_order(&mut self.order, payload_offset)?;
            self.order.messages += 1;
            return Ok(Some(message));
        }
    }

    /// Checks a message's type and length before any of its payload is buffered.
    fn check_envelope(&self, msg_type: MessageType, len: u64) -> Result<Envelope, DecodeError> {
        let stream = M::STREAM;
        let offset = self.offset;
        let unexpected = |message, rule| DecodeError::Unexpected {
            stream,
            message,
            rule,
            offset,
        };
        let too_large = || DecodeError::TooLarge {
            stream,
            msg_type: msg_type.0,
            len,
            max: stream.max_message(),
            offset,
        };
        let (Some(name), Some(home)) = (msg_type.name(), msg_type.stream()) else {
            return match stream {
                StreamKind::Control if len > stream.max_message() => Err(too_large()),
                StreamKind::Control => Ok(Envelope::Skip),
                _ => Err(DecodeError::UnknownType {
                    stream,
                    msg_type: msg_type.0,
                    offset,
                }),
            };
        };
        if home != stream {
            return Err(unexpected(
                name,
                match home {
                    StreamKind::Control => "a control stream message",
                    StreamKind::Alerts => "an alert stream message",
                    StreamKind::Video => "a video stream message",
                    StreamKind::Clip => "a clip stream message",
                },
            ));
        }
        if !msg_type.sent_by(self.from) {
            return Err(unexpected(
                name,
                match self.from {
                    Role::Gateway => "only the center sends it",
                    Role::Center => "only the gateway sends it",
                },
            ));
        }
        let first = self.order.messages == 0;
        let rule = match (stream, self.from) {
            (StreamKind::Control, Role::Gateway) => {
                let hello = msg_type == MessageType::HELLO;
                match (first, hello) {
                    (true, false) => Some("the gateway's first control message must be Hello"),
                    (false, true) => Some("Hello is sent only once"),
                    _ => None,
                }
            }
            (StreamKind::Control, Role::Center) => {
                let answer = msg_type == MessageType::WELCOME || msg_type == MessageType::REFUSE;
                if self.order.refused {
                    Some("nothing may follow Refuse")
                } else {
                    match (first, answer) {
                        (true, false) => {
                            Some("the center's first control message must be Welcome or Refuse")
                        }
                        (false, true) => Some("Welcome or Refuse is sent only once"),
                        _ => None,
                    }
                }
            }
            (StreamKind::Video, _) => {
                let header = msg_type == MessageType::GOP_HEADER;
                match (first, header) {
                    (true, false) => Some("a GOP stream starts with GopHeader"),
                    (false, true) => Some("a GOP stream has one GopHeader"),
                    _ => None,
                }
            }
            (StreamKind::Clip, Role::Gateway) => {
                let offer = msg_type == MessageType::CLIP_OFFER;
                match (first, offer) {
                    (true, false) => Some("a clip stream starts with ClipOffer"),
                    (false, true) => Some("a clip stream has one ClipOffer"),
                    _ => None,
                }
            }
            (StreamKind::Clip, Role::Center) => {
                if self.order.refused {
                    Some("nothing may follow ClipAck")
                } else if !first && msg_type == MessageType::CLIP_WANT {
                    Some("ClipWant is sent once, first")
                } else {
                    None
                }
            }
            (StreamKind::Alerts, _) => None,
        };
        if let Some(rule) = rule {
            return Err(unexpected(name, rule));
        }
        if len > stream.max_message() {
            return Err(too_large());
        }
        Ok(Envelope::Read)
    }

    /// Call when the peer has finished the stream (QUIC FIN): an error if it ended inside
    /// a message or before the stream carried what it must (a video stream: its
    /// `GopHeader` and at least one `Frame`). Call [`next_message`](Self::next_message)
    /// until `Ok(None)` first.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let inside = if self.skip > 0 {
            Some(format!(
                "a skipped message of unknown type ({} payload bytes missing)",
                self.skip
            ))
        } else if !self.buf.is_empty() {
            Some(self.describe_partial())
        } else {
            M::missing_at_end(&self.order).map(str::to_owned)
        };
        match inside {
            None => Ok(()),
            Some(inside) => {
                let error = DecodeError::StreamEnded {
                    stream: M::STREAM,
                    offset: self.offset + self.buf.len() as u64,
                    inside,
                };
                self.error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// What the buffered bytes of an incomplete message are.
    fn describe_partial(&self) -> String {
        let Some((msg_type, type_len)) = decode_varint(&self.buf) else {
            return "a message's type".to_owned();
        };
        let name = MessageType(msg_type).name().unwrap_or("message");
        match decode_varint(self.buf.get(type_len..).unwrap_or_default()) {
            None => format!("the length of a {name}"),
            Some((len, len_len)) => {
                let have = self.buf.len() - type_len - len_len;
                format!("a {name} ({have} of {len} payload bytes)")
            }
        }
    }

    /// Stream offset up to which messages have been returned or skipped.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes received and held for an incomplete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Messages returned so far.
    pub fn messages(&self) -> u64 {
        self.order.messages
    }

    /// Messages of unknown types skipped so far (control stream only); worth a metric: a
    /// rising count means the peer speaks a newer protocol.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The error that broke the stream, if any.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }
}
