//! Unit tests of `decode`.
use super::*;
use crate::ingest::{CodecParams, TimestampSource};
use lookout_core::sync::Locked;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

/// `n` H.264 access units of a test pattern, every one a keyframe.
fn encode(n: u32, w: u32, h: u32) -> Vec<bytes::Bytes> {
    encode_gop(n, w, h, 1)
}

/// `n` H.264 access units of a moving test pattern, a keyframe every `gop`.
fn encode_gop(n: u32, w: u32, h: u32, gop: u32) -> Vec<bytes::Bytes> {
    encode_pattern(n, w, h, gop, "ball")
}

/// `n` H.264 access units of videotestsrc's `pattern`, a keyframe every `gop`.
fn encode_pattern(n: u32, w: u32, h: u32, gop: u32, pattern: &str) -> Vec<bytes::Bytes> {
    gst::init().expect("gstreamer");
    let desc = format!(
        "videotestsrc num-buffers={n} pattern={pattern} ! video/x-raw,format=I420,width={w},height={h},framerate=25/1 \
         ! x264enc key-int-max={gop} tune=zerolatency sliced-threads=false ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false"
    );
    let p = gst::parse::launch(&desc)
        .expect("encoder pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let sink = p
        .by_name("out")
        .expect("sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    p.set_state(gst::State::Playing).expect("play");
    let mut out = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        let b = s.buffer().expect("buffer").map_readable().expect("map");
        out.push(bytes::Bytes::copy_from_slice(b.as_slice()));
    }
    let _ = p.set_state(gst::State::Null);
    out
}

fn unit(seq: u64, data: bytes::Bytes, w: u32, h: u32) -> AccessUnit {
    let mut params = CodecParams::unknown(Codec::H264);
    params.width = w;
    params.height = h;
    AccessUnit {
        camera: Arc::from("cam"),
        seq,
        session: 1,
        keyframe: true,
        params: Arc::new(params),
        data,
        pts: Some(Duration::from_millis(40 * seq)),
        received_unix_ns: 1_000 + seq,
        capture_unix_ns: seq,
        capture_source: TimestampSource::Sei,
    }
}

#[derive(Default)]
struct Counts {
    lost: AtomicUsize,
    failed: AtomicUsize,
}

struct Events(Arc<Counts>);

impl DecodeEvents for Events {
    fn lost(&self, _busy: bool) {
        self.0.lost.fetch_add(1, Ordering::Relaxed);
    }
    fn failed(&self, _message: &str) {
        self.0.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A sink sending each frame, tagged with the camera, down `tx`.
fn sink(name: &'static str, tx: &mpsc::Sender<(&'static str, DecodedFrame)>) -> FrameSink {
    let tx = Mutex::new(tx.clone());
    Box::new(move |f| {
        let t = tx.locked();
        let _ = t.send((name, f));
    })
}

/// A test camera's place on a decoder: H.264 at `size`, no parameter sets, keyframes
/// only and no model sizes unless set.
struct Cam {
    name: &'static str,
    size: (u32, u32),
    sps: Option<bytes::Bytes>,
    sizes: &'static [(u32, u32)],
    every_frame: bool,
}

impl Cam {
    fn new(name: &'static str, size: (u32, u32)) -> Cam {
        Cam {
            name,
            size,
            sps: None,
            sizes: &[],
            every_frame: false,
        }
    }

    /// Joins `pool`: frames go down `tx`, mishaps into `counts`.
    fn join(
        self,
        pool: &DecoderPool,
        tx: &mpsc::Sender<(&'static str, DecodedFrame)>,
        counts: &Arc<Counts>,
    ) -> DecoderHandle {
        pool.join(
            self.name,
            Codec::H264,
            self.size,
            self.sps,
            MIN_WORK_SIDE,
            self.sizes,
            self.every_frame,
            sink(self.name, tx),
            Box::new(Events(counts.clone())),
        )
        .expect("decoder")
    }
}

#[test]
fn keyframes_come_out_as_work_and_model_sized_frames() {
    let (w, h) = (320, 240);
    let units = encode(6, w, h);
    assert_eq!(units.len(), 6);
    let (tx, rx) = mpsc::channel();
    let pool = DecoderPool::new();
    let counts = Arc::new(Counts::default());
    let dec = Cam {
        sizes: &[(224, 224), (160, 120)],
        ..Cam::new("cam", (w, h))
    }
    .join(&pool, &tx, &counts);
    for (i, u) in units.into_iter().enumerate() {
        // Every other one is decoded for reference only.
        dec.push(&unit(i as u64 + 1, u, w, h), i % 2 == 0)
            .expect("push");
    }
    let mut got = Vec::new();
    while let Ok((_, f)) = rx.recv_timeout(Duration::from_secs(5)) {
        got.push(f);
        if got.len() == 3 {
            break;
        }
    }
    assert_eq!(got.len(), 3, "three sampled frames");
    let seqs: Vec<u64> = got.iter().map(|f| f.meta.seq).collect();
    assert_eq!(seqs, vec![1, 3, 5]);
    for f in &got {
        assert_eq!((f.frame.width, f.frame.height), (320, 240));
        let sizes: Vec<(u32, u32)> = f.scaled.iter().map(|s| (s.width, s.height)).collect();
        assert_eq!(sizes, vec![(224, 224), (160, 120)]);
        assert_eq!(f.source, (w, h));
    }
    // Nothing else comes out, and nothing was lost.
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(counts.lost.load(Ordering::Relaxed), 0);
    assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
}

#[test]
fn cameras_of_one_size_share_a_decoder_and_get_their_own_frames() {
    let small = encode(4, 320, 240);
    let other = encode(4, 176, 144);
    let (tx, rx) = mpsc::channel();
    let pool = DecoderPool::new();
    let counts = Arc::new(Counts::default());
    let join = |name: &'static str, size: (u32, u32)| {
        Cam {
            sizes: &[(224, 224)],
            ..Cam::new(name, size)
        }
        .join(&pool, &tx, &counts)
    };
    let a = join("a", (320, 240));
    let b = join("b", (320, 240));
    let c = join("c", (176, 144));
    assert_eq!(pool.decoders(), 2, "a and b share, c has its own size");
    // Other parameter sets, another decoder (no reconfiguring between cameras).
    let d = Cam {
        sps: Some(bytes::Bytes::from_static(&[0x67, 0x42])),
        sizes: &[(224, 224)],
        ..Cam::new("d", (320, 240))
    }
    .join(&pool, &tx, &counts);
    assert_eq!(pool.decoders(), 3);
    drop(d);
    for i in 0..4usize {
        let seq = i as u64 + 1;
        a.push(&unit(seq, small[i].clone(), 320, 240), true)
            .expect("a");
        b.push(&unit(100 + seq, small[3 - i].clone(), 320, 240), true)
            .expect("b");
        c.push(&unit(200 + seq, other[i].clone(), 176, 144), true)
            .expect("c");
    }
    let mut seen: HashMap<&str, Vec<u64>> = HashMap::new();
    while let Ok((name, f)) = rx.recv_timeout(Duration::from_secs(5)) {
        let expected = if name == "c" { (176, 144) } else { (320, 240) };
        assert_eq!((f.frame.width, f.frame.height), expected, "{name}");
        seen.entry(name).or_default().push(f.meta.seq);
        if seen.values().map(Vec::len).sum::<usize>() == 12 {
            break;
        }
    }
    assert_eq!(seen["a"], vec![1, 2, 3, 4]);
    assert_eq!(seen["b"], vec![101, 102, 103, 104]);
    assert_eq!(seen["c"], vec![201, 202, 203, 204]);
    assert_eq!(counts.lost.load(Ordering::Relaxed), 0);
    // Leaving frees the decoders: their threads end.
    drop((a, b, c));
    drop(tx);
    let t = Instant::now();
    while pool.decoders() > 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pool.decoders(), 0);
}

#[test]
fn one_cameras_garbage_costs_the_others_nothing() {
    let good = encode(6, 320, 240);
    let (tx, rx) = mpsc::channel();
    let pool = DecoderPool::new();
    let bad_counts = Arc::new(Counts::default());
    let good_counts = Arc::new(Counts::default());
    let bad = Cam::new("bad", (320, 240)).join(&pool, &tx, &bad_counts);
    let ok = Cam::new("good", (320, 240)).join(&pool, &tx, &good_counts);
    assert_eq!(pool.decoders(), 1);
    let junk = bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65, 0xff, 0x00, 0x13, 0x37, 0x42]);
    for (i, g) in good.iter().enumerate() {
        let seq = i as u64 + 1;
        let _ = bad.push(&unit(seq, junk.clone(), 320, 240), true);
        ok.push(&unit(seq, g.clone(), 320, 240), true)
            .expect("good");
    }
    let mut frames = Vec::new();
    while let Ok((name, f)) = rx.recv_timeout(Duration::from_secs(5)) {
        assert_eq!(name, "good", "garbage never comes out as a frame");
        frames.push(f.meta.seq);
        if frames.len() == good.len() {
            break;
        }
    }
    assert_eq!(frames, (1..=6).collect::<Vec<u64>>());
    assert_eq!(good_counts.lost.load(Ordering::Relaxed), 0);
    // Every garbage unit but the last few still in the decoder is given up and counted.
    assert!(bad_counts.lost.load(Ordering::Relaxed) >= good.len() - SHARED_PENDING_LIMIT);
}

