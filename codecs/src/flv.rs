//! FLV video tag bodies, as RTMP carries them (one body per RTMP video message), turned
//! into what the rest of lookout reads: parameter sets and Annex-B access units.
//!
//! Three layouts reach a gateway:
//! - **legacy AVC** (codec id 7): `frame type | codec id`, `AVCPacketType`, a signed
//!   24-bit composition time, then an `AVCDecoderConfigurationRecord` (ISO/IEC
//!   14496-15 §5.3.3) or length-prefixed NAL units;
//! - **legacy HEVC with codec id 12**: the same layout with an
//!   `HEVCDecoderConfigurationRecord` (§8.3.3), which Chinese encoders, NVRs and drone
//!   ground stations send (an unofficial extension, as SRS, nginx-rtmp forks and
//!   ZLMediaKit accept it);
//! - **Enhanced RTMP** (v1, Veovera): the first byte's high bit set, a packet type in
//!   its low nibble and a FourCC (`avc1`, `hvc1`) after it: `SequenceStart` (the
//!   configuration record), `CodedFrames` (with composition time), `CodedFramesX`
//!   (without), `SequenceEnd`.
//!
//! Sans-IO and bounded: every length is checked against what is left, and a body with
//! more than [`MAX_NALUS`] NAL units is refused.

use bytes::{BufMut, Bytes, BytesMut};

use crate::Codec;

/// NAL units one video message may carry, at most.
pub const MAX_NALUS: usize = 1024;

/// Parameter sets one configuration record may carry, at most.
pub const MAX_PARAMETER_SETS: usize = 64;

/// What one video tag body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// The decoder configuration: how long NAL length prefixes are, and the parameter
    /// sets (VPS, SPS, PPS) in the record's order.
    Config {
        /// The stream's codec.
        codec: Codec,
        /// Bytes in each NAL unit's length prefix (1, 2 or 4).
        length_size: usize,
        /// The parameter sets, NAL header included, no start code.
        parameter_sets: Vec<Bytes>,
    },
    /// One access unit.
    Frame {
        /// The stream's codec.
        codec: Codec,
        /// The tag says keyframe (frame type 1).
        keyframe: bool,
        /// Presentation minus decoding time, ms (0 where the layout has none).
        composition_ms: i32,
        /// The NAL units' payload, still length-prefixed (see [`split_nalus`]).
        data: Bytes,
    },
    /// The stream's end (`AVCPacketType` 2, `SequenceEnd`).
    EndOfSequence,
    /// Something a gateway has no use for (a command frame, metadata, a multitrack
    /// packet); the reason, for a debug log.
    Ignored(&'static str),
}

/// Why a video tag body could not be read; each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The body ends inside `what`.
    #[error("FLV video tag cut short in {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A codec lookout does not take (`FLV codec id N`, or a FourCC).
    #[error("unsupported video codec {0}")]
    Codec(String),
    /// A configuration record that is not one.
    #[error("invalid decoder configuration record: {0}")]
    Config(&'static str),
    /// More NAL units or parameter sets than the limits.
    #[error("{what}: more than {limit}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

fn need(body: &[u8], n: usize, what: &'static str) -> Result<(), FlvError> {
    if body.len() < n {
        Err(FlvError::Truncated { what })
    } else {
        Ok(())
    }
}

/// A signed 24-bit big-endian integer.
fn si24(b: &[u8]) -> i32 {
    let v = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (v << 8) >> 8
}

/// Reads one video tag body.
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    need(body, 1, "the header")?;
    let first = body[0];
    if first & 0x80 != 0 {
        return parse_enhanced(body);
    }
    let frame_type = first >> 4;
    let codec = match first & 0x0f {
        7 => Codec::H264,
        12 => Codec::H265,
        other => return Err(FlvError::Codec(format!("FLV codec id {other}"))),
    };
    if frame_type == 5 {
        return Ok(VideoTag::Ignored("video info/command frame"));
    }
    need(body, 5, "the AVC packet header")?;
    let composition_ms = si24(&body[2..5]);
    match body[1] {
        0 => parse_config(codec, &body.slice(5..)),
        1 => Ok(VideoTag::Frame {
            codec,
            keyframe: frame_type == 1,
            composition_ms,
            data: body.slice(5..),
        }),
        2 => Ok(VideoTag::EndOfSequence),
        _ => Ok(VideoTag::Ignored("unknown AVC packet type")),
    }
}

