//! The calls lookout makes to play a channel: INVITE with an SDP offer (GB/T 28181
//! §9.2: `s=Play`, PS/90000 on payload type 96, `y=` the SSRC, `Subject`
//! `channel:ssrc,platform:0`), the ACK, and BYE; and the dialogs' side of what
//! devices send (their BYE, answers to lookout's requests).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use lookout_codecs::sip::{Message, StartLine};
use tokio::sync::{mpsc, watch};

use super::{Path, SipServer, rand_u32, user_agent};
use crate::config::GbTransport;

/// No final answer to an INVITE within this: the device is not answering.
pub const INVITE_TIMEOUT: Duration = Duration::from_secs(10);

/// SIP timer T1 (RFC 3261 §17.1.1.2): the first retransmission of an INVITE over UDP.
const T1: Duration = Duration::from_millis(500);

/// An established call.
#[derive(Debug, Clone)]
pub struct Dialog {
    call_id: String,
    /// Request-URI of in-dialog requests: the device's Contact.
    target: String,
    from: String,
    to: String,
    cseq: u32,
    address: SocketAddr,
    path: Path,
    /// Becomes true when the device sends BYE.
    pub bye: watch::Receiver<bool>,
    /// Where the device's answer says its media is (`c=` and `m=video`): where
    /// lookout connects for TCP active.
    pub media: Option<SocketAddr>,
}

impl SipServer {
    /// The address an online device registered from; `None` when it is not online.
    pub fn online_address(&self, device: &str) -> Option<SocketAddr> {
        self.devices
            .get(device)
            .filter(|d| d.online)
            .map(|d| d.address)
    }

