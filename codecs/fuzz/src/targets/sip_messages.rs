//! The SIP reader the gateway's GB/T 28181 side runs on every datagram and TCP stream a
//! device sends, against arbitrary bytes: a datagram through `parse`, the same bytes as
//! a TCP stream cut into chunks (the first byte picks the size). It must never panic,
//! hold more than its limits, or accept a message that does not read back the same
//! after `encode`.

use lookout_codecs::sip::{self, Limits, StreamReader};

/// Small limits, so inputs of a few kilobytes reach every refusal.
const LIMITS: Limits = Limits {
    max_line: 128,
    max_headers: 8,
    max_body: 512,
};

/// Runs one input; panics on a finding.
pub fn sip_messages(input: &[u8]) {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    if let Ok(m) = sip::parse(data, &LIMITS) {
        assert!(m.body.len() <= LIMITS.max_body);
        assert!(m.headers.len() <= LIMITS.max_headers);
        let again =
            sip::parse(&m.encode(), &Limits::default()).expect("an accepted message re-reads");
        assert_eq!(again.start, m.start);
        assert_eq!(again.body, m.body);
    }
    let mut reader = StreamReader::new(LIMITS);
    for piece in data.chunks(usize::from(selector) + 1) {
        reader.push(piece);
        // Each message takes at least one byte.
        for _ in 0..=data.len() {
            match reader.next_message() {
                Ok(Some(m)) => assert!(m.body.len() <= LIMITS.max_body),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}