/// The mean red, green and blue of a frame.
fn mean_rgb(f: &RgbFrame) -> [f64; 3] {
    let mut sum = [0f64; 3];
    for px in f.data.chunks_exact(3) {
        for (s, v) in sum.iter_mut().zip(px) {
            *s += f64::from(*v);
        }
    }
    let n = (f.data.len() / 3).max(1) as f64;
    sum.map(|s| s / n)
}

/// Cameras on one shared decoder send pictures of their own colour, interleaved as fast
/// as they can be pushed (the decoder falls behind and drops), with a fourth camera's
/// garbage among them: every frame that comes out is the picture its camera sent, in
/// the work frame and in every model-sized frame. A frame routed to the wrong camera
/// would be an alert raised on the wrong camera.
#[test]
fn a_shared_decoder_never_hands_a_camera_another_cameras_picture() {
    let (w, h) = (320, 240);
    let colours = [("red", 0usize), ("green", 1), ("blue", 2)];
    let pictures: Vec<Vec<bytes::Bytes>> = colours
        .iter()
        .map(|(pattern, _)| encode_pattern(4, w, h, 1, pattern))
        .collect();
    let (tx, rx) = mpsc::channel();
    let pool = DecoderPool::new();
    let counts = Arc::new(Counts::default());
    let names: [&'static str; 3] = ["red", "green", "blue"];
    let cams: Vec<DecoderHandle> = names
        .iter()
        .map(|name| {
            Cam {
                sizes: &[(224, 224), (96, 96)],
                ..Cam::new(name, (w, h))
            }
            .join(&pool, &tx, &counts)
        })
        .collect();
    let junk_counts = Arc::new(Counts::default());
    let junk = Cam {
        sizes: &[(224, 224), (96, 96)],
        ..Cam::new("junk", (w, h))
    }
    .join(&pool, &tx, &junk_counts);
    assert_eq!(pool.decoders(), 1, "all four share one decoder");
    let garbage = bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x33, 0xff]);
    let rounds = 120u64;
    for round in 0..rounds {
        for (i, cam) in cams.iter().enumerate() {
            let data = pictures[i][(round % 4) as usize].clone();
            cam.push(&unit(round * 10 + i as u64, data, w, h), true)
                .expect("push");
        }
        if round % 7 == 0 {
            junk.push(&unit(round * 10 + 9, garbage.clone(), w, h), true)
                .expect("junk push");
        }
        // Bursts and pauses: some rounds pile up and drop, others decode.
        if round % 3 == 0 {
            std::thread::sleep(Duration::from_millis(round % 11));
        }
    }
    let mut per_camera: HashMap<&str, usize> = HashMap::new();
    while let Ok((name, f)) = rx.recv_timeout(Duration::from_secs(5)) {
        assert_ne!(name, "junk", "garbage never comes out as a frame");
        let want = colours
            .iter()
            .find(|(c, _)| *c == name)
            .map(|(_, channel)| *channel)
            .expect("a known camera");
        assert_eq!(
            f.meta.seq % 10,
            want as u64,
            "{name} got unit {}",
            f.meta.seq
        );
        for frame in std::iter::once(&f.frame).chain(f.scaled.iter()) {
            let rgb = mean_rgb(frame);
            let other = (0..3)
                .filter(|c| *c != want)
                .map(|c| rgb[c])
                .fold(0.0, f64::max);
            assert!(
                rgb[want] > 180.0 && other < 80.0,
                "{name} (unit {}) got a picture of mean colour {rgb:?} at {}x{}",
                f.meta.seq,
                frame.width,
                frame.height
            );
        }
        *per_camera.entry(name).or_default() += 1;
    }
    // The decoder fell behind (pushes never wait), yet every camera got pictures.
    for name in names {
        assert!(
            per_camera.get(name).copied().unwrap_or(0) > 0,
            "{name}: {per_camera:?}"
        );
    }
    let out: usize = per_camera.values().sum();
    let lost = counts.lost.load(Ordering::Relaxed);
    println!("{out} frames out, {lost} lost of {} pushed", rounds * 3);
    assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
}

