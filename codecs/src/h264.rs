//! H.264 / AVC specifics: the one-byte NAL header, which NAL unit types lookout cares
//! about, and the sequence parameter set (profile, level, chroma format, cropped picture
//! size, VUI frame rate). Used by [`crate::access_unit::inspect`] and [`crate::stamp`].
//!
//! Keyframes are IDR pictures only (NAL type 5). A non-IDR I slice with a recovery-point
//! SEI can also start decoding, but a decoder sampled there may show artefacts until the
//! recovery point, so lookout does not treat it as a keyframe.

use crate::access_unit::FrameRate;
use crate::bits::{BitReader, Problem, SyntaxError, rbsp};

/// `nal_unit_type`, the low five bits of the NAL header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NalType(pub u8);

impl NalType {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: NalType = NalType(1);
    /// Coded slice of an IDR picture: a keyframe.
    pub const IDR_SLICE: NalType = NalType(5);
    /// Supplemental enhancement information (where lookout's capture stamp lives).
    pub const SEI: NalType = NalType(6);
    /// Sequence parameter set.
    pub const SPS: NalType = NalType(7);
    /// Picture parameter set.
    pub const PPS: NalType = NalType(8);
    /// Access unit delimiter.
    pub const AUD: NalType = NalType(9);
    /// Prefix NAL unit (SVC/MVC); belongs to the slice that follows it.
    pub const PREFIX: NalType = NalType(14);
    /// Coded slice extension (SVC/MVC).
    pub const SLICE_EXTENSION: NalType = NalType(20);
    /// Coded slice extension for a depth view (3D-AVC).
    pub const SLICE_EXTENSION_DEPTH: NalType = NalType(21);

    /// The type of a NAL unit (header included), or `None` when it is empty or its
    /// `forbidden_zero_bit` is set, i.e. it is corrupt.
    pub fn of(nal: &[u8]) -> Option<NalType> {
        let header = *nal.first()?;
        (header & 0x80 == 0).then_some(NalType(header & 0x1f))
    }

    /// Whether this is a coded slice of the primary picture (types 1 to 5).
    pub fn is_vcl(self) -> bool {
        (1..=5).contains(&self.0)
    }

    /// Whether NAL units of this type belong to the picture data, so SEI and parameter
    /// sets must come before them: slices, slice extensions and the prefix NAL unit.
    pub(crate) fn is_picture_data(self) -> bool {
        self.is_vcl()
            || matches!(
                self,
                Self::PREFIX | Self::SLICE_EXTENSION | Self::SLICE_EXTENSION_DEPTH
            )
    }
}

/// VUI timing information: one frame lasts `2 * num_units_in_tick / time_scale` seconds
/// (H.264 counts in fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `num_units_in_tick`.
    pub num_units_in_tick: u32,
    /// `time_scale`, in Hz.
    pub time_scale: u32,
    /// `fixed_frame_rate_flag`: the rate is constant, not just a maximum.
    pub fixed_frame_rate: bool,
}

/// The fields of an H.264 sequence parameter set that lookout uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc`: 66 Baseline, 77 Main, 100 High, ...
    pub profile_idc: u8,
    /// The `constraint_set0..5_flag` byte.
    pub constraint_flags: u8,
    /// `level_idc`: ten times the level number (40 for level 4.0).
    pub level_idc: u8,
    /// `seq_parameter_set_id`.
    pub seq_parameter_set_id: u32,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    /// `separate_colour_plane_flag` (4:4:4 coded as three monochrome planes).
    pub separate_colour_plane: bool,
    /// `frame_mbs_only_flag`: false for interlaced (field or MBAFF) coding.
    pub frame_mbs_only: bool,
    /// Displayed width in luma samples, after frame cropping.
    pub width: u32,
    /// Displayed height in luma samples, after frame cropping.
    pub height: u32,
    /// VUI timing information, when the encoder sent it.
    pub timing: Option<Timing>,
}

const STRUCTURE: &str = "H.264 SPS";

