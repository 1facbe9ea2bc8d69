//! H.265 / HEVC specifics: the two-byte NAL header, the NAL unit types lookout cares about
//! (IRAP pictures are keyframes, VPS/SPS/PPS are the parameter sets a late joiner needs),
//! and the sequence parameter set: profile/tier/level with sub-layers, chroma format, the
//! picture size after the conformance window, and the VUI frame rate. Used by
//! [`crate::access_unit::inspect`] and [`crate::stamp`].

use crate::access_unit::FrameRate;
use crate::bits::{BitReader, Problem, SyntaxError, rbsp};
use crate::h264::cropped;

/// `nal_unit_type`, six bits of the two-byte NAL header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NalType(pub u8);

impl NalType {
    /// Broken link access (first of the IRAP range).
    pub const BLA_W_LP: NalType = NalType(16);
    /// Instantaneous decoding refresh with leading pictures.
    pub const IDR_W_RADL: NalType = NalType(19);
    /// Instantaneous decoding refresh without leading pictures.
    pub const IDR_N_LP: NalType = NalType(20);
    /// Clean random access.
    pub const CRA: NalType = NalType(21);
    /// Video parameter set.
    pub const VPS: NalType = NalType(32);
    /// Sequence parameter set.
    pub const SPS: NalType = NalType(33);
    /// Picture parameter set.
    pub const PPS: NalType = NalType(34);
    /// Access unit delimiter.
    pub const AUD: NalType = NalType(35);
    /// Prefix SEI (where lookout's capture stamp lives).
    pub const PREFIX_SEI: NalType = NalType(39);
    /// Suffix SEI.
    pub const SUFFIX_SEI: NalType = NalType(40);

    /// Whether this is a coded slice segment (types 0 to 31).
    pub fn is_vcl(self) -> bool {
        self.0 <= 31
    }

    /// Whether this is an intra random access point picture (types 16 to 23: BLA, IDR,
    /// CRA and the reserved IRAP types), where a decoder can start: a keyframe.
    pub fn is_irap(self) -> bool {
        (16..=23).contains(&self.0)
    }
}

/// The two-byte H.265 NAL unit header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NalHeader {
    /// `nal_unit_type`.
    pub nal_type: NalType,
    /// `nuh_layer_id`: 0 for the base layer, the only one lookout handles.
    pub layer_id: u8,
    /// `nuh_temporal_id_plus1`: temporal sub-layer plus one, never zero.
    pub temporal_id_plus1: u8,
}

impl NalHeader {
    /// Parses the header of a NAL unit, or `None` when it is shorter than two bytes,
    /// `forbidden_zero_bit` is set or `nuh_temporal_id_plus1` is zero, i.e. it is corrupt.
    pub fn parse(nal: &[u8]) -> Option<NalHeader> {
        let [b0, b1, ..] = *nal else { return None };
        let header = NalHeader {
            nal_type: NalType((b0 >> 1) & 0x3f),
            layer_id: ((b0 & 1) << 5) | (b1 >> 3),
            temporal_id_plus1: b1 & 7,
        };
        (b0 & 0x80 == 0 && header.temporal_id_plus1 != 0).then_some(header)
    }

    /// The header as two bytes.
    pub fn to_bytes(self) -> [u8; 2] {
        [
            ((self.nal_type.0 & 0x3f) << 1) | ((self.layer_id >> 5) & 1),
            ((self.layer_id & 0x1f) << 3) | (self.temporal_id_plus1 & 7),
        ]
    }
}

/// VUI timing information: one picture lasts `num_units_in_tick / time_scale` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `vui_num_units_in_tick`.
    pub num_units_in_tick: u32,
    /// `vui_time_scale`, in Hz.
    pub time_scale: u32,
}

/// The fields of an H.265 sequence parameter set that lookout uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// `general_profile_idc`: 1 Main, 2 Main 10, 4 range extensions, ...
    pub profile_idc: u8,
    /// `general_tier_flag`: false Main tier, true High tier.
    pub high_tier: bool,
    /// `general_level_idc`: thirty times the level number (120 for level 4.0).
    pub level_idc: u8,
    /// `sps_max_sub_layers_minus1 + 1`: temporal sub-layers in the stream.
    pub max_sub_layers: u8,
    /// `sps_seq_parameter_set_id`.
    pub seq_parameter_set_id: u32,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    /// `separate_colour_plane_flag`.
    pub separate_colour_plane: bool,
    /// Displayed width in luma samples, after the conformance window.
    pub width: u32,
    /// Displayed height in luma samples, after the conformance window.
    pub height: u32,
    /// `bit_depth_luma_minus8 + 8`.
    pub bit_depth_luma: u8,
    /// VUI timing information, when the encoder sent it.
    pub timing: Option<Timing>,
}

const STRUCTURE: &str = "H.265 SPS";

