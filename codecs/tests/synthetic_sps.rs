//! Parameter sets that x264 and x265 never emit but cameras may: SPS scaling lists,
//! 4:4:4 and 4:2:2 chroma, interlaced cropping, H.265 sub-layers, inter-predicted
//! reference picture sets and long-term references. Each is written bit by bit here from
//! the syntax tables, so a parser that skips a structure wrongly reads the wrong size.

use lookout_codecs::bits::{Problem, write_ebsp};
use lookout_codecs::{h264, h265};

/// Writes bits MSB-first, with exp-Golomb codes: the mirror of `bits::BitReader`.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn u(&mut self, n: u32, value: u64) -> &mut Self {
        for i in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1 {
                *self.bytes.last_mut().unwrap() |= 0x80 >> (self.bits % 8);
            }
            self.bits += 1;
        }
        self
    }

    fn flag(&mut self, value: bool) -> &mut Self {
        self.u(1, value.into())
    }

    fn ue(&mut self, value: u32) -> &mut Self {
        let code = u64::from(value) + 1;
        let len = 64 - code.leading_zeros();
        self.u(len - 1, 0).u(len, code)
    }

    fn se(&mut self, value: i32) -> &mut Self {
        let code = if value > 0 {
            2 * value as u32 - 1
        } else {
            2 * value.unsigned_abs()
        };
        self.ue(code)
    }

    /// `rbsp_trailing_bits()`, then the NAL unit with emulation prevention.
    fn into_nal(mut self, header: &[u8]) -> Vec<u8> {
        self.u(1, 1);
        while !self.bits.is_multiple_of(8) {
            self.u(1, 0);
        }
        let mut nal = header.to_vec();
        write_ebsp(&self.bytes, &mut nal);
        nal
    }
}

/// High 4:4:4 Predictive, interlaced, scaling lists (one cut short by a zero
/// `nextScale`, two full 8x8 lists), POC type 1, 25 fps.
fn h264_high444_sps() -> Vec<u8> {
    let mut w = BitWriter::default();
    w.u(8, 244).u(8, 0).u(8, 40).ue(0);
    w.ue(3).flag(false).ue(0).ue(0).flag(false);
    w.flag(true); // seq_scaling_matrix_present_flag
    for i in 0..12 {
        let present = matches!(i, 0 | 6 | 8);
        w.flag(present);
        match i {
            // 8 + 4 = 12, 12 - 12 = 0: nextScale 0 ends the list after two deltas.
            0 => {
                w.se(4).se(-12);
            }
            6 | 8 => {
                for j in 0..64 {
                    w.se(if j % 2 == 0 { 7 } else { -7 });
                }
            }
            _ => {}
        }
    }
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(1).flag(false).se(-3).se(2).ue(2).se(5).se(-5); // POC type 1, cycle of two
    w.ue(2).flag(false);
    w.ue(119).ue(33); // 120 x 34 map units of field pairs
    w.flag(false).flag(true); // frame_mbs_only 0, mb_adaptive_frame_field 1
    w.flag(true);
    w.flag(true).ue(0).ue(0).ue(0).ue(4); // crop bottom 4 field rows x 2
    w.flag(true); // VUI
    w.flag(true).u(8, 255).u(16, 4).u(16, 3); // aspect ratio, extended SAR
    w.flag(false);
    w.flag(true)
        .u(3, 5)
        .flag(true)
        .flag(true)
        .u(8, 1)
        .u(8, 1)
        .u(8, 1);
    w.flag(true).ue(1).ue(1);
    w.flag(true).u(32, 1).u(32, 50).flag(true);
    w.flag(false); // nal_hrd_parameters_present_flag, unread
    w.into_nal(&[0x67])
}

#[test]
fn h264_scaling_lists_and_interlaced_cropping() {
    let sps = h264::Sps::parse(&h264_high444_sps()).unwrap();
    assert_eq!(sps.profile_idc, 244);
    assert_eq!(sps.chroma_format_idc, 3);
    assert!(!sps.frame_mbs_only);
    assert_eq!((sps.width, sps.height), (1920, 1080));
    let rate = sps.frame_rate().unwrap();
    assert_eq!(rate.fps(), 25.0);
}

