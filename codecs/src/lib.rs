//! lookout's sans-IO media layer: everything the gateway, the detector sampler and the
//! camera-fleet simulator need to know about H.264/H.265 elementary streams, computed
//! from bytes alone. No sockets, threads or GStreamer live here, so every parser can be
//! unit-tested against the captures in `testdata/`, property-tested and fuzzed.
//!
//! The layers, bottom up:
//! - [`annexb`]: splits an Annex-B byte stream into NAL units (zero-copy).
//! - [`bits`]: RBSP handling (emulation prevention) and the exp-Golomb bit reader, with
//!   the [`SyntaxError`] every bit-level parser reports.
//! - [`h264`], [`h265`]: NAL unit types and sequence parameter set parsing.
//! - [`sei`]: SEI message walking and "user data unregistered" payloads.
//! - [`stamp`]: lookout's capture-time stamp carried in such an SEI message.
//! - [`access_unit`]: [`inspect`] (keyframe, parameter sets, picture size of one access
//!   unit) and splitting a clip into access units.
//! - [`relay`]: the gateway → command-center relay protocol over QUIC, sans-IO: message
//!   encoders and decoders, stream framing, and the GOP stream scheduler.
//! - [`flv`]: FLV video tag bodies as RTMP carries them (AVC, HEVC with codec id 12,
//!   Enhanced RTMP `avc1`/`hvc1`) to parameter sets and Annex-B access units.
//! - [`ps`]: MPEG-2 Program Stream as GB/T 28181 devices send video, to access units.
//! - [`sip`]: SIP messages as GB/T 28181 devices and platforms send them.
//! - [`rtsp`]: a camera's RTSP byte stream cut into messages and interleaved frames,
//!   under limits, for the gateway's RTSP guard.
//!
//! ```
//! use bytes::Bytes;
//! use lookout_codecs::{CaptureStamp, Codec, find_stamp, inspect, insert_stamp};
//!
//! // An access unit as the simulator reads it from a clip: AUD, then an IDR slice.
//! let au = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0x88, 0x84];
//! let stamp = CaptureStamp {
//!     camera_id: "tower-7".into(),
//!     frame: 0,
//!     capture_unix_ns: 1_700_000_000_000_000_000,
//! };
//! let stamped: Bytes = insert_stamp(Codec::H264, &au, &stamp)?;
//!
//! // The gateway, later:
//! let info = inspect(Codec::H264, &stamped)?;
//! assert!(info.keyframe);
//! assert_eq!(find_stamp(Codec::H264, &stamped), Some(Ok(stamp)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access_unit;
pub mod annexb;
pub mod bits;
pub mod flv;
pub mod h264;
pub mod h265;
pub mod ps;
pub mod relay;
pub mod rtsp;
pub mod sei;
pub mod sip;
pub mod stamp;

pub use access_unit::{
    AccessUnitInfo, FrameRate, InspectError, SequenceInfo, access_units, inspect,
};
pub use bits::SyntaxError;
pub use stamp::{CaptureStamp, LOOKOUT_SEI_UUID, StampError, find_stamp, insert_stamp};

/// The video codec of a camera's elementary stream; it decides how NAL headers, parameter
/// sets and SEI messages are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// ITU-T H.264 / MPEG-4 AVC: one-byte NAL header.
    H264,
    /// ITU-T H.265 / HEVC: two-byte NAL header.
    H265,
}

impl Codec {
    /// The codec's usual name, for error messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H.264",
            Codec::H265 => "H.265",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
