//! The MPEG-2 Program Stream demuxer the gateway runs on GB/T 28181 video, against
//! arbitrary bytes cut into arbitrary RTP-sized pieces (the first byte picks the size).
//! It must never panic or hold more than its limits; every frame it gives back stays
//! within the frame limit.

use lookout_codecs::ps::{Limits, PsDemuxer};

const LIMITS: Limits = Limits {
    max_frame: 4096,
    max_buffered: 8192,
};

/// Runs one input; panics on a finding.
pub fn ps_demux(input: &[u8]) {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let mut d = PsDemuxer::new(LIMITS);
    for (i, piece) in data.chunks(usize::from(selector) + 1).enumerate() {
        d.push(piece);
        if i % 3 == 2 {
            d.flush();
        }
        while let Some(r) = d.next() {
            if let Ok(frame) = r {
                assert!(!frame.data.is_empty());
                assert!(frame.data.len() <= LIMITS.max_frame);
            }
        }
    }
}
