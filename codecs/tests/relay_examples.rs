//! The worked examples in `docs/PROTOCOL.md` are this encoder's real output: each
//! example's table lists the message field by field, and the hex in its first column,
//! joined, must be exactly what the encoder writes and must decode back to the example.
//! Run with `--nocapture` to print the tables after changing the encoder.

use bytes::Bytes;
use lookout_codecs::relay::varint::decode_varint;
use lookout_codecs::relay::{
    Alert, AlertMessage, AlertRefused, ControlMessage, ErrorCode, Frame, MessageType,
    StreamMessage, VideoMessage,
};

fn example_alert() -> AlertMessage {
    AlertMessage::Alert(Alert {
        id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        revision: 0,
        payload_json: r#"{"label":"smoke","score":0.91}"#.into(),
        // A JPEG cut to its start and end markers, to keep the example short.
        snapshot_jpeg: Some(Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9])),
    })
}

fn example_alert_refused() -> ControlMessage {
    ControlMessage::AlertRefused(AlertRefused {
        alert_id: "gauge17-0815".into(),
        revision: Some(0),
        code: ErrorCode::ALERT_ID_CONFLICT,
        reason: "id in use".into(),
    })
}

fn example_frame() -> VideoMessage {
    VideoMessage::Frame(Frame {
        seq: 1500,
        keyframe: false,
        pts_ns: Some(60_000_000_000),
        capture_unix_ns: 1_700_000_000_123_456_789,
        received_unix_ns: 1_700_000_000_131_000_000,
        // An H.264 access unit: access unit delimiter, then a (short) non-IDR slice.
        data: Bytes::from_static(&[0, 0, 0, 1, 0x09, 0x30, 0, 0, 0, 1, 0x41, 0x9a, 0x24, 0x6c]),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hex of the first column of every table row in the section under `heading`.
fn doc_table_hex(doc: &str, heading: &str) -> Vec<u8> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no `{heading}`"));
    let section = &doc[start + heading.len()..];
    let end = section.find("\n#").unwrap_or(section.len());
    let mut bytes = Vec::new();
    for line in section[..end].lines() {
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((hex, _)) = cell.split_once('`') else {
            continue;
        };
        for byte in hex.split_whitespace() {
            bytes.push(u8::from_str_radix(byte, 16).expect("hex byte"));
        }
    }
    bytes
}

fn check<M: StreamMessage>(message: &M, heading: &str) {
    let encoded = message.encode().unwrap().to_bytes();
    println!("{heading}\n{}\n", hex(&encoded));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let documented = doc_table_hex(&doc, heading);
    assert_eq!(
        hex(&documented),
        hex(&encoded),
        "the table under `{heading}` differs from the encoder's output"
    );
    let (msg_type, type_len) = decode_varint(&encoded).unwrap();
    let (len, len_len) = decode_varint(&encoded[type_len..]).unwrap();
    let head = type_len + len_len;
    assert_eq!(encoded.len() as u64, head as u64 + len);
    assert_eq!(MessageType(msg_type), message.message_type());
    let decoded = M::decode(MessageType(msg_type), &encoded.slice(head..), head as u64).unwrap();
    assert_eq!(&decoded, message);
}

#[test]
fn alert_example_is_real() {
    check(&example_alert(), "### Example: an Alert");
}

#[test]
fn frame_example_is_real() {
    check(&example_frame(), "### Example: a Frame");
}

#[test]
fn alert_refused_example_is_real() {
    check(&example_alert_refused(), "### Example: an AlertRefused");
}
