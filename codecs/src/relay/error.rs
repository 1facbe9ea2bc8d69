//! What can go wrong on the relay wire, in two directions: [`DecodeError`] for bytes a
//! peer sent (every one names the stream or message, the field and the stream offset, and
//! is answered with [`ErrorCode::PROTOCOL_VIOLATION`]), [`EncodeError`] for a message this
//! side was about to send that the peer would refuse. [`ErrorCode`] is the QUIC
//! application error code space shared by connection closes and stream resets.

use super::StreamKind;
use super::varint::VARINT_MAX;
use super::wire::MessageType;
use thiserror::Error;

/// A QUIC application error code (a varint, at most 2^62 − 1) as used by lookout when
/// closing a connection (`CONNECTION_CLOSE`), resetting a stream (`RESET_STREAM`),
/// stopping one (`STOP_SENDING`), and in [`Refuse`](super::Refuse) and
/// [`Goaway`](super::Goaway). Codes not listed here may arrive from newer peers: they
/// never fail decoding, and a receiver acts on them as on [`ErrorCode::INTERNAL_ERROR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(u64);

impl ErrorCode {
    /// 0x00: no error; a graceful close, or the end of a session after [`Goaway`](super::Goaway).
    pub const NO_ERROR: ErrorCode = ErrorCode(0x00);
    /// 0x01: the peer broke this specification (a [`DecodeError`], a message out of order,
    /// a stream opened or finished when it may not be).
    pub const PROTOCOL_VIOLATION: ErrorCode = ErrorCode(0x01);
    /// 0x02: the center does not speak the protocol version in `Hello`.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(0x02);
    /// 0x03: the gateway's certificate is valid but not allowed to use the gateway id it
    /// sent, or is not allowed at all.
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(0x03);
    /// 0x04: another connection is using this gateway id with a different certificate.
    pub const GATEWAY_ID_CONFLICT: ErrorCode = ErrorCode(0x04);
    /// 0x05: this connection was closed because the same gateway connected again.
    pub const REPLACED: ErrorCode = ErrorCode(0x05);
    /// 0x06: a `Ping` was not answered in time.
    pub const PING_TIMEOUT: ErrorCode = ErrorCode(0x06);
    /// 0x07: the peer failed on its own side (for the center: it cannot store alerts).
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(0x07);
    /// 0x08: in [`AlertRefused`](super::AlertRefused): the center already holds a
    /// different record from this gateway under this alert id and revision (the
    /// gateway reused an id, say after losing its outbox); sending it again will not
    /// help.
    pub const ALERT_ID_CONFLICT: ErrorCode = ErrorCode(0x08);
    /// 0x10: a GOP stream reset by the gateway because its data fell further behind than
    /// its camera's latency budget; the wall skips to the next GOP.
    pub const GOP_EXPIRED: ErrorCode = ErrorCode(0x10);
    /// 0x11: a GOP stream reset by the gateway before its end because its camera was
    /// removed or reconfigured; a new GOP, if any, comes on a new stream.
    pub const SUPERSEDED: ErrorCode = ErrorCode(0x11);
    /// 0x12: sent by the center in `STOP_SENDING` on a GOP stream it will not use (the
    /// camera is not shown); the gateway resets the stream with the same code.
    pub const UNWANTED: ErrorCode = ErrorCode(0x12);