/// Enhanced RTMP: `1 | frame type (3) | packet type (4)`, FourCC, then the packet.
fn parse_enhanced(body: &Bytes) -> Result<VideoTag, FlvError> {
    need(body, 5, "the enhanced header")?;
    let frame_type = (body[0] >> 4) & 0x07;
    let packet_type = body[0] & 0x0f;
    if packet_type == 6 {
        return Ok(VideoTag::Ignored("multitrack packet"));
    }
    if packet_type == 7 {
        return Ok(VideoTag::Ignored("ModEx packet"));
    }
    let codec = match &body[1..5] {
        b"avc1" => Codec::H264,
        b"hvc1" => Codec::H265,
        other => {
            let name: String = other
                .iter()
                .map(|&c| {
                    if c.is_ascii_graphic() {
                        char::from(c)
                    } else {
                        '?'
                    }
                })
                .collect();
            return Err(FlvError::Codec(format!("FourCC `{name}`")));
        }
    };
    if frame_type == 5 {
        return Ok(VideoTag::Ignored("video info/command frame"));
    }
    match packet_type {
        0 => parse_config(codec, &body.slice(5..)),
        1 => {
            need(body, 8, "the composition time")?;
            Ok(VideoTag::Frame {
                codec,
                keyframe: frame_type == 1,
                composition_ms: si24(&body[5..8]),
                data: body.slice(8..),
            })
        }
        3 => Ok(VideoTag::Frame {
            codec,
            keyframe: frame_type == 1,
            composition_ms: 0,
            data: body.slice(5..),
        }),
        2 => Ok(VideoTag::EndOfSequence),
        4 => Ok(VideoTag::Ignored("metadata packet")),
        _ => Ok(VideoTag::Ignored("unknown enhanced packet type")),
    }
}

/// A configuration record, by codec.
fn parse_config(codec: Codec, record: &Bytes) -> Result<VideoTag, FlvError> {
    let (length_size, parameter_sets) = match codec {
        Codec::H264 => avc_config(record)?,
        Codec::H265 => hevc_config(record)?,
    };
    Ok(VideoTag::Config {
        codec,
        length_size,
        parameter_sets,
    })
}

/// Reads `count` entries of `u16 length, bytes` from `r` at `*at`.
fn length_prefixed(
    r: &Bytes,
    at: &mut usize,
    count: usize,
    out: &mut Vec<Bytes>,
) -> Result<(), FlvError> {
    for _ in 0..count {
        need(r, *at + 2, "a parameter set's length")?;
        let len = usize::from(u16::from_be_bytes([r[*at], r[*at + 1]]));
        *at += 2;
        need(r, *at + len, "a parameter set")?;
        if len > 0 {
            if out.len() >= MAX_PARAMETER_SETS {
                return Err(FlvError::TooMany {
                    what: "parameter sets",
                    limit: MAX_PARAMETER_SETS,
                });
            }
            out.push(r.slice(*at..*at + len));
        }
        *at += len;
    }
    Ok(())
}

/// `AVCDecoderConfigurationRecord`: length size and SPS then PPS.
fn avc_config(r: &Bytes) -> Result<(usize, Vec<Bytes>), FlvError> {
    need(r, 6, "the AVC configuration header")?;
    if r[0] != 1 {
        return Err(FlvError::Config("AVC configurationVersion is not 1"));
    }
    let length_size = usize::from(r[4] & 0x03) + 1;
    if length_size == 3 {
        return Err(FlvError::Config("NAL length size 3"));
    }
    let mut sets = Vec::new();
    let mut at = 6;
    length_prefixed(r, &mut at, usize::from(r[5] & 0x1f), &mut sets)?;
    need(r, at + 1, "the PPS count")?;
    let pps = usize::from(r[at]);
    at += 1;
    length_prefixed(r, &mut at, pps, &mut sets)?;
    Ok((length_size, sets))
}

/// `HEVCDecoderConfigurationRecord`: length size and the arrays' NAL units (VPS, SPS,
/// PPS, SEI) in order.
fn hevc_config(r: &Bytes) -> Result<(usize, Vec<Bytes>), FlvError> {
    need(r, 23, "the HEVC configuration header")?;
    if r[0] != 1 {
        return Err(FlvError::Config("HEVC configurationVersion is not 1"));
    }
    let length_size = usize::from(r[21] & 0x03) + 1;
    if length_size == 3 {
        return Err(FlvError::Config("NAL length size 3"));
    }
    let mut sets = Vec::new();
    let mut at = 23;
    for _ in 0..r[22] {
        need(r, at + 3, "an HEVC parameter set array")?;
        let count = usize::from(u16::from_be_bytes([r[at + 1], r[at + 2]]));
        at += 3;
        length_prefixed(r, &mut at, count, &mut sets)?;
    }
    Ok((length_size, sets))
}