#[test]
fn every_frame_cameras_get_their_own_decoder_and_the_due_frames() {
    let units = encode_gop(10, 320, 240, 5);
    let (tx, rx) = mpsc::channel();
    let pool = DecoderPool::new();
    let counts = Arc::new(Counts::default());
    let join = |name: &'static str| {
        Cam {
            every_frame: true,
            ..Cam::new(name, (320, 240))
        }
        .join(&pool, &tx, &counts)
    };
    let a = join("a");
    let b = join("b");
    assert_eq!(pool.decoders(), 2, "delta frames need a decoder per camera");
    drop(b);
    for (i, data) in units.into_iter().enumerate() {
        let mut u = unit(i as u64 + 1, data, 320, 240);
        u.keyframe = i % 5 == 0;
        // Every third frame is due; the others are decoded as references only.
        a.push(&u, i % 3 == 0).expect("push");
    }
    let mut seqs = Vec::new();
    while let Ok((_, f)) = rx.recv_timeout(Duration::from_secs(5)) {
        assert_eq!((f.frame.width, f.frame.height), (320, 240));
        seqs.push(f.meta.seq);
        if seqs.len() == 4 {
            break;
        }
    }
    assert_eq!(seqs, vec![1, 4, 7, 10]);
    assert_eq!(counts.lost.load(Ordering::Relaxed), 0);
}

#[test]
fn work_frames_keep_aspect_and_alignment() {
    assert_eq!(work_size(1280, 720, 640), (640, 360));
    assert_eq!(work_size(848, 480, 640), (640, 362));
    // Never upscaled.
    assert_eq!(work_size(320, 240, 640), (320, 240));
    // Portrait body cameras.
    assert_eq!(work_size(720, 1280, 640), (360, 640));
    let (w, h) = work_size(1917, 1079, 700);
    assert_eq!((w % 4, h % 2), (0, 0));
}
