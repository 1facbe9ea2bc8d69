//! Spots access units and NAL units a camera cut short, from the RTP packets
//! alone (RFC 6184 for H.264, RFC 7798 for H.265), before the depayloader
//! glues whatever arrived into something that looks whole.
//!
//! Past the depayloader a truncated slice is just a shorter slice: nothing
//! short of decoding it tells the difference. On the wire it shows: a
//! fragmentation unit that starts and never ends (the camera, or the
//! network, dropped its tail), or a new picture's timestamp after a packet
//! that did not carry the marker bit that closes a picture. `pipeline.rs`
//! feeds every RTP packet's first bytes here from a pad probe on the
//! depayloader's sink; what is found is counted with the camera's malformed
//! NAL units. Pure and allocation-free: a few bytes in, a verdict out.

use lookout_core::unit::Codec;

/// What one packet revealed about the packets before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// A fragmented NAL unit never got its end fragment.
    NalUnit,
    /// A picture ended without its marker packet.
    AccessUnit,
}

/// The state of one RTP stream, per connection.
#[derive(Debug)]
pub(crate) struct TruncationCheck {
    codec: Codec,
    /// A fragmentation unit started and has not ended.
    fragment_open: bool,
    /// Timestamp and marker bit of the previous packet.
    last: Option<(u32, bool)>,
    /// Only cameras that set the marker bit at all are held to it (a few
    /// never do, and every picture of theirs would look cut).
    marker_seen: bool,
}

impl TruncationCheck {
    pub fn new(codec: Codec) -> TruncationCheck {
        TruncationCheck {
            codec,
            fragment_open: false,
            last: None,
            marker_seen: false,
        }
    }

    /// One RTP packet (its first bytes are enough: the fixed header, CSRCs,
    /// the extension header and two payload bytes). Packets that are not
    /// RTP version 2 are ignored: the depayloader drops them too.
    pub fn packet(&mut self, rtp: &[u8]) -> Option<Cut> {
        let (marker, timestamp, payload) = parse(rtp)?;
        // (is a fragment, starts, ends)
        let fragment = match self.codec {
            Codec::H264 => match payload.first().map(|b| b & 0x1f) {
                Some(28) => payload.get(1).map(|h| (h & 0x80 != 0, h & 0x40 != 0)),
                _ => None,
            },
            Codec::H265 => match payload.first().map(|b| (b >> 1) & 0x3f) {
                Some(49) => payload.get(2).map(|h| (h & 0x80 != 0, h & 0x40 != 0)),
                _ => None,
            },
        };
        let mut cut = None;
        let continues = matches!(fragment, Some((false, _)));
        if self.fragment_open && !continues {
            cut = Some(Cut::NalUnit);
        }
        if let Some((last_ts, last_marker)) = self.last
            && last_ts != timestamp
            && !last_marker
            && self.marker_seen
        {
            cut.get_or_insert(Cut::AccessUnit);
        }
        self.fragment_open = match fragment {
            Some((_, ends)) => !ends,
            None => false,
        };
        self.marker_seen |= marker;
        self.last = Some((timestamp, marker));
        cut
    }
}

/// Marker bit, timestamp and payload of an RTP packet; `None` if it is not
/// RTP version 2 or its header runs past its end.
fn parse(rtp: &[u8]) -> Option<(bool, u32, &[u8])> {
    let b0 = *rtp.first()?;
    if b0 >> 6 != 2 {
        return None;
    }
    let marker = rtp.get(1)? & 0x80 != 0;
    let timestamp = u32::from_be_bytes(rtp.get(4..8)?.try_into().ok()?);
    let mut at = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = u16::from_be_bytes(rtp.get(at + 2..at + 4)?.try_into().ok()?);
        at += 4 + 4 * usize::from(words);
    }
    Some((marker, timestamp, rtp.get(at..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn whole_pictures_pass() {
        let mut c = TruncationCheck::new(Codec::H264);
        for frame in 0..5u32 {
            let ts = frame * 3600;
            assert_eq!(c.packet(&packet(ts, false, &[0x67, 1])), None);
            assert_eq!(c.packet(&packet(ts, false, &[0x7c, 0x85, 9])), None);
            assert_eq!(c.packet(&packet(ts, false, &[0x7c, 0x05, 9])), None);
            assert_eq!(c.packet(&packet(ts, true, &[0x7c, 0x45, 9])), None);
        }
    }

    #[test]
    fn a_fragment_without_its_end_is_a_cut_nal_unit() {
        let mut c = TruncationCheck::new(Codec::H264);
        assert_eq!(c.packet(&packet(0, false, &[0x7c, 0x85, 9])), None);
        assert_eq!(c.packet(&packet(0, false, &[0x7c, 0x05, 9])), None);
        // The next slice starts while the fragmented one is open.
        assert_eq!(
            c.packet(&packet(0, true, &[0x41, 9])),
            Some(Cut::NalUnit),
            "single NAL unit after an open fragment"
        );
        assert_eq!(c.packet(&packet(3600, false, &[0x7c, 0x81, 9])), None);
        assert_eq!(
            c.packet(&packet(3600, false, &[0x7c, 0x81, 9])),
            Some(Cut::NalUnit),
            "a second start"
        );
    }

    #[test]
    fn a_picture_without_its_marker_is_cut_once_markers_were_seen() {
        let mut c = TruncationCheck::new(Codec::H264);
        // A camera that never sets the marker bit is not blamed.
        assert_eq!(c.packet(&packet(0, false, &[0x41, 9])), None);
        assert_eq!(c.packet(&packet(3600, false, &[0x41, 9])), None);
        assert_eq!(c.packet(&packet(7200, true, &[0x41, 9])), None);
        assert_eq!(c.packet(&packet(10800, false, &[0x41, 9])), None);
        assert_eq!(
            c.packet(&packet(14400, true, &[0x41, 9])),
            Some(Cut::AccessUnit)
        );
    }

    #[test]
    fn h265_fragmentation_units() {
        let mut c = TruncationCheck::new(Codec::H265);
        // FU (type 49): PayloadHdr 0x62 0x01, FU header S=1 type 1.
        assert_eq!(c.packet(&packet(0, false, &[0x62, 0x01, 0x81, 9])), None);
        assert_eq!(
            c.packet(&packet(0, true, &[0x02, 0x01, 9])),
            Some(Cut::NalUnit)
        );
        assert_eq!(c.packet(&packet(3600, false, &[0x62, 0x01, 0x81, 9])), None);
        assert_eq!(c.packet(&packet(3600, true, &[0x62, 0x01, 0x41, 9])), None);
    }

    #[test]
    fn garbage_is_ignored_and_never_panics() {
        let mut c = TruncationCheck::new(Codec::H264);
        assert_eq!(c.packet(&[]), None);
        assert_eq!(c.packet(&[0x00; 20]), None);
        assert_eq!(c.packet(&[0x9f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        // Extension header claiming more than the packet holds.
        let mut p = packet(0, false, &[]);
        p[0] |= 0x10;
        p.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
        assert_eq!(c.packet(&p), None);
        let mut state = 0x1234_5678u32;
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = c.packet(&bytes);
        }
    }
}
