//! The seed corpus, built from real data rather than typed in: the x264/x265 captures in
//! `codecs/testdata/` (whole clips, each parameter set and SEI on its own, a stamped
//! access unit) and the relay encoder's own output for every message type, in the order
//! a real stream carries them (including the worked examples of `docs/PROTOCOL.md`).
//! `cargo run --example write_seeds` writes them under `corpus/`; the config seeds are
//! small hand-cut copies of `configs/*.toml` and live there directly.

use bytes::Bytes;
use lookout_codecs::annexb::nal_units;
use lookout_codecs::relay::{
    Alert, AlertAck, AlertMessage, AlertRefused, CameraChange, CameraInfo, CameraKind, CameraState,
    CameraUpdate, ClipAck, ClipData, ClipMessage, ClipOffer, ClipWant, ControlMessage, EncodeError,
    ErrorCode, Frame, Goaway, GopHeader, Hello, Location, PROTOCOL_VERSION, Ping, Pong, Refuse,
    Snapshot, SnapshotAck, StreamMessage, Subscribe, SubscribeMode, VideoFormat, VideoMessage,
    Welcome,
};
use lookout_codecs::{CaptureStamp, Codec, access_units, h264, h265, insert_stamp, inspect};

/// One seed: its file name in the target's corpus folder, and its bytes.
pub type Seed = (String, Vec<u8>);

/// A capture from `codecs/testdata/`: file name and contents.
pub type Clip = (String, Vec<u8>);

/// Seeds for `nal_parsers` from the captures: the selector byte (0 for H.264, 1 for
/// H.265) followed by a whole clip, one parameter set or SEI NAL unit, or a stamped
/// first access unit.
pub fn nal_parsers(clips: &[Clip]) -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (name, clip) in clips {
        let (codec, selector) = if name.ends_with(".h265") {
            (Codec::H265, 1u8)
        } else {
            (Codec::H264, 0u8)
        };
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
        let with_selector = |body: &[u8]| {
            let mut seed = vec![selector];
            seed.extend_from_slice(body);
            seed
        };
        seeds.push((stem.to_owned(), with_selector(clip)));
        for nal in nal_units(clip) {
            let Some(kind) = parameter_set_or_sei(codec, nal) else {
                continue;
            };
            let mut unit = vec![0, 0, 0, 1];
            unit.extend_from_slice(nal);
            let seed = (format!("{stem}_{kind}"), with_selector(&unit));
            if !seeds.iter().any(|(n, _)| *n == seed.0) {
                seeds.push(seed);
            }
        }
        let clip = Bytes::copy_from_slice(clip);
        if let Some(first) = access_units(codec, &clip).next() {
            let stamp = CaptureStamp {
                camera_id: "tower-01".into(),
                frame: 42,
                capture_unix_ns: 1_700_000_000_123_456_789,
            };
            if let Ok(stamped) = insert_stamp(codec, &first, &stamp) {
                seeds.push((format!("{stem}_stamped_au"), with_selector(&stamped)));
            }
        }
    }
    seeds
}

/// `"vps"`, `"sps"`, `"pps"` or `"sei"` for those NAL units, `None` for the rest.
fn parameter_set_or_sei(codec: Codec, nal: &[u8]) -> Option<&'static str> {
    match codec {
        Codec::H264 => match h264::NalType::of(nal)? {
            h264::NalType::SPS => Some("sps"),
            h264::NalType::PPS => Some("pps"),
            h264::NalType::SEI => Some("sei"),
            _ => None,
        },
        Codec::H265 => match h265::NalHeader::parse(nal)?.nal_type {
            h265::NalType::VPS => Some("vps"),
            h265::NalType::SPS => Some("sps"),
            h265::NalType::PPS => Some("pps"),
            h265::NalType::PREFIX_SEI | h265::NalType::SUFFIX_SEI => Some("sei"),
            _ => None,
        },
    }
}

