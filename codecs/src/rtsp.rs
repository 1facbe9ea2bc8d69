//! RTSP as it arrives from a camera, sans-IO: the byte stream a camera sends on its
//! RTSP connection cut into whole messages (responses, and the requests a server may
//! send, such as `GET_PARAMETER` or `ANNOUNCE`) and interleaved binary frames
//! (`$`, channel, 16-bit length, RTP or RTCP), under explicit [`Limits`].
//!
//! The gateway's RTSP guard (`gateway/src/ingest/guard.rs`) feeds every byte a camera
//! sends through a [`Reader`] before GStreamer's `rtspsrc` sees it, so a camera that
//! sends an endless header, a 16 MB header line, an absurd `Content-Length` or bytes
//! that are neither RTSP nor interleaved data is refused with a [`RtspError`] that
//! names what it sent, instead of costing the gateway memory and a busy core. The
//! reader keeps at most one message head, one body and one interleaved frame, and
//! scans each byte once, however slowly the bytes come.
//!
//! ```
//! use lookout_codecs::rtsp::{Item, Limits, Reader};
//!
//! let mut reader = Reader::new(Limits::default());
//! reader.push(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 2\r\n\r\nhi$\x00\x00\x03abc");
//! let Some(Item::Message(m)) = reader.next_item()? else { panic!() };
//! assert_eq!((m.status(), m.header("cseq"), &m.body[..]), (Some(200), Some("1"), &b"hi"[..]));
//! let Some(Item::Interleaved(frame)) = reader.next_item()? else { panic!() };
//! assert_eq!(&frame[..], b"$\x00\x00\x03abc");
//! assert!(reader.next_item()?.is_none());
//! # Ok::<(), lookout_codecs::rtsp::RtspError>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};

/// How much a camera may send before the reader refuses it. The defaults are far
/// above what real cameras send (a Hikvision DESCRIBE answer is about 1 KB of headers
/// and 1 KB of SDP; the longest header lines are digest challenges of a few hundred
/// bytes) and far below what costs the gateway anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line of a message head, start line included, in bytes.
    pub max_line: usize,
    /// Most header lines in one message.
    pub max_headers: usize,
    /// Largest message head (start line, headers and the blank line), in bytes.
    pub max_head: usize,
    /// Largest body (`Content-Length`), in bytes: SDP, parameters.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 8 * 1024,
            max_headers: 64,
            max_head: 32 * 1024,
            max_body: 64 * 1024,
        }
    }
}

/// Why a camera's RTSP byte stream was refused. Each names what was sent and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspError {
    /// A head line (finished or not) over [`Limits::max_line`] bytes.
    #[error("a header line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    /// More header lines than [`Limits::max_headers`].
    #[error("more than {limit} header lines in one message")]
    TooManyHeaders { limit: usize },
    /// A head (finished or not) over [`Limits::max_head`] bytes.
    #[error("a message head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    /// A `Content-Length` over [`Limits::max_body`]: refused before any of
    /// the body is buffered.
    #[error("a Content-Length of {length}, more than the {limit} bytes a camera's message needs")]
    BodyTooLarge { length: u64, limit: usize },
    /// A `Content-Length` that is not a decimal number (its first 32
    /// characters).
    #[error("a Content-Length that is not a number ({value:?})")]
    BadContentLength { value: String },
    /// The bytes start neither an RTSP message nor an interleaved frame.
    #[error("bytes that are neither RTSP nor interleaved data (starting {start:?})")]
    NotRtsp { start: String },
}

/// One header of a message, as sent (name case kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name before the colon, whitespace trimmed, case as sent.
    pub name: String,
    /// The value after the colon, whitespace trimmed; folded continuation
    /// lines are joined to it with one space.
    pub value: String,
}

/// A whole RTSP message: a response, or a request a server sends its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `RTSP/1.0 200 OK`, or `GET_PARAMETER rtsp://… RTSP/1.0`, without the line end.
    pub start_line: String,
    /// The headers in the order sent (lines without a colon are left out);
    /// not UTF-8 bytes are replaced, `raw` keeps them.
    pub headers: Vec<Header>,
    /// The `Content-Length` bytes after the head (empty when it announces
    /// none); a slice of `raw`, not a copy.
    pub body: Bytes,
    /// The message exactly as it arrived, so one that is not changed is passed on byte
    /// for byte (a header that is not UTF-8 is kept as sent).
    pub raw: Bytes,
}