/// Splits length-prefixed NAL units (`length_size` bytes each prefix); empty units are
/// skipped.
pub fn split_nalus(data: &Bytes, length_size: usize) -> Result<Vec<Bytes>, FlvError> {
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(FlvError::Config("NAL length size not 1, 2 or 4"));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        need(data, at + length_size, "a NAL unit's length")?;
        let len = data[at..at + length_size]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        at += length_size;
        need(data, at + len, "a NAL unit")?;
        if len > 0 {
            if out.len() >= MAX_NALUS {
                return Err(FlvError::TooMany {
                    what: "NAL units in one video message",
                    limit: MAX_NALUS,
                });
            }
            out.push(data.slice(at..at + len));
        }
        at += len;
    }
    Ok(out)
}

/// NAL units written as Annex B (a 4-byte start code before each), `prefix` first (the
/// parameter sets in front of a keyframe).
pub fn annex_b(prefix: &[Bytes], nalus: &[Bytes]) -> Bytes {
    let len: usize = prefix.iter().chain(nalus).map(|n| n.len() + 4).sum();
    let mut out = BytesMut::with_capacity(len);
    for n in prefix.iter().chain(nalus) {
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(n);
    }
    out.freeze()
}

/// The configuration record of H.264 parameter sets (SPS first, then PPS), 4-byte
/// lengths: what an RTMP publisher sends first. For the simulator and tests.
pub fn avc_config_record(sps: &[u8], pps: &[u8]) -> Bytes {
    let mut r = BytesMut::new();
    let (profile, compat, level) = match sps {
        [_, p, c, l, ..] => (*p, *c, *l),
        _ => (66, 0, 30),
    };
    r.put_slice(&[1, profile, compat, level, 0xff, 0xe1]);
    r.put_u16(sps.len() as u16);
    r.put_slice(sps);
    r.put_u8(1);
    r.put_u16(pps.len() as u16);
    r.put_slice(pps);
    r.freeze()
}

/// The configuration record of H.265 parameter sets (VPS, SPS, PPS), 4-byte lengths;
/// profile fields left zero (decoders read them from the SPS). For the simulator and
/// tests.
pub fn hevc_config_record(vps: &[u8], sps: &[u8], pps: &[u8]) -> Bytes {
    let mut r = BytesMut::new();
    r.put_u8(1);
    r.put_slice(&[0u8; 20]);
    r.put_u8(0x03); // lengthSizeMinusOne = 3
    r.put_u8(3);
    for (nal_type, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        r.put_u8(0x80 | nal_type);
        r.put_u16(1);
        r.put_u16(nal.len() as u16);
        r.put_slice(nal);
    }
    r.freeze()
}