    /// Resolves once `device` is no longer online.
    pub async fn wait_offline(&self, device: &str) {
        while self.online_address(device).is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The stall timeout the gateway's cameras use.
    pub fn stall_timeout(&self) -> Duration {
        self.settings.stall_timeout
    }

    /// The address media should be sent to for a device at `device`: the configured
    /// `media_ip`, else the SIP listener's, else (listening on all addresses) the local
    /// address that routes to the device.
    pub fn media_ip(&self, device: SocketAddr) -> IpAddr {
        if let Some(ip) = self.settings.media_ip {
            return ip;
        }
        let listen = self.local.ip();
        if !listen.is_unspecified() {
            return listen;
        }
        let any: SocketAddr = if device.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        std::net::UdpSocket::bind(any)
            .and_then(|s| {
                s.connect(device)?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .unwrap_or(listen)
    }

    /// A real-time stream's SSRC (GB/T 28181 §9.2.1): `0`, the 4th to 8th digits of
    /// the domain, then a 4-digit serial.
    pub fn ssrc(&self, serial: u32) -> String {
        let domain = self.settings.domain.get(3..8).unwrap_or("00000");
        format!("0{domain}{:04}", serial % 10_000)
    }

    /// INVITEs `channel` of `device` to send PS over RTP to `ip:port`; waits for the
    /// answer and ACKs it. The error names the SIP status or the timeout.
    pub async fn invite(
        &self,
        device: &str,
        channel: &str,
        ip: IpAddr,
        port: u16,
        transport: GbTransport,
        ssrc: &str,
    ) -> Result<Dialog, String> {
        let Some((address, path, domain)) = self
            .devices
            .get(device)
            .filter(|d| d.online)
            .map(|d| (d.address, d.path.clone(), d.domain.clone()))
        else {
            return Err(format!("device {device} is not registered"));
        };
        let n = self.cseq.fetch_add(1, Relaxed);
        let call_id = format!("{:08x}{:08x}@lookout", rand_u32(), n);
        let from = format!(
            "<sip:{}@{}>;tag={:08x}",
            self.settings.id,
            self.settings.domain,
            rand_u32()
        );
        let uri = format!("sip:{channel}@{domain}");
        let to = format!("<{uri}>");
        let via = self.via(&path, ip);
        let ip_kind = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let media = match transport {
            GbTransport::Udp => format!("m=video {port} RTP/AVP 96\r\n"),
            GbTransport::Tcp => {
                format!("m=video {port} TCP/RTP/AVP 96\r\na=setup:passive\r\na=connection:new\r\n")
            }
            // RFC 4145: the active side offers port 9 (discard); the device answers
            // with the port it listens on.
            GbTransport::TcpActive => {
                "m=video 9 TCP/RTP/AVP 96\r\na=setup:active\r\na=connection:new\r\n".to_string()
            }
        };
        let sdp = format!(
            "v=0\r\no={id} 0 0 IN {ip_kind} {ip}\r\ns=Play\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\n\
             {media}a=recvonly\r\na=rtpmap:96 PS/90000\r\ny={ssrc}\r\n",
            id = self.settings.id
        );
        let mut m = Message::request("INVITE", &uri)
            .with("Via", via.clone())
            .with("From", from.clone())
            .with("To", to)
            .with("Call-ID", call_id.clone())
            .with("CSeq", format!("{n} INVITE"))
            .with(
                "Contact",
                format!("<sip:{}@{}>", self.settings.id, self.contact_host(ip)),
            )
            .with("Max-Forwards", "70")
            .with(
                "Subject",
                format!("{channel}:{ssrc},{}:0", self.settings.id),
            )
            .with("Content-Type", "APPLICATION/SDP")
            .with("User-Agent", user_agent());
        m.body = bytes::Bytes::from(sdp);
        let bytes = m.encode();

        let (tx, mut rx) = mpsc::channel::<Message>(8);
        self.transactions.insert(call_id.clone(), tx);
        let answer = async {
            self.send(address, &path, bytes.clone()).await;
            let mut resend = T1;
            let mut next = tokio::time::Instant::now() + resend;
            let mut provisional = false;
            loop {
                let r = if provisional || matches!(path, Path::Tcp(_)) {
                    rx.recv().await
                } else {
                    tokio::select! {
                        r = rx.recv() => r,
                        _ = tokio::time::sleep_until(next) => {
                            // No answer yet over UDP: send it again (RFC 3261 timer A).
                            self.send(address, &path, bytes.clone()).await;
                            resend = (resend * 2).min(Duration::from_secs(4));
                            next = tokio::time::Instant::now() + resend;
                            continue;
                        }
                    }
                };
                let r = r?;
                match r.start {
                    StartLine::Response { code, .. } if code < 200 => provisional = true,
                    StartLine::Response { .. } => return Some(r),
                    StartLine::Request { .. } => {}
                }
            }
        };
        let answer = tokio::time::timeout(INVITE_TIMEOUT, answer).await;
        self.transactions.remove(&call_id);
        self.metrics.invites.inc();
        let r = match answer {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => {
                self.metrics.invite_failed("timeout");
                return Err(format!(
                    "INVITE for channel {channel}: no answer from device {device} within {} s",
                    INVITE_TIMEOUT.as_secs()
                ));
            }
        };
        let StartLine::Response { code, reason } = &r.start else {
            return Err("not a response".into());
        };
        let their_to = r.header("To").unwrap_or_default().to_string();
        if !(200..300).contains(code) {
            // ACK for a failure is part of the INVITE transaction: same branch.
            self.ack(&uri, &via, &from, &their_to, &call_id, n, address, &path)
                .await;
            self.metrics.invite_failed(&code.to_string());
            return Err(format!(
                "INVITE for channel {channel} refused by device {device}: {code} {}",
                lookout_core::logging::untrusted(reason)
            ));
        }
        let target = r
            .header("Contact")
            .and_then(|c| {
                let c = c.trim();
                let inner = c.strip_prefix('<').and_then(|c| c.split('>').next());
                inner.or(Some(c))
            })
            .filter(|c| c.starts_with("sip:"))
            .map(str::to_string)
            .unwrap_or(uri);
        let ack_via = self.via(&path, ip);
        self.ack(
            &target, &ack_via, &from, &their_to, &call_id, n, address, &path,
        )
        .await;
        let media = sdp_media(&String::from_utf8_lossy(&r.body));
        let (bye_tx, bye) = watch::channel(false);
        self.dialogs.insert(call_id.clone(), bye_tx);
        Ok(Dialog {
            media,
            call_id,
            target,
            from,
            to: their_to,
            cseq: n,
            address,
            path,
            bye,
        })
    }

    /// Ends `dialog` (lookout hangs up). The device's answer is not waited for.
    pub async fn bye(&self, dialog: &Dialog) {
        self.dialogs.remove(&dialog.call_id);
        let ip = self.media_ip(dialog.address);
        let m = Message::request("BYE", &dialog.target)
            .with("Via", self.via(&dialog.path, ip))
            .with("From", dialog.from.clone())
            .with("To", dialog.to.clone())
            .with("Call-ID", dialog.call_id.clone())
            .with("CSeq", format!("{} BYE", dialog.cseq + 1))
            .with("Max-Forwards", "70")
            .with("User-Agent", user_agent());
        self.send(dialog.address, &dialog.path, m.encode()).await;
    }

    /// A device's BYE for a call lookout made: 200, and the call's task is told;
    /// 481 for a call lookout does not know.
    pub(super) fn device_bye(&self, m: &Message) -> Message {
        let call = m.header("Call-ID").unwrap_or_default();
        match self.dialogs.remove(call) {
            Some((_, tx)) => {
                tx.send_replace(true);
                self.response(m, 200, "OK")
            }
            None => self.response(m, 481, "Call/Transaction Does Not Exist"),
        }
    }

    /// An answer to a request lookout sent: to the transaction waiting for it, if any.
    pub(super) fn route_response(&self, m: Message) {
        let Some(call) = m.header("Call-ID") else {
            return;
        };
        if let Some(tx) = self.transactions.get(call)
            && tx.try_send(m).is_err()
        {
            tracing::debug!("SIP answer dropped: its transaction is not reading");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn ack(
        &self,
        target: &str,
        via: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        address: SocketAddr,
        path: &Path,
    ) {
        let m = Message::request("ACK", target)
            .with("Via", via)
            .with("From", from)
            .with("To", to)
            .with("Call-ID", call_id)
            .with("CSeq", format!("{cseq} ACK"))
            .with("Max-Forwards", "70")
            .with("User-Agent", user_agent());
        self.send(address, path, m.encode()).await;
    }

    /// A Via header for a new request: this side's transport, address and a branch.
    pub(super) fn via(&self, path: &Path, ip: IpAddr) -> String {
        let transport = match path {
            Path::Udp => "UDP",
            Path::Tcp(_) => "TCP",
        };
        format!(
            "SIP/2.0/{transport} {};rport;branch=z9hG4bK{:08x}{:08x}",
            self.contact_host(ip),
            rand_u32(),
            rand_u32()
        )
    }

    /// `host:port` devices reach lookout's SIP side at.
    fn contact_host(&self, ip: IpAddr) -> SocketAddr {
        let listen = self.local.ip();
        SocketAddr::new(
            if listen.is_unspecified() { ip } else { listen },
            self.local.port(),
        )
    }
}

/// The media address of an SDP answer: `c=IN IP4|IP6 ADDR` (the session's, or the
/// video's when it has its own) and the port of `m=video`.
pub fn sdp_media(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=IN ") {
            let addr = c.split_whitespace().nth(1)?;
            // `c=IN IP4 224.2.1.1/127`: a TTL or count after a slash.
            ip = addr.split('/').next()?.parse::<IpAddr>().ok().or(ip);
        } else if let Some(m) = line.strip_prefix("m=video ") {
            port = m.split_whitespace().next()?.parse::<u16>().ok();
        }
    }
    Some(SocketAddr::new(ip?, port.filter(|p| *p != 0)?))
}

#[cfg(test)]
mod tests {
    use super::sdp_media;

    #[test]
    fn the_answers_media_address() {
        let answer = "v=0\r\no=34020000001320000001 0 0 IN IP4 10.0.0.7\r\ns=Play\r\n\
                      c=IN IP4 10.0.0.7\r\nt=0 0\r\nm=video 15060 TCP/RTP/AVP 96\r\n\
                      a=setup:passive\r\na=sendonly\r\ny=0100000001\r\n";
        assert_eq!(
            sdp_media(answer),
            Some("10.0.0.7:15060".parse().expect("addr"))
        );
        // A video line with an address of its own, a TTL after a slash, IPv6.
        let own = "c=IN IP4 10.0.0.1\r\nm=video 30000 RTP/AVP 96\r\nc=IN IP4 10.0.0.9/127\r\n";
        assert_eq!(
            sdp_media(own),
            Some("10.0.0.9:30000".parse().expect("addr"))
        );
        let v6 = "c=IN IP6 ::1\r\nm=video 4000 TCP/RTP/AVP 96\r\n";
        assert_eq!(sdp_media(v6), Some("[::1]:4000".parse().expect("addr")));
        // No address, no port, port 0 (refused stream), garbage.
        assert_eq!(sdp_media("m=video 4000 RTP/AVP 96\r\n"), None);
        assert_eq!(sdp_media("c=IN IP4 10.0.0.1\r\n"), None);
        assert_eq!(
            sdp_media("c=IN IP4 10.0.0.1\r\nm=video 0 RTP/AVP 96\r\n"),
            None
        );
        assert_eq!(
            sdp_media("c=IN IP4 nonsense\r\nm=video x RTP/AVP\r\n"),
            None
        );
    }
}