/// Seeds for `relay_frames`: whole streams, each behind the selector byte that reads it
/// as the right stream kind from the right role, in pieces of `chunk` bytes.
pub fn relay_frames(clips: &[Clip]) -> Result<Vec<Seed>, EncodeError> {
    let (h264_header, h264_key) = gop(clips, "h264_854x480_main.h264", Codec::H264);
    let (h265_header, h265_key) = gop(clips, "h265_854x480_444.h265", Codec::H265);
    // Selector: bit 0 the sender (0 gateway, 1 center), bits 1–2 the stream kind
    // (0 control, 1 alert, 2 video, 3 clip), bits 3–7 the piece size minus one.
    let selector =
        |center: bool, kind: u8, chunk: u8| u8::from(center) | kind << 1 | (chunk - 1) << 3;
    let mut seeds = Vec::new();
    let mut stream = |name: &str, selector: u8, messages: Vec<Bytes>| {
        let mut seed = vec![selector];
        for m in messages {
            seed.extend_from_slice(&m);
        }
        seeds.push((name.to_owned(), seed));
    };
    stream(
        "control_from_gateway",
        selector(false, 0, 32),
        encode_all(&[
            ControlMessage::Hello(hello()),
            ControlMessage::CameraUpdate(camera_update()),
            ControlMessage::Ping(Ping { nonce: 7 }),
            ControlMessage::Pong(Pong { nonce: 9 }),
            ControlMessage::Goaway(goaway()),
        ])?,
    );
    stream(
        "control_from_center",
        selector(true, 0, 5),
        encode_all(&[
            ControlMessage::Welcome(welcome()),
            ControlMessage::Subscribe(subscribe()),
            ControlMessage::Ping(Ping { nonce: 9 }),
            ControlMessage::Pong(Pong { nonce: 7 }),
            ControlMessage::AlertRefused(alert_refused()),
            ControlMessage::Goaway(goaway()),
        ])?,
    );
    stream(
        "control_refused",
        selector(true, 0, 1),
        encode_all(&[ControlMessage::Refuse(refuse())])?,
    );
    stream(
        "alerts_from_gateway",
        selector(false, 1, 32),
        encode_all(&[
            AlertMessage::Alert(protocol_example_alert()),
            AlertMessage::Alert(Alert {
                revision: 1,
                snapshot_jpeg: None,
                ..protocol_example_alert()
            }),
            AlertMessage::Snapshot(snapshot()),
        ])?,
    );
    stream(
        "alerts_from_center",
        selector(true, 1, 3),
        encode_all(&[
            AlertMessage::AlertAck(alert_ack()),
            AlertMessage::SnapshotAck(snapshot_ack()),
        ])?,
    );
    stream(
        "gop_h264",
        selector(false, 2, 32),
        encode_all(&[
            VideoMessage::GopHeader(h264_header.clone()),
            VideoMessage::Frame(Frame {
                seq: 1499,
                keyframe: true,
                data: h264_key,
                ..protocol_example_frame()
            }),
            VideoMessage::Frame(protocol_example_frame()),
        ])?,
    );
    stream(
        "gop_h265",
        selector(false, 2, 7),
        encode_all(&[
            VideoMessage::GopHeader(h265_header.clone()),
            VideoMessage::Frame(Frame {
                keyframe: true,
                pts_ns: None,
                data: h265_key,
                ..protocol_example_frame()
            }),
        ])?,
    );
    stream(
        "clip_from_gateway",
        selector(false, 3, 9),
        encode_all(&[
            ClipMessage::ClipOffer(clip_offer()),
            ClipMessage::ClipData(ClipData {
                offset: 1000,
                data: Bytes::from_static(b"\0\0\0\x20ftypisom"),
            }),
            ClipMessage::ClipData(ClipData {
                offset: 1012,
                data: Bytes::from_static(b"moov"),
            }),
        ])?,
    );
    stream(
        "clip_from_center",
        selector(true, 3, 2),
        encode_all(&[
            ClipMessage::ClipWant(ClipWant { offset: 1000 }),
            ClipMessage::ClipAck(ClipAck {}),
        ])?,
    );
    Ok(seeds)
}

