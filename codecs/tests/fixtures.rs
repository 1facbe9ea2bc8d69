//! Replays the real encoder output in `testdata/` (x264 and x265 via GStreamer; the
//! commands are in `testdata/generate.sh`) through access-unit splitting, `inspect` and the
//! capture stamp, and checks what comes out against the settings the clips were encoded
//! with.

use bytes::Bytes;
use lookout_codecs::access_unit::{FrameRate, access_units};
use lookout_codecs::annexb::nal_units;
use lookout_codecs::{CaptureStamp, Codec, find_stamp, insert_stamp, inspect};

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

struct Expected {
    file: &'static str,
    codec: Codec,
    width: u32,
    height: u32,
    frame_rate: (u64, u64),
    profile_idc: u8,
    chroma_format_idc: u8,
}

const FIXTURES: [Expected; 7] = [
    Expected {
        file: "h264_720p_baseline.h264",
        codec: Codec::H264,
        width: 1280,
        height: 720,
        frame_rate: (25, 1),
        profile_idc: 66,
        chroma_format_idc: 1,
    },
    Expected {
        file: "h264_1080p_high.h264",
        codec: Codec::H264,
        width: 1920,
        height: 1080,
        frame_rate: (30, 1),
        profile_idc: 100,
        chroma_format_idc: 1,
    },
    Expected {
        file: "h264_1080i_high.h264",
        codec: Codec::H264,
        width: 1920,
        height: 1080,
        frame_rate: (30000, 1001),
        profile_idc: 100,
        chroma_format_idc: 1,
    },
    Expected {
        file: "h264_854x480_main.h264",
        codec: Codec::H264,
        width: 854,
        height: 480,
        frame_rate: (15, 1),
        profile_idc: 77,
        chroma_format_idc: 1,
    },
    Expected {
        file: "h265_720p.h265",
        codec: Codec::H265,
        width: 1280,
        height: 720,
        frame_rate: (25, 1),
        profile_idc: 1,
        chroma_format_idc: 1,
    },
    Expected {
        file: "h265_1080p.h265",
        codec: Codec::H265,
        width: 1920,
        height: 1080,
        frame_rate: (30, 1),
        profile_idc: 1,
        chroma_format_idc: 1,
    },
    Expected {
        file: "h265_854x480_444.h265",
        codec: Codec::H265,
        width: 854,
        height: 480,
        frame_rate: (15, 1),
        profile_idc: 4,
        chroma_format_idc: 3,
    },
];

fn same_rate(rate: FrameRate, (num, den): (u64, u64)) -> bool {
    u128::from(rate.num) * u128::from(den) == u128::from(num) * u128::from(rate.den)
}

#[test]
fn clips_split_into_three_access_units_with_one_keyframe() {
    for e in &FIXTURES {
        let clip = fixture(e.file);
        let units: Vec<Bytes> = access_units(e.codec, &clip).collect();
        assert_eq!(units.len(), 3, "{}", e.file);
        assert_eq!(
            units.concat(),
            clip[..],
            "{}: splitting must not lose bytes",
            e.file
        );
        let keyframes: Vec<bool> = units
            .iter()
            .map(|au| inspect(e.codec, au).unwrap().keyframe)
            .collect();
        assert_eq!(keyframes, [true, false, false], "{}", e.file);
    }
}

#[test]
fn splitting_without_access_unit_delimiters_uses_first_slice_flags() {
    let clip = fixture("h264_1080p_high.h264");
    let mut stream = Vec::new();
    for nal in nal_units(&clip).filter(|nal| nal[0] & 0x1f != 9) {
        stream.extend_from_slice(&[0, 0, 1]);
        stream.extend_from_slice(nal);
    }
    let units: Vec<Bytes> = access_units(Codec::H264, &Bytes::from(stream)).collect();
    let types: Vec<Vec<u8>> = units
        .iter()
        .map(|au| nal_units(au).map(|nal| nal[0] & 0x1f).collect())
        .collect();
    assert_eq!(types, [vec![7, 8, 6, 5], vec![1], vec![1]]);
}

#[test]
fn keyframe_carries_parameter_sets_and_picture_size() {
    for e in &FIXTURES {
        let clip = fixture(e.file);
        let first = access_units(e.codec, &clip).next().unwrap();
        let info = inspect(e.codec, &first).unwrap();
        assert_eq!(info.malformed_nals, 0, "{}: {:?}", e.file, info.first_error);
        assert!(info.has_parameter_sets(), "{}", e.file);
        let seq = info
            .sequence
            .unwrap_or_else(|| panic!("{}: no SPS", e.file));
        assert_eq!((seq.width, seq.height), (e.width, e.height), "{}", e.file);
        assert_eq!(seq.profile_idc, e.profile_idc, "{}", e.file);
        assert_eq!(seq.chroma_format_idc, e.chroma_format_idc, "{}", e.file);
        let rate = seq
            .frame_rate
            .unwrap_or_else(|| panic!("{}: no frame rate", e.file));
        assert!(same_rate(rate, e.frame_rate), "{}: {rate:?}", e.file);

        // The parameter sets are zero-copy views into the access unit.
        let sps = info.sps.unwrap();
        let offset = sps.as_ptr() as usize - first.as_ptr() as usize;
        assert!(offset < first.len(), "{}", e.file);
    }
}

