//! The gateway → command-center relay protocol, version 1, without any I/O: message
//! types with their encoders and decoders, a streaming decoder that takes QUIC stream
//! data in whatever chunks it arrives, and the scheduler that decides the QUIC stream
//! priorities of video and which stale video streams to reset. The gateway's relay and
//! the command center drive these from their quinn tasks; `docs/PROTOCOL.md` is the
//! specification a command center in another language implements.
//!
//! - [`varint`]: QUIC variable-length integers (RFC 9000 §16).
//! - [`ErrorCode`]: the QUIC application error codes used to close connections and reset
//!   or stop streams.
//! - [`control`], [`alerts`], [`video`]: the messages of each stream kind.
//! - [`FrameDecoder`]: `type`, `length`, payload framing, size limits and per-stream rules.
//! - [`schedule`]: GOP stream priorities and the latency-budget reset rule.
//!
//! ```
//! use lookout_codecs::relay::{ControlMessage, FrameDecoder, Ping, Role, StreamMessage};
//!
//! // The gateway's side of a control stream writes Hello first; here, one Ping after it.
//! let hello = lookout_codecs::relay::Hello {
//!     protocol_version: lookout_codecs::relay::PROTOCOL_VERSION,
//!     gateway_id: "county-north".into(),
//!     software_version: "lookout 0.1.0".into(),
//!     cameras: Vec::new(),
//! };
//! let mut wire = ControlMessage::Hello(hello.clone()).encode()?.to_bytes().to_vec();
//! wire.extend_from_slice(&ControlMessage::Ping(Ping { nonce: 7 }).encode()?.to_bytes());
//!
//! // The center's side gets the bytes in arbitrary pieces.
//! let mut decoder = FrameDecoder::<ControlMessage>::new(Role::Gateway);
//! let mut got = Vec::new();
//! for piece in wire.chunks(3) {
//!     decoder.push(piece);
//!     while let Some(message) = decoder.next_message()? {
//!         got.push(message);
//!     }
//! }
//! decoder.finish()?;
//! assert_eq!(got, [ControlMessage::Hello(hello), ControlMessage::Ping(Ping { nonce: 7 })]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod alerts;
pub mod clip;
pub mod control;
mod error;
mod framing;
pub mod schedule;
pub mod varint;
pub mod video;
mod wire;

pub use alerts::{Alert, AlertAck, AlertMessage, Snapshot, SnapshotAck};
pub use clip::{CLIP_STREAM_PRIORITY, ClipAck, ClipData, ClipMessage, ClipOffer, ClipWant};
pub use control::{
    AlertRefused, CameraChange, CameraInfo, CameraKind, CameraState, CameraUpdate, ControlMessage,
    Goaway, Hello, Location, Ping, Pong, Refuse, Subscribe, SubscribeMode, VideoFormat, Welcome,
};
pub use error::{DecodeError, EncodeError, ErrorCode};
pub use framing::{FrameDecoder, StreamMessage};
pub use schedule::{
    ALERT_STREAM_PRIORITY, Action, CONTROL_STREAM_PRIORITY, CameraPolicy, ClassRanks, GopOutcome,
    GopStart, GopStats, Scheduler, SkipReason, VideoPriority,
};
pub use video::{Frame, GopHeader, VideoMessage};
pub use wire::{Encoded, MessageType};

/// The newest protocol version this crate speaks, as carried in [`Hello`] and
/// [`Welcome`]. Version 2 is version 1 plus clip streams ([`clip`]).
pub const PROTOCOL_VERSION: u32 = 2;

/// The TLS ALPN protocol identifier of [`PROTOCOL_VERSION`]; the version in it and in
/// [`Hello`] are the same number.
pub const ALPN: &[u8] = b"lookout/2";

/// The ALPN identifier of version 1 (no clip streams), still spoken by both ends.
pub const ALPN_V1: &[u8] = b"lookout/1";

/// Every ALPN identifier this crate speaks, most preferred first: what a gateway offers
/// and a center accepts.
pub const ALPNS: [&[u8]; 2] = [ALPN, ALPN_V1];

/// The protocol version an ALPN identifier names, if this crate speaks it.
pub fn version_of_alpn(alpn: &[u8]) -> Option<u32> {
    match alpn {
        ALPN => Some(2),
        ALPN_V1 => Some(1),
        _ => None,
    }
}

/// Whether a connection of this protocol version carries clip streams.
pub fn has_clips(version: u32) -> bool {
    version >= 2
}

/// Longest id (gateway, center, camera or alert id), in UTF-8 bytes; ids are never empty.
pub const MAX_ID_LEN: usize = 64;

/// Longest free text (names, groups, software version, reasons), in UTF-8 bytes.
pub const MAX_TEXT_LEN: usize = 1024;

/// Longest parameter set (one VPS, SPS or PPS NAL unit) in a [`GopHeader`], in bytes.
pub const MAX_PARAMETER_SET_LEN: usize = 65_535;

/// Largest control-stream message payload (its `length` field), in bytes: room for a
/// [`Hello`] listing thousands of cameras.
pub const MAX_CONTROL_MESSAGE: u64 = 1 << 20;

/// Largest alert-stream message payload, in bytes: an [`Alert`] with its JPEG snapshot.
pub const MAX_ALERT_MESSAGE: u64 = 16 << 20;

/// Largest video-stream message payload, in bytes: one access unit and its timestamps.
pub const MAX_VIDEO_MESSAGE: u64 = 8 << 20;

/// Largest clip-stream message payload, in bytes (version 2).
pub const MAX_CLIP_MESSAGE: u64 = 1 << 20;

/// Largest piece of a clip file in one [`ClipData`], in bytes.
pub const MAX_CLIP_CHUNK: usize = 256 << 10;

/// Which end of a relay connection: the gateway dials, the command center listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The lookout gateway next to the cameras; it opens the connection and every stream.
    Gateway,
    /// The command center that receives alerts and video.
    Center,
}

impl Role {
    /// `"gateway"` or `"center"`, for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Center => "center",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The three kinds of QUIC stream a relay connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// The bidirectional stream the gateway opens first: handshake, subscriptions, camera
    /// changes, pings, goaway.
    Control,
    /// The bidirectional stream the gateway opens second: alerts out, acknowledgements back.
    Alerts,
    /// A unidirectional stream from the gateway carrying one GOP of one camera.
    Video,
    /// A bidirectional stream the gateway opens for one alert's clip (version 2).
    Clip,
}

impl StreamKind {
    /// `"control"`, `"alert"` or `"video"`, for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Control => "control",
            StreamKind::Alerts => "alert",
            StreamKind::Video => "video",
            StreamKind::Clip => "clip",
        }
    }

    /// The largest message payload (`length` field) allowed on this kind of stream.
    pub fn max_message(self) -> u64 {
        match self {
            StreamKind::Control => MAX_CONTROL_MESSAGE,
            StreamKind::Alerts => MAX_ALERT_MESSAGE,
            StreamKind::Video => MAX_VIDEO_MESSAGE,
            StreamKind::Clip => MAX_CLIP_MESSAGE,
        }
    }
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
