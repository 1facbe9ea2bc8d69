//! SIP messages (RFC 3261) as GB/T 28181 devices and platforms send them, sans-IO and
//! bounded: one message per UDP datagram ([`parse`]), or a TCP byte stream cut into
//! messages by `Content-Length` ([`StreamReader`]). Header names are matched without
//! regard to case and in their compact forms (`v` for `Via`, `l` for `Content-Length`,
//! …); the body is bytes (GB/T 28181 puts MANSCDP XML or SDP in it, often in GB 2312).
//!
//! Every refusal says what was wrong ([`SipError`]); nothing beyond [`Limits`] is held.

use bytes::{Buf, Bytes, BytesMut};

/// How large a message may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The start line and every header line, bytes each.
    pub max_line: usize,
    /// Header lines per message.
    pub max_headers: usize,
    /// The body, bytes (a catalog of many channels is split by devices into several
    /// `MESSAGE`s, each well under this).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 2048,
            max_headers: 64,
            max_body: 64 * 1024,
        }
    }
}

/// Why bytes are not a SIP message lookout takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    /// The message ends before its headers do, or before `Content-Length` bytes of body.
    #[error("SIP message cut short ({0})")]
    Truncated(&'static str),
    /// A line, the header count or the body is over its limit.
    #[error("SIP message over a limit: {0}")]
    TooLarge(&'static str),
    /// The start line is neither a request line nor a status line.
    #[error("not a SIP start line: {0:?}")]
    StartLine(String),
    /// A header line without `:`, or a header value that cannot be read.
    #[error("bad header line: {0:?}")]
    Header(String),
    /// Text that is not UTF-8 in the start line or a header.
    #[error("SIP start line or header is not UTF-8")]
    Encoding,
}

/// A request's method and URI, or a response's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD sip:uri SIP/2.0`.
    Request {
        /// `REGISTER`, `MESSAGE`, `INVITE`, …
        method: String,
        /// The Request-URI.
        uri: String,
    },
    /// `SIP/2.0 CODE Reason`.
    Response {
        /// 100–699.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
}

/// One SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or response line.
    pub start: StartLine,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Bytes,
}

/// The full name of a compact header form (RFC 3261 §7.3.3), else the name itself.
fn full_name(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "s" | "S" => "Subject",
        "k" | "K" => "Supported",
        "e" | "E" => "Content-Encoding",
        other => other,
    }
}

