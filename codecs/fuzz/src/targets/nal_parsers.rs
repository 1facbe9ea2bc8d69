//! Everything lookout-codecs reads from a camera: access-unit inspection (VPS/SPS/PPS
//! capture, keyframe detection), clip splitting, SPS parsing for both codecs, SEI
//! walking and capture-stamp decoding, and emulation prevention. It also holds the stamp
//! writer to its promise that a stamp inserted into any access unit is found again. The
//! first byte picks the codec; seeds are real x264/x265 captures from `../testdata/`.

use bytes::Bytes;
use lookout_codecs::access_unit::access_units;
use lookout_codecs::annexb::nal_units;
use lookout_codecs::bits::{ebsp_len, rbsp, write_ebsp};
use lookout_codecs::sei::{sei_messages, sei_rbsp};
use lookout_codecs::{CaptureStamp, Codec, find_stamp, h264, h265, insert_stamp, inspect};

/// Runs one input; panics on a finding.
pub fn nal_parsers(input: &[u8]) {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let codec = if selector & 1 == 0 {
        Codec::H264
    } else {
        Codec::H265
    };
    let au = Bytes::copy_from_slice(data);

    let nals = nal_units(&au).count();
    match inspect(codec, &au) {
        Ok(info) => assert_eq!(
            (info.nal_units + info.malformed_nals) as usize,
            nals,
            "every NAL unit is counted once, damaged or not"
        ),
        Err(_) => assert_eq!(nals, 0, "only a buffer without NAL units is refused"),
    }
    let cut: usize = access_units(codec, &au).map(|unit| unit.len()).sum();
    assert!(cut <= au.len(), "access units are sub-slices of the clip");

    for nal in nal_units(&au) {
        let _ = h264::Sps::parse(nal);
        let _ = h265::Sps::parse(nal);
        if let Some(rbsp) = sei_rbsp(codec, nal) {
            for message in sei_messages(codec, &rbsp).flatten() {
                if let Some((_, user_data)) = message.user_data_unregistered() {
                    let _ = CaptureStamp::decode(user_data);
                }
            }
        }
    }

    // Emulation prevention: whatever the payload, the escaped form holds no start code,
    // has the announced length, and unescapes to the payload.
    let mut ebsp = Vec::new();
    write_ebsp(data, &mut ebsp);
    assert_eq!(ebsp.len(), ebsp_len(data));
    assert!(
        !ebsp.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
        "escaped payload contains a start code"
    );
    assert_eq!(&*rbsp(&ebsp), data);

    if find_stamp(codec, &au).is_none() {
        let stamp = CaptureStamp {
            camera_id: "fuzz".to_owned(),
            frame: u64::from(selector),
            capture_unix_ns: 0x0000_0001_0000_0000,
        };
        let stamped = insert_stamp(codec, &au, &stamp).expect("a short camera id always fits");
        assert_eq!(find_stamp(codec, &stamped), Some(Ok(stamp)));
    }
}
