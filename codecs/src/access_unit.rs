//! One access unit (all NAL units of one picture) seen as a whole: [`inspect`] tells the
//! ingest whether it is a keyframe, hands over its parameter sets (zero-copy, for late
//! joiners and the decoder) and reports the picture size and frame rate when an SPS is
//! present; [`access_units`] cuts a raw elementary-stream clip into access units for the
//! camera-fleet simulator. Damaged NAL units are counted and skipped, never fatal.

use crate::annexb::{NalSpans, nal_units_bytes};
use crate::bits::SyntaxError;
use crate::{Codec, h264, h265};
use bytes::Bytes;
use thiserror::Error;

/// A frame rate as the exact fraction the encoder signalled: `num / den` frames per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRate {
    /// Numerator (ticks per second).
    pub num: u64,
    /// Denominator (ticks per frame).
    pub den: u64,
}

impl FrameRate {
    /// `num / den`, or `None` if either is zero.
    pub fn new(num: u64, den: u64) -> Option<FrameRate> {
        (num != 0 && den != 0).then_some(FrameRate { num, den })
    }

    /// Frames per second as a float, for display and sampling intervals.
    pub fn fps(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

/// What an SPS says about the video, in codec-independent terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceInfo {
    /// Displayed width in luma samples (after cropping).
    pub width: u32,
    /// Displayed height in luma samples (after cropping).
    pub height: u32,
    /// Frame rate from the VUI, if the encoder sent one.
    pub frame_rate: Option<FrameRate>,
    /// `profile_idc` (H.264) or `general_profile_idc` (H.265).
    pub profile_idc: u8,
    /// `level_idc` (H.264, level × 10) or `general_level_idc` (H.265, level × 30).
    pub level_idc: u8,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
}

impl From<&h264::Sps> for SequenceInfo {
    fn from(sps: &h264::Sps) -> Self {
        SequenceInfo {
            width: sps.width,
            height: sps.height,
            frame_rate: sps.frame_rate(),
            profile_idc: sps.profile_idc,
            level_idc: sps.level_idc,
            chroma_format_idc: sps.chroma_format_idc,
        }
    }
}

impl From<&h265::Sps> for SequenceInfo {
    fn from(sps: &h265::Sps) -> Self {
        SequenceInfo {
            width: sps.width,
            height: sps.height,
            frame_rate: sps.frame_rate(),
            profile_idc: sps.profile_idc,
            level_idc: sps.level_idc,
            chroma_format_idc: sps.chroma_format_idc,
        }
    }
}

/// What [`inspect`] learned about one access unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnitInfo {
    /// The codec the unit was read as.
    pub codec: Codec,
    /// A decoder can start here: an IDR slice (H.264) or an IRAP picture (H.265).
    pub keyframe: bool,
    /// Well-formed NAL units seen.
    pub nal_units: u32,
    /// NAL units skipped as damaged (bad header, unparsable SPS); a camera whose count
    /// keeps rising has a broken link or a broken encoder.
    pub malformed_nals: u32,
    /// The first damage found, for the log line that goes with the count.
    pub first_error: Option<SyntaxError>,
    /// The first VPS NAL unit (H.265 only), as a sub-slice of the access unit.
    pub vps: Option<Bytes>,
    /// The first SPS NAL unit that parsed, as a sub-slice of the access unit.
    pub sps: Option<Bytes>,
    /// The first PPS NAL unit, as a sub-slice of the access unit.
    pub pps: Option<Bytes>,
    /// What that SPS says (size, frame rate, profile).
    pub sequence: Option<SequenceInfo>,
}

impl AccessUnitInfo {
    /// Whether the unit carries every parameter set a decoder needs to start (SPS and PPS,
    /// plus VPS for H.265), so a viewer joining here needs nothing sent earlier.
    pub fn has_parameter_sets(&self) -> bool {
        self.sps.is_some()
            && self.pps.is_some()
            && (self.codec == Codec::H264 || self.vps.is_some())
    }
}

/// Why an access unit could not be inspected at all.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum InspectError {
    /// Not a single NAL unit was found: the buffer is not Annex-B (no start code).
    #[error("{codec} access unit: no NAL units in {len} bytes (no Annex-B start code)")]
    NoNalUnits {
        /// The codec the unit was read as.
        codec: Codec,
        /// The buffer's length.
        len: usize,
    },
}

