//! Fleet cameras that are GB/T 28181 devices, as body cameras and deployable PTZ
//! cameras on 4G/5G are, or channels of a lower platform, as a department's video
//! platform shares its cameras by cascade. Each device (or platform) has a thread that
//! registers to the gateway's SIP side (`REGISTER`, the 401 digest challenge answered
//! with the fleet's password), keeps alive, answers the catalog query with its channels
//! (a platform's in several messages of at most 16, as platforms send them), and
//! answers the gateway's `INVITE` for a channel by sending that camera's access units
//! (stamped like every fleet frame) as MPEG-2 Program Stream over RTP, to the UDP port
//! the offer names or over a TCP connection to it (RFC 4571) when the offer says
//! `TCP/RTP/AVP`, or, when the offer says `a=setup:active`, over a connection the
//! gateway makes to the port its answer names (TCP active). `BYE` stops that channel's
//! video. The feeder thread hands frames over
//! a small bounded queue and never waits; frames with no stream up, or that the queue
//! has no room for, are dropped and counted.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use super::feeder::Feeder;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lookout_codecs::Codec;
use lookout_codecs::sip::{self, Limits, Message, StartLine};

/// The gateway's SIP id in the configuration the fleet writes.
pub const PLATFORM_ID: &str = "34020000002000000001";
/// The SIP domain (and digest realm) of that configuration.
pub const DOMAIN: &str = "3402000000";
/// The password the fleet's devices register with (loopback load tests only; the
/// fleet writes it to the password file its gateway configuration names).
pub const PASSWORD: &str = "fleet-gb28181-password";

/// A digest challenge the device answers.
struct Challenge {
    realm: String,
    nonce: String,
    algorithm: sip::DigestAlgorithm,
}

/// Frames waiting for a device's stream, at most (about a second of video).
const QUEUED: usize = 32;
/// RTP payload bytes per packet.
const RTP_PAYLOAD: usize = 1400;
/// How often a registered device keeps alive.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
/// How long an unanswered REGISTER waits before it is sent again.
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// Device `n`'s 20-digit id (type 132: a camera).
pub fn device_id(n: usize) -> String {
    format!("340200000013200{:05}", n % 100_000)
}

/// The id of device `n`'s one channel (type 131).
pub fn channel_id(n: usize) -> String {
    format!("340200000013100{:05}", n % 100_000)
}

/// The fleet's lower platform's id (type 200: a platform).
pub const LOWER_PLATFORM_ID: &str = "34020000002000000002";

/// The id of the lower platform's channel `n` (type 131, a range of its own).
pub fn platform_channel_id(n: usize) -> String {
    format!("340200000013101{:05}", n % 100_000)
}

/// Catalog items per `MESSAGE`, at most (platforms split large catalogs).
const CATALOG_ITEMS_PER_MESSAGE: usize = 16;

/// One frame for the device thread.
struct Frame {
    data: Bytes,
    keyframe: bool,
    pts_90k: u64,
}

/// A fleet GB/T 28181 device, or lower platform, and its channels.
pub struct GbDevice {
    feeder: Feeder<(usize, Frame)>,
    started: Instant,
    /// Per channel, set while a stream is up (INVITE answered, no BYE since).
    pub streaming: Vec<Arc<AtomicBool>>,
}

impl GbDevice {
    /// Starts device number `n` of the fleet, one camera, registering to `gateway`
    /// (SIP over UDP); `restart_at_keyframe` is set on every INVITE so the stream opens
    /// on a keyframe.
    pub fn start(
        camera: &str,
        gateway: SocketAddr,
        n: usize,
        codec: Codec,
        restart_at_keyframe: Arc<AtomicBool>,
    ) -> anyhow::Result<GbDevice> {
        let channel = Channel::new(channel_id(n), camera, codec, restart_at_keyframe);
        GbDevice::spawn(camera, gateway, device_id(n), vec![channel])
    }

    /// Starts the fleet's lower platform with `cameras` (id, codec, restart flag) as its
    /// channels 1, 2, …
    pub fn start_platform(
        gateway: SocketAddr,
        cameras: Vec<(String, Codec, Arc<AtomicBool>)>,
    ) -> anyhow::Result<GbDevice> {
        let channels = cameras
            .into_iter()
            .enumerate()
            .map(|(i, (camera, codec, restart))| {
                Channel::new(platform_channel_id(i + 1), &camera, codec, restart)
            })
            .collect();
        GbDevice::spawn("platform", gateway, LOWER_PLATFORM_ID.to_string(), channels)
    }

