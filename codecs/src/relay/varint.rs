//! QUIC variable-length integers (RFC 9000 §16), the integer encoding of every length,
//! count, code and message type in the relay protocol. The two high bits of the first
//! byte give the encoded length (1, 2, 4 or 8 bytes); the remaining 6, 14, 30 or 62 bits
//! hold the value, big-endian. Encoders here always use the shortest form; decoders
//! accept longer forms too, as RFC 9000 allows.

use bytes::BufMut;
use thiserror::Error;

/// The largest value a varint holds: 2^62 − 1.
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// A value above [`VARINT_MAX`] was given to the encoder.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("{0} does not fit a QUIC varint (at most 2^62 - 1)")]
pub struct VarintRangeError(pub u64);

/// The number of bytes the shortest encoding of `value` takes, or `None` above
/// [`VARINT_MAX`].
pub const fn varint_len(value: u64) -> Option<usize> {
    if value < 1 << 6 {
        Some(1)
    } else if value < 1 << 14 {
        Some(2)
    } else if value < 1 << 30 {
        Some(4)
    } else if value <= VARINT_MAX {
        Some(8)
    } else {
        None
    }
}

/// The encoded length announced by a varint's first byte: 1, 2, 4 or 8.
pub const fn varint_len_from_first_byte(first: u8) -> usize {
    1 << (first >> 6)
}

/// Appends the shortest encoding of `value` to `out`; returns the bytes written.
pub fn encode_varint(value: u64, out: &mut impl BufMut) -> Result<usize, VarintRangeError> {
    match varint_len(value) {
        Some(1) => out.put_u8(value as u8),
        Some(2) => out.put_u16(0x4000 | value as u16),
        Some(4) => out.put_u32(0x8000_0000 | value as u32),
        Some(_) => out.put_u64(0xc000_0000_0000_0000 | value),
        None => return Err(VarintRangeError(value)),
    }
    varint_len(value).ok_or(VarintRangeError(value))
}

/// Reads a varint from the start of `input`: the value and the bytes it took, or `None`
/// when `input` ends before the varint does (more bytes are needed).
pub fn decode_varint(input: &[u8]) -> Option<(u64, usize)> {
    let first = *input.first()?;
    let len = varint_len_from_first_byte(first);
    let bytes = input.get(..len)?;
    let value = bytes
        .iter()
        .skip(1)
        .fold(u64::from(first & 0x3f), |acc, &b| acc << 8 | u64::from(b));
    Some((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encode_varint(value, &mut out).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn rfc9000_appendix_a_examples() {
        // RFC 9000, appendix A.1.
        assert_eq!(
            decode_varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(
            decode_varint(&[0x9d, 0x7f, 0x3e, 0x7d]),
            Some((494_878_333, 4))
        );
        assert_eq!(decode_varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(decode_varint(&[0x25]), Some((37, 1)));
        // The same value in a longer form than needed is still 37.
        assert_eq!(decode_varint(&[0x40, 0x25]), Some((37, 2)));

        assert_eq!(
            encoded(151_288_809_941_952_652),
            [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
        );
        assert_eq!(encoded(494_878_333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(encoded(15_293), [0x7b, 0xbd]);
        assert_eq!(encoded(37), [0x25]);
    }

    #[test]
    fn boundaries() {
        for (value, len) in [
            (0, 1),
            (63, 1),
            (64, 2),
            (16_383, 2),
            (16_384, 4),
            ((1 << 30) - 1, 4),
            (1 << 30, 8),
            (VARINT_MAX, 8),
        ] {
            let bytes = encoded(value);
            assert_eq!(bytes.len(), len, "{value}");
            assert_eq!(varint_len(value), Some(len));
            assert_eq!(varint_len_from_first_byte(bytes[0]), len);
            assert_eq!(decode_varint(&bytes), Some((value, len)));
        }
        assert_eq!(varint_len(VARINT_MAX + 1), None);
        let mut out = Vec::new();
        assert_eq!(
            encode_varint(u64::MAX, &mut out),
            Err(VarintRangeError(u64::MAX))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn incomplete_input_needs_more() {
        assert_eq!(decode_varint(&[]), None);
        let bytes = encoded(VARINT_MAX);
        for end in 0..bytes.len() {
            assert_eq!(decode_varint(&bytes[..end]), None, "{end} bytes");
        }
        // Bytes after the varint are not its business.
        assert_eq!(decode_varint(&[0x25, 0xff]), Some((37, 1)));
    }
}