#[test]
fn later_access_units_have_no_parameter_sets() {
    for e in &FIXTURES {
        let clip = fixture(e.file);
        for au in access_units(e.codec, &clip).skip(1) {
            let info = inspect(e.codec, &au).unwrap();
            assert!(
                !info.has_parameter_sets() && info.sequence.is_none(),
                "{}",
                e.file
            );
            assert_eq!(info.malformed_nals, 0, "{}", e.file);
        }
    }
}

#[test]
fn interlaced_sps_is_field_coded() {
    let clip = fixture("h264_1080i_high.h264");
    let info = inspect(Codec::H264, &clip).unwrap();
    let sps = lookout_codecs::h264::Sps::parse(&info.sps.unwrap()).unwrap();
    assert!(!sps.frame_mbs_only);
    assert_eq!((sps.width, sps.height), (1920, 1080));
}

#[test]
fn h265_profile_tier_level() {
    let clip = fixture("h265_1080p.h265");
    let info = inspect(Codec::H265, &clip).unwrap();
    let sps = lookout_codecs::h265::Sps::parse(&info.sps.unwrap()).unwrap();
    assert_eq!(
        (sps.profile_idc, sps.high_tier, sps.max_sub_layers),
        (1, false, 1)
    );
    assert_eq!(sps.level_idc, 120, "x265 signals level 4 for 1080p30");
    assert_eq!(sps.bit_depth_luma, 8);
}

#[test]
fn stamps_round_trip_through_every_access_unit() {
    for e in &FIXTURES {
        let clip = fixture(e.file);
        for (frame, au) in access_units(e.codec, &clip).enumerate() {
            assert_eq!(
                find_stamp(e.codec, &au),
                None,
                "{}: encoder output has no stamp",
                e.file
            );
            let stamp = CaptureStamp {
                camera_id: "tower-03/north".to_owned(),
                frame: frame as u64,
                // 00 00 00 and 00 00 01 patterns force emulation prevention.
                capture_unix_ns: 0x1800_0000_0100_0000 + frame as u64,
            };
            let stamped = insert_stamp(e.codec, &au, &stamp).unwrap();
            assert_eq!(find_stamp(e.codec, &stamped), Some(Ok(stamp)), "{}", e.file);

            let before = inspect(e.codec, &au).unwrap();
            let after = inspect(e.codec, &stamped).unwrap();
            assert_eq!(after.keyframe, before.keyframe, "{}", e.file);
            assert_eq!(after.sequence, before.sequence, "{}", e.file);
            assert_eq!(after.nal_units, before.nal_units + 1, "{}", e.file);

            // The stamp sits right before the first slice; nothing else moved.
            let original: Vec<&[u8]> = nal_units(&au).collect();
            let mut with_stamp: Vec<&[u8]> = nal_units(&stamped).collect();
            let first_slice = original
                .iter()
                .position(|nal| is_slice(e.codec, nal))
                .unwrap();
            with_stamp.remove(first_slice);
            assert_eq!(with_stamp, original, "{}", e.file);
        }
    }
}

fn is_slice(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => lookout_codecs::h264::NalType::of(nal).is_some_and(|t| t.is_vcl()),
        Codec::H265 => {
            lookout_codecs::h265::NalHeader::parse(nal).is_some_and(|h| h.nal_type.is_vcl())
        }
    }
}

#[test]
fn garbage_nal_units_are_counted_not_fatal() {
    let clip = fixture("h264_720p_baseline.h264");
    let first = access_units(Codec::H264, &clip).next().unwrap();
    // A NAL unit with forbidden_zero_bit set, and an SPS cut short.
    let mut damaged = vec![0, 0, 0, 1, 0xff, 0x12, 0, 0, 1, 0x67, 0x42, 0xc0];
    damaged.extend_from_slice(&first);
    let info = inspect(Codec::H264, &Bytes::from(damaged)).unwrap();
    assert_eq!(info.malformed_nals, 2);
    assert!(info.keyframe && info.has_parameter_sets());
    assert_eq!(
        info.first_error.unwrap().to_string(),
        "H.264 SPS: level_idc: data ends at bit 24"
    );
    assert_eq!(
        info.sequence.map(|s| (s.width, s.height)),
        Some((1280, 720))
    );
}

#[test]
fn no_start_code_is_an_error() {
    let err = inspect(Codec::H265, &Bytes::from_static(&[0x40, 0x01, 0x0c])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "H.265 access unit: no NAL units in 3 bytes (no Annex-B start code)"
    );
}
