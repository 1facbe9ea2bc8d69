//! The relay wire format from the outside: every message survives encode → decode
//! unchanged (property tests), a stream decodes the same however it is cut into chunks,
//! and truncated, oversized, misplaced or garbage input gets the precise error it should,
//! never a panic.

use bytes::Bytes;
use lookout_codecs::Codec;
use lookout_codecs::relay::varint::{decode_varint, encode_varint};
use lookout_codecs::relay::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Helpers

fn wire<M: StreamMessage>(message: &M) -> Vec<u8> {
    message.encode().unwrap().to_bytes().to_vec()
}

/// Decodes one whole encoded message (envelope included) with `StreamMessage::decode`.
fn decode_one<M: StreamMessage>(bytes: &[u8]) -> Result<M, DecodeError> {
    let (msg_type, a) = decode_varint(bytes).unwrap();
    let (len, b) = decode_varint(&bytes[a..]).unwrap();
    assert_eq!(bytes.len() as u64, (a + b) as u64 + len, "envelope length");
    let payload = Bytes::copy_from_slice(&bytes[a + b..]);
    M::decode(MessageType(msg_type), &payload, (a + b) as u64)
}

/// Feeds `chunks` to a fresh decoder, draining after each; then finishes the stream.
fn decode_stream<'a, M: StreamMessage>(
    from: Role,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<M>, DecodeError> {
    let mut decoder = FrameDecoder::<M>::new(from);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        while let Some(message) = decoder.next_message()? {
            out.push(message);
        }
    }
    decoder.finish()?;
    Ok(out)
}

/// The first error a stream of `bytes` gives, fed whole.
fn stream_error<M: StreamMessage>(from: Role, bytes: &[u8]) -> DecodeError {
    decode_stream::<M>(from, [bytes]).unwrap_err()
}

fn envelope(msg_type: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(msg_type, &mut out).unwrap();
    encode_varint(payload.len() as u64, &mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

fn camera(id: &str) -> CameraInfo {
    CameraInfo {
        id: id.into(),
        kind: CameraKind::Tower,
        state: CameraState::Live,
        name: Some("Township 7 north tower".into()),
        group: Some("Township 7".into()),
        location: Some(Location {
            lat: 47.61,
            lon: -120.02,
        }),
        format: Some(VideoFormat {
            codec: Codec::H264,
            width: 1280,
            height: 720,
        }),
    }
}

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        gateway_id: "county-north".into(),
        software_version: "lookout 0.1.0".into(),
        cameras: vec![
            camera("tower-7"),
            CameraInfo {
                id: "drone-2".into(),
                kind: CameraKind::Drone,
                state: CameraState::Connecting,
                name: None,
                group: None,
                location: None,
                format: None,
            },
        ],
    }
}

fn welcome() -> ControlMessage {
    ControlMessage::Welcome(Welcome {
        protocol_version: 1,
        center_id: "county-ecc".into(),
    })
}

fn jpeg(len: usize) -> Bytes {
    let mut data = vec![0xff, 0xd8, 0xff, 0xe0];
    data.extend((0..len.saturating_sub(6)).map(|i| (i * 7) as u8));
    data.extend([0xff, 0xd9]);
    Bytes::from(data)
}

fn access_unit(len: usize, keyframe: bool) -> Bytes {
    let mut data = vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }];
    data.extend((0..len.saturating_sub(5)).map(|i| (i % 251) as u8 | 1));
    Bytes::from(data)
}

fn gop_header(codec: Codec) -> GopHeader {
    GopHeader {
        camera_id: "tower-7".into(),
        gop_seq: 42,
        codec,
        width: 1920,
        height: 1080,
        vps: (codec == Codec::H265).then(|| Bytes::from_static(&[0x40, 0x01, 0x0c, 0x01])),
        sps: Bytes::from_static(&[0x67, 0x64, 0x00, 0x28, 0xac]),
        pps: Bytes::from_static(&[0x68, 0xee, 0x3c, 0x80]),
    }
}

fn frame(seq: u64, keyframe: bool, len: usize) -> Frame {
    Frame {
        seq,
        keyframe,
        pts_ns: seq.is_multiple_of(2).then_some(seq * 40_000_000),
        capture_unix_ns: 1_700_000_000_000_000_000 + seq * 40_000_000,
        received_unix_ns: 1_700_000_000_009_000_000 + seq * 40_000_000,
        data: access_unit(len, keyframe),
    }
}

/// A control stream as the gateway writes it, unknown types included (skipped).
fn gateway_control() -> (Vec<u8>, Vec<ControlMessage>) {
    let messages = vec![
        ControlMessage::Hello(hello()),
        ControlMessage::CameraUpdate(CameraUpdate {
            changes: vec![
                CameraChange::State {
                    id: "drone-2".into(),
                    state: CameraState::Stalled,
                },
                CameraChange::Upsert(camera("river-1")),
                CameraChange::Removed {
                    id: "tower-7".into(),
                },
            ],
        }),
        ControlMessage::Ping(Ping { nonce: u64::MAX }),
        ControlMessage::Pong(Pong { nonce: 0 }),
        ControlMessage::Goaway(Goaway {
            code: ErrorCode::NO_ERROR,
            reason: "shutting down".into(),
        }),
    ];
    let mut bytes = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        bytes.extend(wire(m));
        // A message of a later protocol version after each: skipped by length.
        bytes.extend(envelope(0x3f00 + i as u64, &vec![0xab; i * 40]));
    }
    (bytes, messages)
}

fn center_control() -> (Vec<u8>, Vec<ControlMessage>) {
    let messages = vec![
        welcome(),
        ControlMessage::Subscribe(Subscribe {
            mode: SubscribeMode::AlertingOnly,
            cameras: vec!["tower-7".into(), "drone-2".into()],
        }),
        ControlMessage::Ping(Ping { nonce: 17 }),
        ControlMessage::Pong(Pong { nonce: 99 }),
        ControlMessage::AlertRefused(AlertRefused {
            alert_id: "gauge17-2026-12-07T0815".into(),
            revision: Some(0),
            code: ErrorCode::ALERT_ID_CONFLICT,
            reason: "a different record holds this id and revision".into(),
        }),
        ControlMessage::AlertRefused(AlertRefused {
            alert_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            revision: None,
            code: ErrorCode::INTERNAL_ERROR,
            reason: String::new(),
        }),
        ControlMessage::Goaway(Goaway {
            code: ErrorCode::from_u32(0x77),
            reason: "center maintenance".into(),
        }),
    ];
    let bytes = messages.iter().flat_map(wire).collect();
    (bytes, messages)
}