impl Sps {
    /// Parses an SPS NAL unit (header included, emulation prevention still in place).
    pub fn parse(nal: &[u8]) -> Result<Sps, SyntaxError> {
        let payload = rbsp(nal);
        let mut r = BitReader::new(&payload, STRUCTURE);
        if r.flag("forbidden_zero_bit")? {
            return Err(r.error("forbidden_zero_bit", Problem::NotZero));
        }
        let nal_type = r.bits("nal_unit_type", 6)? as u8;
        if nal_type != NalType::SPS.0 {
            return Err(r.error(
                "nal_unit_type",
                Problem::WrongNalType {
                    found: nal_type,
                    expected: NalType::SPS.0,
                },
            ));
        }
        r.skip("nuh_layer_id", 6)?;
        r.skip("nuh_temporal_id_plus1", 3)?;

        r.skip("sps_video_parameter_set_id", 4)?;
        let max_sub_layers_minus1 = r.bits("sps_max_sub_layers_minus1", 3)?;
        if max_sub_layers_minus1 > 6 {
            return Err(r.error(
                "sps_max_sub_layers_minus1",
                Problem::OutOfRange {
                    value: max_sub_layers_minus1.into(),
                    max: 6,
                },
            ));
        }
        r.flag("sps_temporal_id_nesting_flag")?;
        let ptl = read_profile_tier_level(&mut r, max_sub_layers_minus1)?;

        let seq_parameter_set_id = r.ue_max("sps_seq_parameter_set_id", 15)?;
        let chroma_format_idc = r.ue_max("chroma_format_idc", 3)? as u8;
        let separate_colour_plane =
            chroma_format_idc == 3 && r.flag("separate_colour_plane_flag")?;
        let coded_width = u64::from(r.ue("pic_width_in_luma_samples")?);
        let coded_height = u64::from(r.ue("pic_height_in_luma_samples")?);
        let mut window = [0u64; 4];
        if r.flag("conformance_window_flag")? {
            for (offset, element) in window.iter_mut().zip([
                "conf_win_left_offset",
                "conf_win_right_offset",
                "conf_win_top_offset",
                "conf_win_bottom_offset",
            ]) {
                *offset = r.ue(element)?.into();
            }
        }
        // Table 6-1: the window counts in chroma samples.
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (sub_width, sub_height) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let width = cropped(
            &r,
            "conf_win_right_offset",
            coded_width,
            sub_width * (window[0] + window[1]),
        )?;
        let height = cropped(
            &r,
            "conf_win_bottom_offset",
            coded_height,
            sub_height * (window[2] + window[3]),
        )?;

        let bit_depth_luma = r.ue_max("bit_depth_luma_minus8", 8)? as u8 + 8;
        r.ue_max("bit_depth_chroma_minus8", 8)?;
        let log2_max_poc_lsb = r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)? + 4;
        let ordering_for_all = r.flag("sps_sub_layer_ordering_info_present_flag")?;
        let first = if ordering_for_all {
            0
        } else {
            max_sub_layers_minus1
        };
        for _ in first..=max_sub_layers_minus1 {
            r.ue("sps_max_dec_pic_buffering_minus1")?;
            r.ue("sps_max_num_reorder_pics")?;
            r.ue("sps_max_latency_increase_plus1")?;
        }
        r.ue("log2_min_luma_coding_block_size_minus3")?;
        r.ue("log2_diff_max_min_luma_coding_block_size")?;
        r.ue("log2_min_luma_transform_block_size_minus2")?;
        r.ue("log2_diff_max_min_luma_transform_block_size")?;
        r.ue("max_transform_hierarchy_depth_inter")?;
        r.ue("max_transform_hierarchy_depth_intra")?;
        if r.flag("scaling_list_enabled_flag")? && r.flag("sps_scaling_list_data_present_flag")? {
            skip_scaling_list_data(&mut r)?;
        }
        r.flag("amp_enabled_flag")?;
        r.flag("sample_adaptive_offset_enabled_flag")?;
        if r.flag("pcm_enabled_flag")? {
            r.skip("pcm_sample_bit_depth_luma_minus1", 4)?;
            r.skip("pcm_sample_bit_depth_chroma_minus1", 4)?;
            r.ue("log2_min_pcm_luma_coding_block_size_minus3")?;
            r.ue("log2_diff_max_min_pcm_luma_coding_block_size")?;
            r.flag("pcm_loop_filter_disabled_flag")?;
        }
        let num_short_term_ref_pic_sets = r.ue_max("num_short_term_ref_pic_sets", 64)?;
        skip_short_term_ref_pic_sets(&mut r, num_short_term_ref_pic_sets)?;
        if r.flag("long_term_ref_pics_present_flag")? {
            let count = r.ue_max("num_long_term_ref_pics_sps", 32)?;
            for _ in 0..count {
                r.skip("lt_ref_pic_poc_lsb_sps", log2_max_poc_lsb as usize)?;
                r.flag("used_by_curr_pic_lt_sps_flag")?;
            }
        }
        r.flag("sps_temporal_mvp_enabled_flag")?;
        r.flag("strong_intra_smoothing_enabled_flag")?;
        let timing = if r.flag("vui_parameters_present_flag")? {
            read_vui_timing(&mut r)?
        } else {
            None
        };

