//! MPEG-2 Program Stream (ISO/IEC 13818-1 §2.5), as GB/T 28181 devices send video over
//! RTP: pack headers, an optional system header, the program stream map (PSM) that names
//! each elementary stream's type, and PES packets. [`PsDemuxer`] takes the stream in
//! whatever pieces the RTP packets cut it into and gives back whole video access units
//! (H.264 for stream type 0x1B, H.265 for 0x24) with their PTS.
//!
//! Frames are cut where the video itself says a new picture begins (an access unit
//! delimiter, parameter sets or SEI after a picture's slices, or a slice that is the
//! first of its picture), not where packs or PES packets begin: devices put one frame
//! in one pack, but muxers such as ffmpeg's fill fixed-size packs and start the next
//! frame in the middle of a PES packet. A PTS belongs to the first frame that starts in
//! its PES packet (ISO/IEC 13818-1 §2.4.3.7).
//!
//! What real devices do is allowed for: a frame split over many PES packets (only the
//! first with a PTS), packs split anywhere across RTP packets, no PSM at all (the codec
//! is then guessed from the NAL units), audio and private streams interleaved (skipped),
//! stuffing, and garbage between packs (skipped up to the next start code, counted).
//! Everything is bounded: a frame larger than [`Limits::max_frame`] or input buffered
//! past [`Limits::max_buffered`] is dropped and reported, never held.

use bytes::{Buf, Bytes, BytesMut};

use crate::Codec;

/// Stream type of H.264 video in a PSM (ISO/IEC 13818-1 Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// Stream type of H.265 video in a PSM.
pub const STREAM_TYPE_H265: u8 = 0x24;

const PACK: u8 = 0xba;
const SYSTEM_HEADER: u8 = 0xbb;
const PSM: u8 = 0xbc;
const PROGRAM_END: u8 = 0xb9;

/// How much a demuxer holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one video frame (its PES payloads together).
    pub max_frame: usize,
    /// Bytes of input waiting for the rest of a packet.
    pub max_buffered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A 4K keyframe at a high bitrate stays under this.
            max_frame: 4 * 1024 * 1024,
            // One PES packet is at most 64 KiB + 6; a pack header and a PSM are small.
            max_buffered: 256 * 1024,
        }
    }
}

/// One video access unit out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsFrame {
    /// From the PSM's stream type, else guessed from the NAL units.
    pub codec: Codec,
    /// The elementary stream's bytes: Annex-B NAL units as the device wrote them.
    pub data: Bytes,
    /// The first PES packet's PTS, 90 kHz; `None` when the device sent none.
    pub pts_90k: Option<u64>,
}

/// Something in the stream that was not usable; the demuxer skipped it and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsError {
    /// Bytes that are not a start code where one belongs (garbage, or a lost RTP packet
    /// in the middle of a packet): skipped to the next start code.
    #[error("{0} bytes skipped to the next start code")]
    Resync(usize),
    /// A frame grew past the limit: dropped.
    #[error("a video frame larger than {limit} bytes was dropped")]
    FrameTooLarge {
        /// [`Limits::max_frame`].
        limit: usize,
    },
    /// A packet header that cannot be: its length fields contradict each other.
    #[error("invalid {what}")]
    Invalid {
        /// Which header.
        what: &'static str,
    },
    /// Video in a stream type lookout does not take (MPEG-4 part 2, SVAC, …).
    #[error("video stream type {0:#04x} is not H.264 or H.265")]
    StreamType(u8),
}

