//! SEI (supplemental enhancement information) NAL units: finding the RBSP of an SEI NAL
//! unit for either codec, walking the `sei_message()`s it carries (several per NAL unit,
//! with `ff`-extended payload types and sizes), and splitting a "user data unregistered"
//! payload into its UUID and data. [`crate::stamp`] builds lookout's capture stamp on top.

use crate::bits::{Problem, SyntaxError, rbsp};
use crate::{Codec, h264, h265};
use std::borrow::Cow;

/// `payloadType` of "user data unregistered": a UUID, then free-form bytes.
pub const USER_DATA_UNREGISTERED: u32 = 5;

/// One `sei_message()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeiMessage<'a> {
    /// `payloadType`.
    pub payload_type: u32,
    /// The `payloadSize` bytes of the payload.
    pub payload: &'a [u8],
}

impl<'a> SeiMessage<'a> {
    /// The UUID and data of a "user data unregistered" message, or `None` for other types
    /// or a payload shorter than a UUID.
    pub fn user_data_unregistered(&self) -> Option<(&'a [u8; 16], &'a [u8])> {
        if self.payload_type != USER_DATA_UNREGISTERED {
            return None;
        }
        let (uuid, data) = self.payload.split_first_chunk::<16>()?;
        Some((uuid, data))
    }
}

/// The RBSP of a NAL unit (header stripped, emulation prevention removed) if it is an SEI
/// NAL unit that can carry lookout's stamp: type 6 in H.264, prefix SEI (39) in H.265.
pub fn sei_rbsp(codec: Codec, nal: &[u8]) -> Option<Cow<'_, [u8]>> {
    let body = match codec {
        Codec::H264 => {
            (h264::NalType::of(nal)? == h264::NalType::SEI).then_some(())?;
            nal.get(1..)?
        }
        Codec::H265 => {
            (h265::NalHeader::parse(nal)?.nal_type == h265::NalType::PREFIX_SEI).then_some(())?;
            nal.get(2..)?
        }
    };
    Some(rbsp(body))
}

/// The messages in an SEI RBSP, in order. An item is an error when a message runs past
/// the end of the data; iteration stops after it.
pub fn sei_messages(codec: Codec, rbsp: &[u8]) -> SeiMessages<'_> {
    SeiMessages {
        rest: rbsp,
        offset: 0,
        structure: match codec {
            Codec::H264 => "H.264 SEI",
            Codec::H265 => "H.265 SEI",
        },
    }
}

/// Iterator returned by [`sei_messages`].
pub struct SeiMessages<'a> {
    /// Bytes not yet walked.
    rest: &'a [u8],
    /// Byte offset of `rest` in the RBSP, for error positions.
    offset: usize,
    /// `"H.264 SEI"` or `"H.265 SEI"`, for errors.
    structure: &'static str,
}

impl<'a> SeiMessages<'a> {
    /// Reads an `ff`-extended value (`payloadType` or `payloadSize`).
    fn extended_value(&mut self, element: &'static str) -> Result<u32, SyntaxError> {
        let mut value: u32 = 0;
        loop {
            let Some((&byte, rest)) = self.rest.split_first() else {
                return Err(self.error(element));
            };
            self.rest = rest;
            self.offset += 1;
            value = value.saturating_add(byte.into());
            if byte != 0xff {
                return Ok(value);
            }
        }
    }

    fn error(&self, element: &'static str) -> SyntaxError {
        SyntaxError {
            structure: self.structure,
            element,
            problem: Problem::Truncated {
                bit: self.offset * 8,
            },
        }
    }

    /// Whether only `rbsp_trailing_bits()` (and zero padding) remain.
    fn at_trailing_bits(&self) -> bool {
        match self.rest.split_first() {
            None => true,
            Some((&first, tail)) => first == 0x80 && tail.iter().all(|&b| b == 0),
        }
    }
}

impl<'a> Iterator for SeiMessages<'a> {
    type Item = Result<SeiMessage<'a>, SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at_trailing_bits() {
            return None;
        }
        let message = (|| {
            let payload_type = self.extended_value("payloadType")?;
            let size = self.extended_value("payloadSize")? as usize;
            if size > self.rest.len() {
                return Err(self.error("sei_payload"));
            }
            let (payload, rest) = self.rest.split_at(size);
            self.rest = rest;
            self.offset += size;
            Ok(SeiMessage {
                payload_type,
                payload,
            })
        })();
        if message.is_err() {
            self.rest = &[];
        }
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_several_messages_with_extended_type_and_size() {
        // type 1 (pic timing) size 2; type 255+5=260 size 1; type 5 size 255+1=256.
        let mut rbsp = vec![1, 2, 0xaa, 0xbb, 0xff, 5, 1, 0xcc, 5, 0xff, 1];
        rbsp.extend([0x11; 256]);
        rbsp.push(0x80);
        let messages: Vec<_> = sei_messages(Codec::H264, &rbsp)
            .map(Result::unwrap)
            .collect();
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages[0],
            SeiMessage {
                payload_type: 1,
                payload: &[0xaa, 0xbb]
            }
        );
        assert_eq!(messages[1].payload_type, 260);
        assert_eq!(messages[2].payload_type, 5);
        assert_eq!(messages[2].payload.len(), 256);
    }

    #[test]
    fn truncated_message_is_an_error_then_stops() {
        let rbsp = [5, 20, 1, 2, 3];
        let mut messages = sei_messages(Codec::H265, &rbsp);
        let err = messages.next().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "H.265 SEI: sei_payload: data ends at bit 16"
        );
        assert!(messages.next().is_none());
    }

    #[test]
    fn sei_rbsp_checks_the_nal_type() {
        assert!(sei_rbsp(Codec::H264, &[0x06, 0x05, 0x80]).is_some());
        assert!(sei_rbsp(Codec::H264, &[0x65, 0x05]).is_none());
        assert!(sei_rbsp(Codec::H265, &[0x4e, 0x01, 0x80]).is_some());
        assert!(
            sei_rbsp(Codec::H265, &[0x50, 0x01, 0x80]).is_none(),
            "suffix SEI"
        );
        assert!(sei_rbsp(Codec::H265, &[0x4e]).is_none());
    }
}