/// Inspects one Annex-B access unit. Damaged NAL units are counted in
/// [`AccessUnitInfo::malformed_nals`] and skipped; only a buffer without any NAL unit is
/// an error.
pub fn inspect(codec: Codec, au: &Bytes) -> Result<AccessUnitInfo, InspectError> {
    let mut info = AccessUnitInfo {
        codec,
        keyframe: false,
        nal_units: 0,
        malformed_nals: 0,
        first_error: None,
        vps: None,
        sps: None,
        pps: None,
        sequence: None,
    };
    let mut seen = false;
    for nal in nal_units_bytes(au) {
        seen = true;
        let ok = match codec {
            Codec::H264 => inspect_h264(&mut info, nal),
            Codec::H265 => inspect_h265(&mut info, nal),
        };
        if ok {
            info.nal_units += 1;
        } else {
            info.malformed_nals += 1;
        }
    }
    if !seen {
        return Err(InspectError::NoNalUnits {
            codec,
            len: au.len(),
        });
    }
    Ok(info)
}

/// Folds one H.264 NAL unit into `info`; false if it is damaged.
fn inspect_h264(info: &mut AccessUnitInfo, nal: Bytes) -> bool {
    let Some(nal_type) = h264::NalType::of(&nal) else {
        return false;
    };
    match nal_type {
        h264::NalType::IDR_SLICE => info.keyframe = true,
        h264::NalType::SPS if info.sps.is_none() => match h264::Sps::parse(&nal) {
            Ok(sps) => {
                info.sequence = Some((&sps).into());
                info.sps = Some(nal);
            }
            Err(e) => {
                info.first_error.get_or_insert(e);
                return false;
            }
        },
        h264::NalType::PPS if info.pps.is_none() => info.pps = Some(nal),
        _ => {}
    }
    true
}

/// Folds one H.265 NAL unit into `info`; false if it is damaged.
fn inspect_h265(info: &mut AccessUnitInfo, nal: Bytes) -> bool {
    let Some(header) = h265::NalHeader::parse(&nal) else {
        return false;
    };
    match header.nal_type {
        t if t.is_irap() => info.keyframe = true,
        h265::NalType::VPS if info.vps.is_none() => info.vps = Some(nal),
        h265::NalType::SPS if info.sps.is_none() => match h265::Sps::parse(&nal) {
            Ok(sps) => {
                info.sequence = Some((&sps).into());
                info.sps = Some(nal);
            }
            Err(e) => {
                info.first_error.get_or_insert(e);
                return false;
            }
        },
        h265::NalType::PPS if info.pps.is_none() => info.pps = Some(nal),
        _ => {}
    }
    true
}

/// Whether a NAL unit opens a new access unit once the current one already has picture
/// data (7.4.1.2.3 in H.264, 7.4.2.4.4 in H.265): delimiters, parameter sets, prefix SEI
/// and the like, or the first slice of a new picture.
fn starts_access_unit(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => match h264::NalType::of(nal) {
            // first_mb_in_slice == 0 is the ue(v) code "1": the first payload bit.
            Some(t) if t.is_vcl() => nal.get(1).is_some_and(|b| b & 0x80 != 0),
            Some(t) => matches!(t.0, 6..=9 | 14..=18),
            None => false,
        },
        Codec::H265 => match h265::NalHeader::parse(nal) {
            // first_slice_segment_in_pic_flag is the first payload bit.
            Some(h) if h.nal_type.is_vcl() => nal.get(2).is_some_and(|b| b & 0x80 != 0),
            Some(h) => matches!(h.nal_type.0, 32..=35 | 39 | 41..=44 | 48..=55),
            None => false,
        },
    }
}

/// Cuts an Annex-B elementary stream (a pre-encoded clip) into access units, each a
/// zero-copy sub-slice that starts at its first NAL unit's start code. Bytes before the
/// first start code are dropped.
pub fn access_units(codec: Codec, stream: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut spans = NalSpans::new(stream).peekable();
    std::iter::from_fn(move || {
        let first = spans.next()?;
        let start = first.prefix_start;
        let mut end = first.nal.end;
        let mut has_picture = stream
            .get(first.nal.clone())
            .is_some_and(|nal| is_vcl(codec, nal));
        while let Some(next) = spans.peek() {
            let nal = stream.get(next.nal.clone()).unwrap_or_default();
            if has_picture && starts_access_unit(codec, nal) {
                break;
            }
            has_picture |= is_vcl(codec, nal);
            end = next.nal.end;
            spans.next();
        }
        Some(stream.slice(start..end))
    })
}

fn is_vcl(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => h264::NalType::of(nal).is_some_and(h264::NalType::is_vcl),
        Codec::H265 => h265::NalHeader::parse(nal).is_some_and(|h| h.nal_type.is_vcl()),
    }
}
