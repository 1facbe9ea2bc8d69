//! A handmade RTSP camera that misbehaves on purpose, for the fault tests of
//! the gateway (`gateway/tests/ingest.rs`) and of the whole process
//! (`loadtest/tests/bad_cameras.rs`, which includes this file by path).
//!
//! It is a real socket server on 127.0.0.1, written with `std::net` and
//! threads: it answers OPTIONS, DESCRIBE (a valid H.264 SDP with the stream's
//! parameter sets), SETUP (TCP interleaved or UDP unicast), PLAY,
//! GET_PARAMETER/SET_PARAMETER keep-alives and TEARDOWN the way a camera
//! does, and then, depending on its [`Fault`], sends noise, malformed RTP,
//! access units cut short at random points, nothing at all, or good video
//! for a while before hanging up. The good video is real H.264 encoded once
//! by [`h264_access_units`] and packetised here (RFC 6184 single NAL unit
//! and FU-A packets), so a truncated unit is still carried by valid RTP.
//!
//! Everything is bounded: the accept loop and every connection poll a stop
//! flag at least every 100 ms, writes time out after a second, a connection
//! lives at most [`CONNECTION_LIMIT`], and dropping the camera joins every
//! thread. Randomness is a seeded xorshift, so a failing run can be
//! repeated.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// No connection outlives this, whatever the client does.
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(300);

/// Largest RTP payload before a NAL unit is split into FU-A fragments.
const MTU_PAYLOAD: usize = 1200;

/// Frame interval of the video modes (25 fps).
const FRAME: Duration = Duration::from_millis(40);

/// What the camera does once the client has sent PLAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Random bytes with no framing at all (TCP), or random datagrams (UDP).
    Noise,
    /// Framed packets that are not valid RTP or carry nonsense: wrong
    /// versions, lying CSRC counts, extensions and padding, random payload
    /// types, random H.264 payload behind a valid header, empty packets.
    GarbageRtp,
    /// Valid RTP carrying real access units, every third one cut short at a
    /// random byte (inside parameter sets and slices alike): the packet
    /// holding that byte is sent short, the ones after it never.
    Truncated,
    /// The RTSP session stays up (keep-alives answered), no packet is sent.
    Silent,
    /// Good video for this long, then the connection is closed.
    Flapping(Duration),
    /// PLAY is answered and the connection closed at once.
    HangUp,
    /// The answer to the first request is a header sent one byte every
    /// 100 ms, never finished.
    SlowHeader,
    /// The answer to the first request is a status line followed by small
    /// header lines, as fast as the socket takes them, never finished.
    EndlessHeaders,
    /// The answer to the first request has one 16 MB header line.
    HugeHeader,
    /// The answer to DESCRIBE announces a 2^62-byte body and trickles it.
    AbsurdContentLength,
    /// OPTIONS, DESCRIBE and SETUP are answered; PLAY never is, and nothing
    /// is ever sent again while the connection stays open.
    SilentAfterSetup,
    /// Every request but OPTIONS is answered `401` with only a `Basic`
    /// challenge; any `Authorization` header received is counted.
    BasicOnly,
}

impl Fault {
    /// The faults that attack the RTSP exchange itself rather than the video.
    pub fn is_hostile_answer(self) -> bool {
        matches!(
            self,
            Fault::SlowHeader
                | Fault::EndlessHeaders
                | Fault::HugeHeader
                | Fault::AbsurdContentLength
        )
    }
}

/// What the camera saw and sent, for tests to check that the fault was
/// really exercised.
#[derive(Debug, Default)]
pub struct RogueStats {
    pub connections: AtomicU64,
    /// PLAY requests answered: the handshake succeeded this many times.
    pub plays: AtomicU64,
    pub packets: AtomicU64,
    /// Access units sent cut short.
    pub truncated: AtomicU64,
    /// Requests that carried an `Authorization` header.
    pub authorizations: AtomicU64,
}