    fn spawn(
        name: &str,
        gateway: SocketAddr,
        device: String,
        channels: Vec<Channel>,
    ) -> anyhow::Result<GbDevice> {
        let sock = UdpSocket::bind(SocketAddr::new(gateway.ip(), 0))?;
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        let capacity = QUEUED * channels.len().max(1);
        let streaming = channels.iter().map(|c| c.streaming.clone()).collect();
        let mut worker = Worker {
            name: name.to_string(),
            gateway,
            local,
            sock,
            device,
            channels,
            stop: Arc::default(),
            cseq: 1,
            tag: format!("{:08x}", unique()),
            register_call: format!("{:016x}@fleet", unique()),
            registered: false,
            next_register: Instant::now(),
            next_keepalive: Instant::now(),
            logged: false,
        };
        let feeder = Feeder::spawn(
            format!("gb-{name}"),
            "a GB/T 28181 device",
            capacity,
            move |rx, stop| {
                worker.stop = stop;
                worker.run(&rx)
            },
        )?;
        Ok(GbDevice {
            feeder,
            started: Instant::now(),
            streaming,
        })
    }

    /// Hands one frame over; never waits. `false` when it was dropped.
    pub fn push(&self, channel: usize, data: Bytes, keyframe: bool) -> bool {
        if !self
            .streaming
            .get(channel)
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            return false;
        }
        let pts_90k = (self.started.elapsed().as_micros() as u64) * 9 / 100;
        self.feeder.offer((
            channel,
            Frame {
                data,
                keyframe,
                pts_90k,
            },
        ))
    }
}

/// Where a stream's RTP goes.
enum Out {
    Udp(UdpSocket),
    Tcp(TcpStream),
    /// TCP active (the gateway connects): listening, not accepted yet.
    Listening(TcpListener),
}

/// The stream the gateway INVITEd.
struct Media {
    out: Out,
    call_id: String,
    ssrc: u32,
    seq: u16,
    /// One packet being written, reused for every packet of the stream.
    packet: Vec<u8>,
}

/// One channel: a camera of the device or platform.
struct Channel {
    id: String,
    camera: String,
    codec: Codec,
    restart_at_keyframe: Arc<AtomicBool>,
    streaming: Arc<AtomicBool>,
    media: Option<Media>,
}

impl Channel {
    fn new(id: String, camera: &str, codec: Codec, restart: Arc<AtomicBool>) -> Channel {
        Channel {
            id,
            camera: camera.to_string(),
            codec,
            restart_at_keyframe: restart,
            streaming: Arc::new(AtomicBool::new(false)),
            media: None,
        }
    }

    fn stop(&mut self) {
        self.media = None;
        self.streaming.store(false, Ordering::Relaxed);
    }
}

struct Worker {
    /// The camera (or `platform`) for messages.
    name: String,
    gateway: SocketAddr,
    local: SocketAddr,
    sock: UdpSocket,
    device: String,
    channels: Vec<Channel>,
    stop: Arc<AtomicBool>,
    cseq: u32,
    tag: String,
    register_call: String,
    registered: bool,
    next_register: Instant,
    next_keepalive: Instant,
    /// A problem was logged already (once per device).
    logged: bool,
}