impl Message {
    /// The status code of a response; `None` for a request.
    pub fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("RTSP/")?;
        rest.split_whitespace().nth(1)?.parse().ok()
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Writes the message anew from its parts, with a `Content-Length` that matches
    /// the body (added when there is a body, dropped when there is none).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.raw.len() + 32);
        out.extend_from_slice(self.start_line.as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in &self.headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out.freeze()
    }
}

/// What the reader cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An interleaved frame, header included (`$`, channel, length, payload).
    Interleaved(Bytes),
    /// A whole RTSP message (head and body).
    Message(Message),
}

/// Where the reader is inside the message it is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Bytes before `scanned` belong to complete lines already checked.
    Lines {
        scanned: usize,
        lines: usize,
        /// Offset where the message starts (blank lines before it are skipped).
        start: usize,
    },
    /// The head ended at `head_end` (blank line included); the body is `body` bytes.
    Body {
        start: usize,
        head_end: usize,
        body: usize,
    },
}

/// Cuts a camera's RTSP byte stream into [`Item`]s. Push bytes as they arrive, then
/// take items until [`Reader::next_item`] returns `Ok(None)`. After an error the
/// stream cannot be resynchronised: the connection should be closed.
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    buf: BytesMut,
    head: Head,
}

impl Reader {
    pub fn new(limits: Limits) -> Reader {
        Reader {
            limits,
            buf: BytesMut::with_capacity(4096),
            head: Head::Lines {
                scanned: 0,
                lines: 0,
                start: 0,
            },
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not yet make a whole item.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a message has begun and is not yet whole: the caller's clock decides
    /// how long a camera may take to finish one (a header sent a byte at a time).
    /// An interleaved frame still arriving does not count: video may be slow.
    pub fn partial_message(&self) -> bool {
        match self.head {
            Head::Body { .. } => true,
            Head::Lines { start, .. } => self.buf.len() > start && self.buf.first() != Some(&b'$'),
        }
    }

    /// The next whole item, `Ok(None)` when more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<Item>, RtspError> {
        loop {
            match self.head {
                Head::Lines {
                    scanned,
                    lines,
                    start,
                } => {
                    if start == 0 && scanned == 0 {
                        match self.buf.first() {
                            None => return Ok(None),
                            Some(b'$') => return Ok(self.interleaved()),
                            Some(b'\r' | b'\n') => {
                                // Stray line ends between messages: some cameras
                                // send them as keep-alives.
                                self.buf.advance(1);
                                continue;
                            }
                            Some(b) if b.is_ascii_uppercase() => {}
                            Some(_) => return Err(self.not_rtsp()),
                        }
                    }
                    match self.scan_lines(scanned, lines, start)? {
                        Some(head) => self.head = head,
                        None => return Ok(None),
                    }
                }
                Head::Body {
                    start,
                    head_end,
                    body,
                } => {
                    if self.buf.len() < head_end + body {
                        return Ok(None);
                    }
                    let raw = self.buf.split_to(head_end + body).freeze();
                    self.head = Head::Lines {
                        scanned: 0,
                        lines: 0,
                        start: 0,
                    };
                    return Ok(Some(Item::Message(parse(raw, start, head_end)?)));
                }
            }
        }
    }

    /// A whole interleaved frame at the front of the buffer, if it has all arrived.
    fn interleaved(&mut self) -> Option<Item> {
        if self.buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
        if self.buf.len() < 4 + len {
            return None;
        }
        Some(Item::Interleaved(self.buf.split_to(4 + len).freeze()))
    }

    fn not_rtsp(&self) -> RtspError {
        let start = self.buf[..self.buf.len().min(16)]
            .iter()
            .flat_map(|b| std::ascii::escape_default(*b))
            .map(char::from)
            .collect();
        RtspError::NotRtsp { start }
    }

    /// Checks the complete lines after `scanned`; returns the body state once the
    /// blank line that ends the head has arrived.
    fn scan_lines(
        &mut self,
        mut scanned: usize,
        mut lines: usize,
        start: usize,
    ) -> Result<Option<Head>, RtspError> {
        let l = self.limits;
        while let Some(nl) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
            let line_end = scanned + nl;
            let line = trim_cr(&self.buf[scanned..line_end]);
            if line.len() > l.max_line {
                return Err(RtspError::LineTooLong { limit: l.max_line });
            }
            let next = line_end + 1;
            if next - start > l.max_head {
                return Err(RtspError::HeadTooLarge { limit: l.max_head });
            }
            if lines == 0 && !start_line_ok(line) {
                return Err(self.not_rtsp());
            }
            if line.is_empty() {
                let body = content_length(&self.buf[start..scanned], l.max_body)?;
                return Ok(Some(Head::Body {
                    start,
                    head_end: next,
                    body,
                }));
            }
            lines += 1;
            if lines > l.max_headers + 1 {
                return Err(RtspError::TooManyHeaders {
                    limit: l.max_headers,
                });
            }
            scanned = next;
        }
        // An unfinished line: refuse it as soon as it is too long, without waiting.
        if self.buf.len() - scanned > l.max_line + 1 {
            return Err(RtspError::LineTooLong { limit: l.max_line });
        }
        if self.buf.len() - start > l.max_head {
            return Err(RtspError::HeadTooLarge { limit: l.max_head });
        }
        self.head = Head::Lines {
            scanned,
            lines,
            start,
        };
        Ok(None)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `RTSP/1.0 200 OK` or `METHOD uri RTSP/1.0` (a server's request to its client).
fn start_line_ok(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    match parts.next() {
        Some(v) if v.starts_with(b"RTSP/") => parts
            .next()
            .is_some_and(|c| c.len() == 3 && c.iter().all(u8::is_ascii_digit)),
        Some(m) if !m.is_empty() && m.iter().all(|b| b.is_ascii_uppercase() || *b == b'_') => {
            parts.next().is_some() && parts.next().is_some_and(|v| v.starts_with(b"RTSP/"))
        }
        _ => false,
    }
}

/// The body length the head announces (0 when it announces none).
fn content_length(head: &[u8], max_body: usize) -> Result<usize, RtspError> {
    for line in head.split(|&b| b == b'\n') {
        let line = trim_cr(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        let length: u64 = value.parse().map_err(|_| RtspError::BadContentLength {
            value: value.chars().take(32).collect(),
        })?;
        if length > max_body as u64 {
            return Err(RtspError::BodyTooLarge {
                length,
                limit: max_body,
            });
        }
        return Ok(length as usize);
    }
    Ok(0)
}

/// Splits a whole message (`raw`, head from `start` to `head_end`) into its parts.
fn parse(raw: Bytes, start: usize, head_end: usize) -> Result<Message, RtspError> {
    let head = String::from_utf8_lossy(&raw[start..head_end]).into_owned();
    let mut lines = head.lines();
    let start_line = lines.next().unwrap_or_default().trim_end().to_string();
    let mut headers: Vec<Header> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // An obsolete folded continuation of the previous header.
            if let Some(last) = headers.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
            continue;
        }
        // Lines without a colon carry nothing a client could use; keep going.
        if let Some((name, value)) = line.split_once(':') {
            headers.push(Header {
                name: name.trim().to_string(),
                value: value.trim().to_string(),
            });
        }
    }
    Ok(Message {
        start_line,
        headers,
        body: raw.slice(head_end..),
        raw: raw.slice(start..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(reader: &mut Reader) -> Result<Vec<Item>, RtspError> {
        let mut out = Vec::new();
        while let Some(item) = reader.next_item()? {
            out.push(item);
        }
        Ok(out)
    }

    const DESCRIBE_OK: &[u8] = b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Base: rtsp://192.168.1.64:554/Streaming/Channels/101/\r\nContent-Type: application/sdp\r\nContent-Length: 12\r\n\r\nv=0\r\ns=cam\r\n";

    #[test]
    fn messages_and_frames_come_out_whole_however_the_bytes_are_cut() {
        let mut stream = Vec::new();
        stream.extend_from_slice(DESCRIBE_OK);
        stream.extend_from_slice(b"$\x00\x00\x05hello");
        stream.extend_from_slice(b"\r\nGET_PARAMETER rtsp://cam/ RTSP/1.0\r\nCSeq: 9\r\n\r\n");
        stream.extend_from_slice(b"$\x01\x00\x00");
        for cut in [1, 2, 3, 7, 64, stream.len()] {
            let mut reader = Reader::new(Limits::default());
            let mut items = Vec::new();
            for chunk in stream.chunks(cut) {
                reader.push(chunk);
                items.extend(all(&mut reader).expect("valid stream"));
            }
            assert_eq!(items.len(), 4, "cut {cut}");
            let Item::Message(m) = &items[0] else {
                panic!("{items:?}")
            };
            assert_eq!(m.status(), Some(200));
            assert_eq!(
                m.header("content-base"),
                Some("rtsp://192.168.1.64:554/Streaming/Channels/101/")
            );
            assert_eq!(&m.body[..], b"v=0\r\ns=cam\r\n");
            assert_eq!(&m.raw[..], DESCRIBE_OK);
            assert_eq!(
                items[1],
                Item::Interleaved(Bytes::from_static(b"$\x00\x00\x05hello"))
            );
            let Item::Message(req) = &items[2] else {
                panic!("{items:?}")
            };
            assert_eq!((req.status(), req.header("CSeq")), (None, Some("9")));
            assert_eq!(
                items[3],
                Item::Interleaved(Bytes::from_static(b"$\x01\x00\x00"))
            );
            assert_eq!(reader.buffered(), 0);
            assert!(!reader.partial_message());
        }
    }

    #[test]
    fn a_message_in_progress_is_reported_and_a_frame_is_not() {
        let mut reader = Reader::new(Limits::default());
        reader.push(b"RTSP/1.0 200");
        assert_eq!(all(&mut reader), Ok(vec![]));
        assert!(reader.partial_message());
        let mut reader = Reader::new(Limits::default());
        reader.push(b"$\x00\x10\x00abc");
        assert_eq!(all(&mut reader), Ok(vec![]));
        assert!(!reader.partial_message());
    }

    #[test]
    fn encode_rewrites_the_length_to_match_the_body() {
        let mut reader = Reader::new(Limits::default());
        reader.push(DESCRIBE_OK);
        let Some(Item::Message(mut m)) = reader.next_item().expect("ok") else {
            panic!()
        };
        assert_eq!(m.encode(), Bytes::from_static(DESCRIBE_OK));
        m.body = Bytes::from_static(b"v=0\r\n");
        let again = m.encode();
        let mut reader = Reader::new(Limits::default());
        reader.push(&again);
        let Some(Item::Message(m2)) = reader.next_item().expect("ok") else {
            panic!()
        };
        assert_eq!(
            (m2.header("content-length"), &m2.body[..]),
            (Some("5"), &b"v=0\r\n"[..])
        );
    }

    #[test]
    fn hostile_streams_are_refused_with_what_they_sent() {
        let l = Limits::default();
        let cases: Vec<(Vec<u8>, RtspError)> = vec![
            (
                [b"RTSP/1.0 200 OK\r\nX: ".as_ref(), &vec![b'a'; 16 << 20]].concat(),
                RtspError::LineTooLong { limit: l.max_line },
            ),
            (
                [b"RTSP/1.0 200 OK\r\n".as_ref(), &b"X-A: b\r\n".repeat(100)].concat(),
                RtspError::TooManyHeaders {
                    limit: l.max_headers,
                },
            ),
            (
                [
                    b"RTSP/1.0 200 OK\r\n".as_ref(),
                    &[&vec![b'a'; 8000][..], b": b\r\n"].concat().repeat(5),
                ]
                .concat(),
                RtspError::HeadTooLarge { limit: l.max_head },
            ),
            (
                b"RTSP/1.0 200 OK\r\nContent-Length: 4611686018427387904\r\n\r\n".to_vec(),
                RtspError::BodyTooLarge {
                    length: 1 << 62,
                    limit: l.max_body,
                },
            ),
            (
                b"RTSP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n".to_vec(),
                RtspError::BadContentLength { value: "-1".into() },
            ),
            (
                b"\x80\x60\x00\x01garbage".to_vec(),
                RtspError::NotRtsp {
                    start: "\\x80".into(),
                },
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
                RtspError::NotRtsp {
                    start: "HTTP/1.1 200 OK\\r".into(),
                },
            ),
        ];
        for (stream, want) in cases {
            // Fed a byte at a time for the short ones, so the limits hold while the
            // bytes trickle in, not only when they all arrive at once.
            let mut reader = Reader::new(l);
            let mut got = None;
            let step = if stream.len() < 100_000 { 1 } else { 65536 };
            for chunk in stream.chunks(step) {
                reader.push(chunk);
                if let Err(e) = all(&mut reader) {
                    got = Some(e);
                    break;
                }
                assert!(reader.buffered() <= l.max_head + l.max_line + step + 2);
            }
            assert_eq!(got.as_ref(), Some(&want));
        }
    }

    #[test]
    fn checking_a_header_a_byte_at_a_time_scans_each_byte_once() {
        // Quadratic rescanning is what a slow header would turn into a busy core;
        // 30 000 one-byte pushes must stay cheap. Counted, not timed: the scan
        // offset only moves forward.
        let mut reader = Reader::new(Limits::default());
        reader.push(b"RTSP/1.0 200 OK\r\n");
        let mut last = 0;
        for i in 0..30_000 {
            reader.push(if i % 40 == 39 { b"\n" } else { b"a" });
            match reader.next_item() {
                Ok(None) => {}
                Ok(Some(i)) => panic!("{i:?}"),
                Err(_) => break,
            }
            if let Head::Lines { scanned, .. } = reader.head {
                assert!(scanned >= last);
                last = scanned;
            }
        }
    }
}