impl Message {
    /// A request.
    pub fn request(method: &str, uri: &str) -> Message {
        Message {
            start: StartLine::Request {
                method: method.to_string(),
                uri: uri.to_string(),
            },
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A response.
    pub fn response(code: u16, reason: &str) -> Message {
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// The answer `code reason` to the request `req` (RFC 3261 §8.2.6.2): its Via
    /// headers, From, Call-ID and CSeq, and its To with `to_tag` added when it has none.
    pub fn reply(req: &Message, code: u16, reason: &str, to_tag: &str) -> Message {
        let mut r = Message::response(code, reason);
        for v in req.headers_named("Via") {
            r = r.with("Via", v);
        }
        for name in ["From", "Call-ID", "CSeq"] {
            if let Some(v) = req.header(name) {
                r = r.with(name, v);
            }
        }
        if let Some(to) = req.header("To") {
            let to = if to.contains(";tag=") {
                to.to_string()
            } else {
                format!("{to};tag={to_tag}")
            };
            r = r.with("To", to);
        }
        r
    }

    /// Adds a header (builder style).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Message {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The method of a request; `None` for a response.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The first value of header `name` (any case, compact forms too).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).next()
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        let want = full_name(name).to_string();
        self.headers
            .iter()
            .filter(move |(n, _)| full_name(n).eq_ignore_ascii_case(&want))
            .map(|(_, v)| v.as_str())
    }

    /// `CSeq`'s number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, m) = self
            .header("CSeq")?
            .trim()
            .split_once(char::is_whitespace)?;
        Some((n.trim().parse().ok()?, m.trim()))
    }

    /// The bytes on the wire, `Content-Length` set from the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        match &self.start {
            StartLine::Request { method, uri } => {
                out.push_str(&format!("{method} {uri} SIP/2.0\r\n"));
            }
            StartLine::Response { code, reason } => {
                out.push_str(&format!("SIP/2.0 {code} {reason}\r\n"));
            }
        }
        for (n, v) in &self.headers {
            if full_name(n).eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Reads one message from a UDP datagram (anything after the body is ignored, as RFC
/// 3261 §18.3 says).
pub fn parse(datagram: &[u8], limits: &Limits) -> Result<Message, SipError> {
    match head(datagram, limits)? {
        Some((message, head_len, body_len)) => {
            let end = head_len + body_len;
            if datagram.len() < end {
                return Err(SipError::Truncated("body shorter than Content-Length"));
            }
            Ok(Message {
                body: Bytes::copy_from_slice(&datagram[head_len..end]),
                ..message
            })
        }
        None => Err(SipError::Truncated("no blank line after the headers")),
    }
}

/// The start line and headers at the front of `b`, the head's length and the body's
/// (`Content-Length`, 0 when absent); `None` while the head is incomplete.
fn head(b: &[u8], limits: &Limits) -> Result<Option<(Message, usize, usize)>, SipError> {
    // Keep-alive CRLFs before a message (RFC 5626) are skipped.
    let skip = b
        .iter()
        .take_while(|c| **c == b'\r' || **c == b'\n')
        .count();
    let b = &b[skip..];
    let max_head = limits.max_line * (limits.max_headers + 1);
    let Some(end) = find(b, b"\r\n\r\n").map(|e| e + 4) else {
        if b.len() > max_head {
            return Err(SipError::TooLarge("headers"));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&b[..end - 4]).map_err(|_| SipError::Encoding)?;
    let mut lines = Vec::new();
    for line in text.split("\r\n") {
        if line.len() > limits.max_line {
            return Err(SipError::TooLarge("line"));
        }
        // Folded header lines (RFC 3261 §7.3.1) continue the one before.
        if line.starts_with([' ', '\t']) && !lines.is_empty() {
            if let Some(last) = lines.last_mut() {
                let joined: &mut String = last;
                joined.push(' ');
                joined.push_str(line.trim());
            }
            continue;
        }
        lines.push(line.to_string());
    }
    let mut it = lines.into_iter();
    let first = it.next().unwrap_or_default();
    let start = start_line(&first)?;
    let mut headers = Vec::new();
    for line in it {
        if headers.len() >= limits.max_headers {
            return Err(SipError::TooLarge("header count"));
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| SipError::Header(line.chars().take(80).collect()))?;
        let n = n.trim();
        if n.is_empty() || n.contains(char::is_whitespace) {
            return Err(SipError::Header(line.chars().take(80).collect()));
        }
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let message = Message {
        start,
        headers,
        body: Bytes::new(),
    };
    let body_len = match message.header("Content-Length") {
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| SipError::Header(format!("Content-Length: {v}")))?,
        None => 0,
    };
    if body_len > limits.max_body {
        return Err(SipError::TooLarge("body"));
    }
    Ok(Some((message, skip + end, body_len)))
}

fn start_line(line: &str) -> Result<StartLine, SipError> {
    let bad = || SipError::StartLine(line.chars().take(80).collect());
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&code) {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some("SIP/2.0"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.bytes().all(|c| c.is_ascii_uppercase()) || uri.is_empty() {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Messages out of a TCP byte stream.
#[derive(Debug)]
pub struct StreamReader {
    limits: Limits,
    buf: BytesMut,
}

impl StreamReader {
    /// A reader with `limits`.
    pub fn new(limits: Limits) -> StreamReader {
        StreamReader {
            limits,
            buf: BytesMut::new(),
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message; `Ok(None)` until one is in. An error means the stream
    /// cannot be followed any more: close the connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, SipError> {
        let Some((message, head_len, body_len)) = head(&self.buf, &self.limits)? else {
            // Only CRLF keep-alives so far: drop them.
            if self.buf.iter().all(|c| *c == b'\r' || *c == b'\n') {
                self.buf.clear();
            }
            return Ok(None);
        };
        if self.buf.len() < head_len + body_len {
            return Ok(None);
        }
        self.buf.advance(head_len);
        let body = self.buf.split_to(body_len).freeze();
        Ok(Some(Message { body, ..message }))
    }
}

/// The parameters of a `Digest` challenge or credentials (`WWW-Authenticate`,
/// `Authorization`): names lower-cased, quotes removed.
pub fn digest_params(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("Digest")?.trim_start();
    let mut out = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        let (name, after) = s.split_once('=')?;
        let name = name
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(c) => (&after[..c], &after[c..]),
                None => (after, ""),
            }
        };
        out.push((name, value.trim().to_string()));
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// Lower-case hex MD5 of `s`.
pub fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A digest algorithm: MD5 (RFC 2617; GB/T 28181-2016 and nearly every device in the
/// field) or SHA-256 (RFC 7616, in SIP by RFC 8760; what GB/T 28181-2022 adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    /// The name in `algorithm=` (`MD5`, `SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }

    /// The algorithm an `algorithm=` value names (case-insensitive); `None` for any
    /// other (the `-sess` variants included).
    pub fn parse(name: &str) -> Option<DigestAlgorithm> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(DigestAlgorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(DigestAlgorithm::Sha256)
        } else {
            None
        }
    }

    /// The lower-case hex hash of `s`.
    pub fn hex(self, s: &str) -> String {
        match self {
            DigestAlgorithm::Md5 => md5_hex(s),
            DigestAlgorithm::Sha256 => {
                use sha2::{Digest, Sha256};
                Sha256::digest(s.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }
        }
    }
}

/// The MD5 digest `response` a client holding `password` computes (RFC 2617
/// §3.2.2.1), with `qop` = (nc, cnonce, qop) or without: what the platform checks and
/// a device sends. [`digest_response_with`] for another algorithm.
pub fn digest_response(
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
) -> String {
    digest_response_with(
        DigestAlgorithm::Md5,
        username,
        realm,
        password,
        method,
        uri,
        nonce,
        qop,
    )
}

/// The digest `response` with `algorithm` (RFC 7616 §3.4.1, the same construction
/// with another hash).
#[allow(clippy::too_many_arguments)]
pub fn digest_response_with(
    algorithm: DigestAlgorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
) -> String {
    let h = |s: String| algorithm.hex(&s);
    let ha1 = h(format!("{username}:{realm}:{password}"));
    let ha2 = h(format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce, qop)) => h(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
        None => h(format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// A GB/T 28181 id (device, channel, platform): 20 decimal digits.
pub fn valid_gb_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7616_sha_256_and_md5_examples() {
        // RFC 7616 §3.9.1, the same request with both algorithms.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let r = |alg| {
            digest_response_with(
                alg,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                nonce,
                Some(("00000001", cnonce, "auth")),
            )
        };
        assert_eq!(
            r(DigestAlgorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(r(DigestAlgorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            DigestAlgorithm::parse("sha-256"),
            Some(DigestAlgorithm::Sha256)
        );
        assert_eq!(DigestAlgorithm::parse("MD5-sess"), None);
    }

    #[test]
    fn a_reply_carries_the_requests_transaction_and_tags_its_to() {
        let req = Message::request("MESSAGE", "sip:a@b")
            .with("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1")
            .with("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2")
            .with("From", "<sip:d@b>;tag=x")
            .with("To", "<sip:a@b>")
            .with("Call-ID", "c1")
            .with("CSeq", "7 MESSAGE");
        let r = Message::reply(&req, 200, "OK", "t9");
        assert_eq!(r.headers_named("Via").count(), 2);
        assert_eq!(r.header("To"), Some("<sip:a@b>;tag=t9"));
        assert_eq!(r.cseq(), Some((7, "MESSAGE")));
        // In a dialog the To has its tag already: kept.
        let in_dialog = Message::request("BYE", "sip:a@b")
            .with("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK3")
            .with("To", "<sip:a@b>;tag=old")
            .with("CSeq", "8 BYE");
        let r = Message::reply(&in_dialog, 200, "OK", "t9");
        assert_eq!(r.header("To"), Some("<sip:a@b>;tag=old"));
    }

    const REGISTER: &str = "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1371463273\r\n\
        From: <sip:34020000001320000001@3402000000>;tag=2043466181\r\n\
        To: <sip:34020000001320000001@3402000000>\r\n\
        Call-ID: 1011047669\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:34020000001320000001@192.168.1.64:5060>\r\n\
        Max-Forwards: 70\r\n\
        User-Agent: IP Camera\r\n\
        Expires: 3600\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn a_device_register_reads_and_writes_back() {
        let m = parse(REGISTER.as_bytes(), &Limits::default()).expect("register");
        assert_eq!(m.method(), Some("REGISTER"));
        assert_eq!(m.cseq(), Some((1, "REGISTER")));
        assert_eq!(m.header("expires"), Some("3600"));
        assert_eq!(
            m.header("v").map(|v| v.starts_with("SIP/2.0/UDP")),
            Some(true)
        );
        let again = parse(&m.encode(), &Limits::default()).expect("again");
        assert_eq!(again, m);
    }

    #[test]
    fn tcp_streams_are_cut_by_content_length_and_compact_forms_read() {
        let body = "<?xml version=\"1.0\"?>\r\n<Notify><CmdType>Keepalive</CmdType></Notify>";
        let msg = format!(
            "MESSAGE sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP 1.2.3.4:5060\r\ni: 77\r\nCSeq: 20 MESSAGE\r\nc: Application/MANSCDP+xml\r\nl: {}\r\n\r\n{body}",
            body.len()
        );
        let stream = format!("\r\n\r\n{msg}{msg}");
        for cut in [1, 5, 64, stream.len()] {
            let mut r = StreamReader::new(Limits::default());
            let mut got = Vec::new();
            for piece in stream.as_bytes().chunks(cut) {
                r.push(piece);
                while let Some(m) = r.next_message().expect("message") {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "cut {cut}");
            assert_eq!(&got[1].body[..], body.as_bytes());
            assert_eq!(got[0].header("Call-ID"), Some("77"));
        }
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let l = Limits::default();
        assert!(matches!(
            parse(b"HELLO\r\n\r\n", &l),
            Err(SipError::StartLine(_))
        ));
        assert!(matches!(
            parse(b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc", &l),
            Err(SipError::Truncated(_))
        ));
        assert!(matches!(
            parse(b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n", &l),
            Err(SipError::Header(_))
        ));
        let huge = format!("SIP/2.0 200 OK\r\nX: {}\r\n\r\n", "a".repeat(5000));
        assert_eq!(parse(huge.as_bytes(), &l), Err(SipError::TooLarge("line")));
        let body = format!("SIP/2.0 200 OK\r\nContent-Length: {}\r\n\r\n", 1 << 20);
        assert_eq!(parse(body.as_bytes(), &l), Err(SipError::TooLarge("body")));
    }

    #[test]
    fn digest_parameters() {
        let p = digest_params(
            "Digest username=\"34020000001320000001\", realm=\"3402000000\", nonce=\"abc,def\", uri=\"sip:x\", response=\"0123\", algorithm=MD5",
        )
        .expect("params");
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("username"), Some("34020000001320000001"));
        assert_eq!(get("nonce"), Some("abc,def"));
        assert_eq!(get("algorithm"), Some("MD5"));
        assert!(digest_params("Basic abc").is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let l = Limits {
            max_line: 64,
            max_headers: 4,
            max_body: 64,
        };
        let mut r = StreamReader::new(l);
        for len in 0..300usize {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    match i % 9 {
                        0 => b'\r',
                        1 => b'\n',
                        2 => b':',
                        _ => state as u8,
                    }
                })
                .collect();
            let _ = parse(&bytes, &l);
            r.push(&bytes);
            if r.next_message().is_err() {
                r = StreamReader::new(l);
            }
        }
    }
}