/// The demuxer of one stream. Feed it with [`push`](PsDemuxer::push), take frames and
/// problems with [`next`](PsDemuxer::next) until it returns `None`; when the RTP marker
/// says a frame ended, [`flush`](PsDemuxer::flush) hands out the frame without waiting
/// for the next pack.
#[derive(Debug)]
pub struct PsDemuxer {
    limits: Limits,
    buf: BytesMut,
    /// Video stream id → its codec, from the PSM.
    video_types: Vec<(u8, u8)>,
    /// The codec guessed from the NAL units when no PSM names it.
    guessed: Option<Codec>,
    /// Video elementary stream from the start of the frame being gathered: that frame,
    /// and perhaps the beginning of the next.
    es: BytesMut,
    /// The PTS of the frame `es` begins with.
    es_pts: Option<u64>,
    /// Where in `es` a PES packet with a PTS began, and that PTS: it belongs to the
    /// first frame that starts at or after there.
    marks: std::collections::VecDeque<(usize, u64)>,
    /// `es` has been searched for NAL units up to here.
    scanned: usize,
    /// The frame `es` begins with has a slice already.
    has_slice: bool,
    /// A frame was dropped: skip to where the next one begins.
    resyncing: bool,
    ready: std::collections::VecDeque<Result<PsFrame, PsError>>,
}

impl PsDemuxer {
    /// A demuxer with `limits`.
    pub fn new(limits: Limits) -> PsDemuxer {
        PsDemuxer {
            limits,
            buf: BytesMut::new(),
            video_types: Vec::new(),
            guessed: None,
            es: BytesMut::new(),
            es_pts: None,
            marks: std::collections::VecDeque::new(),
            scanned: 0,
            has_slice: false,
            resyncing: false,
            ready: std::collections::VecDeque::new(),
        }
    }