/// A clip on offer, as a gateway writes it.
fn clip_offer() -> ClipOffer {
    ClipOffer {
        alert_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        camera_id: "tower-7".into(),
        codec: Codec::H265,
        size: 2_200_217,
        sha256: [0x5a; 32],
        first_capture_unix_ns: 1_700_000_000_000_000_000,
        last_capture_unix_ns: 1_700_000_029_800_000_000,
    }
}

/// Seeds for `relay_messages`: each message's type varint and payload, without the
/// length (the target takes the payload to be the rest of the input).
pub fn relay_messages(clips: &[Clip]) -> Result<Vec<Seed>, EncodeError> {
    let (h264_header, _) = gop(clips, "h264_854x480_main.h264", Codec::H264);
    let (h265_header, _) = gop(clips, "h265_854x480_444.h265", Codec::H265);
    let mut seeds = Vec::new();
    let mut add = |name: &str, encoded: Bytes| {
        // The envelope is `type` then `length`, both varints; keep the first, drop the second.
        let type_len = 1usize << (encoded[0] >> 6);
        let len_len = 1usize << (encoded[type_len] >> 6);
        let mut seed = encoded[..type_len].to_vec();
        seed.extend_from_slice(&encoded[type_len + len_len..]);
        seeds.push((name.to_owned(), seed));
    };
    let control = [
        ("hello", ControlMessage::Hello(hello())),
        ("welcome", ControlMessage::Welcome(welcome())),
        ("refuse", ControlMessage::Refuse(refuse())),
        ("subscribe", ControlMessage::Subscribe(subscribe())),
        (
            "camera_update",
            ControlMessage::CameraUpdate(camera_update()),
        ),
        ("ping", ControlMessage::Ping(Ping { nonce: 7 })),
        ("pong", ControlMessage::Pong(Pong { nonce: 7 })),
        ("goaway", ControlMessage::Goaway(goaway())),
        (
            "alert_refused",
            ControlMessage::AlertRefused(alert_refused()),
        ),
    ];
    for (name, m) in control {
        add(name, m.encode()?.to_bytes());
    }
    let alerts = [
        ("alert", AlertMessage::Alert(protocol_example_alert())),
        ("snapshot", AlertMessage::Snapshot(snapshot())),
        ("alert_ack", AlertMessage::AlertAck(alert_ack())),
        ("snapshot_ack", AlertMessage::SnapshotAck(snapshot_ack())),
    ];
    for (name, m) in alerts {
        add(name, m.encode()?.to_bytes());
    }
    let video = [
        ("gop_header_h264", VideoMessage::GopHeader(h264_header)),
        ("gop_header_h265", VideoMessage::GopHeader(h265_header)),
        ("frame", VideoMessage::Frame(protocol_example_frame())),
    ];
    for (name, m) in video {
        add(name, m.encode()?.to_bytes());
    }
    let clip = [
        ("clip_offer", ClipMessage::ClipOffer(clip_offer())),
        ("clip_want", ClipMessage::ClipWant(ClipWant { offset: 7 })),
        (
            "clip_data",
            ClipMessage::ClipData(ClipData {
                offset: 7,
                data: Bytes::from_static(b"mdat"),
            }),
        ),
        ("clip_ack", ClipMessage::ClipAck(ClipAck {})),
    ];
    for (name, m) in clip {
        add(name, m.encode()?.to_bytes());
    }
    Ok(seeds)
}

fn encode_all<M: StreamMessage>(messages: &[M]) -> Result<Vec<Bytes>, EncodeError> {
    messages
        .iter()
        .map(|m| Ok(m.encode()?.to_bytes()))
        .collect()
}

fn camera(id: &str, kind: CameraKind, codec: Codec) -> CameraInfo {
    CameraInfo {
        id: id.into(),
        kind,
        state: CameraState::Live,
        name: Some(format!("{id} on the north ridge")),
        group: Some("township-01".into()),
        location: Some(Location {
            lat: 29.31,
            lon: 110.42,
        }),
        format: Some(VideoFormat {
            codec,
            width: 1280,
            height: 720,
        }),
    }
}