/// Main 4:2:2 10 at High tier with three temporal sub-layers, a 4:2:2 conformance window,
/// scaling list data, three short-term RPS (two inter-predicted), long-term references,
/// and VUI timing 60000/1001 (whose zero bytes need emulation prevention).
fn h265_rext_sps() -> Vec<u8> {
    let mut w = BitWriter::default();
    w.u(4, 0).u(3, 2).flag(true);
    // profile_tier_level(1, 2)
    w.u(2, 0)
        .flag(true)
        .u(5, 4)
        .u(32, 1 << 27)
        .u(48, 0)
        .u(8, 153);
    w.flag(true).flag(true).flag(false).flag(true);
    w.u(12, 0);
    w.u(44, 0).u(44, 0).u(8, 150); // sub-layer 0: profile and level
    w.u(8, 120); // sub-layer 1: level only
    w.ue(0).ue(2); // sps id, 4:2:2
    w.ue(3840).ue(2160).flag(true).ue(0).ue(4).ue(0).ue(2);
    w.ue(2).ue(2).ue(4); // 10-bit, 8-bit POC LSBs
    w.flag(true);
    for _ in 0..3 {
        w.ue(4).ue(2).ue(0);
    }
    w.ue(0).ue(2).ue(0).ue(3).ue(1).ue(1);
    w.flag(true).flag(true); // scaling_list_data()
    for size_id in 0..4 {
        let step = if size_id == 3 { 3 } else { 1 };
        for matrix_id in (0..6).step_by(step) {
            if matrix_id == 1 {
                w.flag(false).ue(1);
                continue;
            }
            w.flag(true);
            if size_id > 1 {
                w.se(8);
            }
            for k in 0..(64.min(1 << (4 + (size_id << 1)))) {
                w.se(if k % 3 == 0 { -2 } else { 1 });
            }
        }
    }
    w.flag(true).flag(true);
    w.flag(true).u(4, 7).u(4, 7).ue(0).ue(1).flag(false); // PCM
    w.ue(3);
    w.ue(2).ue(1); // RPS 0: explicit, 3 delta POCs
    for d in [0, 1, 3] {
        w.ue(d).flag(d != 3);
    }
    // RPS 1: predicted from RPS 0 (3 + 1 flags), keeps 3.
    w.flag(true).flag(false).ue(0);
    w.flag(true)
        .flag(false)
        .flag(true)
        .flag(false)
        .flag(false)
        .flag(true);
    // RPS 2: predicted from RPS 1 (3 + 1 flags), keeps all 4.
    w.flag(true).flag(true).ue(1);
    for _ in 0..4 {
        w.flag(true);
    }
    w.flag(true).ue(2).u(8, 17).flag(true).u(8, 200).flag(false); // long-term refs
    w.flag(true).flag(true);
    w.flag(true); // VUI
    w.flag(true).u(8, 255).u(16, 1).u(16, 1);
    w.flag(true).flag(false);
    w.flag(true)
        .u(3, 5)
        .flag(false)
        .flag(true)
        .u(8, 9)
        .u(8, 16)
        .u(8, 9);
    w.flag(true).ue(2).ue(2);
    w.flag(false).flag(false).flag(false);
    w.flag(true).ue(0).ue(0).ue(0).ue(0);
    w.flag(true).u(32, 1001).u(32, 60000);
    w.flag(false).flag(false); // poc_proportional, hrd: unread
    w.into_nal(&[0x42, 0x01])
}

#[test]
fn h265_sub_layers_scaling_lists_and_reference_sets() {
    let nal = h265_rext_sps();
    assert!(
        nal.windows(3).any(|w| w == [0, 0, 3]),
        "timing needs emulation prevention"
    );
    let sps = h265::Sps::parse(&nal).unwrap();
    assert_eq!(
        (sps.profile_idc, sps.high_tier, sps.level_idc),
        (4, true, 153)
    );
    assert_eq!(sps.max_sub_layers, 3);
    assert_eq!(sps.chroma_format_idc, 2);
    assert_eq!(sps.bit_depth_luma, 10);
    // 4:2:2: the window counts two luma columns but one luma row per unit.
    assert_eq!((sps.width, sps.height), (3832, 2158));
    let rate = sps.frame_rate().unwrap();
    assert_eq!((rate.num, rate.den), (60000, 1001));
}

#[test]
fn every_truncation_is_an_error_naming_the_element() {
    for (nal, structure) in [
        (h264_high444_sps(), "H.264 SPS"),
        (h265_rext_sps(), "H.265 SPS"),
    ] {
        // Cutting inside the VUI loses the timing, which the parser must notice.
        for len in 0..nal.len() - 2 {
            let result = if structure.starts_with("H.264") {
                h264::Sps::parse(&nal[..len]).map(drop)
            } else {
                h265::Sps::parse(&nal[..len]).map(drop)
            };
            let err = result.expect_err("truncated SPS parsed");
            assert_eq!(err.structure, structure);
            assert!(
                matches!(err.problem, Problem::Truncated { .. }),
                "{len}: {err}"
            );
        }
    }
}

#[test]
fn impossible_values_are_rejected() {
    let mut w = BitWriter::default();
    w.u(8, 100).u(8, 0).u(8, 40).ue(0).ue(4);
    let err = h264::Sps::parse(&w.into_nal(&[0x67])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "H.264 SPS: chroma_format_idc: value 4 is out of range (at most 3)"
    );

    let mut w = BitWriter::default();
    w.u(8, 66)
        .u(8, 0)
        .u(8, 30)
        .ue(0)
        .ue(0)
        .ue(0)
        .ue(0)
        .ue(0)
        .flag(false);
    w.ue(0)
        .ue(0)
        .flag(true)
        .flag(true)
        .flag(true)
        .ue(0)
        .ue(8)
        .ue(0)
        .ue(0)
        .flag(false);
    let err = h264::Sps::parse(&w.into_nal(&[0x67])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "H.264 SPS: frame_crop_right_offset: cropping 16 samples from 16 leaves no picture"
    );

    let err = h264::Sps::parse(&[0x68, 0x42]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "H.264 SPS: nal_unit_type: NAL unit type is 8, expected 7"
    );
    let err = h265::Sps::parse(&[0x40, 0x01, 0x0c]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "H.265 SPS: nal_unit_type: NAL unit type is 32, expected 33"
    );
}
