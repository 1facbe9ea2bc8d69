//! Every relay message decoder on its own, without the stream's order rules in the way:
//! the input is a message type (a QUIC varint, as on the wire) followed by a payload.
//! A type of one stream kind must decode only as that kind; whatever decodes must
//! encode within the protocol's limits and decode again to the same message; an error
//! must point inside the payload. Seeds are every message type as the encoder writes it.

use bytes::Bytes;
use lookout_codecs::relay::varint::decode_varint;
use lookout_codecs::relay::{
    AlertMessage, ClipMessage, ControlMessage, MessageType, StreamKind, StreamMessage, VideoMessage,
};

/// Runs one input; panics on a finding.
pub fn relay_messages(input: &[u8]) {
    let Some((msg_type, type_len)) = decode_varint(input) else {
        return;
    };
    let msg_type = MessageType(msg_type);
    let payload = Bytes::copy_from_slice(input.get(type_len..).unwrap_or_default());
    let kind = msg_type.stream();
    check::<ControlMessage>(msg_type, &payload, kind == Some(StreamKind::Control));
    check::<AlertMessage>(msg_type, &payload, kind == Some(StreamKind::Alerts));
    check::<VideoMessage>(msg_type, &payload, kind == Some(StreamKind::Video));
    check::<ClipMessage>(msg_type, &payload, kind == Some(StreamKind::Clip));
}

fn check<M: StreamMessage>(msg_type: MessageType, payload: &Bytes, own_type: bool) {
    // A non-zero base offset, as on a stream, so errors must add it rather than ignore it.
    let base = 1000;
    match M::decode(msg_type, payload, base) {
        Ok(message) => {
            assert!(own_type, "{msg_type:?} decoded on a {} stream", M::STREAM);
            assert_eq!(message.message_type(), msg_type);
            let bytes = message
                .encode()
                .expect("a decoded message encodes")
                .to_bytes();
            let (again_type, a) = decode_varint(&bytes).expect("type");
            let (len, b) = decode_varint(&bytes[a..]).expect("length");
            assert_eq!(MessageType(again_type), msg_type);
            assert_eq!(len, (bytes.len() - a - b) as u64, "length field");
            assert!(
                len <= M::STREAM.max_message(),
                "encoded beyond the stream's limit"
            );
            let again = M::decode(msg_type, &bytes.slice(a + b..), 0)
                .expect("a re-encoded message decodes");
            assert_eq!(again, message);
        }
        Err(e) => {
            let end = base + payload.len() as u64;
            assert!(
                (base..=end).contains(&e.offset()),
                "error offset {} outside the payload {base}..={end}: {e}",
                e.offset()
            );
            assert!(!e.to_string().is_empty());
        }
    }
}