fn hello() -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        gateway_id: "county-gw".into(),
        software_version: "lookout 0.1.0".into(),
        cameras: vec![
            camera("tower-01", CameraKind::Tower, Codec::H264),
            CameraInfo {
                state: CameraState::Connecting,
                name: None,
                group: None,
                location: None,
                format: None,
                ..camera("drone-01", CameraKind::Drone, Codec::H265)
            },
        ],
    }
}

fn welcome() -> Welcome {
    Welcome {
        protocol_version: PROTOCOL_VERSION,
        center_id: "county-center".into(),
    }
}

fn refuse() -> Refuse {
    Refuse {
        code: ErrorCode::UNSUPPORTED_VERSION,
        reason: "this center speaks lookout/1 only".into(),
    }
}

fn subscribe() -> Subscribe {
    Subscribe {
        mode: SubscribeMode::List,
        cameras: vec!["tower-01".into(), "drone-01".into()],
    }
}

fn camera_update() -> CameraUpdate {
    CameraUpdate {
        changes: vec![
            CameraChange::Upsert(camera("bodycam-01", CameraKind::Bodycam, Codec::H264)),
            CameraChange::State {
                id: "tower-01".into(),
                state: CameraState::Stalled,
            },
            CameraChange::Removed {
                id: "fixed-01".into(),
            },
        ],
    }
}

fn alert_refused() -> AlertRefused {
    AlertRefused {
        alert_id: "gauge17-2026-12-07T0815".into(),
        revision: Some(0),
        code: ErrorCode::ALERT_ID_CONFLICT,
        reason: "a different record holds this id and revision".into(),
    }
}

fn goaway() -> Goaway {
    Goaway {
        code: ErrorCode::NO_ERROR,
        reason: "shutting down".into(),
    }
}

/// The Alert of `docs/PROTOCOL.md`'s worked example.
fn protocol_example_alert() -> Alert {
    Alert {
        id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        revision: 0,
        payload_json: r#"{"label":"smoke","score":0.91}"#.into(),
        snapshot_jpeg: Some(Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9])),
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        alert_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        jpeg: Bytes::from_static(&[0xff, 0xd8, 0xff, 0xd9]),
    }
}

fn alert_ack() -> AlertAck {
    AlertAck {
        id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        revision: 1,
    }
}

fn snapshot_ack() -> SnapshotAck {
    SnapshotAck {
        alert_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
    }
}

/// The GopHeader a gateway would send for `clip` (its first access unit's parameter
/// sets and picture size) and that access unit; a made-up small one if the clip is not
/// there or not what it should be.
fn gop(clips: &[Clip], clip: &str, codec: Codec) -> (GopHeader, Bytes) {
    let fallback = (
        GopHeader {
            camera_id: "tower-01".into(),
            gop_seq: 12,
            codec,
            width: 16,
            height: 16,
            vps: (codec == Codec::H265).then(|| Bytes::from_static(&[0x40, 0x01, 0x0c])),
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f]),
            pps: Bytes::from_static(&[0x68, 0xce, 0x0f, 0x2c]),
        },
        protocol_example_frame().data,
    );
    let Some((_, data)) = clips.iter().find(|(name, _)| name == clip) else {
        return fallback;
    };
    let data = Bytes::copy_from_slice(data);
    let Some(first) = access_units(codec, &data).next() else {
        return fallback;
    };
    let Ok(info) = inspect(codec, &first) else {
        return fallback;
    };
    match (info.sequence, info.sps, info.pps) {
        (Some(seq), Some(sps), Some(pps)) => (
            GopHeader {
                camera_id: "tower-01".into(),
                gop_seq: 12,
                codec,
                width: seq.width,
                height: seq.height,
                vps: info.vps,
                sps,
                pps,
            },
            first,
        ),
        _ => fallback,
    }
}

/// The Frame of `docs/PROTOCOL.md`'s worked example.
fn protocol_example_frame() -> Frame {
    Frame {
        seq: 1500,
        keyframe: false,
        pts_ns: Some(60_000_000_000),
        capture_unix_ns: 1_700_000_000_123_456_789,
        received_unix_ns: 1_700_000_000_131_000_000,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x09, 0x30, 0, 0, 0, 1, 0x41, 0x9a, 0x24, 0x6c]),
    }
}