/// NAL units with 4-byte length prefixes, as in an FLV frame.
pub fn length_prefix(nalus: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    for n in nalus {
        out.put_u32(n.len() as u32);
        out.put_slice(n);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00];

    fn legacy(first: u8, packet: u8, cts: [u8; 3], rest: &[u8]) -> Bytes {
        let mut b = vec![first, packet];
        b.extend_from_slice(&cts);
        b.extend_from_slice(rest);
        Bytes::from(b)
    }

    #[test]
    fn legacy_avc_sequence_header_then_keyframe() {
        let record = avc_config_record(SPS, PPS);
        let tag = parse_video_tag(&legacy(0x17, 0, [0; 3], &record)).expect("config");
        assert_eq!(
            tag,
            VideoTag::Config {
                codec: Codec::H264,
                length_size: 4,
                parameter_sets: vec![Bytes::from_static(SPS), Bytes::from_static(PPS)],
            }
        );
        let frame =
            parse_video_tag(&legacy(0x17, 1, [0, 0, 40], &length_prefix(&[IDR]))).expect("frame");
        let VideoTag::Frame {
            codec,
            keyframe,
            composition_ms,
            data,
        } = frame
        else {
            panic!("a frame: {frame:?}");
        };
        assert_eq!((codec, keyframe, composition_ms), (Codec::H264, true, 40));
        let nalus = split_nalus(&data, 4).expect("nalus");
        assert_eq!(nalus, vec![Bytes::from_static(IDR)]);
        let au = annex_b(&[Bytes::from_static(SPS)], &nalus);
        assert_eq!(
            &au[..],
            &[&[0, 0, 0, 1][..], SPS, &[0, 0, 0, 1], IDR].concat()[..]
        );
    }

    #[test]
    fn inter_frames_negative_composition_and_end() {
        let tag = parse_video_tag(&legacy(0x27, 1, [0xff, 0xff, 0xd8], &length_prefix(&[IDR])))
            .expect("frame");
        assert!(matches!(
            tag,
            VideoTag::Frame {
                keyframe: false,
                composition_ms: -40,
                ..
            }
        ));
        assert_eq!(
            parse_video_tag(&legacy(0x17, 2, [0; 3], &[])),
            Ok(VideoTag::EndOfSequence)
        );
    }

    #[test]
    fn codec_id_12_is_hevc_as_chinese_encoders_send_it() {
        let vps = [0x40, 0x01, 0x0c];
        let sps = [0x42, 0x01, 0x01];
        let pps = [0x44, 0x01, 0xc1];
        let record = hevc_config_record(&vps, &sps, &pps);
        let tag = parse_video_tag(&legacy(0x1c, 0, [0; 3], &record)).expect("config");
        assert_eq!(
            tag,
            VideoTag::Config {
                codec: Codec::H265,
                length_size: 4,
                parameter_sets: vec![
                    Bytes::copy_from_slice(&vps),
                    Bytes::copy_from_slice(&sps),
                    Bytes::copy_from_slice(&pps)
                ],
            }
        );
    }

    #[test]
    fn enhanced_rtmp_hvc1_and_avc1() {
        let record = hevc_config_record(&[0x40, 0x01], &[0x42, 0x01], &[0x44, 0x01]);
        let mut start = vec![0x80 | 0x10]; // key frame, SequenceStart
        start.extend_from_slice(b"hvc1");
        start.extend_from_slice(&record);
        assert!(matches!(
            parse_video_tag(&Bytes::from(start)),
            Ok(VideoTag::Config {
                codec: Codec::H265,
                ..
            })
        ));
        let mut coded = vec![0x80 | 0x10 | 1];
        coded.extend_from_slice(b"hvc1");
        coded.extend_from_slice(&[0, 0, 0]);
        coded.extend_from_slice(&length_prefix(&[&[0x26, 0x01, 0xaf]]));
        assert!(matches!(
            parse_video_tag(&Bytes::from(coded)),
            Ok(VideoTag::Frame {
                codec: Codec::H265,
                keyframe: true,
                ..
            })
        ));
        let mut x = vec![0x80 | 0x20 | 3];
        x.extend_from_slice(b"avc1");
        x.extend_from_slice(&length_prefix(&[IDR]));
        assert!(matches!(
            parse_video_tag(&Bytes::from(x)),
            Ok(VideoTag::Frame {
                codec: Codec::H264,
                keyframe: false,
                composition_ms: 0,
                ..
            })
        ));
    }

    #[test]
    fn refusals_name_what_was_wrong() {
        let vp6 = parse_video_tag(&Bytes::from_static(&[0x14, 0, 0, 0, 0]));
        assert_eq!(vp6, Err(FlvError::Codec("FLV codec id 4".into())));
        let mut av1 = vec![0x90];
        av1.extend_from_slice(b"av01");
        assert_eq!(
            parse_video_tag(&Bytes::from(av1)),
            Err(FlvError::Codec("FourCC `av01`".into()))
        );
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0x17, 1, 0])),
            Err(FlvError::Truncated {
                what: "the AVC packet header"
            })
        );
        // A NAL length past the end.
        let bad = Bytes::from_static(&[0, 0, 0, 9, 0x65]);
        assert_eq!(
            split_nalus(&bad, 4),
            Err(FlvError::Truncated { what: "a NAL unit" })
        );
        // A record whose SPS length runs past the end.
        let record = Bytes::from_static(&[1, 66, 0, 30, 0xff, 0xe1, 0, 50, 0x67]);
        assert_eq!(
            parse_video_tag(&legacy(0x17, 0, [0; 3], &record)),
            Err(FlvError::Truncated {
                what: "a parameter set"
            })
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic sweep; the fuzz target goes further.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200usize {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let body = Bytes::from(body);
            if let Ok(VideoTag::Frame { data, .. }) = parse_video_tag(&body) {
                for size in [1, 2, 4] {
                    let _ = split_nalus(&data, size);
                }
            }
        }
    }
}