pub struct RogueCamera {
    pub port: u16,
    pub stats: Arc<RogueStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What every connection needs.
struct Shared {
    fault: Fault,
    units: Arc<Vec<Vec<u8>>>,
    sdp_fmtp: String,
    stats: Arc<RogueStats>,
    stop: Arc<AtomicBool>,
    seed: u64,
}

impl RogueCamera {
    /// Serves `fault` on a free 127.0.0.1 port at path `/stream`; `units`
    /// are H.264 access units (Annex-B) for the video modes and the SDP.
    pub fn start(fault: Fault, units: Arc<Vec<Vec<u8>>>, seed: u64) -> RogueCamera {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind rogue camera");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stats = Arc::new(RogueStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            fault,
            sdp_fmtp: fmtp(&units),
            units,
            stats: stats.clone(),
            stop: stop.clone(),
            seed,
        });
        let thread = std::thread::spawn(move || accept_loop(listener, shared));
        RogueCamera {
            port,
            stats,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/stream", self.port)
    }
}

impl Drop for RogueCamera {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    let mut n = 0u64;
    while !shared.stop.load(Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                n += 1;
                shared.stats.connections.fetch_add(1, Relaxed);
                let shared = shared.clone();
                connections.push(std::thread::spawn(move || serve(stream, shared, n)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
        // Reap finished connections so a long flapping run holds no threads.
        let (done, live): (Vec<_>, Vec<_>) = connections.into_iter().partition(|h| h.is_finished());
        for h in done {
            let _ = h.join();
        }
        connections = live;
    }
    for h in connections {
        let _ = h.join();
    }
}

/// Where PLAY sends the packets.
#[derive(Clone)]
enum Route {
    /// RTP on this interleaved channel of the RTSP connection.
    Interleaved(u8),
    /// RTP datagrams from `socket` to the client's RTP port.
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
}

/// One RTSP connection: requests are answered on this thread; after PLAY a
/// second thread sends what the fault calls for.
fn serve(stream: TcpStream, shared: Arc<Shared>, n: u64) {
    let started = Instant::now();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let closed = Arc::new(AtomicBool::new(false));
    let mut reader = stream;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut route: Option<Route> = None;
    // UDP sockets live as long as the connection.
    let mut udp: Vec<Arc<UdpSocket>> = Vec::new();
    let mut sender: Option<JoinHandle<()>> = None;
    let session = format!("{:08X}", 0x1000_0000u64 + n);
    'conn: while !shared.stop.load(Relaxed)
        && !closed.load(Relaxed)
        && started.elapsed() < CONNECTION_LIMIT
    {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        }
        loop {
            // Interleaved data from the client (RTCP receiver reports).
            if buf.first() == Some(&b'$') {
                if buf.len() < 4 {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                if buf.len() < 4 + len {
                    break;
                }
                buf.drain(..4 + len);
                continue;
            }
            let Some(end) = find(&buf, b"\r\n\r\n") else {
                if buf.len() > 64 * 1024 {
                    break 'conn;
                }
                break;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let body = header(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + body {
                break;
            }
            buf.drain(..end + 4 + body);
            let method = head.split_whitespace().next().unwrap_or("").to_string();
            let cseq = header(&head, "cseq").unwrap_or_else(|| "0".into());
            if shared.fault.is_hostile_answer()
                && (shared.fault != Fault::AbsurdContentLength || method == "DESCRIBE")
            {
                hostile_answer(&shared, &writer, &cseq, started);
                break 'conn;
            }
            if header(&head, "authorization").is_some() {
                shared.stats.authorizations.fetch_add(1, Relaxed);
            }
            if shared.fault == Fault::BasicOnly && method != "OPTIONS" {
                let challenge = format!(
                    "RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\nWWW-Authenticate: Basic realm=\"rogue\"\r\n\r\n"
                );
                let sent = writer
                    .lock()
                    .map(|mut w| w.write_all(challenge.as_bytes()).is_ok())
                    .unwrap_or(false);
                if !sent {
                    break 'conn;
                }
                continue;
            }
            if shared.fault == Fault::SilentAfterSetup && method == "PLAY" {
                // Never answered; the connection stays open until the client
                // gives up or the camera is dropped.
                continue;
            }
            let (extra, content): (String, String) = match method.as_str() {
                "OPTIONS" => (
                    "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER\r\n".into(),
                    String::new(),
                ),
                "DESCRIBE" => {
                    let base = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("rtsp://127.0.0.1/stream")
                        .trim_end_matches('/')
                        .to_string();
                    let sdp = format!(
                        "v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=lookout rogue camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {}\r\na=control:track1\r\n",
                        shared.sdp_fmtp
                    );
                    (
                        format!("Content-Base: {base}/\r\nContent-Type: application/sdp\r\n"),
                        sdp,
                    )
                }
                "SETUP" => {
                    let t = header(&head, "transport").unwrap_or_default();
                    let transport = if t.contains("RTP/AVP/TCP") {
                        let ch = param(&t, "interleaved")
                            .and_then(|v| v.split('-').next().and_then(|c| c.parse::<u8>().ok()))
                            .unwrap_or(0);
                        route = Some(Route::Interleaved(ch));
                        format!("RTP/AVP/TCP;unicast;interleaved={}-{}", ch, ch.wrapping_add(1))
                    } else {
                        let client = param(&t, "client_port").unwrap_or_default();
                        let rtp_port = client
                            .split('-')
                            .next()
                            .and_then(|p| p.parse::<u16>().ok())
                            .unwrap_or(0);
                        let (Ok(rtp), Ok(rtcp)) = (
                            UdpSocket::bind("127.0.0.1:0"),
                            UdpSocket::bind("127.0.0.1:0"),
                        ) else {
                            break 'conn;
                        };
                        let sp = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
                        let server_port = format!("{}-{}", sp(&rtp), sp(&rtcp));
                        let rtp = Arc::new(rtp);
                        udp.push(rtp.clone());
                        udp.push(Arc::new(rtcp));
                        route = Some(Route::Udp {
                            socket: rtp,
                            to: SocketAddr::from(([127, 0, 0, 1], rtp_port)),
                        });
                        format!("RTP/AVP;unicast;client_port={client};server_port={server_port}")
                    };
                    (
                        format!("Transport: {transport}\r\nSession: {session};timeout=60\r\n"),
                        String::new(),
                    )
                }
                "PLAY" => (
                    format!("Session: {session}\r\nRange: npt=0.000-\r\n"),
                    String::new(),
                ),
                "TEARDOWN" => {
                    let _ = respond(&writer, &cseq, "", "");
                    break 'conn;
                }
                _ => (format!("Session: {session}\r\n"), String::new()),
            };
            if respond(&writer, &cseq, &extra, &content).is_err() {
                break 'conn;
            }
            if method == "PLAY" && sender.is_none() {
                shared.stats.plays.fetch_add(1, Relaxed);
                if shared.fault == Fault::HangUp {
                    break 'conn;
                }
                let Some(route) = route.clone() else {
                    break 'conn;
                };
                let (shared, writer, closed) = (shared.clone(), writer.clone(), closed.clone());
                let seed = shared.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                sender = Some(std::thread::spawn(move || {
                    send(&shared, &writer, &route, &closed, seed, started);
                    closed.store(true, Relaxed);
                }));
            }
        }
    }
    closed.store(true, Relaxed);
    if let Ok(w) = writer.lock() {
        let _ = w.shutdown(Shutdown::Both);
    }
    if let Some(s) = sender {
        let _ = s.join();
    }
    drop(udp);
}

/// Sends the answer a hostile fault calls for until the client goes away, the
/// camera is stopped or the connection limit is reached.
fn hostile_answer(shared: &Shared, writer: &Mutex<TcpStream>, cseq: &str, started: Instant) {
    let alive = || !shared.stop.load(Relaxed) && started.elapsed() < CONNECTION_LIMIT;
    let send = |bytes: &[u8]| -> bool {
        match writer.lock() {
            Ok(mut w) => w.write_all(bytes).is_ok(),
            Err(_) => false,
        }
    };
    let status = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n");
    match shared.fault {
        Fault::SlowHeader => {
            let line = format!("{status}X-Slow: ");
            for b in line.bytes().chain(std::iter::repeat(b'a')) {
                if !alive() || !send(&[b]) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Fault::EndlessHeaders => {
            if !send(status.as_bytes()) {
                return;
            }
            let mut n = 0u64;
            while alive() {
                n += 1;
                let chunk: String = (0..64).map(|i| format!("X-H{n}-{i}: v\r\n")).collect();
                if !send(chunk.as_bytes()) {
                    return;
                }
            }
        }
        Fault::HugeHeader => {
            if !send(format!("{status}X-Huge: ").as_bytes()) {
                return;
            }
            let block = vec![b'h'; 64 * 1024];
            for _ in 0..256 {
                if !alive() || !send(&block) {
                    return;
                }
            }
            // 16 MB sent; the line is never finished.
            while alive() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Fault::AbsurdContentLength => {
            let head = format!(
                "{status}Content-Type: application/sdp\r\nContent-Length: 4611686018427387904\r\n\r\n"
            );
            if !send(head.as_bytes()) {
                return;
            }
            while alive() && send(b"v=0\r\n") {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        _ => {}
    }
}

fn respond(
    writer: &Mutex<TcpStream>,
    cseq: &str,
    extra: &str,
    content: &str,
) -> std::io::Result<()> {
    let mut msg = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nServer: lookout-rogue\r\n{extra}");
    if !content.is_empty() {
        msg.push_str(&format!("Content-Length: {}\r\n", content.len()));
    }
    msg.push_str("\r\n");
    msg.push_str(content);
    let mut w = writer
        .lock()
        .map_err(|_| std::io::Error::other("poisoned"))?;
    w.write_all(msg.as_bytes())
}

/// The sender thread of one connection: runs until the connection closes,
/// the camera stops, or the fault's own end.
fn send(
    shared: &Shared,
    writer: &Mutex<TcpStream>,
    route: &Route,
    closed: &AtomicBool,
    seed: u64,
    started: Instant,
) {
    let mut rng = XorShift::new(seed);
    let mut rtp = RtpState {
        seq: (seed & 0xffff) as u16,
        timestamp: (seed >> 16) as u32,
        ssrc: (seed >> 32) as u32 | 1,
    };
    let playing = Instant::now();
    let mut frame = 0usize;
    let running = || {
        !shared.stop.load(Relaxed) && !closed.load(Relaxed) && started.elapsed() < CONNECTION_LIMIT
    };
    while running() {
        let ok = match shared.fault {
            Fault::Silent
            | Fault::HangUp
            | Fault::SlowHeader
            | Fault::EndlessHeaders
            | Fault::HugeHeader
            | Fault::AbsurdContentLength
            | Fault::SilentAfterSetup
            | Fault::BasicOnly => true,
            Fault::Noise => {
                let mut noise = vec![0u8; 1 + rng.below(1400)];
                rng.fill(&mut noise);
                match route {
                    // No framing at all: the bytes land where the client
                    // expects `$` or an RTSP message.
                    Route::Interleaved(_) => writer
                        .lock()
                        .map(|mut w| w.write_all(&noise).is_ok())
                        .unwrap_or(false),
                    Route::Udp { .. } => emit(shared, writer, route, &noise),
                }
            }
            Fault::GarbageRtp => {
                let mut ok = true;
                for _ in 0..4 {
                    let packet = garbage_packet(&mut rng, &mut rtp);
                    ok &= emit(shared, writer, route, &packet);
                }
                ok
            }
            Fault::Truncated | Fault::Flapping(_) => {
                if let Fault::Flapping(live_for) = shared.fault
                    && playing.elapsed() >= live_for
                {
                    break;
                }
                let units = &shared.units;
                let packets = packetize(&units[frame % units.len()], &mut rtp);
                // Every third unit loses its tail at a random byte: the
                // packet holding that byte goes out short, the rest never.
                let keep = if shared.fault == Fault::Truncated && frame % 3 == 2 {
                    shared.stats.truncated.fetch_add(1, Relaxed);
                    let total: usize = packets.iter().map(Vec::len).sum();
                    1 + rng.below(total.saturating_sub(1).max(1))
                } else {
                    usize::MAX
                };
                let mut ok = true;
                let mut sent = 0usize;
                for packet in &packets {
                    if sent >= keep {
                        break;
                    }
                    let len = packet.len().min(keep - sent).max(14.min(packet.len()));
                    ok &= emit(shared, writer, route, &packet[..len]);
                    sent += packet.len();
                }
                rtp.timestamp = rtp.timestamp.wrapping_add(3600);
                ok
            }
        };
        if !ok {
            break;
        }
        frame += 1;
        std::thread::sleep(match shared.fault {
            Fault::Silent => Duration::from_millis(100),
            _ => FRAME,
        });
    }
}

/// Sends one RTP packet the way SETUP agreed; false once the peer is gone.
fn emit(shared: &Shared, writer: &Mutex<TcpStream>, route: &Route, packet: &[u8]) -> bool {
    shared.stats.packets.fetch_add(1, Relaxed);
    match route {
        Route::Interleaved(ch) => {
            let Ok(len) = u16::try_from(packet.len()) else {
                return true;
            };
            let mut frame = Vec::with_capacity(4 + packet.len());
            frame.extend_from_slice(&[b'$', *ch]);
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(packet);
            writer
                .lock()
                .map(|mut w| w.write_all(&frame).is_ok())
                .unwrap_or(false)
        }
        // A datagram nobody reads is not an error for a camera.
        Route::Udp { socket, to } => {
            let _ = socket.send_to(packet, to);
            true
        }
    }
}

struct RtpState {
    seq: u16,
    timestamp: u32,
    ssrc: u32,
}

impl RtpState {
    fn header(&mut self, marker: bool) -> Vec<u8> {
        let mut h = Vec::with_capacity(12 + MTU_PAYLOAD + 2);
        h.push(0x80);
        h.push(96 | if marker { 0x80 } else { 0 });
        h.extend_from_slice(&self.seq.to_be_bytes());
        h.extend_from_slice(&self.timestamp.to_be_bytes());
        h.extend_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        h
    }
}

/// RFC 6184 packets for one access unit: single NAL unit packets, FU-A for
/// the large ones, the marker on the last packet.
fn packetize(au: &[u8], rtp: &mut RtpState) -> Vec<Vec<u8>> {
    let nals: Vec<&[u8]> = lookout_codecs::annexb::nal_units(au)
        .filter(|n| !n.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, nal) in nals.iter().enumerate() {
        let last_nal = i + 1 == nals.len();
        if nal.len() <= MTU_PAYLOAD {
            let mut p = rtp.header(last_nal);
            p.extend_from_slice(nal);
            out.push(p);
            continue;
        }
        let indicator = (nal[0] & 0xe0) | 28;
        let kind = nal[0] & 0x1f;
        let body = &nal[1..];
        let pieces = body.len().div_ceil(MTU_PAYLOAD);
        for (j, piece) in body.chunks(MTU_PAYLOAD).enumerate() {
            let start = j == 0;
            let end = j + 1 == pieces;
            let mut p = rtp.header(last_nal && end);
            p.push(indicator);
            p.push(kind | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 });
            p.extend_from_slice(piece);
            out.push(p);
        }
    }
    out
}

/// One packet of nonsense, of a randomly chosen kind.
fn garbage_packet(rng: &mut XorShift, rtp: &mut RtpState) -> Vec<u8> {
    let random = |n: usize, rng: &mut XorShift| {
        let mut v = vec![0u8; n];
        rng.fill(&mut v);
        v
    };
    match rng.below(7) {
        // Not RTP at all.
        0 => random(1 + rng.below(1400), rng),
        // A valid header, random H.264 payload (random NAL and FU headers).
        1 => {
            let mut p = rtp.header(rng.below(4) == 0);
            let n = 1 + rng.below(1400);
            p.extend(random(n, rng));
            p
        }
        // Version 0, 1 or 3.
        2 => {
            let mut p = rtp.header(false);
            let version = [0u8, 1, 3][rng.below(3)];
            p[0] = (p[0] & 0x3f) | (version << 6);
            p.extend(random(40, rng));
            p
        }
        // Fifteen CSRCs announced, none present; an extension and padding
        // longer than the packet.
        3 => {
            let mut p = rtp.header(false);
            p[0] |= 0x0f | 0x10 | 0x20;
            p.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
            p.push(0xff);
            p
        }
        // Another payload type, another SSRC.
        4 => {
            let mut p = rtp.header(true);
            p[1] = rng.below(128) as u8;
            p[8..12].copy_from_slice(&(rng.next() as u32).to_be_bytes());
            p.extend(random(100, rng));
            p
        }
        // Empty and one-byte packets.
        5 => random(rng.below(2), rng),
        // A FU-A that starts and never ends, then one that ends and never
        // started.
        _ => {
            let mut p = rtp.header(false);
            p.extend_from_slice(&[0x7c, 0x85]);
            p.extend(random(200, rng));
            let mut q = rtp.header(true);
            q.extend_from_slice(&[0x7c, 0x41]);
            q.extend(random(50, rng));
            p.extend_from_slice(&q);
            p
        }
    }
}

/// `packetization-mode=1;profile-level-id=…;sprop-parameter-sets=…` from
/// the first SPS and PPS among `units`.
fn fmtp(units: &[Vec<u8>]) -> String {
    let mut sps = None;
    let mut pps = None;
    for au in units {
        for nal in lookout_codecs::annexb::nal_units(au) {
            match nal.first().map(|b| b & 0x1f) {
                Some(7) if sps.is_none() => sps = Some(nal.to_vec()),
                Some(8) if pps.is_none() => pps = Some(nal.to_vec()),
                _ => {}
            }
        }
    }
    match (sps, pps) {
        (Some(s), Some(p)) if s.len() >= 4 => format!(
            "packetization-mode=1;profile-level-id={:02x}{:02x}{:02x};sprop-parameter-sets={},{}",
            s[1],
            s[2],
            s[3],
            base64(&s),
            base64(&p)
        ),
        _ => "packetization-mode=1".into(),
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A header's value, by case-insensitive name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// `key=value` from a `;`-separated Transport header.
fn param(transport: &str, key: &str) -> Option<String> {
    transport.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Seeded xorshift64*: repeatable noise without a dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n` ≥ 1).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// `frames` H.264 access units (Annex-B, SPS/PPS before every keyframe),
/// 320x240 at 25 fps with a keyframe a second, encoded by x264 once.
pub fn h264_access_units(frames: u32) -> Vec<Vec<u8>> {
    gst::init().expect("GStreamer initialises");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=300 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false"
    ))
    .expect("encoder pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("encoding");
    let mut units = Vec::with_capacity(frames as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while units.len() < frames as usize && Instant::now() < deadline {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(500)) else {
            if sink.is_eos() {
                break;
            }
            continue;
        };
        if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
            units.push(map.as_slice().to_vec());
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    assert!(
        units.len() >= frames as usize / 2,
        "encoded {} of {frames} units",
        units.len()
    );
    units
}
