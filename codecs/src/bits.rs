//! The bit level beneath every parameter-set and SEI parser: turning a NAL unit's
//! encapsulated bytes (EBSP) into its raw payload (RBSP) and back by removing or inserting
//! emulation-prevention bytes, and a bit reader with exp-Golomb codes whose errors name
//! the structure, the syntax element and the bit position at fault.

use std::borrow::Cow;
use thiserror::Error;

/// A syntax element could not be read: which structure (`"H.264 SPS"`), which element
/// (`"pic_width_in_mbs_minus1"`), and what went wrong where.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{structure}: {element}: {problem}")]
pub struct SyntaxError {
    /// The structure being parsed, e.g. `"H.265 SPS"`.
    pub structure: &'static str,
    /// The syntax element being read, named as in the ITU-T specification.
    pub element: &'static str,
    /// What was wrong with it.
    pub problem: Problem,
}

/// What was wrong with a syntax element; positions count bits from the start of the RBSP.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Problem {
    /// The data ended before the element did.
    #[error("data ends at bit {bit}")]
    Truncated {
        /// Bit offset where the read started.
        bit: usize,
    },
    /// An exp-Golomb code had more than 31 leading zeros, so its value does not fit in 32
    /// bits; no conforming stream does this.
    #[error("exp-Golomb value overflows at bit {bit}")]
    ExpGolombOverflow {
        /// Bit offset where the code started.
        bit: usize,
    },
    /// The value was read but is outside the range the specification allows.
    #[error("value {value} is out of range (at most {max})")]
    OutOfRange {
        /// The value read.
        value: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A value that must be zero was not.
    #[error("must be zero")]
    NotZero,
    /// The NAL unit handed to the parser is of another type.
    #[error("NAL unit type is {found}, expected {expected}")]
    WrongNalType {
        /// The type in the NAL header.
        found: u8,
        /// The type this parser reads.
        expected: u8,
    },
    /// Frame cropping or a conformance window removes more than the whole picture.
    #[error("cropping {crop} samples from {size} leaves no picture")]
    CropExceedsPicture {
        /// Samples to remove along the axis.
        crop: u64,
        /// Coded samples along the axis.
        size: u64,
    },
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`), borrowing when there are
/// none, which is the common case for parameter sets.
pub fn rbsp(ebsp: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = find_emulation_prevention(ebsp, 0) else {
        return Cow::Borrowed(ebsp);
    };
    let mut out = Vec::with_capacity(ebsp.len());
    let mut copied = 0;
    let mut at = Some(first);
    while let Some(three) = at {
        out.extend_from_slice(ebsp.get(copied..three).unwrap_or_default());
        copied = three + 1;
        at = find_emulation_prevention(ebsp, copied);
    }
    out.extend_from_slice(ebsp.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Offset of the next emulation-prevention `03` at or after `from`: a `03` preceded by
/// two zeros that are not themselves after an earlier `03` removed at `from - 1`.
fn find_emulation_prevention(ebsp: &[u8], from: usize) -> Option<usize> {
    let mut zeros = 0;
    for (i, &b) in ebsp.get(from..)?.iter().enumerate() {
        if zeros >= 2 && b == 3 {
            return Some(from + i);
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    None
}

/// The length `rbsp` will have once emulation-prevention bytes are inserted, so writers
/// can allocate exactly once.
pub fn ebsp_len(rbsp: &[u8]) -> usize {
    let mut zeros = 0;
    let mut len = rbsp.len();
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            len += 1;
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    len
}

/// Appends `rbsp` to `out` with an emulation-prevention `03` wherever two zero bytes are
/// followed by a byte `<= 03`, so no start code can appear inside a NAL unit. The byte
/// before `rbsp` (the NAL header) must be non-zero, which every NAL header is.
pub fn write_ebsp(rbsp: &[u8], out: &mut impl Extend<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.extend([3]);
            zeros = 0;
        }
        out.extend([b]);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// Reads bits MSB-first from an RBSP, reporting errors against the structure it was
/// created for.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Bit offset of the next bit to read.
    pos: usize,
    /// The structure being parsed, copied into every error.
    structure: &'static str,
}

impl<'a> BitReader<'a> {
    /// A reader over `rbsp` (emulation prevention already removed) for `structure`.
    pub(crate) fn new(rbsp: &'a [u8], structure: &'static str) -> Self {
        BitReader {
            data: rbsp,
            pos: 0,
            structure,
        }
    }

    /// An error for `element` at this structure.
    pub(crate) fn error(&self, element: &'static str, problem: Problem) -> SyntaxError {
        SyntaxError {
            structure: self.structure,
            element,
            problem,
        }
    }

    fn bit(&mut self, element: &'static str, start: usize) -> Result<u32, SyntaxError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| self.error(element, Problem::Truncated { bit: start }))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    /// `u(1)`.
    pub(crate) fn flag(&mut self, element: &'static str) -> Result<bool, SyntaxError> {
        let start = self.pos;
        Ok(self.bit(element, start)? == 1)
    }

    /// `u(n)` for `n <= 32`.
    pub(crate) fn bits(&mut self, element: &'static str, n: u32) -> Result<u32, SyntaxError> {
        debug_assert!(n <= 32, "u(n) is at most 32 bits in H.264 and H.265");
        let start = self.pos;
        if self.data.len() * 8 < self.pos + n as usize {
            return Err(self.error(element, Problem::Truncated { bit: start }));
        }
        let mut value: u64 = 0;
        for _ in 0..n {
            value = (value << 1) | u64::from(self.bit(element, start)?);
        }
        // n <= 32, so the value fits.
        Ok(value as u32)
    }

    /// Skips `n` bits (reserved or uninteresting fields).
    pub(crate) fn skip(&mut self, element: &'static str, n: usize) -> Result<(), SyntaxError> {
        let end = self.pos.saturating_add(n);
        if end > self.data.len() * 8 {
            return Err(self.error(element, Problem::Truncated { bit: self.pos }));
        }
        self.pos = end;
        Ok(())
    }

    /// `ue(v)`: unsigned exp-Golomb, up to `2^32 - 2`.
    pub(crate) fn ue(&mut self, element: &'static str) -> Result<u32, SyntaxError> {
        let start = self.pos;
        let mut leading_zeros = 0;
        while self.bit(element, start)? == 0 {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(self.error(element, Problem::ExpGolombOverflow { bit: start }));
            }
        }
        let suffix = if leading_zeros == 0 {
            0
        } else {
            self.bits(element, leading_zeros)
                .map_err(|e| self.error(e.element, Problem::Truncated { bit: start }))?
        };
        let value = (1u64 << leading_zeros) - 1 + u64::from(suffix);
        u32::try_from(value)
            .map_err(|_| self.error(element, Problem::ExpGolombOverflow { bit: start }))
    }

    /// `ue(v)` that must be at most `max`.
    pub(crate) fn ue_max(&mut self, element: &'static str, max: u32) -> Result<u32, SyntaxError> {
        let value = self.ue(element)?;
        if value > max {
            return Err(self.error(
                element,
                Problem::OutOfRange {
                    value: value.into(),
                    max: max.into(),
                },
            ));
        }
        Ok(value)
    }

    /// `se(v)`: signed exp-Golomb.
    pub(crate) fn se(&mut self, element: &'static str) -> Result<i32, SyntaxError> {
        let code = i64::from(self.ue(element)?);
        let magnitude = (code + 1) / 2;
        let value = if code % 2 == 1 { magnitude } else { -magnitude };
        // |value| <= 2^31 - 1 because code <= 2^32 - 2.
        Ok(value as i32)
    }
}

/// Skips the start of `vui_parameters()` that H.264 (E.1.1) and H.265
/// (E.2.1) share — aspect ratio, overscan, video signal type and chroma
/// location — leaving the reader where the codecs' VUIs diverge.
pub(crate) fn skip_vui_prefix(r: &mut BitReader<'_>) -> Result<(), SyntaxError> {
    if r.flag("aspect_ratio_info_present_flag")? && r.bits("aspect_ratio_idc", 8)? == 255 {
        r.skip("sar_width", 16)?;
        r.skip("sar_height", 16)?;
    }
    if r.flag("overscan_info_present_flag")? {
        r.flag("overscan_appropriate_flag")?;
    }
    if r.flag("video_signal_type_present_flag")? {
        r.skip("video_format", 3)?;
        r.flag("video_full_range_flag")?;
        if r.flag("colour_description_present_flag")? {
            r.skip("colour_primaries", 8)?;
            r.skip("transfer_characteristics", 8)?;
            r.skip("matrix_coefficients", 8)?;
        }
    }
    if r.flag("chroma_loc_info_present_flag")? {
        r.ue("chroma_sample_loc_type_top_field")?;
        r.ue("chroma_sample_loc_type_bottom_field")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbsp_removes_only_emulation_prevention() {
        assert_eq!(&*rbsp(&[1, 0, 0, 3, 1, 0, 0, 3]), &[1, 0, 0, 1, 0, 0]);
        assert_eq!(&*rbsp(&[0, 0, 3, 0, 0, 3, 0]), &[0, 0, 0, 0, 0]);
        assert!(matches!(rbsp(&[0, 3, 0, 0, 2]), Cow::Borrowed(_)));
    }

    #[test]
    fn ebsp_round_trips() {
        let cases: [&[u8]; 5] = [
            &[0, 0, 0, 0, 0, 0],
            &[0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4],
            &[5, 0, 0],
            &[0, 0, 3],
            &[],
        ];
        for case in cases {
            let mut escaped = Vec::new();
            write_ebsp(case, &mut escaped);
            assert_eq!(escaped.len(), ebsp_len(case), "{case:?}");
            assert!(
                !escaped
                    .windows(3)
                    .any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2)
            );
            assert_eq!(&*rbsp(&escaped), case);
        }
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4 ; then se: 010 -> +1, 011 -> -1
        let data = [0b1010_0110, 0b0100_0010, 0b1010_0110];
        let mut r = BitReader::new(&data, "test");
        let values: Vec<u32> = (0..5).map(|_| r.ue("v").unwrap()).collect();
        assert_eq!(values, [0, 1, 2, 3, 4]);
        assert_eq!(r.se("s").unwrap(), 1);
        assert_eq!(r.se("s").unwrap(), -1);
        assert!(matches!(
            r.ue("late").unwrap_err().problem,
            Problem::Truncated { bit: 23 }
        ));
    }

    #[test]
    fn exp_golomb_overflow_is_reported_with_position() {
        let data = [0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xff];
        let mut r = BitReader::new(&data, "H.264 SPS");
        r.bits("prefix", 8).unwrap();
        let err = r.ue("pic_width_in_mbs_minus1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "H.264 SPS: pic_width_in_mbs_minus1: exp-Golomb value overflows at bit 8"
        );
    }

    #[test]
    fn largest_exp_golomb_values() {
        // 31 zeros, a one, 31 ones: 2^32 - 2.
        let mut data = vec![0u8, 0, 0, 1];
        data.extend([0xff, 0xff, 0xff, 0xfe]);
        let mut r = BitReader::new(&data, "t");
        assert_eq!(r.ue("v").unwrap(), u32::MAX - 1);
        let mut r = BitReader::new(&data, "t");
        assert_eq!(r.se("v").unwrap(), -i32::MAX);
    }
}