    /// Every code this version defines, in numeric order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::NO_ERROR,
        ErrorCode::PROTOCOL_VIOLATION,
        ErrorCode::UNSUPPORTED_VERSION,
        ErrorCode::UNAUTHORIZED,
        ErrorCode::GATEWAY_ID_CONFLICT,
        ErrorCode::REPLACED,
        ErrorCode::PING_TIMEOUT,
        ErrorCode::INTERNAL_ERROR,
        ErrorCode::ALERT_ID_CONFLICT,
        ErrorCode::GOP_EXPIRED,
        ErrorCode::SUPERSEDED,
        ErrorCode::UNWANTED,
    ];

    /// A code from a 32-bit value; every `u32` fits a varint.
    pub const fn from_u32(code: u32) -> ErrorCode {
        ErrorCode(code as u64)
    }

    /// A code from a 64-bit value, or `None` above 2^62 − 1 (QUIC cannot carry it).
    pub const fn from_u64(code: u64) -> Option<ErrorCode> {
        if code <= VARINT_MAX {
            Some(ErrorCode(code))
        } else {
            None
        }
    }

    /// The code's numeric value, as quinn's `VarInt` wants it.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// The code's name in `docs/PROTOCOL.md` (`"GOP_EXPIRED"`), or `None` for codes this
    /// version does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            ErrorCode::NO_ERROR => "NO_ERROR",
            ErrorCode::PROTOCOL_VIOLATION => "PROTOCOL_VIOLATION",
            ErrorCode::UNSUPPORTED_VERSION => "UNSUPPORTED_VERSION",
            ErrorCode::UNAUTHORIZED => "UNAUTHORIZED",
            ErrorCode::GATEWAY_ID_CONFLICT => "GATEWAY_ID_CONFLICT",
            ErrorCode::REPLACED => "REPLACED",
            ErrorCode::PING_TIMEOUT => "PING_TIMEOUT",
            ErrorCode::INTERNAL_ERROR => "INTERNAL_ERROR",
            ErrorCode::ALERT_ID_CONFLICT => "ALERT_ID_CONFLICT",
            ErrorCode::GOP_EXPIRED => "GOP_EXPIRED",
            ErrorCode::SUPERSEDED => "SUPERSEDED",
            ErrorCode::UNWANTED => "UNWANTED",
            _ => return None,
        })
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#x})", self.0),
            None => write!(f, "unknown error code {:#x}", self.0),
        }
    }
}

/// The name of a message type for error messages: `"Frame"`, or `"type 0x7f"`.
fn type_name(msg_type: u64) -> String {
    match MessageType(msg_type).name() {
        Some(name) => name.to_owned(),
        None => format!("message type {msg_type:#x}"),
    }
}

/// Bytes from a peer broke the protocol. Offsets count bytes from the start of the QUIC
/// stream (from the start of the payload for [`StreamMessage::decode`] called with offset
/// 0); a field inside a list is named with its index, as in `cameras[2].name`. Every
/// decode error is answered with [`ErrorCode::PROTOCOL_VIOLATION`] (see
/// [`DecodeError::code`]).
///
/// [`StreamMessage::decode`]: super::StreamMessage::decode
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A message type version 1 does not define, on a stream where that is an error (the
    /// alert and video streams; the control stream skips such messages).
    #[error(
        "{stream} stream, offset {offset}: message type {msg_type:#x} is not defined on this stream"
    )]
    UnknownType {
        /// The stream the message came on.
        stream: StreamKind,
        /// The type read.
        msg_type: u64,
        /// Where the message starts.
        offset: u64,
    },
    /// A known message where it may not be: a type of another stream, a message the sender
    /// may not send, or one out of order.
    #[error("{stream} stream, offset {offset}: {message}: {rule}")]
    Unexpected {
        /// The stream the message came on.
        stream: StreamKind,
        /// The message's name.
        message: &'static str,
        /// The rule it breaks.
        rule: &'static str,
        /// Where the message starts.
        offset: u64,
    },
    /// A message's `length` is above the stream's limit; nothing of it is buffered.
    #[error(
        "{stream} stream, offset {offset}: {} of {len} bytes, at most {max} allowed on this stream",
        type_name(*msg_type)
    )]
    TooLarge {
        /// The stream the message came on.
        stream: StreamKind,
        /// The message's type.
        msg_type: u64,
        /// The payload length it declared.
        len: u64,
        /// The stream's limit, [`StreamKind::max_message`].
        max: u64,
        /// Where the message starts.
        offset: u64,
    },
    /// The payload ended inside a field.
    #[error("{message}.{field} at offset {offset}: the message ends inside this field")]
    Truncated {
        /// The message's name.
        message: &'static str,
        /// The field being read.
        field: String,
        /// Where the field starts.
        offset: u64,
    },
    /// A string or byte field (length in bytes) or a list (length in items) is shorter or
    /// longer than allowed.
    #[error("{message}.{field} at offset {offset}: length {len}, expected {min} to {max}")]
    BadLength {
        /// The message's name.
        message: &'static str,
        /// The field read.
        field: String,
        /// The length it declared, in bytes or items.
        len: u64,
        /// The shortest allowed.
        min: u64,
        /// The longest allowed.
        max: u64,
        /// Where the field starts.
        offset: u64,
    },
    /// A string field is not UTF-8.
    #[error("{message}.{field} at offset {offset}: not valid UTF-8")]
    InvalidUtf8 {
        /// The message's name.
        message: &'static str,
        /// The field read.
        field: String,
        /// Where the field starts.
        offset: u64,
    },
    /// A field's value is outside what version 1 allows.
    #[error("{message}.{field} at offset {offset}: {value}, expected {expected}")]
    InvalidValue {
        /// The message's name.
        message: &'static str,
        /// The field read.
        field: String,
        /// The value found, printed.
        value: String,
        /// What is allowed.
        expected: &'static str,
        /// Where the field starts.
        offset: u64,
    },
    /// Bytes are left in the payload after the message's last field.
    #[error("{message} at offset {offset}: {len} bytes after the last field")]
    TrailingBytes {
        /// The message's name.
        message: &'static str,
        /// How many bytes are left.
        len: u64,
        /// Where they start.
        offset: u64,
    },
    /// The peer finished the stream in the middle of a message, or before it carried what
    /// the stream must carry.
    #[error("{stream} stream ended at offset {offset} inside {inside}")]
    StreamEnded {
        /// The stream that ended.
        stream: StreamKind,
        /// The stream's length.
        offset: u64,
        /// What was incomplete.
        inside: String,
    },
}

