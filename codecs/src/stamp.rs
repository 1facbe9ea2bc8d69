//! lookout's capture-time stamp: the camera-fleet simulator writes, into every access
//! unit, an SEI "user data unregistered" message saying which camera captured the frame,
//! its frame number and when (Unix nanoseconds). The gateway reads it back so latency is
//! measured end to end, from capture to alert to the command center's wall.
//!
//! Payload after the 16-byte [`LOOKOUT_SEI_UUID`], all integers big-endian:
//!
//! | bytes | field                                      |
//! |-------|--------------------------------------------|
//! | 1     | version, [`STAMP_VERSION`] (1)             |
//! | 2     | camera id length `n`, at most 64           |
//! | n     | camera id, UTF-8                           |
//! | 8     | frame number                               |
//! | 8     | capture time, nanoseconds since Unix epoch |
//!
//! Readers ignore bytes after these fields, so a later version-1 writer may append some.

use crate::annexb::{NalSpans, START_CODE};
use crate::bits::{ebsp_len, write_ebsp};
use crate::sei::{USER_DATA_UNREGISTERED, sei_messages, sei_rbsp};
use crate::{Codec, h264, h265};
use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// The UUID that marks a "user data unregistered" SEI message as lookout's capture stamp:
/// `243d9e2b-e9f6-472d-ba41-73053d1fd57e`, a random (version 4) UUID drawn once for
/// lookout. It must never change: recorded clips and deployed simulators carry it.
pub const LOOKOUT_SEI_UUID: [u8; 16] = [
    0x24, 0x3d, 0x9e, 0x2b, 0xe9, 0xf6, 0x47, 0x2d, 0xba, 0x41, 0x73, 0x05, 0x3d, 0x1f, 0xd5, 0x7e,
];

/// The stamp payload version this crate writes and reads.
pub const STAMP_VERSION: u8 = 1;

/// The longest camera id a stamp carries, in UTF-8 bytes.
pub const MAX_CAMERA_ID_LEN: usize = 64;

/// Where and when a frame was captured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CaptureStamp {
    /// The capturing camera's configured id, at most [`MAX_CAMERA_ID_LEN`] UTF-8 bytes.
    pub camera_id: String,
    /// The frame's number in that camera's stream, counting from 0.
    pub frame: u64,
    /// Capture time in nanoseconds since the Unix epoch (UTC).
    pub capture_unix_ns: u64,
}

/// A capture stamp could not be written or read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum StampError {
    /// The camera id does not fit the stamp.
    #[error("capture stamp: camera id is {len} bytes, at most {MAX_CAMERA_ID_LEN} allowed")]
    CameraIdTooLong {
        /// The id's (or the length field's) length in bytes.
        len: usize,
    },
    /// The camera id is not UTF-8.
    #[error("capture stamp: camera id is not UTF-8")]
    CameraIdNotUtf8,
    /// The payload ended inside a field.
    #[error("capture stamp: payload of {len} bytes ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// The payload's length after the UUID.
        len: usize,
    },
    /// A version this crate does not know.
    #[error("capture stamp: version {0} is not supported (expected {STAMP_VERSION})")]
    UnsupportedVersion(u8),
}

/// Largest stamp RBSP: payloadType, payloadSize, UUID, version, id length, id, frame,
/// time, trailing bits.
const MAX_RBSP_LEN: usize = 2 + 16 + 1 + 2 + MAX_CAMERA_ID_LEN + 8 + 8 + 1;

