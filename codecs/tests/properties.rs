//! Property tests: no parser panics on arbitrary bytes or on damaged real captures (a
//! camera on a bad link sends exactly that), and a capture stamp survives insertion into
//! any access unit for any camera id, frame number and time.

use bytes::Bytes;
use lookout_codecs::access_unit::access_units;
use lookout_codecs::annexb::{nal_units, nal_units_bytes};
use lookout_codecs::sei::{sei_messages, sei_rbsp};
use lookout_codecs::stamp::{MAX_CAMERA_ID_LEN, stamp_nal};
use lookout_codecs::{CaptureStamp, Codec, find_stamp, h264, h265, insert_stamp, inspect};
use proptest::prelude::*;

const FIXTURES: [(&str, Codec); 7] = [
    ("h264_720p_baseline.h264", Codec::H264),
    ("h264_1080p_high.h264", Codec::H264),
    ("h264_1080i_high.h264", Codec::H264),
    ("h264_854x480_main.h264", Codec::H264),
    ("h265_720p.h265", Codec::H265),
    ("h265_1080p.h265", Codec::H265),
    ("h265_854x480_444.h265", Codec::H265),
];

fn fixture(index: usize) -> (Bytes, Codec) {
    let (name, codec) = FIXTURES[index % FIXTURES.len()];
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    (Bytes::from(std::fs::read(path).unwrap()), codec)
}

/// Runs every parser over `data` as `codec`; the point is that none of them panics.
fn parse_everything(codec: Codec, data: &Bytes) {
    let _ = inspect(codec, data);
    let _ = find_stamp(codec, data);
    let _ = access_units(codec, data).count();
    for nal in nal_units(data) {
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
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::H264), Just(Codec::H265)]
}

fn camera_id() -> impl Strategy<Value = String> {
    "\\PC{0,64}".prop_filter("fits the stamp", |id| id.len() <= MAX_CAMERA_ID_LEN)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(codec in codec(), data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        parse_everything(codec, &Bytes::from(data));
    }

    #[test]
    fn random_nal_units_never_panic(
        codec in codec(),
        nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
    ) {
        // Start codes in front of each, so the parsers see many NAL units, not one blob.
        let mut data = Vec::new();
        for nal in nals {
            data.extend_from_slice(&[0, 0, 0, 1]);
            data.extend_from_slice(&nal);
        }
        parse_everything(codec, &Bytes::from(data));
    }

    #[test]
    fn damaged_captures_never_panic(
        index in 0..FIXTURES.len(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..32),
        keep in any::<prop::sample::Index>(),
    ) {
        let (clip, codec) = fixture(index);
        let mut data = clip.to_vec();
        for (at, byte) in flips {
            let at = at.index(data.len());
            data[at] = byte;
        }
        data.truncate(keep.index(data.len() + 1));
        parse_everything(codec, &Bytes::from(data));
    }

    #[test]
    fn damaged_parameter_sets_never_panic(
        index in 0..FIXTURES.len(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Random bytes rarely get past the first fields of an SPS; a real one with a few
        // damaged bytes reaches the scaling lists, reference picture sets and VUI.
        let (clip, codec) = fixture(index);
        let sps = inspect(codec, &clip).unwrap().sps.unwrap();
        let mut data = sps.to_vec();
        for (at, byte) in flips {
            // Keep the header so the parser goes past it.
            let at = 2 + at.index(data.len() - 2);
            data[at] = byte;
        }
        let _ = h264::Sps::parse(&data);
        let _ = h265::Sps::parse(&data);
    }

    #[test]
    fn stamps_round_trip(
        codec in codec(),
        camera_id in camera_id(),
        frame in any::<u64>(),
        capture_unix_ns in any::<u64>(),
    ) {
        let stamp = CaptureStamp { camera_id, frame, capture_unix_ns };
        let nal = stamp_nal(codec, &stamp).unwrap();
        prop_assert!(!nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2));
        let au = insert_stamp(codec, &[], &stamp).unwrap();
        prop_assert_eq!(nal_units_bytes(&au).collect::<Vec<_>>(), vec![nal]);
        prop_assert_eq!(find_stamp(codec, &au), Some(Ok(stamp)));
    }

    #[test]
    fn stamps_survive_insertion_into_real_access_units(
        index in 0..FIXTURES.len(),
        unit in 0usize..3,
        camera_id in camera_id(),
        frame in any::<u64>(),
        capture_unix_ns in any::<u64>(),
    ) {
        let (clip, codec) = fixture(index);
        let au = access_units(codec, &clip).nth(unit).unwrap();
        let stamp = CaptureStamp { camera_id, frame, capture_unix_ns };
        let stamped = insert_stamp(codec, &au, &stamp).unwrap();
        prop_assert_eq!(find_stamp(codec, &stamped), Some(Ok(stamp)));
        let before = inspect(codec, &au).unwrap();
        let after = inspect(codec, &stamped).unwrap();
        prop_assert_eq!(after.keyframe, before.keyframe);
        prop_assert_eq!(after.nal_units, before.nal_units + 1);
        prop_assert_eq!(after.malformed_nals, 0);
    }

    #[test]
    fn stamps_survive_insertion_into_garbage(
        codec in codec(),
        data in proptest::collection::vec(any::<u8>(), 0..512),
        frame in any::<u64>(),
    ) {
        let stamp = CaptureStamp { camera_id: "cam".to_owned(), frame, capture_unix_ns: frame ^ 0xff00 };
        let stamped = insert_stamp(codec, &data, &stamp).unwrap();
        prop_assert_eq!(stamped.len(), data.len() + 4 + stamp_nal(codec, &stamp).unwrap().len());
        prop_assert_eq!(find_stamp(codec, &stamped), Some(Ok(stamp)));
    }
}
