//! A GB/T 28181 stream's media: PS over RTP, on a UDP port lookout opens or over a TCP
//! connection the device makes to a port lookout listens on (TCP passive, RFC 4571:
//! each RTP packet behind a 16-bit length). [`Receiver`] puts the packets back in
//! sequence order (duplicates and late packets dropped, a short reordering window,
//! gaps counted), feeds the payloads to the PS demuxer (`lookout_codecs::ps`; the RTP
//! marker ends a frame) and hands each frame to the camera's [`UnitBuilder`], the same
//! path as RTSP and RTMP. Capture time is the stream's: lookout's SEI stamp when the
//! frame carries one, else the PS time stamp (or the RTP one) anchored to the first
//! frame's arrival.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use lookout_codecs::ps::{Limits, PsDemuxer, PsError};

use crate::ingest::UnitBuilder;
use crate::ingest::{Camera, Codec, TimestampSource};
use lookout_core::clock::unix_now_ns;

/// Packets held while waiting for a missing one, at most: past this the gap is
/// given up (counted lost) and the stream goes on.
const REORDER_WINDOW: usize = 16;

/// One RTP packet's header fields lookout uses, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Sequence number.
    pub seq: u16,
    /// Media time stamp (90 kHz for PS).
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// End of a frame.
    pub marker: bool,
    /// What the packet carries (padding removed).
    pub payload: Bytes,
}

/// Why a datagram is not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than its own header says.
    #[error("RTP packet of {0} bytes is truncated")]
    Truncated(usize),
    /// Not RTP version 2.
    #[error("not RTP version 2")]
    Version,
}

/// Reads an RTP packet (RFC 3550 §5.1): CSRCs, a header extension and padding are
/// skipped.
pub fn parse(packet: &Bytes) -> Result<RtpPacket, RtpError> {
    let len = packet.len();
    if len < 12 {
        return Err(RtpError::Truncated(len));
    }
    if packet[0] >> 6 != 2 {
        return Err(RtpError::Version);
    }
    let padding = packet[0] & 0x20 != 0;
    let extension = packet[0] & 0x10 != 0;
    let csrcs = usize::from(packet[0] & 0x0f);
    let mut at = 12 + 4 * csrcs;
    if extension {
        let words = packet
            .get(at + 2..at + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(RtpError::Truncated(len))?;
        at += 4 + 4 * words;
    }
    let mut end = len;
    if padding {
        let pad = usize::from(packet[len - 1]);
        end = len.checked_sub(pad).ok_or(RtpError::Truncated(len))?;
    }
    if at > end {
        return Err(RtpError::Truncated(len));
    }
    Ok(RtpPacket {
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        marker: packet[1] & 0x80 != 0,
        payload: packet.slice(at..end),
    })
}

/// Counters of one stream, for the camera's status and the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtpStats {
    /// Packets taken in order.
    pub packets: u64,
    /// Packets that never came (gaps given up).
    pub lost: u64,
    /// Duplicates and packets that came after their place was given up.
    pub late: u64,
    /// Packets of another SSRC than the stream's.
    pub foreign: u64,
    /// Datagrams that are not RTP.
    pub malformed: u64,
}

/// Puts packets back in sequence order.
#[derive(Debug, Default)]
pub struct Reorder {
    expected: Option<u16>,
    held: BTreeMap<u16, RtpPacket>,
}

impl Reorder {
    /// Takes `p`; returns the packets now in order (perhaps none, perhaps several).
    pub fn push(&mut self, p: RtpPacket, stats: &mut RtpStats) -> Vec<RtpPacket> {
        let mut out = Vec::new();
        let expected = *self.expected.get_or_insert(p.seq);
        let ahead = p.seq.wrapping_sub(expected) as i16;
        if ahead < 0 || self.held.contains_key(&p.seq) {
            stats.late += 1;
            return out;
        }
        self.held.insert(p.seq, p);
        if self.held.len() > REORDER_WINDOW {
            // The missing packets are not coming: skip to the oldest held one.
            if let Some(first) = self
                .held
                .keys()
                .min_by_key(|s| s.wrapping_sub(expected))
                .copied()
            {
                stats.lost += u64::from(first.wrapping_sub(expected));
                self.expected = Some(first);
            }
        }
        while let Some(e) = self.expected {
            let Some(p) = self.held.remove(&e) else { break };
            self.expected = Some(e.wrapping_add(1));
            stats.packets += 1;
            out.push(p);
        }
        out
    }
}

/// One stream's receiving side: RTP in, the camera's access units out.
pub struct Receiver {
    camera: Arc<Camera>,
    units: UnitBuilder,
    demux: PsDemuxer,
    reorder: Reorder,
    /// The stream's SSRC: the first one seen.
    ssrc: Option<u32>,
    codec: Option<Codec>,
    /// Unix ns at stream time 0: the first frame's arrival minus its time stamp.
    anchor_unix_ns: Option<u64>,
    /// The last packet's RTP time stamp, for frames without a PS time stamp.
    last_rtp_ts: u32,
    /// Counters.
    pub stats: RtpStats,
    problem_logged: bool,
}