fn gateway_alerts() -> (Vec<u8>, Vec<AlertMessage>) {
    let messages = vec![
        AlertMessage::Alert(Alert {
            id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            revision: 0,
            payload_json: r#"{"label":"smoke","score":0.93,"camera":{"id":"tower-7"}}"#.into(),
            snapshot_jpeg: Some(jpeg(3000)),
        }),
        AlertMessage::Alert(Alert {
            id: "01890a5d-ac96-774b-bcce-b302099a8058".into(),
            revision: 3,
            payload_json: r#"{"state":"cleared"}"#.into(),
            snapshot_jpeg: None,
        }),
        AlertMessage::Snapshot(Snapshot {
            alert_id: "01890a5d-ac96-774b-bcce-b302099a8058".into(),
            jpeg: jpeg(10),
        }),
    ];
    let bytes = messages.iter().flat_map(wire).collect();
    (bytes, messages)
}

fn center_alerts() -> (Vec<u8>, Vec<AlertMessage>) {
    let messages = vec![
        AlertMessage::AlertAck(AlertAck {
            id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            revision: 0,
        }),
        AlertMessage::SnapshotAck(SnapshotAck {
            alert_id: "01890a5d-ac96-774b-bcce-b302099a8058".into(),
        }),
        AlertMessage::AlertAck(AlertAck {
            id: "x".into(),
            revision: u32::MAX,
        }),
    ];
    let bytes = messages.iter().flat_map(wire).collect();
    (bytes, messages)
}

fn gop_stream(codec: Codec) -> (Vec<u8>, Vec<VideoMessage>) {
    let messages = vec![
        VideoMessage::GopHeader(gop_header(codec)),
        VideoMessage::Frame(frame(1000, true, 2500)),
        VideoMessage::Frame(frame(1001, false, 300)),
        VideoMessage::Frame(frame(1003, false, 1200)),
    ];
    let bytes = messages.iter().flat_map(wire).collect();
    (bytes, messages)
}