impl CaptureStamp {
    /// Decodes the data that follows [`LOOKOUT_SEI_UUID`] in the SEI payload.
    pub fn decode(data: &[u8]) -> Result<CaptureStamp, StampError> {
        let len = data.len();
        let truncated = |field| StampError::Truncated { field, len };
        let (&version, rest) = data.split_first().ok_or(truncated("version"))?;
        if version != STAMP_VERSION {
            return Err(StampError::UnsupportedVersion(version));
        }
        let (id_len, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(truncated("camera id length"))?;
        let id_len = usize::from(u16::from_be_bytes(*id_len));
        if id_len > MAX_CAMERA_ID_LEN {
            return Err(StampError::CameraIdTooLong { len: id_len });
        }
        let (id, rest) = rest
            .split_at_checked(id_len)
            .ok_or(truncated("camera id"))?;
        let camera_id = std::str::from_utf8(id).map_err(|_| StampError::CameraIdNotUtf8)?;
        let (frame, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(truncated("frame number"))?;
        let (time, _) = rest
            .split_first_chunk::<8>()
            .ok_or(truncated("capture time"))?;
        Ok(CaptureStamp {
            camera_id: camera_id.to_owned(),
            frame: u64::from_be_bytes(*frame),
            capture_unix_ns: u64::from_be_bytes(*time),
        })
    }

    /// The stamp's SEI RBSP (one `sei_message()` and `rbsp_trailing_bits()`) in `buf`;
    /// returns its length.
    fn write_rbsp(&self, buf: &mut [u8; MAX_RBSP_LEN]) -> Result<usize, StampError> {
        let id = self.camera_id.as_bytes();
        if id.len() > MAX_CAMERA_ID_LEN {
            return Err(StampError::CameraIdTooLong { len: id.len() });
        }
        let payload_size = 16 + 1 + 2 + id.len() + 8 + 8;
        let parts: [&[u8]; 8] = [
            // Both fit in one byte: the payload is at most 99 bytes.
            &[USER_DATA_UNREGISTERED as u8, payload_size as u8],
            &LOOKOUT_SEI_UUID,
            &[STAMP_VERSION],
            &(id.len() as u16).to_be_bytes(),
            id,
            &self.frame.to_be_bytes(),
            &self.capture_unix_ns.to_be_bytes(),
            // rbsp_trailing_bits: the stop bit, then alignment zeros.
            &[0x80],
        ];
        let mut len = 0;
        for part in parts {
            let end = len + part.len();
            // Cannot fail: MAX_RBSP_LEN covers the longest id, checked above.
            if let Some(dst) = buf.get_mut(len..end) {
                dst.copy_from_slice(part);
            }
            len = end;
        }
        Ok(len)
    }
}

/// The NAL header lookout gives its stamp SEI: H.264 type 6 (`nal_ref_idc` 0); H.265
/// prefix SEI, layer 0, `nuh_temporal_id_plus1` 1.
fn sei_header(codec: Codec) -> &'static [u8] {
    match codec {
        Codec::H264 => &[h264::NalType::SEI.0],
        Codec::H265 => &[h265::NalType::PREFIX_SEI.0 << 1, 1],
    }
}

/// Builds the complete SEI NAL unit (header, emulation-prevented payload, trailing bits;
/// no start code) carrying `stamp`.
pub fn stamp_nal(codec: Codec, stamp: &CaptureStamp) -> Result<Bytes, StampError> {
    let mut rbsp = [0u8; MAX_RBSP_LEN];
    let len = stamp.write_rbsp(&mut rbsp)?;
    let rbsp = rbsp.get(..len).unwrap_or_default();
    let header = sei_header(codec);
    let mut nal = BytesMut::with_capacity(header.len() + ebsp_len(rbsp));
    nal.extend_from_slice(header);
    write_ebsp(rbsp, &mut nal);
    Ok(nal.freeze())
}

/// Returns a copy of the Annex-B access unit `au` with a stamp SEI NAL unit inserted after
/// the delimiter, parameter sets and other SEI, right before the first slice (or at the
/// end if there is none). One allocation of exactly the final size. An existing stamp is
/// left in place; [`find_stamp`] reports the first.
pub fn insert_stamp(codec: Codec, au: &[u8], stamp: &CaptureStamp) -> Result<Bytes, StampError> {
    let mut rbsp = [0u8; MAX_RBSP_LEN];
    let len = stamp.write_rbsp(&mut rbsp)?;
    let rbsp = rbsp.get(..len).unwrap_or_default();
    let header = sei_header(codec);

    let at = NalSpans::new(au)
        .find(|span| {
            let nal = au.get(span.nal.clone()).unwrap_or_default();
            match codec {
                Codec::H264 => h264::NalType::of(nal).is_some_and(h264::NalType::is_picture_data),
                Codec::H265 => h265::NalHeader::parse(nal).is_some_and(|h| h.nal_type.is_vcl()),
            }
        })
        .map_or(au.len(), |span| span.prefix_start);
    let (before, after) = au.split_at(at.min(au.len()));

    let mut out =
        BytesMut::with_capacity(au.len() + START_CODE.len() + header.len() + ebsp_len(rbsp));
    out.extend_from_slice(before);
    out.extend_from_slice(&START_CODE);
    out.extend_from_slice(header);
    write_ebsp(rbsp, &mut out);
    out.extend_from_slice(after);
    Ok(out.freeze())
}

/// Finds lookout's capture stamp in an Annex-B access unit: `None` when there is none
/// (real cameras), an error when a message carries lookout's UUID but its payload is
/// damaged. SEI NAL units that are themselves damaged are skipped.
pub fn find_stamp(codec: Codec, au: &[u8]) -> Option<Result<CaptureStamp, StampError>> {
    crate::annexb::nal_units(au).find_map(|nal| {
        let rbsp = sei_rbsp(codec, nal)?;
        sei_messages(codec, &rbsp)
            .map_while(Result::ok)
            .find_map(|message| {
                let (uuid, data) = message.user_data_unregistered()?;
                (*uuid == LOOKOUT_SEI_UUID).then(|| CaptureStamp::decode(data))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(camera_id: &str, frame: u64, capture_unix_ns: u64) -> CaptureStamp {
        CaptureStamp {
            camera_id: camera_id.to_owned(),
            frame,
            capture_unix_ns,
        }
    }

    #[test]
    fn h264_stamp_nal_layout() {
        let s = stamp("tower-7", 42, 1_700_000_000_123_456_789);
        let nal = stamp_nal(Codec::H264, &s).unwrap();
        assert_eq!(nal[0], 0x06);
        assert_eq!(nal[1], 5, "payloadType");
        assert_eq!(usize::from(nal[2]), 16 + 1 + 2 + 7 + 16, "payloadSize");
        assert_eq!(nal[3..19], LOOKOUT_SEI_UUID);
        assert_eq!(*nal.last().unwrap(), 0x80);
        assert_eq!(
            find_stamp(Codec::H264, &[&START_CODE[..], &nal].concat()),
            Some(Ok(s))
        );
    }

    #[test]
    fn h265_stamp_nal_header() {
        let nal = stamp_nal(Codec::H265, &stamp("d", 0, 0)).unwrap();
        assert_eq!(nal[..2], [0x4e, 0x01]);
        let header = h265::NalHeader::parse(&nal).unwrap();
        assert_eq!(header.nal_type, h265::NalType::PREFIX_SEI);
        assert_eq!((header.layer_id, header.temporal_id_plus1), (0, 1));
    }

    #[test]
    fn zeros_are_emulation_prevented() {
        for codec in [Codec::H264, Codec::H265] {
            let s = stamp("", 0x0000_0001_0000_0000, 0x0000_0300_0000_0002);
            let nal = stamp_nal(codec, &s).unwrap();
            assert!(
                !nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "{codec}: start-code pattern inside {nal:02x?}"
            );
            assert!(nal.windows(3).any(|w| w == [0, 0, 3]));
            assert_eq!(
                find_stamp(codec, &[&START_CODE[..], &nal].concat()),
                Some(Ok(s))
            );
        }
    }

    #[test]
    fn inserted_before_first_slice() {
        let au = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f],
            &[0, 0, 1, 0x68, 0xce],
            &[0, 0, 1, 0x06, 0x01, 0x01, 0x00, 0x80],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84],
            &[0, 0, 1, 0x65, 0x00, 0x11],
        ]
        .concat();
        let s = stamp("cam", 1, 2);
        let out = insert_stamp(Codec::H264, &au, &s).unwrap();
        let nal = stamp_nal(Codec::H264, &s).unwrap();
        let expected = [&au[..27], &START_CODE, &nal, &au[27..]].concat();
        assert_eq!(&out[..], &expected[..]);
        let types: Vec<u8> = crate::annexb::nal_units(&out)
            .map(|n| n[0] & 0x1f)
            .collect();
        assert_eq!(types, [9, 7, 8, 6, 6, 5, 5]);
        assert_eq!(find_stamp(Codec::H264, &out), Some(Ok(s)));
    }

    #[test]
    fn appended_without_slices() {
        let au = [0, 0, 0, 1, 0x09, 0xf0];
        let out = insert_stamp(Codec::H264, &au, &stamp("c", 1, 2)).unwrap();
        assert_eq!(out[..6], au);
        assert_eq!(out[6..10], START_CODE);
    }

    #[test]
    fn camera_id_limits() {
        let long = "x".repeat(MAX_CAMERA_ID_LEN + 1);
        assert_eq!(
            insert_stamp(Codec::H265, &[], &stamp(&long, 0, 0)),
            Err(StampError::CameraIdTooLong { len: 65 })
        );
        let longest = "é".repeat(MAX_CAMERA_ID_LEN / 2);
        let s = stamp(&longest, u64::MAX, u64::MAX);
        let au = insert_stamp(Codec::H265, &[], &s).unwrap();
        assert_eq!(find_stamp(Codec::H265, &au), Some(Ok(s)));
    }

    #[test]
    fn damaged_payloads_are_errors() {
        assert_eq!(
            CaptureStamp::decode(&[2]),
            Err(StampError::UnsupportedVersion(2))
        );
        assert_eq!(
            CaptureStamp::decode(&[1, 0, 2, b'a']),
            Err(StampError::Truncated {
                field: "camera id",
                len: 4
            })
        );
        assert_eq!(
            CaptureStamp::decode(&[
                1, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]),
            Err(StampError::CameraIdNotUtf8)
        );
        let mut data = vec![1, 0, 0];
        data.extend([0; 15]);
        assert_eq!(
            CaptureStamp::decode(&data).unwrap_err().to_string(),
            "capture stamp: payload of 18 bytes ends inside capture time"
        );
    }

    #[test]
    fn other_user_data_is_not_a_stamp() {
        // x264's own "user data unregistered" version string.
        let au = [
            0, 0, 1, 0x06, 0x05, 0x11, 0xdc, 0x45, 0xe9, 0xbd, 0xe6, 0xd9, 0x48, 0xb7, 0x96, 0x2c,
            0xd8, 0x20, 0xd9, 0x23, 0xee, 0xef, b'x', 0x80,
        ];
        assert_eq!(find_stamp(Codec::H264, &au), None);
    }
}