impl DecodeError {
    /// The stream offset the error points at.
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::UnknownType { offset, .. }
            | DecodeError::Unexpected { offset, .. }
            | DecodeError::TooLarge { offset, .. }
            | DecodeError::Truncated { offset, .. }
            | DecodeError::BadLength { offset, .. }
            | DecodeError::InvalidUtf8 { offset, .. }
            | DecodeError::InvalidValue { offset, .. }
            | DecodeError::TrailingBytes { offset, .. }
            | DecodeError::StreamEnded { offset, .. } => *offset,
        }
    }

    /// The application error code to close the connection (control and alert streams) or
    /// stop the stream (video streams) with: always [`ErrorCode::PROTOCOL_VIOLATION`].
    pub fn code(&self) -> ErrorCode {
        ErrorCode::PROTOCOL_VIOLATION
    }
}

/// A message cannot be encoded as given: the peer would refuse it. Nothing is written.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The encoded payload is above its stream's limit (for an [`Alert`](super::Alert),
    /// send it without the snapshot and the snapshot alone).
    #[error("{message} of {len} bytes, at most {max} allowed on its stream")]
    TooLarge {
        /// The message's name.
        message: &'static str,
        /// The encoded payload length.
        len: u64,
        /// The stream's limit.
        max: u64,
    },
    /// A string or byte field (length in bytes) or a list (length in items) is shorter or
    /// longer than allowed.
    #[error("{message}.{field}: length {len}, expected {min} to {max}")]
    BadLength {
        /// The message's name.
        message: &'static str,
        /// The field.
        field: String,
        /// Its length, in bytes or items.
        len: u64,
        /// The shortest allowed.
        min: u64,
        /// The longest allowed.
        max: u64,
    },
    /// A field's value is outside what version 1 allows.
    #[error("{message}.{field}: {value}, expected {expected}")]
    InvalidValue {
        /// The message's name.
        message: &'static str,
        /// The field.
        field: String,
        /// The value, printed.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_named() {
        for pair in ErrorCode::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for code in ErrorCode::ALL {
            assert!(code.name().is_some(), "{code:?}");
            assert_eq!(ErrorCode::from_u64(code.value()), Some(code));
        }
        assert_eq!(ErrorCode::GOP_EXPIRED.to_string(), "GOP_EXPIRED (0x10)");
        assert_eq!(
            ErrorCode::from_u32(0x99).to_string(),
            "unknown error code 0x99"
        );
        assert_eq!(ErrorCode::from_u64(VARINT_MAX + 1), None);
    }

    #[test]
    fn messages_name_stream_type_and_offset() {
        let e = DecodeError::TooLarge {
            stream: StreamKind::Video,
            msg_type: MessageType::FRAME.0,
            len: 9_000_000,
            max: 8 << 20,
            offset: 1234,
        };
        assert_eq!(
            e.to_string(),
            "video stream, offset 1234: Frame of 9000000 bytes, at most 8388608 allowed on this stream"
        );
        let e = DecodeError::TooLarge {
            stream: StreamKind::Control,
            msg_type: 0x3f00,
            len: 2 << 20,
            max: 1 << 20,
            offset: 0,
        };
        assert!(
            e.to_string()
                .contains("message type 0x3f00 of 2097152 bytes")
        );
        assert_eq!(e.offset(), 0);
        assert_eq!(e.code(), ErrorCode::PROTOCOL_VIOLATION);
    }
}