    /// Adds the next piece of the stream (an RTP payload).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > self.limits.max_buffered {
            // Nothing parseable fits in this much: start over at the new bytes.
            let dropped = self.buf.len();
            self.buf.clear();
            self.ready.push_back(Err(PsError::Resync(dropped)));
        }
        self.buf.extend_from_slice(bytes);
        self.parse();
    }

    /// The frame gathered so far is complete (the RTP marker bit): hand it out now
    /// rather than when the next one begins.
    pub fn flush(&mut self) {
        if self.resyncing {
            self.es.clear();
            self.marks.clear();
            self.scanned = 0;
            self.resyncing = false;
            self.has_slice = false;
            self.es_pts = None;
            return;
        }
        let len = self.es.len();
        self.emit(len);
        self.marks.clear();
        self.es_pts = None;
    }

    /// The next frame or problem, in stream order.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<PsFrame, PsError>> {
        self.ready.pop_front()
    }

    fn parse(&mut self) {
        loop {
            // Find a start code prefix.
            let Some(at) = find_start(&self.buf) else {
                // Keep up to 3 bytes that may begin a start code.
                let keep = self.buf.len().min(3);
                let skip = self.buf.len() - keep;
                if skip > 0 {
                    self.buf.advance(skip);
                    self.ready.push_back(Err(PsError::Resync(skip)));
                }
                return;
            };
            if at > 0 {
                self.buf.advance(at);
                self.ready.push_back(Err(PsError::Resync(at)));
            }
            if self.buf.len() < 4 {
                return;
            }
            let id = self.buf[3];
            let consumed = match id {
                PACK => self.pack(),
                PROGRAM_END => Some(4),
                SYSTEM_HEADER => self.skip_sized("system header"),
                PSM => self.psm(),
                0xbd..=0xff => self.pes(id),
                // A start code of something else (an elementary stream start code
                // outside a PES packet): not a PS packet, skip its prefix.
                _ => {
                    self.buf.advance(3);
                    self.ready.push_back(Err(PsError::Resync(3)));
                    continue;
                }
            };
            match consumed {
                Some(n) => self.buf.advance(n),
                None => return,
            }
        }
    }

    /// A pack header. `None`: incomplete.
    fn pack(&mut self) -> Option<usize> {
        // MPEG-2: 4 start code + 10 bytes, the last one's low bits are the stuffing.
        if self.buf.len() < 14 {
            return None;
        }
        if self.buf[4] >> 6 != 0b01 {
            // MPEG-1 pack header (12 bytes): not what GB/T 28181 sends, but readable.
            if self.buf[4] >> 4 == 0b0010 {
                return Some(12);
            }
            self.ready.push_back(Err(PsError::Invalid {
                what: "pack header",
            }));
            return Some(4);
        }
        let stuffing = usize::from(self.buf[13] & 0x07);
        if self.buf.len() < 14 + stuffing {
            return None;
        }
        Some(14 + stuffing)
    }

    /// A packet with a 16-bit length after its start code, skipped.
    fn skip_sized(&mut self, _what: &'static str) -> Option<usize> {
        if self.buf.len() < 6 {
            return None;
        }
        let len = 6 + usize::from(u16::from_be_bytes([self.buf[4], self.buf[5]]));
        (self.buf.len() >= len).then_some(len)
    }

    /// The program stream map: which video stream ids carry which codec.
    fn psm(&mut self) -> Option<usize> {
        let total = self.skip_sized("PSM")?;
        let p = &self.buf[..total];
        // 6: start code + length; then 2 bytes of flags and version.
        let invalid = |s: &mut PsDemuxer| {
            s.ready.push_back(Err(PsError::Invalid {
                what: "program stream map",
            }));
            Some(total)
        };
        if total < 16 {
            return invalid(self);
        }
        let info_len = usize::from(u16::from_be_bytes([p[8], p[9]]));
        let map_at = 10 + info_len;
        if map_at + 2 > total {
            return invalid(self);
        }
        let map_len = usize::from(u16::from_be_bytes([p[map_at], p[map_at + 1]]));
        let mut at = map_at + 2;
        let end = at + map_len;
        if end + 4 > total {
            return invalid(self);
        }
        let mut types = Vec::new();
        while at + 4 <= end {
            let (stream_type, id) = (p[at], p[at + 1]);
            let es_info = usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]]));
            if (0xe0..=0xef).contains(&id) {
                types.push((id, stream_type));
            }
            at += 4 + es_info;
        }
        self.video_types = types;
        Some(total)
    }

    /// A PES packet: video payload joins the frame; anything else is skipped.
    fn pes(&mut self, id: u8) -> Option<usize> {
        let total = self.skip_sized("PES packet")?;
        if !(0xe0..=0xef).contains(&id) {
            return Some(total);
        }
        // MPEG-2 PES header: '10' marker, flags, header data length, optional fields.
        let (payload_at, pts) = {
            let p = &self.buf[..total];
            if total < 9 || p[6] >> 6 != 0b10 {
                self.ready.push_back(Err(PsError::Invalid {
                    what: "video PES header",
                }));
                return Some(total);
            }
            let header_len = usize::from(p[8]);
            let payload_at = 9 + header_len;
            if payload_at > total {
                self.ready.push_back(Err(PsError::Invalid {
                    what: "video PES header length",
                }));
                return Some(total);
            }
            let pts = (p[7] & 0x80 != 0 && header_len >= 5).then(|| read_ts(&p[9..14]));
            (payload_at, pts)
        };
        if let Some(t) = self.video_types.iter().find(|(sid, _)| *sid == id)
            && t.1 != STREAM_TYPE_H264
            && t.1 != STREAM_TYPE_H265
        {
            self.ready.push_back(Err(PsError::StreamType(t.1)));
            return Some(total);
        }
        if let Some(pts) = pts {
            if self.es.is_empty() {
                self.es_pts = Some(pts);
            } else {
                self.marks.push_back((self.es.len(), pts));
            }
        }
        self.es.extend_from_slice(&self.buf[payload_at..total]);
        self.cut_frames();
        if self.es.len() > self.limits.max_frame {
            // No frame boundary within the limit: drop what is held, find the next.
            self.es.clear();
            self.marks.clear();
            self.scanned = 0;
            self.has_slice = false;
            self.es_pts = None;
            // Reported once per frame, not once per packet of it.
            if !std::mem::replace(&mut self.resyncing, true) {
                self.ready.push_back(Err(PsError::FrameTooLarge {
                    limit: self.limits.max_frame,
                }));
            }
        }
        Some(total)
    }

    /// The codec of the video: the PSM's, else guessed from what has arrived.
    fn codec(&mut self) -> Codec {
        let named = self.video_types.first().and_then(|(_, t)| match *t {
            STREAM_TYPE_H264 => Some(Codec::H264),
            STREAM_TYPE_H265 => Some(Codec::H265),
            _ => None,
        });
        if let Some(c) = named.or(self.guessed) {
            return c;
        }
        let (codec, sure) = guess_codec(&self.es);
        if sure {
            self.guessed = Some(codec);
        }
        codec
    }

    /// Hands out every whole frame at the front of `es`: each ends where a NAL unit
    /// begins the next picture.
    fn cut_frames(&mut self) {
        let codec = self.codec();
        loop {
            let Some(rel) = find_start(&self.es[self.scanned..]) else {
                self.scanned = self.es.len().saturating_sub(2);
                return;
            };
            let at = self.scanned + rel;
            // The NAL header and the first byte of a slice header.
            let need = match codec {
                Codec::H264 => 2,
                Codec::H265 => 3,
            };
            let Some(nal) = self.es.get(at + 3..at + 3 + need) else {
                self.scanned = at;
                return;
            };
            let (slice, first_slice, begins_picture) = classify(codec, nal);
            let begins = begins_picture || first_slice;
            // A 4-byte start code's leading zero goes with the next frame.
            let cut = if at > 0 && self.es[at - 1] == 0 {
                at - 1
            } else {
                at
            };
            if self.resyncing {
                if begins {
                    self.drop_front(cut);
                    self.resyncing = false;
                    self.has_slice = slice;
                    self.scanned = 4;
                } else {
                    self.scanned = at + 3;
                }
                continue;
            }
            if self.has_slice && begins && cut > 0 {
                self.emit(cut);
                self.has_slice = slice;
                self.scanned = at - cut + 3;
            } else {
                self.has_slice |= slice;
                self.scanned = at + 3;
            }
        }
    }

    /// Drops the first `n` bytes of `es`, and the marks in them.
    fn drop_front(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.es.advance(n);
        for m in self.marks.iter_mut() {
            m.0 = m.0.saturating_sub(n);
        }
        self.es_pts = None;
        while self.marks.front().is_some_and(|m| m.0 == 0) {
            self.es_pts = self.marks.pop_front().map(|m| m.1);
        }
    }

    /// Hands out the first `n` bytes of `es` as a frame.
    fn emit(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let codec = self.codec();
        let pts = self.es_pts;
        let data = self.es.split_to(n).freeze();
        // The PTS of a PES packet that began inside the frame just cut belongs to the
        // frame after it.
        let mut next = None;
        while self.marks.front().is_some_and(|m| m.0 <= n) {
            next = self.marks.pop_front().map(|m| m.1);
        }
        for m in self.marks.iter_mut() {
            m.0 -= n;
        }
        self.es_pts = next;
        self.scanned = 0;
        self.has_slice = false;
        self.ready.push_back(if data.len() > self.limits.max_frame {
            Err(PsError::FrameTooLarge {
                limit: self.limits.max_frame,
            })
        } else {
            Ok(PsFrame {
                codec,
                data,
                pts_90k: pts,
            })
        });
    }
}

