//! The RTSP guard: every byte a camera sends passes through lookout's own bounded
//! reader before GStreamer's `rtspsrc` sees it, and lookout holds the camera's socket,
//! so whatever a camera sends or withholds costs the gateway bounded memory, CPU and
//! time.
//!
//! `camera.rs` opens a [`Guard`] per connection attempt: the guard dials the camera,
//! listens on a loopback port, and `pipeline.rs` points `rtspsrc` at that port. Bytes
//! from `rtspsrc` go to the camera as they are; bytes from the camera are cut into
//! messages and interleaved frames by `lookout_codecs::rtsp::Reader` (header line,
//! header count, head and body size capped) and passed on, a message rewritten only
//! where the proxying needs it (absolute control URLs point at the guard, a UDP
//! `Transport` names the camera as RTP source) or the camera's configuration says so
//! (a `Basic` challenge is withheld unless `basic_auth = true`). A message that takes
//! longer than the stall timeout to arrive (a header sent a byte at a time), a flood
//! of messages, or anything the reader refuses closes the connection, and the refusal
//! becomes the attempt's error.
//!
//! The guard is also how a stuck pipeline is freed: [`Guard::cut`] closes both
//! sockets, so an `rtspsrc` blocked on the camera returns and its state change to
//! `NULL` completes. Without it one hostile camera left two threads and three
//! descriptors behind on every reconnect.
//!
//! `rtsps://` (TLS) cannot be read by a proxy and is connected directly.

use lookout_core::sync::Locked;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lookout_codecs::rtsp::{Header, Item, Limits, Message, Reader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::pipeline::{ConnectionError, Retry};

/// Most RTSP messages (not interleaved frames) a camera may send in one second.
/// A camera answers one per request and rtspsrc sends a keep-alive every few
/// seconds; hundreds a second is a camera trying to keep a core busy.
const MESSAGES_PER_SECOND: u32 = 50;

/// What the guard needs to know about the camera.
#[derive(Debug, Clone)]
pub(crate) struct GuardSpec {
    /// The camera's id, for logs.
    pub camera: Arc<str>,
    /// The camera's URL without user-info.
    pub location: String,
    /// Pass a `Basic` challenge on to rtspsrc (which would answer it with the
    /// password in clear text).
    pub allow_basic: bool,
    /// Longest a camera may take to accept the connection.
    pub deadline: Duration,
    /// Longest a camera may take to send one whole message once it has begun.
    pub message_deadline: Duration,
}

/// Why the guard closed a connection; read by the camera task for its error.
#[derive(Debug, Default)]
struct GuardState {
    refusal: Mutex<Option<String>>,
    /// A 401 offered only `Basic`, and it was withheld.
    basic_withheld: AtomicBool,
}

/// One guarded connection. Dropping it closes both sockets.
pub(crate) struct Guard {
    /// What rtspsrc connects to: the camera's URL on the guard's loopback port.
    pub local_url: String,
    state: Arc<GuardState>,
    cut: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Guard {
    /// Dials the camera and starts listening for rtspsrc. `Ok(None)` for a URL the
    /// guard cannot stand in front of (`rtsps://`).
    pub(crate) async fn open(spec: GuardSpec) -> Result<Option<Guard>, ConnectionError> {
        let Some(target) = Target::parse(&spec.location) else {
            return Ok(None);
        };
        let dial = TcpStream::connect((target.host.as_str(), target.port));
        let camera = match tokio::time::timeout(spec.deadline, dial).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(ConnectionError {
                    stage: "rtsp",
                    cause: format!("cannot connect to {}:{}: {e}", target.host, target.port),
                    retry: Retry::Soon,
                });
            }
            Err(_) => {
                return Err(ConnectionError {
                    stage: "rtsp",
                    cause: format!(
                        "no answer from {}:{} within {} ms",
                        target.host,
                        target.port,
                        spec.deadline.as_millis()
                    ),
                    retry: Retry::Soon,
                });
            }
        };
        let peer_ip = camera.peer_addr().map(|a| a.ip()).ok();
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| local_error("cannot listen on loopback", &e))?;
        let local = listener
            .local_addr()
            .map_err(|e| local_error("cannot read the loopback port", &e))?;
        let local_authority = format!("127.0.0.1:{}", local.port());
        let local_url = format!("{}://{local_authority}{}", target.scheme, target.rest);
        let state = Arc::new(GuardState::default());
        let cut = Arc::new(Notify::new());
        let rewrite = Rewrite {
            local_authority,
            allow_basic: spec.allow_basic,
            source: peer_ip,
        };
        let task = {
            let (state, cut) = (state.clone(), cut.clone());
            tokio::spawn(async move {
                let relay = relay(camera, listener, &spec, &rewrite, &state);
                tokio::select! {
                    // A refusal is already recorded and logged by `relay`.
                    _ = relay => {}
                    () = cut.notified() => {}
                }
                // Both sockets are dropped here, whatever rtspsrc is doing.
            })
        };
        Ok(Some(Guard {
            local_url,
            state,
            cut,
            task,
        }))
    }

    /// Why the guard closed the connection, if it did.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.state.refusal.locked().clone()
    }

    /// Whether the camera asked only for Basic authentication and was refused it.
    pub(crate) fn basic_withheld(&self) -> bool {
        self.state.basic_withheld.load(Relaxed)
    }

    /// Closes both sockets now.
    pub(crate) fn cut(&self) {
        self.cut.notify_one();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn local_error(what: &str, e: &std::io::Error) -> ConnectionError {
    ConnectionError {
        stage: "setup",
        cause: format!("{what}: {e}"),
        retry: Retry::Soon,
    }
}

/// The parts of a camera URL the guard needs.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
    /// Path, query and fragment, as written.
    rest: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let (scheme, after) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "rtsp" && scheme != "rtspt" {
            return None;
        }
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']')?;
            (h, tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => 554,
        };
        if host.is_empty() {
            return None;
        }
        Some(Target {
            scheme,
            host: host.to_string(),
            port,
            rest: rest.to_string(),
        })
    }
}

