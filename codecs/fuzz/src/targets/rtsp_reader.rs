//! The RTSP reader the gateway's guard puts in front of every camera, against what a
//! hostile or broken camera could send: arbitrary bytes, cut into arbitrary chunks. It
//! must never panic, never hold more than its limits allow, and every message it
//! accepts must re-encode into bytes it reads back as the same message. The first byte
//! picks the chunk size (1 to 256 bytes).

use lookout_codecs::rtsp::{Item, Limits, Reader};

/// Small limits, so inputs of a few kilobytes reach every refusal.
const LIMITS: Limits = Limits {
    max_line: 256,
    max_headers: 8,
    max_head: 1024,
    max_body: 2048,
};

/// Runs one input; panics on a finding.
pub fn rtsp_reader(input: &[u8]) {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(selector) + 1;
    let mut reader = Reader::new(LIMITS);
    'feed: for piece in data.chunks(chunk) {
        reader.push(piece);
        // Each item takes at least one byte, so a piece yields at most `data.len()`.
        for _ in 0..=data.len() {
            match reader.next_item() {
                Ok(Some(Item::Interleaved(frame))) => {
                    assert_eq!(frame[0], b'$');
                    assert_eq!(
                        frame.len(),
                        4 + usize::from(u16::from_be_bytes([frame[2], frame[3]]))
                    );
                }
                Ok(Some(Item::Message(m))) => {
                    assert!(m.body.len() <= LIMITS.max_body);
                    let mut again = Reader::new(Limits::default());
                    again.push(&m.encode());
                    match again.next_item() {
                        Ok(Some(Item::Message(m2))) => {
                            assert_eq!((&m2.start_line, &m2.body), (&m.start_line, &m.body));
                            assert_eq!(m2.status(), m.status());
                        }
                        other => panic!("a re-encoded message reads back as {other:?}"),
                    }
                }
                Ok(None) => {
                    // Whatever is held is at most one unfinished head and body, or
                    // one interleaved frame.
                    assert!(
                        reader.buffered() <= LIMITS.max_head + LIMITS.max_body + 65_539 + chunk
                    );
                    continue 'feed;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    break 'feed;
                }
            }
        }
        panic!("the reader returned more items than the input has bytes");
    }
}