/// Checks that `bytes` decodes to `expected` whole, byte by byte, and cut at every
/// single point and at every pair of points a prime stride apart.
fn check_every_split<M: StreamMessage>(from: Role, bytes: &[u8], expected: &[M]) {
    assert_eq!(decode_stream::<M>(from, [bytes]).unwrap(), expected);
    assert_eq!(
        decode_stream::<M>(from, bytes.chunks(1)).unwrap(),
        expected,
        "byte by byte"
    );
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(
            decode_stream::<M>(from, [a, b]).unwrap(),
            expected,
            "split at {at}"
        );
    }
    for at in (0..bytes.len()).step_by(13) {
        let end = (at + 97).min(bytes.len());
        let parts = [&bytes[..at], &bytes[at..end], &bytes[end..]];
        assert_eq!(
            decode_stream::<M>(from, parts).unwrap(),
            expected,
            "split at {at} and {end}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Streams cut anywhere

#[test]
fn gateway_control_stream_at_every_split_point() {
    let (bytes, expected) = gateway_control();
    check_every_split(Role::Gateway, &bytes, &expected);
    let mut decoder = FrameDecoder::<ControlMessage>::new(Role::Gateway);
    decoder.push(&bytes);
    while decoder.next_message().unwrap().is_some() {}
    assert_eq!(decoder.skipped(), 5);
    assert_eq!(decoder.messages(), 5);
    assert_eq!(decoder.offset(), bytes.len() as u64);
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn center_control_stream_at_every_split_point() {
    let (bytes, expected) = center_control();
    check_every_split(Role::Center, &bytes, &expected);
}

#[test]
fn alert_streams_at_every_split_point() {
    let (bytes, expected) = gateway_alerts();
    check_every_split(Role::Gateway, &bytes, &expected);
    let (bytes, expected) = center_alerts();
    check_every_split(Role::Center, &bytes, &expected);
}

#[test]
fn gop_streams_at_every_split_point() {
    for codec in [Codec::H264, Codec::H265] {
        let (bytes, expected) = gop_stream(codec);
        check_every_split(Role::Gateway, &bytes, &expected);
    }
}

#[test]
fn skipped_message_arriving_in_pieces_is_not_buffered() {
    let mut bytes = wire(&ControlMessage::Hello(hello()));
    let hello_len = bytes.len();
    bytes.extend(envelope(0x1234, &vec![0u8; 100_000]));
    bytes.extend(wire(&ControlMessage::Ping(Ping { nonce: 5 })));
    let mut decoder = FrameDecoder::<ControlMessage>::new(Role::Gateway);
    let mut got = Vec::new();
    for chunk in bytes.chunks(1000) {
        decoder.push(chunk);
        while let Some(m) = decoder.next_message().unwrap() {
            got.push(m);
        }
        assert!(decoder.buffered() <= 1000 + 20, "{}", decoder.buffered());
    }
    decoder.finish().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], ControlMessage::Ping(Ping { nonce: 5 }));
    assert!(hello_len < 200);
    assert_eq!(decoder.skipped(), 1);
}

// ---------------------------------------------------------------------------------------
// The wire details other implementations rely on

#[test]
fn envelope_is_type_then_length_then_payload() {
    let bytes = wire(&ControlMessage::Ping(Ping {
        nonce: 0x0102_0304_0506_0708,
    }));
    assert_eq!(bytes, [0x06, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
    let bytes = wire(&AlertMessage::SnapshotAck(SnapshotAck {
        alert_id: "a".into(),
    }));
    assert_eq!(bytes, [0x13, 0x02, 0x01, b'a']);
}

#[test]
fn longer_varint_forms_are_accepted() {
    // Ping with its type and length in two-byte and eight-byte forms.
    let mut bytes = wire(&ControlMessage::Hello(hello()));
    bytes.extend([0x40, 0x06, 0xc0, 0, 0, 0, 0, 0, 0, 0x08]);
    bytes.extend(7u64.to_be_bytes());
    let got = decode_stream::<ControlMessage>(Role::Gateway, [&bytes[..]]).unwrap();
    assert_eq!(got[1], ControlMessage::Ping(Ping { nonce: 7 }));
}

#[test]
fn large_byte_fields_are_shared_not_copied() {
    let f = frame(7, true, 50_000);
    let data_ptr = f.data.as_ptr();
    let encoded = VideoMessage::Frame(f.clone()).encode().unwrap();
    assert_eq!(encoded.chunks().len(), 2);
    assert_eq!(encoded.chunks()[1].as_ptr(), data_ptr);
    assert_eq!(encoded.len(), encoded.to_bytes().len());
    assert!(!encoded.is_empty());
    let small = VideoMessage::Frame(frame(7, true, 100)).encode().unwrap();
    assert_eq!(small.chunks().len(), 1);

    // An alert with a big snapshot: framing and id, the JPEG, then nothing copied after.
    let (_, alerts) = gateway_alerts();
    let encoded = alerts[0].encode().unwrap();
    assert_eq!(encoded.chunks().len(), 2);
    assert_eq!(
        decode_one::<AlertMessage>(&encoded.to_bytes()).unwrap(),
        alerts[0]
    );
}

#[test]
fn decoded_frames_share_the_received_buffer() {
    let (bytes, _) = gop_stream(Codec::H264);
    let mut decoder = FrameDecoder::<VideoMessage>::new(Role::Gateway);
    decoder.push(&bytes);
    let mut frames = 0;
    while let Some(m) = decoder.next_message().unwrap() {
        if let VideoMessage::Frame(f) = m {
            assert_eq!(f.data[..4], [0, 0, 0, 1]);
            frames += 1;
        }
    }
    assert_eq!(frames, 3);
}

#[test]
fn message_types_know_their_stream_and_sender() {
    for t in MessageType::ALL {
        let stream = t.stream().unwrap();
        assert!(t.sent_by(Role::Gateway) || t.sent_by(Role::Center), "{t}");
        assert!(t.0 < 0x40, "{t} fits one varint byte");
        if stream == StreamKind::Video {
            assert!(!t.sent_by(Role::Center), "{t}");
        }
    }
    assert_eq!(MessageType(0x3f).name(), None);
    assert!(!MessageType(0x3f).sent_by(Role::Gateway));
    assert_eq!(MessageType::FRAME.to_string(), "Frame (0x21)");
    assert_eq!(MessageType(0x99).to_string(), "unknown message type 0x99");
}

// ---------------------------------------------------------------------------------------
// Truncated input

#[test]
fn every_truncation_waits_then_fails_at_finish() {
    let (a, _) = gateway_control();
    let (b, _) = gateway_alerts();
    let (c, _) = gop_stream(Codec::H265);
    type Decode = fn(&[u8]) -> Result<(), DecodeError>;
    let cases: [(&[u8], Decode); 3] = [
        (&a, |p| {
            decode_stream::<ControlMessage>(Role::Gateway, [p]).map(drop)
        }),
        (&b, |p| {
            decode_stream::<AlertMessage>(Role::Gateway, [p]).map(drop)
        }),
        (&c, |p| {
            decode_stream::<VideoMessage>(Role::Gateway, [p]).map(drop)
        }),
    ];
    for (bytes, decode) in cases {
        // Cutting inside a message must fail; cutting between messages may succeed
        // (control, alerts) or fail for a GOP without frames.
        let mut boundaries = vec![0];
        let mut at = 0;
        while at < bytes.len() {
            let (_, a) = decode_varint(&bytes[at..]).unwrap();
            let (len, b) = decode_varint(&bytes[at + a..]).unwrap();
            at += a + b + len as usize;
            boundaries.push(at);
        }
        for cut in 0..bytes.len() {
            let result = decode(&bytes[..cut]);
            if boundaries.contains(&cut) {
                if let Err(e) = result {
                    assert!(matches!(e, DecodeError::StreamEnded { .. }), "{e}");
                }
            } else {
                let e = result.unwrap_err();
                match &e {
                    DecodeError::StreamEnded { offset, .. } => {
                        assert_eq!(*offset, cut as u64)
                    }
                    other => panic!("cut at {cut}: {other}"),
                }
            }
        }
    }
}

#[test]
fn stream_end_errors_say_what_was_cut() {
    let bytes = wire(&VideoMessage::GopHeader(gop_header(Codec::H264)));
    let mut decoder = FrameDecoder::<VideoMessage>::new(Role::Gateway);
    decoder.push(&bytes);
    assert!(decoder.next_message().unwrap().is_some());
    let f = wire(&VideoMessage::Frame(frame(5, true, 100)));
    decoder.push(&f[..50]);
    assert_eq!(decoder.next_message().unwrap(), None);
    assert_eq!(
        decoder.finish().unwrap_err().to_string(),
        format!(
            "video stream ended at offset {} inside a Frame (47 of {} payload bytes)",
            bytes.len() + 50,
            f.len() - 3
        )
    );

    assert_eq!(
        stream_error::<VideoMessage>(Role::Gateway, &bytes).to_string(),
        format!(
            "video stream ended at offset {} inside a GOP stream without frames",
            bytes.len()
        )
    );
    assert_eq!(
        stream_error::<VideoMessage>(Role::Gateway, &[]).to_string(),
        "video stream ended at offset 0 inside a GOP stream before its GopHeader"
    );
    assert_eq!(
        stream_error::<AlertMessage>(Role::Gateway, &[0x10]).to_string(),
        "alert stream ended at offset 1 inside the length of a Alert"
    );
    assert_eq!(
        stream_error::<AlertMessage>(Role::Gateway, &[0x50]).to_string(),
        "alert stream ended at offset 1 inside a message's type"
    );
    let mut skipped = wire(&ControlMessage::Hello(hello()));
    let at = skipped.len();
    skipped.extend(&envelope(0x3a, &[1, 2, 3, 4])[..4]);
    assert_eq!(
        stream_error::<ControlMessage>(Role::Gateway, &skipped).to_string(),
        format!(
            "control stream ended at offset {} inside a skipped message of unknown type (2 payload bytes missing)",
            at + 4
        )
    );
    // Empty control and alert streams may end.
    assert_eq!(
        decode_stream::<ControlMessage>(Role::Center, []),
        Ok(vec![])
    );
    assert_eq!(decode_stream::<AlertMessage>(Role::Center, []), Ok(vec![]));
}

#[test]
fn truncated_payloads_name_the_field() {
    // A Hello whose payload stops inside the second camera's id.
    let bytes = wire(&ControlMessage::Hello(hello()));
    let (_, a) = decode_varint(&bytes).unwrap();
    let (_, b) = decode_varint(&bytes[a..]).unwrap();
    let payload = &bytes[a + b..];
    let second = payload.windows(7).position(|w| w == b"drone-2").unwrap();
    let cut = Bytes::copy_from_slice(&payload[..second + 3]);
    let e = ControlMessage::decode(MessageType::HELLO, &cut, 100).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Truncated {
            message: "Hello",
            field: "cameras[1].id".into(),
            offset: 100 + second as u64 - 1,
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "Hello.cameras[1].id at offset {}: the message ends inside this field",
            100 + second - 1
        )
    );

    // A Frame cut inside capture_unix_ns (pts present: seq 8 + flags 1 + pts 9).
    let bytes = wire(&VideoMessage::Frame(frame(2, true, 10)));
    let payload = Bytes::copy_from_slice(&bytes[2..2 + 8 + 1 + 9 + 5]);
    assert_eq!(
        VideoMessage::decode(MessageType::FRAME, &payload, 0),
        Err(DecodeError::Truncated {
            message: "Frame",
            field: "capture_unix_ns".into(),
            offset: 18,
        })
    );

    // A forged camera count far above what the payload could hold.
    let mut payload = vec![1, 1, b'g', 0];
    encode_varint(1000, &mut payload).unwrap();
    payload.extend([0; 100]);
    assert_eq!(
        ControlMessage::decode(MessageType::HELLO, &Bytes::from(payload), 0),
        Err(DecodeError::Truncated {
            message: "Hello",
            field: "cameras".into(),
            offset: 4,
        })
    );
}

// ---------------------------------------------------------------------------------------
// Oversized input

#[test]
fn oversized_lengths_are_refused_before_the_payload() {
    let cases = [
        (StreamKind::Control, MessageType::HELLO, MAX_CONTROL_MESSAGE),
        (StreamKind::Alerts, MessageType::ALERT, MAX_ALERT_MESSAGE),
        (
            StreamKind::Video,
            MessageType::GOP_HEADER,
            MAX_VIDEO_MESSAGE,
        ),
        (StreamKind::Clip, MessageType::CLIP_OFFER, MAX_CLIP_MESSAGE),
    ];
    for (stream, msg_type, max) in cases {
        assert_eq!(stream.max_message(), max);
        let mut header = Vec::new();
        encode_varint(msg_type.0, &mut header).unwrap();
        encode_varint(max + 1, &mut header).unwrap();
        let expected = DecodeError::TooLarge {
            stream,
            msg_type: msg_type.0,
            len: max + 1,
            max,
            offset: 0,
        };
        let e = match stream {
            StreamKind::Control => stream_error::<ControlMessage>(Role::Gateway, &header),
            StreamKind::Alerts => stream_error::<AlertMessage>(Role::Gateway, &header),
            StreamKind::Video => stream_error::<VideoMessage>(Role::Gateway, &header),
            StreamKind::Clip => stream_error::<ClipMessage>(Role::Gateway, &header),
        };
        assert_eq!(e, expected);
    }
    // Exactly at the limit is fine (it waits for the payload).
    let mut header = Vec::new();
    encode_varint(MessageType::ALERT.0, &mut header).unwrap();
    encode_varint(MAX_ALERT_MESSAGE, &mut header).unwrap();
    let mut decoder = FrameDecoder::<AlertMessage>::new(Role::Gateway);
    decoder.push(&header);
    assert_eq!(decoder.next_message(), Ok(None));

    // Unknown types on the control stream obey the same limit.
    let mut bytes = wire(&ControlMessage::Hello(hello()));
    let at = bytes.len() as u64;
    encode_varint(0x2a2a, &mut bytes).unwrap();
    encode_varint(MAX_CONTROL_MESSAGE + 1, &mut bytes).unwrap();
    let e = stream_error::<ControlMessage>(Role::Gateway, &bytes);
    assert_eq!(
        e.to_string(),
        format!(
            "control stream, offset {at}: message type 0x2a2a of 1048577 bytes, at most 1048576 allowed on this stream"
        )
    );
}

#[test]
fn oversized_messages_are_refused_by_the_encoder() {
    let alert = AlertMessage::Alert(Alert {
        id: "a".into(),
        revision: 0,
        payload_json: "{}".into(),
        snapshot_jpeg: Some(jpeg(MAX_ALERT_MESSAGE as usize)),
    });
    match alert.encode() {
        Err(EncodeError::TooLarge { message, len, max }) => {
            assert_eq!(message, "Alert");
            assert!(len > max);
            assert_eq!(max, MAX_ALERT_MESSAGE);
        }
        other => panic!("{other:?}"),
    }
    let frame = VideoMessage::Frame(frame(1, true, MAX_VIDEO_MESSAGE as usize));
    assert!(matches!(
        frame.encode(),
        Err(EncodeError::BadLength { .. } | EncodeError::TooLarge { .. })
    ));
    let long_id = "x".repeat(MAX_ID_LEN + 1);
    assert_eq!(
        ControlMessage::Welcome(Welcome {
            protocol_version: 1,
            center_id: long_id,
        })
        .encode(),
        Err(EncodeError::BadLength {
            message: "Welcome",
            field: "center_id".into(),
            len: 65,
            min: 1,
            max: 64,
        })
    );
}

// ---------------------------------------------------------------------------------------
// Invalid UTF-8 and invalid values

#[test]
fn invalid_utf8_is_refused_with_its_field() {
    // Welcome with center_id = [0xc3, 0x28] (a broken two-byte sequence).
    let payload = [0x01, 0x02, 0xc3, 0x28];
    let bytes = envelope(MessageType::WELCOME.0, &payload);
    assert_eq!(
        stream_error::<ControlMessage>(Role::Center, &bytes),
        DecodeError::InvalidUtf8 {
            message: "Welcome",
            field: "center_id".into(),
            offset: 3,
        }
    );

    // A camera name in a Hello: lone continuation byte.
    let mut h = hello();
    h.cameras[0].name = Some("AAAA".into());
    let mut bytes = wire(&ControlMessage::Hello(h));
    let at = bytes.windows(4).position(|w| w == b"AAAA").unwrap();
    bytes[at + 2] = 0x80;
    let e = stream_error::<ControlMessage>(Role::Gateway, &bytes);
    assert_eq!(
        e,
        DecodeError::InvalidUtf8 {
            message: "Hello",
            field: "cameras[0].name".into(),
            offset: at as u64 - 1,
        }
    );

    // The alert record and an alert id.
    for (needle, field) in [("smoke", "payload_json"), ("8057", "id")] {
        let (_, alerts) = gateway_alerts();
        let mut bytes = wire(&alerts[0]);
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap();
        bytes[at] = 0xff;
        match stream_error::<AlertMessage>(Role::Gateway, &bytes) {
            DecodeError::InvalidUtf8 {
                message, field: f, ..
            } => {
                assert_eq!((message, f.as_str()), ("Alert", field));
            }
            other => panic!("{other}"),
        }
    }
}

/// Decodes `payload` as `msg_type` of `M` and returns the error's field and display.
fn payload_error<M: StreamMessage>(msg_type: MessageType, payload: &[u8]) -> (String, String) {
    let e = M::decode(msg_type, &Bytes::copy_from_slice(payload), 0).unwrap_err();
    let field = match &e {
        DecodeError::Truncated { field, .. }
        | DecodeError::BadLength { field, .. }
        | DecodeError::InvalidUtf8 { field, .. }
        | DecodeError::InvalidValue { field, .. } => field.clone(),
        DecodeError::TrailingBytes { .. } => "<trailing>".into(),
        other => panic!("{other}"),
    };
    (field, e.to_string())
}

#[test]
fn invalid_values_name_message_field_and_offset() {
    // Hello: protocol_version 1, gateway_id "g", software "" , one camera; padded so the
    // camera count is plausible.
    let camera_prefix = [1u8, 1, b'g', 0, 1, 1, b'c'];
    let ctl = |msg_type, payload: &[u8]| {
        payload_error::<ControlMessage>(msg_type, &[payload, &[0; 8]].concat())
    };
    let (field, text) = ctl(MessageType::HELLO, &[&camera_prefix[..], &[9]].concat());
    assert_eq!(field, "cameras[0].kind");
    assert_eq!(
        text,
        "Hello.cameras[0].kind at offset 7: 9, expected 0 to 3 (tower, drone, bodycam, fixed)"
    );
    let (field, _) = ctl(MessageType::HELLO, &[&camera_prefix[..], &[0, 5]].concat());
    assert_eq!(field, "cameras[0].state");
    let (field, text) = ctl(
        MessageType::HELLO,
        &[&camera_prefix[..], &[0, 1, 2]].concat(),
    );
    assert_eq!(field, "cameras[0].name");
    assert!(text.ends_with("2, expected 0 or 1"), "{text}");

    let mut lat = [&camera_prefix[..], &[0, 1, 0, 0, 1]].concat();
    lat.extend(91.0f64.to_be_bytes());
    lat.extend(0.0f64.to_be_bytes());
    lat.push(0);
    let (field, text) = ctl(MessageType::HELLO, &lat);
    assert_eq!(field, "cameras[0].location.lat");
    assert_eq!(
        text,
        "Hello.cameras[0].location.lat at offset 12: 91, expected -90 to 90"
    );
    let mut lon = [&camera_prefix[..], &[0, 1, 0, 0, 1]].concat();
    lon.extend(0.0f64.to_be_bytes());
    lon.extend(f64::NAN.to_be_bytes());
    lon.push(0);
    assert_eq!(ctl(MessageType::HELLO, &lon).0, "cameras[0].location.lon");

    let mut size = [&camera_prefix[..], &[0, 1, 0, 0, 0, 1, 1, 0]].concat();
    size.push(5);
    assert_eq!(ctl(MessageType::HELLO, &size).0, "cameras[0].format.width");
    let size = [&camera_prefix[..], &[0, 1, 0, 0, 0, 1, 7]].concat();
    assert_eq!(ctl(MessageType::HELLO, &size).0, "cameras[0].format.codec");
    // Width above u32.
    let mut size = [&camera_prefix[..], &[0, 1, 0, 0, 0, 1, 0]].concat();
    encode_varint(1 << 33, &mut size).unwrap();
    size.push(1);
    let (field, text) = ctl(MessageType::HELLO, &size);
    assert_eq!(field, "cameras[0].format.width");
    assert!(
        text.ends_with("8589934592, expected at most 2^32 - 1"),
        "{text}"
    );

    // Empty and overlong ids.
    let (field, text) = ctl(MessageType::HELLO, &[1, 0]);
    assert_eq!(field, "gateway_id");
    assert_eq!(
        text,
        "Hello.gateway_id at offset 1: length 0, expected 1 to 64"
    );
    let mut long = vec![1, 65];
    long.extend([b'x'; 65]);
    assert_eq!(ctl(MessageType::HELLO, &long).0, "gateway_id");

    // Duplicate camera ids.
    let mut h = hello();
    h.cameras[1].id = h.cameras[0].id.clone();
    assert_eq!(
        ControlMessage::Hello(h.clone()).encode(),
        Err(EncodeError::InvalidValue {
            message: "Hello",
            field: "cameras[1].id".into(),
            value: "tower-7".into(),
            expected: "an id no earlier camera has",
        })
    );

    // Subscribe: unknown mode; `all` with a list; CameraUpdate without changes, bad tag.
    assert_eq!(ctl(MessageType::SUBSCRIBE, &[3, 0]).0, "mode");
    let (field, text) = ctl(MessageType::SUBSCRIBE, &[0, 1, 1, b'c']);
    assert_eq!(field, "cameras");
    assert_eq!(
        text,
        "Subscribe.cameras at offset 1: 1 ids, expected none with mode all"
    );
    assert_eq!(ctl(MessageType::CAMERA_UPDATE, &[0]).0, "changes");
    assert_eq!(ctl(MessageType::CAMERA_UPDATE, &[1, 3]).0, "changes[0].tag");
    assert_eq!(
        ctl(MessageType::CAMERA_UPDATE, &[1, 1, 1, b'c', 9]).0,
        "changes[0].state"
    );

    // Trailing bytes after the last field.
    let (field, text) = payload_error::<ControlMessage>(MessageType::PING, &[0; 9]);
    assert_eq!(field, "<trailing>");
    assert_eq!(text, "Ping at offset 8: 1 bytes after the last field");

    // Video: codec, flags, parameter sets against the codec.
    let vid = payload_error::<VideoMessage>;
    let frame_prefix = [0u8; 8];
    let (field, text) = vid(MessageType::FRAME, &[&frame_prefix[..], &[0x03]].concat());
    assert_eq!(field, "flags");
    assert_eq!(
        text,
        "Frame.flags at offset 8: 0x03, expected only bit 0 (keyframe) set"
    );
    let header_prefix = [&[1u8, b'c'][..], &[0; 8]].concat();
    assert_eq!(
        vid(
            MessageType::GOP_HEADER,
            &[&header_prefix[..], &[2]].concat()
        )
        .0,
        "codec"
    );
    let (field, text) = vid(
        MessageType::GOP_HEADER,
        &[&header_prefix[..], &[0, 1, 1, 1]].concat(),
    );
    assert_eq!(field, "vps");
    assert_eq!(
        text,
        "GopHeader.vps at offset 13: present, expected absent for H.264"
    );
    assert_eq!(
        vid(
            MessageType::GOP_HEADER,
            &[&header_prefix[..], &[1, 1, 1, 0]].concat()
        )
        .0,
        "vps"
    );
    assert_eq!(
        vid(
            MessageType::GOP_HEADER,
            &[&header_prefix[..], &[0, 1, 1, 0, 0]].concat()
        )
        .0,
        "sps"
    );
    let mut empty_data = [&frame_prefix[..], &[1, 0]].concat();
    empty_data.extend([0; 16]);
    empty_data.push(0);
    assert_eq!(vid(MessageType::FRAME, &empty_data).0, "data");

    // Encoders refuse what decoders refuse.
    let mut g = gop_header(Codec::H265);
    g.vps = None;
    assert!(matches!(
        VideoMessage::GopHeader(g).encode(),
        Err(EncodeError::InvalidValue { .. })
    ));
    let mut g = gop_header(Codec::H264);
    g.width = 0;
    assert!(VideoMessage::GopHeader(g).encode().is_err());
    let mut c = camera("c");
    c.location = Some(Location {
        lat: 0.0,
        lon: 180.5,
    });
    let mut h = hello();
    h.cameras = vec![c];
    assert_eq!(
        ControlMessage::Hello(h).encode(),
        Err(EncodeError::InvalidValue {
            message: "Hello",
            field: "cameras[0].location.lon".into(),
            value: "180.5".into(),
            expected: "-180 to 180",
        })
    );
    assert!(
        ControlMessage::Subscribe(Subscribe {
            mode: SubscribeMode::All,
            cameras: vec!["x".into()],
        })
        .encode()
        .is_err()
    );
    assert!(
        ControlMessage::CameraUpdate(CameraUpdate { changes: vec![] })
            .encode()
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Stream rules

#[test]
fn messages_on_the_wrong_stream_or_from_the_wrong_side_are_refused() {
    let frame_bytes = wire(&VideoMessage::Frame(frame(1, true, 10)));
    let mut bytes = wire(&ControlMessage::Hello(hello()));
    let at = bytes.len() as u64;
    bytes.extend(&frame_bytes);
    assert_eq!(
        stream_error::<ControlMessage>(Role::Gateway, &bytes),
        DecodeError::Unexpected {
            stream: StreamKind::Control,
            message: "Frame",
            rule: "a video stream message",
            offset: at,
        }
    );
    let ack = wire(&AlertMessage::AlertAck(AlertAck {
        id: "a".into(),
        revision: 0,
    }));
    assert_eq!(
        stream_error::<AlertMessage>(Role::Gateway, &ack).to_string(),
        "alert stream, offset 0: AlertAck: only the center sends it"
    );
    let (alerts, _) = gateway_alerts();
    assert_eq!(
        stream_error::<AlertMessage>(Role::Center, &alerts).to_string(),
        "alert stream, offset 0: Alert: only the gateway sends it"
    );
    assert_eq!(
        stream_error::<VideoMessage>(Role::Gateway, &wire(&welcome())).to_string(),
        "video stream, offset 0: Welcome: a control stream message"
    );
    assert_eq!(
        stream_error::<ControlMessage>(Role::Gateway, &wire(&welcome())).to_string(),
        "control stream, offset 0: Welcome: only the center sends it"
    );
    let (gop, _) = gop_stream(Codec::H264);
    assert_eq!(
        stream_error::<VideoMessage>(Role::Center, &gop).to_string(),
        "video stream, offset 0: GopHeader: only the gateway sends it"
    );
}

#[test]
fn handshake_order_is_enforced() {
    let ping = wire(&ControlMessage::Ping(Ping { nonce: 1 }));
    assert_eq!(
        stream_error::<ControlMessage>(Role::Gateway, &ping).to_string(),
        "control stream, offset 0: Ping: the gateway's first control message must be Hello"
    );
    assert_eq!(
        stream_error::<ControlMessage>(Role::Center, &ping).to_string(),
        "control stream, offset 0: Ping: the center's first control message must be Welcome or Refuse"
    );
    let h = wire(&ControlMessage::Hello(hello()));
    let twice = [&h[..], &h[..]].concat();
    assert_eq!(
        stream_error::<ControlMessage>(Role::Gateway, &twice).to_string(),
        format!(
            "control stream, offset {}: Hello: Hello is sent only once",
            h.len()
        )
    );
    let w = wire(&welcome());
    assert_eq!(
        stream_error::<ControlMessage>(Role::Center, &[&w[..], &w[..]].concat()).offset(),
        w.len() as u64
    );
    let refuse = wire(&ControlMessage::Refuse(Refuse {
        code: ErrorCode::UNSUPPORTED_VERSION,
        reason: "this center speaks lookout/1 only".into(),
    }));
    assert_eq!(
        decode_stream::<ControlMessage>(Role::Center, [&refuse[..]])
            .unwrap()
            .len(),
        1
    );
    let after = [&refuse[..], &ping[..]].concat();
    assert_eq!(
        stream_error::<ControlMessage>(Role::Center, &after).to_string(),
        format!(
            "control stream, offset {}: Ping: nothing may follow Refuse",
            refuse.len()
        )
    );
    // An unknown type before Hello is skipped like any other.
    let early = [&envelope(0x3a, &[1, 2])[..], &h[..]].concat();
    assert_eq!(
        decode_stream::<ControlMessage>(Role::Gateway, [&early[..]])
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn gop_stream_order_is_enforced() {
    let header = wire(&VideoMessage::GopHeader(gop_header(Codec::H264)));
    let f = |seq, key| wire(&VideoMessage::Frame(frame(seq, key, 20)));
    let e = stream_error::<VideoMessage>(Role::Gateway, &f(1, true));
    assert_eq!(
        e.to_string(),
        "video stream, offset 0: Frame: a GOP stream starts with GopHeader"
    );
    let e =
        stream_error::<VideoMessage>(Role::Gateway, &[&header[..], &f(1, true), &header].concat());
    assert!(
        e.to_string()
            .ends_with("GopHeader: a GOP stream has one GopHeader")
    );
    let e = stream_error::<VideoMessage>(Role::Gateway, &[&header[..], &f(1, false)].concat());
    assert_eq!(
        e,
        DecodeError::InvalidValue {
            message: "Frame",
            field: "flags".into(),
            value: "0x00".into(),
            expected: "the keyframe bit on a GOP's first frame",
            offset: header.len() as u64 + 2 + 8,
        }
    );
    let first = [&header[..], &f(10, true)].concat();
    for seq in [10, 9, 0] {
        let e = stream_error::<VideoMessage>(Role::Gateway, &[&first[..], &f(seq, false)].concat());
        assert_eq!(
            e.to_string(),
            format!(
                "Frame.seq at offset {}: {seq} after 10, expected above the previous frame's seq",
                first.len() + 2
            )
        );
    }
    // Later keyframes inside a GOP are allowed (an encoder may emit two in a row).
    let ok = [&first[..], &f(11, true), &f(12, false)].concat();
    assert_eq!(
        decode_stream::<VideoMessage>(Role::Gateway, [&ok[..]])
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn unknown_types_on_alert_and_video_streams_are_errors() {
    let unknown = envelope(0x3e, &[0; 4]);
    assert_eq!(
        stream_error::<AlertMessage>(Role::Gateway, &unknown),
        DecodeError::UnknownType {
            stream: StreamKind::Alerts,
            msg_type: 0x3e,
            offset: 0,
        }
    );
    let (gop, _) = gop_stream(Codec::H264);
    let bytes = [&gop[..], &unknown].concat();
    assert_eq!(
        stream_error::<VideoMessage>(Role::Gateway, &bytes).to_string(),
        format!(
            "video stream, offset {}: message type 0x3e is not defined on this stream",
            gop.len()
        )
    );
    // Decoding a payload of another stream's type directly is refused, too.
    assert!(matches!(
        AlertMessage::decode(MessageType::PING, &Bytes::new(), 0),
        Err(DecodeError::UnknownType { .. })
    ));
}

#[test]
fn errors_stick_and_later_data_is_dropped() {
    let mut decoder = FrameDecoder::<AlertMessage>::new(Role::Gateway);
    decoder.push(&envelope(0x3e, &[]));
    let e = decoder.next_message().unwrap_err();
    assert_eq!(e.code(), ErrorCode::PROTOCOL_VIOLATION);
    let (good, _) = gateway_alerts();
    decoder.push(&good);
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(decoder.next_message(), Err(e.clone()));
    assert_eq!(decoder.finish(), Err(e.clone()));
    assert_eq!(decoder.error(), Some(&e));
}

// ---------------------------------------------------------------------------------------
// Property tests

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{1,64}",
        "\\PC{1,20}".prop_filter("1 to 64 bytes", |s| !s.is_empty() && s.len() <= 64),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::H264), Just(Codec::H265)]
}

fn nonempty_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..max).prop_map(Bytes::from)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        proptest::sample::select(ErrorCode::ALL.to_vec()),
        (0..=(1u64 << 62) - 1).prop_map(|c| ErrorCode::from_u64(c).unwrap()),
    ]
}

fn camera_info() -> impl Strategy<Value = CameraInfo> {
    (
        id(),
        proptest::sample::select(CameraKind::ALL.to_vec()),
        proptest::sample::select(CameraState::ALL.to_vec()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of((-90.0..=90.0f64, -180.0..=180.0f64)),
        proptest::option::of((codec(), 1..=u32::MAX, 1..=u32::MAX)),
    )
        .prop_map(
            |(id, kind, state, name, group, location, format)| CameraInfo {
                id,
                kind,
                state,
                name,
                group,
                location: location.map(|(lat, lon)| Location { lat, lon }),
                format: format.map(|(codec, width, height)| VideoFormat {
                    codec,
                    width,
                    height,
                }),
            },
        )
}

fn control_message() -> impl Strategy<Value = ControlMessage> {
    prop_oneof![
        (
            any::<u32>(),
            id(),
            text(),
            proptest::collection::vec(camera_info(), 0..6)
        )
            .prop_map(
                |(protocol_version, gateway_id, software_version, mut cameras)| {
                    let mut seen = std::collections::HashSet::new();
                    cameras.retain(|c| seen.insert(c.id.clone()));
                    ControlMessage::Hello(Hello {
                        protocol_version,
                        gateway_id,
                        software_version,
                        cameras,
                    })
                }
            ),
        (any::<u32>(), id()).prop_map(|(protocol_version, center_id)| {
            ControlMessage::Welcome(Welcome {
                protocol_version,
                center_id,
            })
        }),
        (error_code(), text())
            .prop_map(|(code, reason)| ControlMessage::Refuse(Refuse { code, reason })),
        (0..3u8, proptest::collection::vec(id(), 0..5)).prop_map(|(mode, cameras)| {
            let mode = [
                SubscribeMode::All,
                SubscribeMode::List,
                SubscribeMode::AlertingOnly,
            ][usize::from(mode)];
            let cameras = if mode == SubscribeMode::All {
                Vec::new()
            } else {
                cameras
            };
            ControlMessage::Subscribe(Subscribe { mode, cameras })
        }),
        proptest::collection::vec(
            prop_oneof![
                camera_info().prop_map(CameraChange::Upsert),
                (id(), proptest::sample::select(CameraState::ALL.to_vec()))
                    .prop_map(|(id, state)| CameraChange::State { id, state }),
                id().prop_map(|id| CameraChange::Removed { id }),
            ],
            1..6
        )
        .prop_map(|changes| ControlMessage::CameraUpdate(CameraUpdate { changes })),
        any::<u64>().prop_map(|nonce| ControlMessage::Ping(Ping { nonce })),
        any::<u64>().prop_map(|nonce| ControlMessage::Pong(Pong { nonce })),
        (error_code(), text())
            .prop_map(|(code, reason)| ControlMessage::Goaway(Goaway { code, reason })),
        (
            id(),
            proptest::option::of(any::<u32>()),
            error_code(),
            text()
        )
            .prop_map(|(alert_id, revision, code, reason)| {
                ControlMessage::AlertRefused(AlertRefused {
                    alert_id,
                    revision,
                    code,
                    reason,
                })
            }),
    ]
}

fn alert_message() -> impl Strategy<Value = AlertMessage> {
    prop_oneof![
        (
            id(),
            any::<u32>(),
            "\\PC{1,200}",
            proptest::option::of(nonempty_bytes(3000))
        )
            .prop_map(|(id, revision, payload_json, snapshot_jpeg)| {
                AlertMessage::Alert(Alert {
                    id,
                    revision,
                    payload_json,
                    snapshot_jpeg,
                })
            }),
        (id(), nonempty_bytes(3000))
            .prop_map(|(alert_id, jpeg)| AlertMessage::Snapshot(Snapshot { alert_id, jpeg })),
        (id(), any::<u32>())
            .prop_map(|(id, revision)| AlertMessage::AlertAck(AlertAck { id, revision })),
        id().prop_map(|alert_id| AlertMessage::SnapshotAck(SnapshotAck { alert_id })),
    ]
}

fn gop_header_strategy() -> impl Strategy<Value = GopHeader> {
    (
        id(),
        any::<u64>(),
        codec(),
        1..=u32::MAX,
        1..=u32::MAX,
        nonempty_bytes(40),
        nonempty_bytes(200),
        nonempty_bytes(40),
    )
        .prop_map(
            |(camera_id, gop_seq, codec, width, height, vps, sps, pps)| GopHeader {
                camera_id,
                gop_seq,
                codec,
                width,
                height,
                vps: (codec == Codec::H265).then_some(vps),
                sps,
                pps,
            },
        )
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    (
        any::<u64>(),
        any::<bool>(),
        proptest::option::of(any::<u64>()),
        any::<u64>(),
        any::<u64>(),
        nonempty_bytes(4000),
    )
        .prop_map(
            |(seq, keyframe, pts_ns, capture_unix_ns, received_unix_ns, data)| Frame {
                seq,
                keyframe,
                pts_ns,
                capture_unix_ns,
                received_unix_ns,
                data,
            },
        )
}

/// Chunk boundaries for a stream of `len` bytes from arbitrary cut points.
fn cut(bytes: &[u8], cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        chunks.push(bytes[start..p].to_vec());
        start = p;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn control_messages_round_trip(m in control_message()) {
        let bytes = wire(&m);
        prop_assert_eq!(decode_one::<ControlMessage>(&bytes).unwrap(), m);
    }

    #[test]
    fn alert_messages_round_trip(m in alert_message()) {
        let bytes = wire(&m);
        prop_assert_eq!(decode_one::<AlertMessage>(&bytes).unwrap(), m);
    }

    #[test]
    fn video_messages_round_trip(header in gop_header_strategy(), frame in frame_strategy()) {
        for m in [VideoMessage::GopHeader(header.clone()), VideoMessage::Frame(frame.clone())] {
            let bytes = wire(&m);
            prop_assert_eq!(decode_one::<VideoMessage>(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn control_sessions_survive_any_chunking(
        messages in proptest::collection::vec(control_message(), 0..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        // A gateway's legal stream: Hello first, then what the gateway may send.
        let mut session = vec![ControlMessage::Hello(hello())];
        session.extend(messages.into_iter().filter(|m| {
            matches!(m, ControlMessage::CameraUpdate(_) | ControlMessage::Ping(_)
                | ControlMessage::Pong(_) | ControlMessage::Goaway(_))
        }));
        let bytes: Vec<u8> = session.iter().flat_map(wire).collect();
        let chunks = cut(&bytes, &cuts);
        let got = decode_stream::<ControlMessage>(Role::Gateway, chunks.iter().map(Vec::as_slice));
        prop_assert_eq!(got.unwrap(), session);
    }

    #[test]
    fn gop_streams_survive_any_chunking(
        header in gop_header_strategy(),
        frames in proptest::collection::vec(frame_strategy(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut session = vec![VideoMessage::GopHeader(header)];
        let mut seq = 0u64;
        for (i, mut f) in frames.into_iter().enumerate() {
            seq += 1 + f.seq % 3;
            f.seq = seq;
            f.keyframe |= i == 0;
            session.push(VideoMessage::Frame(f));
        }
        let bytes: Vec<u8> = session.iter().flat_map(wire).collect();
        let chunks = cut(&bytes, &cuts);
        let got = decode_stream::<VideoMessage>(Role::Gateway, chunks.iter().map(Vec::as_slice));
        prop_assert_eq!(got.unwrap(), session);
    }

    #[test]
    fn garbage_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let chunks = cut(&data, &cuts);
        let chunks = || chunks.iter().map(Vec::as_slice);
        for from in [Role::Gateway, Role::Center] {
            for result in [
                decode_stream::<ControlMessage>(from, chunks()).map(drop),
                decode_stream::<AlertMessage>(from, chunks()).map(drop),
                decode_stream::<VideoMessage>(from, chunks()).map(drop),
            ] {
                if let Err(e) = result {
                    prop_assert!(e.offset() <= data.len() as u64, "{}", e);
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn damaged_messages_never_panic(
        m in control_message(),
        a in alert_message(),
        f in frame_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        for mut bytes in [wire(&m), wire(&a), wire(&VideoMessage::Frame(f.clone()))] {
            for (at, byte) in &flips {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
            let _ = decode_stream::<ControlMessage>(Role::Gateway, [&bytes[..]]);
            let _ = decode_stream::<ControlMessage>(Role::Center, [&bytes[..]]);
            let _ = decode_stream::<AlertMessage>(Role::Gateway, [&bytes[..]]);
            let _ = decode_stream::<AlertMessage>(Role::Center, [&bytes[..]]);
            let _ = decode_stream::<VideoMessage>(Role::Gateway, [&bytes[..]]);
            if let Some((t, n)) = decode_varint(&bytes)
                && let Some((_, k)) = decode_varint(&bytes[n..])
            {
                let payload = Bytes::copy_from_slice(&bytes[n + k..]);
                // Whatever still decodes must encode again and decode to itself.
                if let Ok(m) = ControlMessage::decode(MessageType(t), &payload, 0) {
                    prop_assert_eq!(decode_one::<ControlMessage>(&wire(&m)).unwrap(), m);
                }
                if let Ok(m) = AlertMessage::decode(MessageType(t), &payload, 0) {
                    prop_assert_eq!(decode_one::<AlertMessage>(&wire(&m)).unwrap(), m);
                }
                if let Ok(m) = VideoMessage::decode(MessageType(t), &payload, 0) {
                    prop_assert_eq!(decode_one::<VideoMessage>(&wire(&m)).unwrap(), m);
                }
            }
        }
    }
}