        Ok(Sps {
            profile_idc: ptl.profile_idc,
            high_tier: ptl.high_tier,
            level_idc: ptl.level_idc,
            max_sub_layers: max_sub_layers_minus1 as u8 + 1,
            seq_parameter_set_id,
            chroma_format_idc,
            separate_colour_plane,
            width,
            height,
            bit_depth_luma,
            timing,
        })
    }

    /// Frames per second from the VUI timing information: `time_scale /
    /// num_units_in_tick`, when both are present and non-zero.
    pub fn frame_rate(&self) -> Option<FrameRate> {
        let t = self.timing?;
        FrameRate::new(t.time_scale.into(), t.num_units_in_tick.into())
    }
}

/// The general part of `profile_tier_level()`.
struct ProfileTierLevel {
    profile_idc: u8,
    high_tier: bool,
    level_idc: u8,
}

/// Reads `profile_tier_level(1, max_sub_layers_minus1)` (7.3.3), skipping the sub-layer
/// profiles and levels.
fn read_profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u32,
) -> Result<ProfileTierLevel, SyntaxError> {
    r.skip("general_profile_space", 2)?;
    let high_tier = r.flag("general_tier_flag")?;
    let profile_idc = r.bits("general_profile_idc", 5)? as u8;
    r.skip("general_profile_compatibility_flag", 32)?;
    // progressive, interlaced, non-packed, frame-only flags and 44 constraint bits.
    r.skip("general_constraint_flags", 48)?;
    let level_idc = r.bits("general_level_idc", 8)? as u8;
    let mut present = [(false, false); 7];
    for flags in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *flags = (
            r.flag("sub_layer_profile_present_flag")?,
            r.flag("sub_layer_level_present_flag")?,
        );
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(
            "reserved_zero_2bits",
            2 * (8 - max_sub_layers_minus1 as usize),
        )?;
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.skip("sub_layer_profile", 88)?;
        }
        if level {
            r.skip("sub_layer_level_idc", 8)?;
        }
    }
    Ok(ProfileTierLevel {
        profile_idc,
        high_tier,
        level_idc,
    })
}

/// Skips `scaling_list_data()` (7.3.4).
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> Result<(), SyntaxError> {
    for size_id in 0..4 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _matrix_id in (0..6).step_by(step) {
            if !r.flag("scaling_list_pred_mode_flag")? {
                r.ue("scaling_list_pred_matrix_id_delta")?;
                continue;
            }
            let coefficients = 64.min(1 << (4 + (size_id << 1)));
            if size_id > 1 {
                r.se("scaling_list_dc_coef_minus8")?;
            }
            for _ in 0..coefficients {
                r.se("scaling_list_delta_coef")?;
            }
        }
    }
    Ok(())
}

/// Skips the SPS's `st_ref_pic_set(i)` structures (7.3.7), tracking how many delta POCs
/// each has, which inter-RPS prediction needs to know how many flags follow.
fn skip_short_term_ref_pic_sets(r: &mut BitReader<'_>, count: u32) -> Result<(), SyntaxError> {
    let mut previous_delta_pocs: u32 = 0;
    for index in 0..count {
        let predicted = index != 0 && r.flag("inter_ref_pic_set_prediction_flag")?;
        let delta_pocs = if predicted {
            r.flag("delta_rps_sign")?;
            r.ue_max("abs_delta_rps_minus1", (1 << 15) - 1)?;
            let mut kept = 0;
            for _ in 0..=previous_delta_pocs {
                let used = r.flag("used_by_curr_pic_flag")?;
                if used || r.flag("use_delta_flag")? {
                    kept += 1;
                }
            }
            kept
        } else {
            let negative = r.ue_max("num_negative_pics", 16)?;
            let positive = r.ue_max("num_positive_pics", 16)?;
            for _ in 0..negative + positive {
                r.ue("delta_poc_minus1")?;
                r.flag("used_by_curr_pic_flag")?;
            }
            negative + positive
        };
        if delta_pocs > 32 {
            return Err(r.error(
                "num_delta_pocs",
                Problem::OutOfRange {
                    value: delta_pocs.into(),
                    max: 32,
                },
            ));
        }
        previous_delta_pocs = delta_pocs;
    }
    Ok(())
}

/// Reads `vui_parameters()` (E.2.1) as far as the timing information.
fn read_vui_timing(r: &mut BitReader<'_>) -> Result<Option<Timing>, SyntaxError> {
    crate::bits::skip_vui_prefix(r)?;
    r.flag("neutral_chroma_indication_flag")?;
    r.flag("field_seq_flag")?;
    r.flag("frame_field_info_present_flag")?;
    if r.flag("default_display_window_flag")? {
        r.ue("def_disp_win_left_offset")?;
        r.ue("def_disp_win_right_offset")?;
        r.ue("def_disp_win_top_offset")?;
        r.ue("def_disp_win_bottom_offset")?;
    }
    if !r.flag("vui_timing_info_present_flag")? {
        return Ok(None);
    }
    Ok(Some(Timing {
        num_units_in_tick: r.bits("vui_num_units_in_tick", 32)?,
        time_scale: r.bits("vui_time_scale", 32)?,
    }))
}