/// Moves bytes both ways until either side closes or the camera breaks a limit;
/// `Err` names what the camera sent.
async fn relay(
    camera: TcpStream,
    listener: TcpListener,
    spec: &GuardSpec,
    rewrite: &Rewrite,
    state: &GuardState,
) -> Result<(), String> {
    let client = match tokio::time::timeout(spec.deadline, listener.accept()).await {
        Ok(Ok((client, _))) => client,
        // rtspsrc never came: nothing to report about the camera.
        Ok(Err(_)) | Err(_) => return Ok(()),
    };
    // One client per guard: later connections are refused by the closed port.
    drop(listener);
    for s in [&camera, &client] {
        if let Err(e) = s.set_nodelay(true) {
            tracing::debug!(camera = %spec.camera, "TCP_NODELAY not set: {e}");
        }
    }
    let (mut camera_rx, mut camera_tx) = camera.into_split();
    let (mut client_rx, mut client_tx) = client.into_split();
    let upstream = async {
        // rtspsrc's requests and RTCP: ours, so passed as they are.
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if camera_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let downstream = async {
        let mut reader = Reader::new(Limits::default());
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut message_since: Option<Instant> = None;
        let mut window = (Instant::now(), 0u32);
        loop {
            buf.clear();
            let read = camera_rx.read_buf(&mut buf);
            let n = match message_since {
                Some(t) => match tokio::time::timeout_at(t + spec.message_deadline, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(format!(
                            "an RTSP message that was not finished within {} ms ({} bytes so far)",
                            spec.message_deadline.as_millis(),
                            reader.buffered()
                        ));
                    }
                },
                None => read.await,
            };
            match n {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => reader.push(&buf),
            }
            loop {
                match reader.next_item() {
                    Ok(None) => break,
                    Ok(Some(Item::Interleaved(frame))) => {
                        if client_tx.write_all(&frame).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(Some(Item::Message(m))) => {
                        let now = Instant::now();
                        if now.duration_since(window.0) >= Duration::from_secs(1) {
                            window = (now, 0);
                        }
                        window.1 += 1;
                        if window.1 > MESSAGES_PER_SECOND {
                            return Err(format!(
                                "more than {MESSAGES_PER_SECOND} RTSP messages in a second"
                            ));
                        }
                        let (bytes, basic_withheld) = rewrite.apply(m);
                        if basic_withheld {
                            state.basic_withheld.store(true, Relaxed);
                        }
                        if client_tx.write_all(&bytes).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            message_since = match (reader.partial_message(), message_since) {
                (false, _) => None,
                (true, Some(t)) => Some(t),
                (true, None) => Some(Instant::now()),
            };
        }
    };
    let outcome = tokio::select! {
        () = upstream => Ok(()),
        r = downstream => r,
    };
    // Recorded while both sockets are still open, so rtspsrc's error (which
    // follows their closing) always finds the reason in place.
    if let Err(why) = &outcome {
        tracing::warn!(camera = %spec.camera, stage = "rtsp", "connection closed: the camera sent {why}");
        let mut r = state.refusal.locked();
        *r = Some(why.clone());
    }
    outcome
}

/// How the guard changes a camera's messages on their way to rtspsrc.
#[derive(Debug)]
struct Rewrite {
    /// `127.0.0.1:PORT` of the guard.
    local_authority: String,
    allow_basic: bool,
    /// The camera's address, named as RTP source in a UDP `Transport` answer.
    source: Option<IpAddr>,
}

impl Rewrite {
    /// The bytes to pass on, and whether a Basic-only challenge was withheld.
    fn apply(&self, mut m: Message) -> (Bytes, bool) {
        let mut changed = false;
        let mut basic_withheld = false;
        for h in &mut m.headers {
            if h.name.eq_ignore_ascii_case("content-base")
                || h.name.eq_ignore_ascii_case("content-location")
            {
                if let Some(v) = self.relocate(&h.value) {
                    h.value = v;
                    changed = true;
                }
            } else if h.name.eq_ignore_ascii_case("transport")
                && let Some(v) = self.transport(&h.value)
            {
                h.value = v;
                changed = true;
            }
        }
        if m.status() == Some(401) && !self.allow_basic {
            let is_basic = |h: &Header| {
                h.name.eq_ignore_ascii_case("www-authenticate")
                    && h.value
                        .get(..5)
                        .is_some_and(|s| s.eq_ignore_ascii_case("basic"))
            };
            let offered = m
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("www-authenticate"))
                .count();
            let basic = m.headers.iter().filter(|h| is_basic(h)).count();
            if basic > 0 {
                m.headers.retain(|h| !is_basic(h));
                changed = true;
                basic_withheld = basic == offered;
            }
        }
        let sdp = m
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
        if sdp && let Some(body) = self.sdp(&m.body) {
            m.body = body;
            changed = true;
        }
        let bytes = if changed { m.encode() } else { m.raw };
        (bytes, basic_withheld)
    }

    /// An absolute `rtsp://host/…` URL moved onto the guard; `None` when it is
    /// relative or already there.
    fn relocate(&self, url: &str) -> Option<String> {
        let (scheme, after) = url.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("rtsp") && !scheme.eq_ignore_ascii_case("rtspt") {
            return None;
        }
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        if after[..end] == self.local_authority {
            return None;
        }
        Some(format!(
            "{scheme}://{}{}",
            self.local_authority,
            &after[end..]
        ))
    }

    /// A UDP transport answer that names no source gets the camera's address, so
    /// rtspsrc sends its RTCP receiver reports to the camera, not to the guard.
    fn transport(&self, value: &str) -> Option<String> {
        let source = self.source?;
        let lower = value.to_ascii_lowercase();
        if lower.contains("interleaved=")
            || lower.contains("source=")
            || lower.contains("multicast")
        {
            return None;
        }
        Some(format!("{value};source={source}"))
    }

    fn sdp(&self, body: &[u8]) -> Option<Bytes> {
        let text = std::str::from_utf8(body).ok()?;
        let mut changed = false;
        let mut out = String::with_capacity(text.len() + 32);
        for line in text.split_inclusive('\n') {
            let (content, end) = match line.strip_suffix("\r\n") {
                Some(c) => (c, "\r\n"),
                None => match line.strip_suffix('\n') {
                    Some(c) => (c, "\n"),
                    None => (line, ""),
                },
            };
            match content
                .strip_prefix("a=control:")
                .and_then(|url| self.relocate(url))
            {
                Some(url) => {
                    out.push_str("a=control:");
                    out.push_str(&url);
                    out.push_str(end);
                    changed = true;
                }
                None => out.push_str(line),
            }
        }
        changed.then(|| Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Message {
        let mut r = Reader::new(Limits::default());
        r.push(text.as_bytes());
        match r.next_item() {
            Ok(Some(Item::Message(m))) => m,
            other => panic!("{other:?}"),
        }
    }

    fn rewrite(allow_basic: bool) -> Rewrite {
        Rewrite {
            local_authority: "127.0.0.1:40000".into(),
            allow_basic,
            source: Some(IpAddr::from([192, 168, 1, 64])),
        }
    }

    #[test]
    fn camera_urls_are_split_for_dialing() {
        let t = |u: &str| Target::parse(u);
        assert_eq!(
            t("rtsp://192.168.1.64/Streaming/Channels/101?transportmode=unicast"),
            Some(Target {
                scheme: "rtsp".into(),
                host: "192.168.1.64".into(),
                port: 554,
                rest: "/Streaming/Channels/101?transportmode=unicast".into(),
            })
        );
        assert_eq!(
            t("rtsp://[::1]:8554/a").map(|t| (t.host, t.port)),
            Some(("::1".into(), 8554))
        );
        assert_eq!(
            t("RTSPT://cam:10554").map(|t| (t.scheme, t.port, t.rest)),
            Some(("rtspt".into(), 10554, String::new()))
        );
        assert_eq!(t("rtsps://cam/a"), None);
        assert_eq!(t("rtsp://cam:notaport/a"), None);
        assert_eq!(t("rtsp:///a"), None);
    }

    #[test]
    fn absolute_control_urls_are_moved_onto_the_guard() {
        let m = message(
            "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: rtsp://192.168.1.64:554/Streaming/Channels/101/\r\n\
             Content-Type: application/sdp\r\nContent-Length: 61\r\n\r\n\
             v=0\r\nm=video 0 RTP/AVP 96\r\na=control:rtsp://192.168.1.64/t1\r\n",
        );
        let (out, _) = rewrite(false).apply(m);
        let again = message(std::str::from_utf8(&out).expect("utf-8"));
        assert_eq!(
            again.header("content-base"),
            Some("rtsp://127.0.0.1:40000/Streaming/Channels/101/")
        );
        assert_eq!(
            std::str::from_utf8(&again.body).expect("utf-8"),
            "v=0\r\nm=video 0 RTP/AVP 96\r\na=control:rtsp://127.0.0.1:40000/t1\r\n"
        );
    }

    #[test]
    fn a_message_that_needs_no_change_passes_byte_for_byte() {
        let text =
            "RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: 12345678;timeout=60\r\nX-Odd:  spaced \r\n\r\n";
        let (out, withheld) = rewrite(false).apply(message(text));
        assert_eq!((&out[..], withheld), (text.as_bytes(), false));
    }

    #[test]
    fn a_udp_answer_names_the_camera_as_source() {
        let udp = "RTSP/1.0 200 OK\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001\r\n\r\n";
        let (out, _) = rewrite(false).apply(message(udp));
        assert_eq!(
            message(std::str::from_utf8(&out).expect("utf-8")).header("transport"),
            Some("RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001;source=192.168.1.64")
        );
        let tcp =
            "RTSP/1.0 200 OK\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n";
        let (out, _) = rewrite(false).apply(message(tcp));
        assert_eq!(&out[..], tcp.as_bytes());
    }

    #[test]
    fn basic_challenges_reach_rtspsrc_only_when_configured() {
        let both = "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Digest realm=\"cam\", nonce=\"abc\"\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n\r\n";
        let (out, withheld) = rewrite(false).apply(message(both));
        let m = message(std::str::from_utf8(&out).expect("utf-8"));
        let challenges: Vec<_> = m
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("www-authenticate"))
            .map(|h| h.value.as_str())
            .collect();
        assert_eq!(
            (challenges, withheld),
            (vec!["Digest realm=\"cam\", nonce=\"abc\""], false)
        );

        let basic =
            "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Basic realm=\"cam\"\r\n\r\n";
        let (out, withheld) = rewrite(false).apply(message(basic));
        assert!(withheld);
        assert!(
            message(std::str::from_utf8(&out).expect("utf-8"))
                .header("www-authenticate")
                .is_none()
        );
        let (out, withheld) = rewrite(true).apply(message(basic));
        assert_eq!((&out[..], withheld), (basic.as_bytes(), false));
    }
}
