//! What ingest hands on: [`AccessUnit`], one compressed picture of one camera,
//! read once from GStreamer into [`Bytes`] and shared (never copied) by every
//! consumer — the QUIC relay takes every unit, the detector's sampler takes a
//! few. [`CodecParams`] rides along behind an `Arc` so a consumer joining
//! mid-stream (or a decoder restarting) has the parameter sets without
//! waiting for the next keyframe. Built by `pipeline.rs`, fanned out by
//! `fanout.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
pub use lookout_codecs::Codec;
use serde::Serialize;

/// Where an access unit's capture time came from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    /// lookout's capture-time SEI message (the fleet simulator, or a camera
    /// integration that writes it): the time the camera took the picture.
    Sei,
    /// The camera's RTCP sender-report clock (NTP) mapped to the unit's RTP
    /// timestamp: right if the camera's clock is.
    RtcpSr,
    /// When the gateway received the unit: includes network and jitter-buffer
    /// delay, the last resort.
    Arrival,
    /// A pushed stream's own timestamps (RTMP), anchored at its first frame's arrival:
    /// no network delay after the first frame, but the first frame's delay and the
    /// publisher's clock drift are in it.
    StreamClock,
}

impl TimestampSource {
    /// The name used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampSource::Sei => "sei",
            TimestampSource::RtcpSr => "rtcp_sr",
            TimestampSource::Arrival => "arrival",
            TimestampSource::StreamClock => "stream_clock",
        }
    }

    /// For atomics in the health table.
    pub fn to_u8(self) -> u8 {
        match self {
            TimestampSource::Sei => 1,
            TimestampSource::RtcpSr => 2,
            TimestampSource::Arrival => 3,
            TimestampSource::StreamClock => 4,
        }
    }

    pub fn from_u8(v: u8) -> Option<TimestampSource> {
        match v {
            1 => Some(TimestampSource::Sei),
            2 => Some(TimestampSource::RtcpSr),
            3 => Some(TimestampSource::Arrival),
            4 => Some(TimestampSource::StreamClock),
            _ => None,
        }
    }
}

/// The lower-case codec name used in the API, metrics and the config file.
pub fn codec_label(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "h264",
        Codec::H265 => "h265",
    }
}

/// A camera's current codec configuration. Replaced (a new `Arc`) whenever
/// the camera sends different parameter sets, e.g. after an operator changes
/// its resolution, so units before and after the change each point at the
/// parameters they were encoded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecParams {
    /// The codec, from the camera's RTP caps (the stream, not the
    /// configuration).
    pub codec: Codec,
    /// H.265 only: the video parameter set NAL unit (no start code).
    pub vps: Option<Bytes>,
    /// The sequence parameter set NAL unit (no start code).
    pub sps: Option<Bytes>,
    /// The picture parameter set NAL unit (no start code).
    pub pps: Option<Bytes>,
    /// Picture width from the SPS (cropped), pixels; 0 until an SPS has been
    /// seen.
    pub width: u32,
    /// Picture height from the SPS (cropped), pixels; 0 until an SPS has
    /// been seen.
    pub height: u32,
}

impl CodecParams {
    /// Parameters of a stream whose parameter sets have not been seen yet.
    pub fn unknown(codec: Codec) -> CodecParams {
        CodecParams {
            codec,
            vps: None,
            sps: None,
            pps: None,
            width: 0,
            height: 0,
        }
    }
}

/// One access unit (a whole picture: every NAL unit of one frame, Annex-B
/// byte stream with start codes) of one camera.
///
/// Cloning is cheap (reference counts, no allocation): each subscriber gets a
/// clone of the same unit.
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// The camera's configured id.
    pub camera: Arc<str>,
    /// Per camera, counting from 1 and continuing across reconnects, so a
    /// consumer can tell a gap (its own lag) from a reconnect (see `session`).
    pub seq: u64,
    /// Which connection of this camera produced the unit (1 for the first,
    /// raised on every reconnect): a new session means the decoder state of
    /// the old one is void and the consumer should wait for a keyframe.
    pub session: u32,
    /// An IDR (H.264) or IRAP (H.265) picture: a decoder or a viewer can
    /// start here.
    pub keyframe: bool,
    /// The parameter sets in force for this unit.
    pub params: Arc<CodecParams>,
    /// The compressed picture, read once from GStreamer (the mapped buffer is
    /// the owner; no copy was made).
    pub data: Bytes,
    /// Presentation time on the pipeline's running-time clock, when GStreamer
    /// knew it. Only differences between units of one session mean anything.
    pub pts: Option<Duration>,
    /// When the gateway received the unit, Unix nanoseconds.
    pub received_unix_ns: u64,
    /// When the picture was taken, Unix nanoseconds, by `capture_source`.
    pub capture_unix_ns: u64,
    /// Where `capture_unix_ns` came from: the unit's SEI stamp, the
    /// camera's RTCP sender-report clock, or (last resort) arrival, when it
    /// equals `received_unix_ns`.
    pub capture_source: TimestampSource,
}

impl AccessUnit {
    pub fn codec(&self) -> Codec {
        self.params.codec
    }

    /// Capture-to-gateway delay, when the capture time is a camera's clock.
    pub fn ingest_delay(&self) -> Option<Duration> {
        match self.capture_source {
            TimestampSource::Arrival | TimestampSource::StreamClock => None,
            _ => Some(Duration::from_nanos(
                self.received_unix_ns.saturating_sub(self.capture_unix_ns),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TimestampSource;

    #[test]
    fn every_timestamp_source_survives_its_atomic_form() {
        for s in [
            TimestampSource::Sei,
            TimestampSource::RtcpSr,
            TimestampSource::Arrival,
            TimestampSource::StreamClock,
        ] {
            assert_eq!(
                TimestampSource::from_u8(s.to_u8()),
                Some(s),
                "{}",
                s.as_str()
            );
        }
        assert_eq!(TimestampSource::from_u8(0), None);
    }
}