impl Worker {
    fn run(&mut self, rx: &Receiver<(usize, Frame)>) {
        let mut buf = vec![0u8; 65_535];
        while !self.stop.load(Ordering::Relaxed) {
            // Frames first: forwarded the moment they come.
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok((channel, f)) => self.frame(channel, f),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            loop {
                match self.sock.recv_from(&mut buf) {
                    Ok((n, _)) => match sip::parse(&buf[..n], &Limits::default()) {
                        Ok(m) => self.handle(m),
                        Err(e) => self.problem(&format!("unreadable SIP from the gateway: {e}")),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // ICMP "port unreachable" while the gateway is not up yet.
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if !self.registered && now >= self.next_register {
                self.register(None);
                self.next_register = now + REGISTER_RETRY;
            }
            if self.registered && now >= self.next_keepalive {
                self.keepalive();
                self.next_keepalive = now + KEEPALIVE_EVERY;
            }
        }
        for i in 0..self.channels.len() {
            if let Some(m) = self.channels[i].media.take() {
                self.bye(&m);
            }
        }
    }

    fn problem(&mut self, why: &str) {
        if !self.logged {
            self.logged = true;
            eprintln!("fleet: {} GB/T 28181: {why}", self.name);
        }
    }

    fn send(&mut self, m: &Message) {
        if let Err(e) = self.sock.send_to(&m.encode(), self.gateway) {
            self.problem(&format!("SIP send: {e}"));
        }
    }

    fn request(&mut self, method: &str, uri: &str, call_id: &str) -> Message {
        let n = self.cseq;
        self.cseq += 1;
        Message::request(method, uri)
            .with(
                "Via",
                format!(
                    "SIP/2.0/UDP {};rport;branch=z9hG4bK{:08x}",
                    self.local,
                    unique()
                ),
            )
            .with(
                "From",
                format!("<sip:{}@{DOMAIN}>;tag={}", self.device, self.tag),
            )
            .with("Call-ID", call_id)
            .with("CSeq", format!("{n} {method}"))
            .with("Max-Forwards", "70")
            .with("User-Agent", "lookout-loadtest GB/T 28181 device")
    }

    /// REGISTER, with digest credentials for `challenge`.
    fn register(&mut self, challenge: Option<Challenge>) {
        let uri = format!("sip:{PLATFORM_ID}@{DOMAIN}");
        let call = self.register_call.clone();
        let mut m = self
            .request("REGISTER", &uri, &call)
            .with("To", format!("<sip:{}@{DOMAIN}>", self.device))
            .with("Contact", format!("<sip:{}@{}>", self.device, self.local))
            .with("Expires", "3600");
        if let Some(Challenge {
            realm,
            nonce,
            algorithm,
        }) = challenge
        {
            let response = sip::digest_response_with(
                algorithm,
                &self.device,
                &realm,
                PASSWORD,
                "REGISTER",
                &uri,
                &nonce,
                None,
            );
            m = m.with(
                "Authorization",
                format!(
                    "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
                    self.device,
                    algorithm.name()
                ),
            );
        }
        self.send(&m);
    }

    fn keepalive(&mut self) {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n",
            self.cseq, self.device
        );
        self.message(body);
    }

    fn message(&mut self, body: String) {
        let uri = format!("sip:{PLATFORM_ID}@{DOMAIN}");
        let call = format!("{:016x}@fleet", unique());
        let mut m = self
            .request("MESSAGE", &uri, &call)
            .with("To", format!("<{uri}>"))
            .with("Content-Type", "Application/MANSCDP+xml");
        m.body = Bytes::from(body);
        self.send(&m);
    }

    fn answer(&mut self, req: &Message, code: u16, reason: &str) -> Message {
        Message::reply(req, code, reason, &self.tag)
    }

    fn handle(&mut self, m: Message) {
        match &m.start {
            StartLine::Response { code, .. } => {
                let method = m.cseq().map(|(_, meth)| meth.to_string());
                match (method.as_deref(), *code) {
                    (Some("REGISTER"), 401) => {
                        // The first challenge whose algorithm this device knows (RFC
                        // 8760): MD5 or SHA-256, as a GB/T 28181-2022 device.
                        let chosen = m.headers_named("WWW-Authenticate").find_map(|v| {
                            let params = sip::digest_params(v)?;
                            let get = |k: &str| {
                                params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
                            };
                            let algorithm = match get("algorithm") {
                                None => sip::DigestAlgorithm::Md5,
                                Some(a) => sip::DigestAlgorithm::parse(&a)?,
                            };
                            Some(Challenge {
                                realm: get("realm")?,
                                nonce: get("nonce")?,
                                algorithm,
                            })
                        });
                        match chosen {
                            Some(c) => self.register(Some(c)),
                            None => self.problem("401 without a digest challenge it can answer"),
                        }
                    }
                    (Some("REGISTER"), 200) => {
                        self.registered = true;
                        self.next_keepalive = Instant::now();
                    }
                    (Some("REGISTER"), c) if c >= 300 => {
                        self.problem(&format!("REGISTER answered {c}"));
                        self.next_register = Instant::now() + Duration::from_secs(5);
                    }
                    // A keepalive the gateway does not take: register again.
                    (Some("MESSAGE"), 403) => self.registered = false,
                    _ => {}
                }
            }
            StartLine::Request { method, .. } => match method.as_str() {
                "MESSAGE" => {
                    let ok = self.answer(&m, 200, "OK");
                    self.send(&ok);
                    let body = String::from_utf8_lossy(&m.body).to_string();
                    if body.contains("<Query>") && body.contains("Catalog") {
                        let sn = between(&body, "<SN>", "</SN>").unwrap_or("1").to_string();
                        self.catalog(&sn);
                    }
                }
                "INVITE" => self.invite(&m),
                "BYE" => {
                    let ok = self.answer(&m, 200, "OK");
                    self.send(&ok);
                    let call = m.header("Call-ID");
                    for c in &mut self.channels {
                        if c.media
                            .as_ref()
                            .is_some_and(|md| Some(md.call_id.as_str()) == call)
                        {
                            c.stop();
                        }
                    }
                }
                "ACK" => {}
                _ => {
                    let ok = self.answer(&m, 200, "OK");
                    self.send(&ok);
                }
            },
        }
    }

    /// The gateway's INVITE: answer, and send the stream where the offer says.
    fn invite(&mut self, m: &Message) {
        // The channel is the Request-URI's user part.
        let wanted = match &m.start {
            StartLine::Request { uri, .. } => uri
                .strip_prefix("sip:")
                .and_then(|u| u.split('@').next())
                .unwrap_or("")
                .to_string(),
            StartLine::Response { .. } => String::new(),
        };
        let Some(ch) = self.channels.iter().position(|c| c.id == wanted) else {
            let r = self.answer(m, 404, "Not Found");
            self.send(&r);
            return self.problem(&format!(
                "an INVITE for channel {wanted}, which is not ours"
            ));
        };
        let sdp = String::from_utf8_lossy(&m.body).to_string();
        let ip = sdp
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("c=IN IP4 ")
                    .or(l.trim().strip_prefix("c=IN IP6 "))
            })
            .and_then(|a| a.trim().parse::<IpAddr>().ok());
        let video = sdp.lines().find_map(|l| l.trim().strip_prefix("m=video "));
        let port = video
            .and_then(|v| v.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok());
        let tcp = video.is_some_and(|v| v.contains("TCP/RTP/AVP"));
        // `a=setup:active`: the gateway connects, this device listens (TCP active).
        let gateway_connects = tcp && sdp.lines().any(|l| l.trim() == "a=setup:active");
        let ssrc_text = sdp
            .lines()
            .find_map(|l| l.trim().strip_prefix("y="))
            .unwrap_or("0000000000")
            .trim()
            .to_string();
        let (Some(ip), Some(port)) = (ip, port) else {
            let r = self.answer(m, 488, "Not Acceptable Here");
            self.send(&r);
            return self.problem("an INVITE without a media address");
        };
        let to = SocketAddr::new(ip, port);
        let out = if gateway_connects {
            TcpListener::bind(SocketAddr::new(self.local.ip(), 0)).and_then(|l| {
                l.set_nonblocking(true)?;
                Ok(Out::Listening(l))
            })
        } else if tcp {
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).and_then(|s| {
                s.set_nodelay(true)?;
                Ok(Out::Tcp(s))
            })
        } else {
            UdpSocket::bind(SocketAddr::new(ip, 0)).and_then(|s| {
                s.connect(to)?;
                Ok(Out::Udp(s))
            })
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let r = self.answer(m, 500, "Server Internal Error");
                self.send(&r);
                return self.problem(&format!("media to {to}: {e}"));
            }
        };
        let proto = if tcp { "TCP/RTP/AVP" } else { "RTP/AVP" };
        let (setup, media_port) = match &out {
            // The port the gateway is to connect to.
            Out::Listening(l) => (
                "a=setup:passive\r\n",
                l.local_addr().map_or(0, |a| a.port()),
            ),
            Out::Tcp(_) => ("a=setup:active\r\n", self.local.port()),
            Out::Udp(_) => ("", self.local.port()),
        };
        let answer_sdp = format!(
            "v=0\r\no={dev} 0 0 IN IP4 {ip}\r\ns=Play\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=video {media_port} {proto} 96\r\n{setup}a=sendonly\r\na=rtpmap:96 PS/90000\r\ny={ssrc_text}\r\n",
            dev = self.device,
            ip = self.local.ip(),
        );
        let mut ok = self
            .answer(m, 200, "OK")
            .with("Contact", format!("<sip:{}@{}>", self.device, self.local))
            .with("Content-Type", "application/sdp");
        ok.body = Bytes::from(answer_sdp);
        self.send(&ok);
        let c = &mut self.channels[ch];
        c.media = Some(Media {
            out,
            call_id: m.header("Call-ID").unwrap_or_default().to_string(),
            ssrc: ssrc_text.parse().unwrap_or(1),
            seq: 0,
            packet: Vec::with_capacity(2 + 12 + RTP_PAYLOAD),
        });
        c.restart_at_keyframe.store(true, Ordering::SeqCst);
        c.streaming.store(true, Ordering::Relaxed);
    }

    fn bye(&mut self, media: &Media) {
        let uri = format!("sip:{PLATFORM_ID}@{DOMAIN}");
        let m = self
            .request("BYE", &uri, &media.call_id.clone())
            .with("To", format!("<{uri}>"));
        self.send(&m);
    }

    /// The catalog, in messages of at most [`CATALOG_ITEMS_PER_MESSAGE`] items.
    fn catalog(&mut self, sn: &str) {
        let total = self.channels.len();
        let items: Vec<String> = self
            .channels
            .iter()
            .map(|c| {
                format!(
                    "<Item>\r\n<DeviceID>{}</DeviceID>\r\n<Name>{}</Name>\r\n<Manufacturer>lookout-loadtest</Manufacturer>\r\n<Model>fleet</Model>\r\n<Status>ON</Status>\r\n<ParentID>{}</ParentID>\r\n</Item>\r\n",
                    c.id, c.camera, self.device
                )
            })
            .collect();
        for part in items.chunks(CATALOG_ITEMS_PER_MESSAGE) {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{}</DeviceID>\r\n<SumNum>{total}</SumNum>\r\n<DeviceList Num=\"{}\">\r\n{}</DeviceList>\r\n</Response>\r\n",
                self.device,
                part.len(),
                part.concat()
            );
            self.message(body);
        }
    }

    /// One access unit of channel `ch` as PS over RTP.
    fn frame(&mut self, ch: usize, f: Frame) {
        let Some(c) = self.channels.get_mut(ch) else {
            return;
        };
        let codec = c.codec;
        let Some(media) = c.media.as_mut() else {
            return;
        };
        if let Out::Listening(l) = &media.out {
            // TCP active: frames wait for the gateway's connection, and the stream
            // starts at a keyframe once it is there.
            match l.accept() {
                Ok((stream, _)) => {
                    let ready = stream
                        .set_nonblocking(false)
                        .and_then(|()| stream.set_nodelay(true));
                    if let Err(e) = ready {
                        c.stop();
                        return self.problem(&format!("RTP connection from the gateway: {e}"));
                    }
                    media.out = Out::Tcp(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    c.stop();
                    return self.problem(&format!("accepting the gateway's RTP connection: {e}"));
                }
            }
            c.restart_at_keyframe.store(true, Ordering::SeqCst);
            return;
        }
        let ps = lookout_codecs::ps::mux_frame(codec, &f.data, f.pts_90k, f.keyframe, 60_000);
        let chunks = ps.chunks(RTP_PAYLOAD).count();
        let mut failed = None;
        for (i, chunk) in ps.chunks(RTP_PAYLOAD).enumerate() {
            let p = &mut media.packet;
            p.clear();
            p.extend_from_slice(&[0, 0]); // RFC 4571 length, TCP only
            p.push(0x80);
            p.push(if i + 1 == chunks { 0x80 | 96 } else { 96 });
            p.extend_from_slice(&media.seq.to_be_bytes());
            p.extend_from_slice(&(f.pts_90k as u32).to_be_bytes());
            p.extend_from_slice(&media.ssrc.to_be_bytes());
            p.extend_from_slice(chunk);
            media.seq = media.seq.wrapping_add(1);
            let r = match &mut media.out {
                Out::Udp(s) => s.send(&p[2..]).map(|_| ()),
                Out::Tcp(s) => {
                    let len = (p.len() - 2) as u16;
                    p[..2].copy_from_slice(&len.to_be_bytes());
                    s.write_all(p)
                }
                Out::Listening(_) => Ok(()),
            };
            if let Err(e) = r {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            c.stop();
            self.problem(&format!("sending RTP: {e}"));
        }
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// A number unlikely to repeat in this process (tags, branches, Call-IDs).
fn unique() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}
