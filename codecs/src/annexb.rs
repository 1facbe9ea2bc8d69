//! Annex-B byte streams: NAL units separated by `00 00 01` or `00 00 00 01` start codes,
//! the form cameras' RTP depacketizers and encoders hand to lookout. This module only
//! finds the boundaries; [`crate::h264`] and [`crate::h265`] interpret what is inside.
//!
//! Bytes before the first start code are ignored, trailing zero bytes of a NAL unit
//! (`trailing_zero_8bits`, the extra zero of a four-byte start code) are trimmed, and
//! empty NAL units are skipped, so every item yielded is non-empty.

use bytes::Bytes;
use std::ops::Range;

/// The Annex-B start code lookout writes: the four-byte form, which is valid before
/// every NAL unit of an access unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Where one NAL unit sits in a byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NalSpan {
    /// Offset of the first zero of the start code (including any leading zero bytes
    /// after the previous NAL unit): inserting a new NAL unit here puts it in front.
    pub(crate) prefix_start: usize,
    /// The NAL unit itself, header included, trailing zeros trimmed.
    pub(crate) nal: Range<usize>,
}

/// Iterator over the [`NalSpan`]s of a byte stream.
pub(crate) struct NalSpans<'a> {
    data: &'a [u8],
    /// Offset just past the next start code, or `None` when there is none left.
    next_payload: Option<usize>,
    /// Where the next start code's zero run begins.
    next_prefix: usize,
}

impl<'a> NalSpans<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        let first = find_start_code(data, 0);
        NalSpans {
            data,
            next_payload: first.map(|at| at + 3),
            next_prefix: first.map_or(0, |at| zero_run_start(data, 0, at)),
        }
    }
}

impl Iterator for NalSpans<'_> {
    type Item = NalSpan;

    fn next(&mut self) -> Option<NalSpan> {
        loop {
            let start = self.next_payload?;
            let prefix_start = self.next_prefix;
            let (end, next) = match find_start_code(self.data, start) {
                Some(at) => (at, Some(at + 3)),
                None => (self.data.len(), None),
            };
            let trimmed = zero_run_start(self.data, start, end);
            self.next_payload = next;
            self.next_prefix = trimmed;
            if trimmed > start {
                return Some(NalSpan {
                    prefix_start,
                    nal: start..trimmed,
                });
            }
        }
    }
}

/// The offset of the first `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let hay = data.get(from..)?;
    let mut i = 0;
    // Skip ahead by three when the third byte cannot end a start code: most bytes of a
    // slice are large, so this touches roughly a third of them.
    while let Some(window) = hay.get(i..i + 3) {
        match window {
            [0, 0, 1] => return Some(from + i),
            [_, _, b] if *b > 1 => i += 3,
            _ => i += 1,
        }
    }
    None
}

/// The start of the run of zero bytes that ends at `end`, not going below `floor`.
fn zero_run_start(data: &[u8], floor: usize, end: usize) -> usize {
    let mut at = end;
    while at > floor && data.get(at - 1) == Some(&0) {
        at -= 1;
    }
    at
}

/// The NAL units of an Annex-B byte stream, as borrowed slices (header included).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    NalSpans::new(data).filter_map(move |span| data.get(span.nal))
}

/// The NAL units of an Annex-B byte stream as zero-copy [`Bytes`] sub-slices, so they can
/// outlive the iteration (kept parameter sets, for instance) without a copy.
pub fn nal_units_bytes(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    NalSpans::new(data).map(move |span| data.slice(span.nal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8]) -> Vec<&[u8]> {
        nal_units(data).collect()
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let au = [
            0, 0, 0, 1, 0x09, 0x10, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(
            collect(&au),
            vec![&[0x09, 0x10][..], &[0x67, 0x42], &[0x65, 0x88]]
        );
    }

    #[test]
    fn trims_trailing_zeros_and_skips_empty_units() {
        let au = [
            0xff, 0, 0, 1, 0, 0, 1, 0x06, 0x05, 0, 0, 0, 0, 0, 1, 0x41, 0, 0,
        ];
        assert_eq!(collect(&au), vec![&[0x06, 0x05][..], &[0x41]]);
    }

    #[test]
    fn no_start_code_means_no_units() {
        assert!(collect(&[0x65, 0x88, 0, 0]).is_empty());
        assert!(collect(&[]).is_empty());
        assert!(collect(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn prefix_start_covers_the_zero_byte() {
        let au = [0, 0, 0, 1, 0x09, 0x10, 0, 0, 0, 1, 0x65];
        let spans: Vec<_> = NalSpans::new(&au).collect();
        assert_eq!(spans[0].prefix_start, 0);
        assert_eq!(spans[1].prefix_start, 6);
        assert_eq!(spans[1].nal, 10..11);
    }

    #[test]
    fn bytes_are_sub_slices() {
        let au = Bytes::from_static(&[0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68]);
        let units: Vec<Bytes> = nal_units_bytes(&au).collect();
        assert_eq!(
            units,
            vec![
                Bytes::from_static(&[0x67, 0x42]),
                Bytes::from_static(&[0x68])
            ]
        );
        assert_eq!(units[0].as_ptr(), au[3..].as_ptr());
    }
}
