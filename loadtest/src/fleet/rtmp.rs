//! Fleet cameras that push over RTMP, as drones' ground stations and encoders do:
//! each has a publisher thread that dials `rtmp://GATEWAY/live/KEY`, publishes, and
//! writes the camera's access units (stamped like every fleet frame) as FLV video tags:
//! H.264 as legacy AVC, H.265 as Enhanced RTMP `hvc1` or as codec id 12 (every other
//! H.265 camera, as Chinese encoders send it). The feeder thread hands frames over a
//! small bounded queue and never waits; a publisher that cannot keep up drops frames
//! and counts them. A connection that fails is dialled again after half a second, and
//! the camera restarts at its next keyframe, as a real pusher does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;

use super::feeder::Feeder;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use lookout_codecs::{Codec, annexb, flv};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

/// Frames waiting for a publisher's socket, at most (about a second of video).
const QUEUED: usize = 32;

/// How long a publisher waits before dialling again.
const REDIAL: Duration = Duration::from_millis(500);

/// Dial, handshake and `publish` must be done within this.
const SETUP_LIMIT: Duration = Duration::from_secs(5);

/// How H.265 goes into FLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HevcAs {
    /// Enhanced RTMP, FourCC `hvc1`.
    Enhanced,
    /// Legacy layout with FLV codec id 12.
    CodecId12,
}

/// One frame for the publisher.
struct Frame {
    /// The access unit, Annex B, stamped.
    data: Bytes,
    keyframe: bool,
    /// Milliseconds since the publisher started (the RTMP timestamp).
    ts_ms: u32,
}

/// A fleet camera's RTMP publisher.
pub struct Publisher {
    feeder: Feeder<Frame>,
    started: Instant,
    /// Set while a publish is accepted.
    pub publishing: Arc<AtomicBool>,
}

impl Publisher {
    /// Starts publishing to `rtmp://{gateway}/live/{key}`; `restart_at_keyframe` is set
    /// on every new publish so the camera's next frame is a keyframe.
    pub fn start(
        camera: &str,
        gateway: SocketAddr,
        key: &str,
        codec: Codec,
        hevc: HevcAs,
        restart_at_keyframe: Arc<AtomicBool>,
    ) -> anyhow::Result<Publisher> {
        let publishing = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            camera: camera.to_string(),
            gateway,
            key: key.to_string(),
            codec,
            hevc,
            restart_at_keyframe,
            publishing: publishing.clone(),
            stop: Arc::default(),
        };
        let feeder = Feeder::spawn(
            format!("rtmp-{camera}"),
            "an RTMP publisher",
            QUEUED,
            move |rx, stop| {
                worker.stop = stop;
                worker.run(&rx)
            },
        )?;
        Ok(Publisher {
            feeder,
            started: Instant::now(),
            publishing,
        })
    }

    /// Hands one frame over; never waits. `false` when it was dropped.
    pub fn push(&self, data: Bytes, keyframe: bool) -> bool {
        if !self.publishing.load(Ordering::Relaxed) {
            return false;
        }
        let ts_ms = self.started.elapsed().as_millis() as u32;
        self.feeder.offer(Frame {
            data,
            keyframe,
            ts_ms,
        })
    }
}

