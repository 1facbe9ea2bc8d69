//! Micro-benchmarks of the per-frame hot paths in `codecs/`: what the
//! gateway does to every access unit of every camera (split a stream into
//! access units, inspect one, find lookout's capture stamp), what the relay
//! does per frame (encode a `Frame` message, decode it on the center), and
//! the scheduler's decision per GOP. `cargo bench -p lookout-codecs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use lookout_codecs::relay::{
    CameraKind, CameraPolicy, ClassRanks, Frame, FrameDecoder, GopOutcome, Role, Scheduler,
    StreamMessage, VideoMessage,
};
use lookout_codecs::{CaptureStamp, Codec, access_units, find_stamp, insert_stamp, inspect};

fn stream() -> Bytes {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/h264_720p_baseline.h264"
    );
    Bytes::from(std::fs::read(path).expect("testdata stream"))
}

fn parsing(c: &mut Criterion) {
    let stream = stream();
    let units: Vec<Bytes> = access_units(Codec::H264, &stream).collect();
    let stamp = CaptureStamp {
        camera_id: "tower-01".into(),
        frame: 1500,
        capture_unix_ns: 1_700_000_000_123_456_789,
    };
    let stamped = insert_stamp(Codec::H264, &units[1], &stamp).expect("stamp");
    c.bench_function("access_units: split a 720p H.264 stream", |b| {
        b.iter(|| access_units(Codec::H264, black_box(&stream)).count())
    });
    c.bench_function("inspect: one 720p access unit", |b| {
        b.iter(|| inspect(Codec::H264, black_box(&units[1])))
    });
    c.bench_function("find_stamp: capture-time SEI in an access unit", |b| {
        b.iter(|| find_stamp(Codec::H264, black_box(&stamped)))
    });
}

fn relay_wire(c: &mut Criterion) {
    let units: Vec<Bytes> = access_units(Codec::H264, &stream()).collect();
    let frame = VideoMessage::Frame(Frame {
        seq: 1500,
        keyframe: false,
        pts_ns: Some(60_000_000_000),
        capture_unix_ns: 1_700_000_000_123_456_789,
        received_unix_ns: 1_700_000_000_131_000_000,
        data: units[1].clone(),
    });
    let wire = frame.encode().expect("encode").to_bytes();
    c.bench_function("relay: encode a Frame message", |b| {
        b.iter(|| black_box(&frame).encode())
    });
    c.bench_function("relay: decode a Frame message", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::<VideoMessage>::new(Role::Gateway);
            d.push(black_box(&wire));
            d.next_message()
        })
    });
}

fn scheduling(c: &mut Criterion) {
    c.bench_function("scheduler: a GOP starts on one of 64 cameras", |b| {
        let mut s = Scheduler::new(ClassRanks::default());
        let ids: Vec<String> = (0..64).map(|i| format!("cam-{i:02}")).collect();
        for id in &ids {
            s.set_camera(
                id,
                CameraPolicy {
                    class: CameraKind::Tower,
                    latency_budget: Duration::from_secs(1),
                },
            );
        }
        let mut seq = 0u64;
        let mut last = vec![None; ids.len()];
        let now = Instant::now();
        b.iter(|| {
            seq += 1;
            let i = (seq % 64) as usize;
            let r = s.gop_started(&ids[i], seq, now);
            // The previous GOP of that camera was delivered meanwhile.
            if let Some(prev) = last[i].replace(seq) {
                s.gop_closed(&ids[i], prev, GopOutcome::Delivered);
            }
            while s.poll_action().is_some() {}
            r
        })
    });
}

criterion_group!(benches, parsing, relay_wire, scheduling);
criterion_main!(benches);