/// What a NAL unit (its header and the next byte) says about picture boundaries:
/// (a slice, the first slice of its picture, a NAL unit that only comes before a
/// picture's slices: delimiter, parameter sets, SEI).
fn classify(codec: Codec, nal: &[u8]) -> (bool, bool, bool) {
    match codec {
        Codec::H264 => {
            let t = nal[0] & 0x1f;
            let slice = matches!(t, 1 | 5);
            // first_mb_in_slice = 0 is ue(v) '1'.
            let first = slice && nal[1] & 0x80 != 0;
            (slice, first, matches!(t, 6..=9 | 14..=18))
        }
        Codec::H265 => {
            let t = (nal[0] >> 1) & 0x3f;
            let slice = t <= 31;
            // first_slice_segment_in_pic_flag.
            let first = slice && nal[2] & 0x80 != 0;
            (slice, first, matches!(t, 32..=35 | 39 | 41..=44 | 48..=55))
        }
    }
}

/// The offset of the first `00 00 01` in `b`.
fn find_start(b: &[u8]) -> Option<usize> {
    b.windows(3).position(|w| w == [0, 0, 1])
}

/// A 33-bit PTS or DTS from its 5-byte field.
fn read_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

/// H.264 or H.265 from the first NAL unit header: H.265's parameter sets and slices
/// have the forbidden bit clear and a layer id of 0 in the second byte, which H.264's
/// common types (1, 5, 6, 7, 8, 9) do not produce as H.265 types in range.
/// Whether it is sure: `false` when no NAL unit said (H.264 is assumed then).
fn guess_codec(data: &[u8]) -> (Codec, bool) {
    for n in crate::annexb::nal_units(data) {
        let Some(&h) = n.first() else { continue };
        let h264 = h & 0x1f;
        let h265 = (h >> 1) & 0x3f;
        if (32..=40).contains(&h265) && n.get(1).is_some_and(|b| *b == 1) {
            return (Codec::H265, true);
        }
        if matches!(h264, 1 | 5 | 6 | 7 | 8 | 9) {
            return (Codec::H264, true);
        }
    }
    (Codec::H264, false)
}