impl Receiver {
    /// Units of `camera`'s session number `session`.
    pub fn new(camera: Arc<Camera>, session: u32) -> Receiver {
        Receiver {
            units: UnitBuilder::new(camera.clone(), session),
            camera,
            demux: PsDemuxer::new(Limits::default()),
            reorder: Reorder::default(),
            ssrc: None,
            codec: None,
            anchor_unix_ns: None,
            last_rtp_ts: 0,
            stats: RtpStats::default(),
            problem_logged: false,
        }
    }

    /// One datagram (or one RFC 4571 frame's packet).
    pub fn packet(&mut self, datagram: Bytes) {
        let p = match parse(&datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                return self.problem(&e.to_string());
            }
        };
        if *self.ssrc.get_or_insert(p.ssrc) != p.ssrc {
            self.stats.foreign += 1;
            return;
        }
        for p in self.reorder.push(p, &mut self.stats) {
            self.last_rtp_ts = p.timestamp;
            self.demux.push(&p.payload);
            if p.marker {
                self.demux.flush();
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        while let Some(r) = self.demux.next() {
            match r {
                Ok(frame) => {
                    let received = unix_now_ns();
                    if self.codec != Some(frame.codec) {
                        self.codec = Some(frame.codec);
                        self.units.set_codec(frame.codec);
                        self.camera.health.set_codec(frame.codec);
                    }
                    let ts_90k = frame.pts_90k.unwrap_or(u64::from(self.last_rtp_ts));
                    let ts_ns = ts_90k * 100_000 / 9;
                    let anchor = *self
                        .anchor_unix_ns
                        .get_or_insert_with(|| received.saturating_sub(ts_ns));
                    self.units.push(
                        frame.data,
                        Some(Duration::from_nanos(ts_ns)),
                        Some((anchor + ts_ns, TimestampSource::StreamClock)),
                        received,
                    );
                }
                // Skipped bytes are what lost packets leave behind; counted there.
                Err(PsError::Resync(_)) => {}
                Err(e) => {
                    self.camera.health.malformed_nals.fetch_add(1, Relaxed);
                    self.problem(&e.to_string());
                }
            }
        }
    }

    fn problem(&mut self, why: &str) {
        if !self.problem_logged {
            self.problem_logged = true;
            tracing::warn!(camera = %self.camera.id, stage = "gb28181", "unreadable media skipped: {why} (logged once per stream)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, marker: bool, payload: &[u8]) -> Bytes {
        let mut b = vec![0x80, if marker { 0xe0 } else { 0x60 }];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&3600u32.to_be_bytes());
        b.extend_from_slice(&0x0100_0001u32.to_be_bytes());
        b.extend_from_slice(payload);
        Bytes::from(b)
    }

    #[test]
    fn headers_are_read_and_garbage_refused() {
        let p = parse(&rtp(7, true, b"ps")).expect("rtp");
        assert_eq!((p.seq, p.marker, p.ssrc), (7, true, 0x0100_0001));
        assert_eq!(&p.payload[..], b"ps");
        assert_eq!(
            parse(&Bytes::from_static(b"short")),
            Err(RtpError::Truncated(5))
        );
        let mut v1 = rtp(1, false, b"x").to_vec();
        v1[0] = 0x40;
        assert_eq!(parse(&Bytes::from(v1)), Err(RtpError::Version));
        // Padding longer than the packet.
        let mut pad = rtp(1, false, b"x").to_vec();
        pad[0] |= 0x20;
        *pad.last_mut().expect("byte") = 200;
        assert!(parse(&Bytes::from(pad)).is_err());
    }

    #[test]
    fn packets_come_out_in_order_duplicates_and_gaps_counted() {
        let mut r = Reorder::default();
        let mut s = RtpStats::default();
        let p = |seq| parse(&rtp(seq, false, b"")).expect("rtp");
        let seqs = |v: Vec<RtpPacket>| v.iter().map(|p| p.seq).collect::<Vec<_>>();
        assert_eq!(seqs(r.push(p(65534), &mut s)), [65534]);
        // Out of order across the wrap.
        assert!(r.push(p(0), &mut s).is_empty());
        assert_eq!(seqs(r.push(p(65535), &mut s)), [65535, 0]);
        // A duplicate and a late one.
        assert!(r.push(p(0), &mut s).is_empty());
        assert!(r.push(p(65530), &mut s).is_empty());
        assert_eq!(s.late, 2);
        // A packet that never comes: given up once the window is full.
        let mut got = Vec::new();
        for seq in 2..2 + REORDER_WINDOW as u16 + 1 {
            got.extend(seqs(r.push(p(seq), &mut s)));
        }
        assert_eq!(s.lost, 1);
        assert_eq!(got.first(), Some(&2));
        assert_eq!(got.len(), REORDER_WINDOW + 1);
    }
}