/// The publisher thread's state.
struct Worker {
    camera: String,
    gateway: SocketAddr,
    key: String,
    codec: Codec,
    hevc: HevcAs,
    restart_at_keyframe: Arc<AtomicBool>,
    publishing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, rx: &Receiver<Frame>) {
        let mut logged = false;
        while !self.stop.load(Ordering::Relaxed) {
            match self.session(rx) {
                Ok(()) => return,
                Err(e) => {
                    self.publishing.store(false, Ordering::Relaxed);
                    if !logged {
                        // Once per camera: the gateway may simply not be up yet.
                        eprintln!("fleet: {} RTMP push: {e}; dialling again", self.camera);
                        logged = true;
                    }
                    std::thread::sleep(REDIAL);
                    // What queued while down is stale.
                    while rx.try_recv().is_ok() {}
                }
            }
        }
    }

    /// One connection: dial, handshake, connect, publish, then frames until stopped
    /// (`Ok`) or the connection fails.
    fn session(&self, rx: &Receiver<Frame>) -> anyhow::Result<()> {
        let mut socket = TcpStream::connect_timeout(&self.gateway, SETUP_LIMIT)?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(SETUP_LIMIT))?;
        let leftover = handshake(&mut socket)?;
        let (mut session, first) = ClientSession::new(ClientSessionConfig::new())
            .map_err(|e| anyhow::anyhow!("session: {e:?}"))?;
        send(&mut socket, &first)?;
        let connect = session
            .request_connection("live".to_string())
            .map_err(|e| anyhow::anyhow!("connect: {e:?}"))?;
        send(&mut socket, &[connect])?;
        let mut pending = leftover;
        let mut stage = 0; // 0: connecting, 1: publish requested, 2: publishing
        let deadline = Instant::now() + SETUP_LIMIT;
        let mut buf = vec![0u8; 16 * 1024];
        while stage < 2 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "no publish within {SETUP_LIMIT:?}"
            );
            if pending.is_empty() {
                let n = socket.read(&mut buf)?;
                anyhow::ensure!(n > 0, "the gateway closed the connection");
                pending.extend_from_slice(&buf[..n]);
            }
            let results = session
                .handle_input(&pending)
                .map_err(|e| anyhow::anyhow!("RTMP: {e:?}"))?;
            pending.clear();
            for r in results {
                match r {
                    ClientSessionResult::OutboundResponse(p) => socket.write_all(&p.bytes)?,
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestAccepted,
                    ) => {
                        let publish = session
                            .request_publishing(self.key.clone(), PublishRequestType::Live)
                            .map_err(|e| anyhow::anyhow!("publish: {e:?}"))?;
                        send(&mut socket, &[publish])?;
                        stage = 1;
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::PublishRequestAccepted,
                    ) => {
                        stage = 2;
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestRejected { description },
                    ) => anyhow::bail!("connect refused: {description}"),
                    _ => {}
                }
            }
        }
        // Acknowledgements and pings from the gateway are read without waiting.
        socket.set_nonblocking(true)?;
        self.restart_at_keyframe.store(true, Ordering::SeqCst);
        self.publishing.store(true, Ordering::Relaxed);
        let mut config_sent = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            match socket.read(&mut buf) {
                Ok(0) => anyhow::bail!("the gateway closed the connection"),
                Ok(n) => {
                    let results = session
                        .handle_input(&buf[..n])
                        .map_err(|e| anyhow::anyhow!("RTMP: {e:?}"))?;
                    write_blocking(&mut socket, &results)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            let frame = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(f) => f,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let tags = self.tags(&frame, &mut config_sent);
            for tag in tags {
                let out = session
                    .publish_video_data(tag, RtmpTimestamp::new(frame.ts_ms), false)
                    .map_err(|e| anyhow::anyhow!("video: {e:?}"))?;
                write_blocking(&mut socket, &[out])?;
            }
        }
    }

    /// The FLV tags for one frame: the configuration record first (from the first
    /// keyframe's parameter sets), then the frame's NAL units, length-prefixed.
    fn tags(&self, frame: &Frame, config_sent: &mut bool) -> Vec<Bytes> {
        let nalus: Vec<Bytes> = annexb::nal_units_bytes(&frame.data).collect();
        let nal_type = |n: &Bytes| match self.codec {
            Codec::H264 => n.first().map_or(0, |b| b & 0x1f),
            Codec::H265 => n.first().map_or(0, |b| (b >> 1) & 0x3f),
        };
        let find = |t: u8| nalus.iter().find(|n| nal_type(n) == t).cloned();
        let mut tags = Vec::new();
        if frame.keyframe && !*config_sent {
            let record = match self.codec {
                Codec::H264 => find(7)
                    .zip(find(8))
                    .map(|(s, p)| flv::avc_config_record(&s, &p)),
                Codec::H265 => match (find(32), find(33), find(34)) {
                    (Some(v), Some(s), Some(p)) => Some(flv::hevc_config_record(&v, &s, &p)),
                    _ => None,
                },
            };
            if let Some(record) = record {
                tags.push(self.tag(true, Packet::Config, &record));
                *config_sent = true;
            }
        }
        if !*config_sent {
            return tags;
        }
        // Parameter sets and access unit delimiters stay out of the frame (the record
        // has them); SEI (the capture stamp) and slices go in.
        let parameter_or_aud = |n: &Bytes| match self.codec {
            Codec::H264 => matches!(nal_type(n), 7..=9),
            Codec::H265 => matches!(nal_type(n), 32..=35),
        };
        let kept: Vec<&[u8]> = nalus
            .iter()
            .filter(|n| !parameter_or_aud(n))
            .map(|n| &n[..])
            .collect();
        tags.push(self.tag(frame.keyframe, Packet::Frame, &flv::length_prefix(&kept)));
        tags
    }

    /// One tag body in this camera's layout.
    fn tag(&self, keyframe: bool, packet: Packet, payload: &[u8]) -> Bytes {
        let frame_type: u8 = if keyframe { 1 } else { 2 };
        let mut b = BytesMut::with_capacity(payload.len() + 8);
        match (self.codec, self.hevc) {
            (Codec::H265, HevcAs::Enhanced) => {
                let packet_type = match packet {
                    Packet::Config => 0,
                    Packet::Frame => 1,
                };
                b.put_u8(0x80 | (frame_type << 4) | packet_type);
                b.put_slice(b"hvc1");
                if packet == Packet::Frame {
                    b.put_slice(&[0, 0, 0]);
                }
            }
            (codec, _) => {
                let id = match codec {
                    Codec::H264 => 7,
                    Codec::H265 => 12,
                };
                b.put_u8((frame_type << 4) | id);
                b.put_u8(match packet {
                    Packet::Config => 0,
                    Packet::Frame => 1,
                });
                b.put_slice(&[0, 0, 0]);
            }
        }
        b.put_slice(payload);
        b.freeze()
    }
}

