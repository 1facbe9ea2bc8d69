//! Fuzzes everything lookout-codecs reads from a camera: access-unit inspection, SPS
//! parsing, SEI walking and capture-stamp decoding, plus the stamp writer's promise that
//! a stamp inserted into any access unit is found again. The first byte picks the codec.
//! Seeds in `corpus/nal_parsers/` are real x264/x265 captures from `../testdata/`.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lookout_codecs::access_unit::access_units;
use lookout_codecs::annexb::nal_units;
use lookout_codecs::sei::{sei_messages, sei_rbsp};
use lookout_codecs::{CaptureStamp, Codec, find_stamp, h264, h265, insert_stamp, inspect};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let codec = if selector & 1 == 0 {
        Codec::H264
    } else {
        Codec::H265
    };
    let au = Bytes::copy_from_slice(data);

    let _ = inspect(codec, &au);
    let _ = access_units(codec, &au).count();
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

    if find_stamp(codec, &au).is_none() {
        let stamp = CaptureStamp {
            camera_id: "fuzz".to_owned(),
            frame: u64::from(selector),
            capture_unix_ns: 0x0000_0001_0000_0000,
        };
        let stamped = insert_stamp(codec, &au, &stamp).expect("a short camera id always fits");
        assert_eq!(find_stamp(codec, &stamped), Some(Ok(stamp)));
    }
});