/// Writes a PS stream of access units: pack header, (for keyframes) system header and
/// PSM, then the frame in PES packets of at most `max_pes` payload bytes, the first
/// with the PTS. What GB/T 28181 devices send; the simulator and tests use it.
pub fn mux_frame(codec: Codec, data: &[u8], pts_90k: u64, keyframe: bool, max_pes: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 64 + data.len() / max_pes.max(1) * 14);
    // Pack header: SCR = PTS, mux rate 0x3fff, no stuffing.
    let scr = pts_90k;
    out.extend_from_slice(&[0, 0, 1, PACK]);
    out.extend_from_slice(&[
        0x44 | (((scr >> 30) & 0x07) << 3) as u8 | ((scr >> 28) & 0x03) as u8,
        ((scr >> 20) & 0xff) as u8,
        0x04 | (((scr >> 15) & 0x1f) << 3) as u8 | ((scr >> 13) & 0x03) as u8,
        ((scr >> 5) & 0xff) as u8,
        0x04 | ((scr & 0x1f) << 3) as u8,
        0x01,
        0x00,
        0x3f,
        0xff,
        0xf8,
    ]);
    if keyframe {
        // System header: one video stream.
        out.extend_from_slice(&[
            0,
            0,
            1,
            SYSTEM_HEADER,
            0,
            9,
            0x80,
            0x1f,
            0xff,
            0x04,
            0xe1,
            0xff,
            0xe0,
            0xe0,
            0x80,
        ]);
        // PSM: one video stream, id 0xe0.
        let stream_type = match codec {
            Codec::H264 => STREAM_TYPE_H264,
            Codec::H265 => STREAM_TYPE_H265,
        };
        out.extend_from_slice(&[
            0,
            0,
            1,
            PSM,
            0,
            14,
            0xe0,
            0xff,
            0,
            0,
            0,
            4,
            stream_type,
            0xe0,
            0,
            0,
        ]);
        // CRC_32, not checked by readers of GB/T 28181 streams.
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
    let max_pes = max_pes.clamp(1, 65_535 - 8);
    for (i, chunk) in data.chunks(max_pes).enumerate() {
        let header: &[u8] = if i == 0 {
            &[0x80, 0x80, 5]
        } else {
            &[0x80, 0x00, 0]
        };
        let pts_len = if i == 0 { 5 } else { 0 };
        let len = header.len() + pts_len + chunk.len();
        out.extend_from_slice(&[0, 0, 1, 0xe0, (len >> 8) as u8, len as u8]);
        out.extend_from_slice(header);
        if i == 0 {
            out.extend_from_slice(&[
                0x21 | (((pts_90k >> 30) & 0x07) << 1) as u8,
                ((pts_90k >> 22) & 0xff) as u8,
                0x01 | (((pts_90k >> 15) & 0x7f) << 1) as u8,
                ((pts_90k >> 7) & 0xff) as u8,
                0x01 | ((pts_90k & 0x7f) << 1) as u8,
            ]);
        }
        out.extend_from_slice(chunk);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDR: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x42, 0, 0x1e, 0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21,
    ];
    const P: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x22, 0x33];

    fn frames(d: &mut PsDemuxer) -> (Vec<PsFrame>, Vec<PsError>) {
        let (mut f, mut e) = (Vec::new(), Vec::new());
        while let Some(r) = d.next() {
            match r {
                Ok(x) => f.push(x),
                Err(x) => e.push(x),
            }
        }
        (f, e)
    }

    #[test]
    fn frames_come_back_whatever_the_rtp_cuts() {
        let big: Vec<u8> = IDR
            .iter()
            .copied()
            .chain((0..5000).map(|i| (i % 251) as u8 | 1))
            .collect();
        let mut stream = Vec::new();
        stream.extend_from_slice(&mux_frame(Codec::H264, &big, 90_000, true, 1400));
        stream.extend_from_slice(&mux_frame(Codec::H264, P, 93_600, false, 1400));
        stream.extend_from_slice(&mux_frame(Codec::H264, P, 97_200, false, 1400));
        for cut in [1usize, 7, 188, 1400, stream.len()] {
            let mut d = PsDemuxer::new(Limits::default());
            for piece in stream.chunks(cut) {
                d.push(piece);
            }
            d.flush();
            let (f, e) = frames(&mut d);
            assert!(e.is_empty(), "cut {cut}: {e:?}");
            assert_eq!(f.len(), 3, "cut {cut}");
            assert_eq!(&f[0].data[..], &big[..]);
            assert_eq!(f[0].codec, Codec::H264);
            assert_eq!(f[0].pts_90k, Some(90_000));
            assert_eq!(&f[1].data[..], P);
            assert_eq!(f[2].pts_90k, Some(97_200));
        }
    }

    #[test]
    fn the_psm_names_h265_and_without_one_the_nal_units_do() {
        let vps = [0, 0, 0, 1, 0x40, 0x01, 0x0c, 0x01];
        let mut d = PsDemuxer::new(Limits::default());
        d.push(&mux_frame(Codec::H265, &vps, 0, true, 1400));
        d.flush();
        assert_eq!(frames(&mut d).0[0].codec, Codec::H265);
        // No PSM (not a keyframe): guessed.
        let mut d = PsDemuxer::new(Limits::default());
        d.push(&mux_frame(Codec::H265, &vps, 0, false, 1400));
        d.flush();
        assert_eq!(frames(&mut d).0[0].codec, Codec::H265);
        let mut d = PsDemuxer::new(Limits::default());
        d.push(&mux_frame(Codec::H264, IDR, 0, false, 1400));
        d.flush();
        assert_eq!(frames(&mut d).0[0].codec, Codec::H264);
    }

    #[test]
    fn garbage_and_lost_packets_cost_only_what_they_touch() {
        let mut d = PsDemuxer::new(Limits::default());
        d.push(&[0xde, 0xad, 0xbe, 0xef, 0x13, 0x37]);
        d.push(&mux_frame(Codec::H264, IDR, 3600, true, 1400));
        d.push(&mux_frame(Codec::H264, P, 7200, false, 1400));
        d.flush();
        let (f, e) = frames(&mut d);
        assert_eq!(f.len(), 2);
        assert!(matches!(e.first(), Some(PsError::Resync(_))), "{e:?}");
    }

    #[test]
    fn oversized_frames_are_dropped_and_reported() {
        let limits = Limits {
            max_frame: 1000,
            max_buffered: 256 * 1024,
        };
        let big = vec![1u8; 5000];
        let mut d = PsDemuxer::new(limits);
        d.push(&mux_frame(Codec::H264, &big, 0, true, 1400));
        d.push(&mux_frame(Codec::H264, P, 3600, false, 1400));
        d.flush();
        let (f, e) = frames(&mut d);
        assert_eq!(e, vec![PsError::FrameTooLarge { limit: 1000 }]);
        assert_eq!(f.len(), 1);
        assert_eq!(&f[0].data[..], P);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut d = PsDemuxer::new(Limits {
            max_frame: 4096,
            max_buffered: 8192,
        });
        for len in 0..400usize {
            let piece: Vec<u8> = (0..len)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Plenty of start codes and PS ids.
                    match i % 7 {
                        0 | 1 => 0,
                        2 => 1,
                        3 => [PACK, PSM, 0xe0, 0xbb, 0xc0][(state % 5) as usize],
                        _ => state as u8,
                    }
                })
                .collect();
            d.push(&piece);
            while d.next().is_some() {}
        }
    }
}