/// What a tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packet {
    Config,
    Frame,
}

/// The client side of the RTMP handshake; returns the bytes after it.
fn handshake(socket: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut hs = Handshake::new(PeerType::Client);
    let c0c1 = hs
        .generate_outbound_p0_and_p1()
        .map_err(|e| anyhow::anyhow!("handshake: {e:?}"))?;
    socket.write_all(&c0c1)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.read(&mut buf)?;
        anyhow::ensure!(
            n > 0,
            "the gateway closed the connection during the handshake"
        );
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| anyhow::anyhow!("handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes)?
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket.write_all(&response_bytes)?;
                return Ok(remaining_bytes);
            }
        }
    }
}

fn send(socket: &mut TcpStream, results: &[ClientSessionResult]) -> anyhow::Result<()> {
    for r in results {
        if let ClientSessionResult::OutboundResponse(p) = r {
            socket.write_all(&p.bytes)?;
        }
    }
    Ok(())
}

/// Writes on a non-blocking socket, waiting out `WouldBlock` (bounded by the
/// gateway's reading; a gateway that stops reading ends the connection).
fn write_blocking(socket: &mut TcpStream, results: &[ClientSessionResult]) -> anyhow::Result<()> {
    let limit = Instant::now() + SETUP_LIMIT;
    for r in results {
        if let ClientSessionResult::OutboundResponse(p) = r {
            let mut at = 0;
            while at < p.bytes.len() {
                match socket.write(&p.bytes[at..]) {
                    Ok(0) => anyhow::bail!("the gateway closed the connection"),
                    Ok(n) => at += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        anyhow::ensure!(Instant::now() < limit, "the gateway stopped reading");
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}