impl Sps {
    /// Parses an SPS NAL unit (header included, emulation prevention still in place).
    pub fn parse(nal: &[u8]) -> Result<Sps, SyntaxError> {
        let payload = rbsp(nal);
        let mut r = BitReader::new(&payload, STRUCTURE);
        if r.flag("forbidden_zero_bit")? {
            return Err(r.error("forbidden_zero_bit", Problem::NotZero));
        }
        r.skip("nal_ref_idc", 2)?;
        let nal_type = r.bits("nal_unit_type", 5)? as u8;
        if nal_type != NalType::SPS.0 {
            return Err(r.error(
                "nal_unit_type",
                Problem::WrongNalType {
                    found: nal_type,
                    expected: NalType::SPS.0,
                },
            ));
        }
        let profile_idc = r.bits("profile_idc", 8)? as u8;
        let constraint_flags = r.bits("constraint_set_flags", 8)? as u8;
        let level_idc = r.bits("level_idc", 8)? as u8;
        let seq_parameter_set_id = r.ue_max("seq_parameter_set_id", 31)?;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format_idc = r.ue_max("chroma_format_idc", 3)? as u8;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.flag("separate_colour_plane_flag")?;
            }
            r.ue_max("bit_depth_luma_minus8", 6)?;
            r.ue_max("bit_depth_chroma_minus8", 6)?;
            r.flag("qpprime_y_zero_transform_bypass_flag")?;
            if r.flag("seq_scaling_matrix_present_flag")? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.flag("seq_scaling_list_present_flag")? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }

        r.ue_max("log2_max_frame_num_minus4", 12)?;
        match r.ue_max("pic_order_cnt_type", 2)? {
            0 => {
                r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)?;
            }
            1 => {
                r.flag("delta_pic_order_always_zero_flag")?;
                r.se("offset_for_non_ref_pic")?;
                r.se("offset_for_top_to_bottom_field")?;
                let cycle = r.ue_max("num_ref_frames_in_pic_order_cnt_cycle", 255)?;
                for _ in 0..cycle {
                    r.se("offset_for_ref_frame")?;
                }
            }
            _ => {}
        }
        r.ue("max_num_ref_frames")?;
        r.flag("gaps_in_frame_num_value_allowed_flag")?;
        let width_mbs = u64::from(r.ue("pic_width_in_mbs_minus1")?) + 1;
        let height_map_units = u64::from(r.ue("pic_height_in_map_units_minus1")?) + 1;
        let frame_mbs_only = r.flag("frame_mbs_only_flag")?;
        if !frame_mbs_only {
            r.flag("mb_adaptive_frame_field_flag")?;
        }
        r.flag("direct_8x8_inference_flag")?;
        let mut crop = [0u64; 4];
        if r.flag("frame_cropping_flag")? {
            for (offset, element) in crop.iter_mut().zip([
                "frame_crop_left_offset",
                "frame_crop_right_offset",
                "frame_crop_top_offset",
                "frame_crop_bottom_offset",
            ]) {
                *offset = r.ue(element)?.into();
            }
        }

        // Table 6-1 and equations 7-19..7-22: cropping counts in chroma samples, and in
        // field rows for interlaced coding.
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
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let width = cropped(
            &r,
            "frame_crop_right_offset",
            width_mbs * 16,
            sub_width * (crop[0] + crop[1]),
        )?;
        let height = cropped(
            &r,
            "frame_crop_bottom_offset",
            field_factor * height_map_units * 16,
            sub_height * field_factor * (crop[2] + crop[3]),
        )?;

        let timing = if r.flag("vui_parameters_present_flag")? {
            read_vui_timing(&mut r)?
        } else {
            None
        };

        Ok(Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            seq_parameter_set_id,
            chroma_format_idc,
            separate_colour_plane,
            frame_mbs_only,
            width,
            height,
            timing,
        })
    }

    /// Frames per second from the VUI timing information: `time_scale / (2 *
    /// num_units_in_tick)`, when both are present and non-zero.
    pub fn frame_rate(&self) -> Option<FrameRate> {
        let t = self.timing?;
        FrameRate::new(t.time_scale.into(), 2 * u64::from(t.num_units_in_tick))
    }
}

/// `size - crop`, as a picture dimension that must stay positive and fit in `u32`.
pub(crate) fn cropped(
    r: &BitReader<'_>,
    element: &'static str,
    size: u64,
    crop: u64,
) -> Result<u32, SyntaxError> {
    size.checked_sub(crop)
        .filter(|&left| left > 0)
        .and_then(|left| u32::try_from(left).ok())
        .ok_or_else(|| r.error(element, Problem::CropExceedsPicture { crop, size }))
}

/// Skips one `scaling_list()` (7.3.2.1.1.1). Only the bits matter here; lookout never
/// dequantises.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), SyntaxError> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = i64::from(r.se("delta_scale")?);
            if !(-128..=127).contains(&delta) {
                return Err(r.error(
                    "delta_scale",
                    Problem::OutOfRange {
                        value: delta.unsigned_abs(),
                        max: 128,
                    },
                ));
            }
            next_scale = (last_scale + delta).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Reads `vui_parameters()` (E.1.1) as far as `timing_info`.
fn read_vui_timing(r: &mut BitReader<'_>) -> Result<Option<Timing>, SyntaxError> {
    crate::bits::skip_vui_prefix(r)?;
    if !r.flag("timing_info_present_flag")? {
        return Ok(None);
    }
    Ok(Some(Timing {
        num_units_in_tick: r.bits("num_units_in_tick", 32)?,
        time_scale: r.bits("time_scale", 32)?,
        fixed_frame_rate: r.flag("fixed_frame_rate_flag")?,
    }))
}
