//! The relay protocol's streaming decoder against what a hostile or broken peer could
//! send: arbitrary bytes, cut into arbitrary chunks, read as any stream kind from either
//! role. It must never panic, every error must point inside the input, and every message
//! it accepts must encode again and decode to itself. The first byte picks the role
//! (bit 0), the stream kind (bits 1–2: control, alert, video, clip) and the chunk size
//! (bits 3–7, 1 to 32 bytes).

use lookout_codecs::relay::varint::decode_varint;
use lookout_codecs::relay::{
    AlertMessage, ClipMessage, ControlMessage, FrameDecoder, MessageType, Role, StreamMessage,
    VideoMessage,
};

/// Runs one input; panics on a finding.
pub fn relay_frames(input: &[u8]) {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let from = if selector & 1 == 0 {
        Role::Gateway
    } else {
        Role::Center
    };
    let chunk = usize::from(selector >> 3) + 1;
    match (selector >> 1) & 3 {
        0 => run::<ControlMessage>(from, chunk, data),
        1 => run::<AlertMessage>(from, chunk, data),
        2 => run::<VideoMessage>(from, chunk, data),
        _ => run::<ClipMessage>(from, chunk, data),
    }
}

fn run<M: StreamMessage>(from: Role, chunk: usize, data: &[u8]) {
    let mut decoder = FrameDecoder::<M>::new(from);
    let mut result = Ok(());
    'feed: for piece in data.chunks(chunk) {
        decoder.push(piece);
        // Each message takes at least two bytes of envelope, so a piece yields at most
        // `chunk` messages; the bound only guards against a decoder that stops advancing.
        for _ in 0..=data.len() {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    // Re-decoded alone it could break an order rule (a Frame without its
                    // GopHeader), so the payload is decoded directly.
                    let bytes = message
                        .encode()
                        .expect("a decoded message encodes")
                        .to_bytes();
                    let (msg_type, a) = decode_varint(&bytes).expect("type");
                    let (_, b) = decode_varint(&bytes[a..]).expect("length");
                    let decoded = M::decode(MessageType(msg_type), &bytes.slice(a + b..), 0)
                        .expect("a re-encoded message decodes");
                    assert_eq!(decoded, message);
                }
                Ok(None) => continue 'feed,
                Err(e) => {
                    result = Err(e);
                    break 'feed;
                }
            }
        }
        panic!("the decoder returned more messages than the input has bytes");
    }
    if result.is_ok() {
        result = decoder.finish();
    }
    if let Err(e) = result {
        assert!(e.offset() <= data.len() as u64, "{e}");
        assert!(!e.to_string().is_empty());
        assert_eq!(decoder.next_message(), Err(e));
    }
}
