//! Live video of the cameras configured as GB/T 28181 channels
//! (`[[camera]] gb28181 = { device, channel }`).
//!
//! One task per such camera: it waits until the device is registered and online, opens
//! a receiving port (UDP, or a TCP listener for `transport = "tcp"`), INVITEs the
//! channel with an SDP offer naming that port, PS/90000 and an SSRC of its own, ACKs
//! the answer and feeds what arrives to the camera (`rtp.rs`). With `transport =
//! "tcp-active"` the offer says `a=setup:active` and lookout connects to the address
//! and port of the device's answer instead. It ends the call with
//! BYE when the camera is removed or changed, when the device goes offline, or when no
//! video came for the stall timeout, and starts over. A device that does not answer,
//! or refuses, is retried with backoff and the camera is `failed`, the SIP status its
//! `last_error`. A UDP stream that brings nothing at all (a NAT or firewall dropping
//! it, the most common trouble with cellular devices) is asked for over TCP next time,
//! and the other way round (TCP active falls back to TCP passive).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use super::SipServer;
use super::rtp::Receiver;
use crate::config::GbTransport;
use crate::ingest::{ActiveTransport, Camera, CameraState, Ingest};

fn transport_name(t: GbTransport) -> &'static str {
    match t {
        GbTransport::Udp => "UDP",
        GbTransport::Tcp => "TCP",
        GbTransport::TcpActive => "TCP (lookout connecting)",
    }
}

/// How often the set of GB/T 28181 cameras is compared with the running tasks.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

/// First wait after a failed INVITE; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A TCP-passive stream's device must connect this soon after the ACK.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts and stops one play task per GB/T 28181 camera until `stop` fires.
pub(super) async fn supervise(
    server: Arc<SipServer>,
    ingest: Arc<Ingest>,
    mut stop: lookout_core::shutdown::Shutdown,
) {
    // Per camera id: the camera the task plays and how to stop it.
    let mut tasks: std::collections::HashMap<Arc<str>, (Arc<Camera>, watch::Sender<bool>)> =
        std::collections::HashMap::new();
    let ssrc_serial = Arc::new(AtomicU32::new(1));
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.signalled() => break,
        }
        let cameras = ingest.gb28181_cameras();
        tasks.retain(|id, (camera, stop)| {
            let keep = cameras
                .iter()
                .any(|c| Arc::ptr_eq(c, camera) && c.config().gb28181 == camera_gb(camera));
            if !keep {
                tracing::info!(camera = %id, "GB/T 28181 camera removed or changed; ending its call");
                stop.send_replace(true);
            }
            keep
        });
        for camera in cameras {
            if tasks.contains_key(&camera.id) {
                continue;
            }
            let (tx, rx) = watch::channel(false);
            tasks.insert(camera.id.clone(), (camera.clone(), tx));
            tokio::spawn(play(
                server.clone(),
                camera,
                rx,
                stop.clone(),
                ssrc_serial.clone(),
            ));
        }
    }
    for (_, (_, s)) in tasks {
        s.send_replace(true);
    }
}

fn camera_gb(camera: &Camera) -> Option<crate::config::GbCameraConfig> {
    camera.config().gb28181.clone()
}

/// Where a stream's media arrives.
enum Media {
    Udp(UdpSocket),
    Tcp(TcpListener),
    /// TCP active: lookout connects to where the device's answer says.
    Connect,
}

impl Media {
    /// Opens the receiving side; the port to offer (9, RFC 4145's "discard", for TCP
    /// active, where the device's answer names the port).
    async fn open(ip: IpAddr, transport: GbTransport) -> std::io::Result<(Media, u16)> {
        match transport {
            GbTransport::Udp => {
                let s = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
                let port = s.local_addr()?.port();
                Ok((Media::Udp(s), port))
            }
            GbTransport::Tcp => {
                let l = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
                let port = l.local_addr()?.port();
                Ok((Media::Tcp(l), port))
            }
            GbTransport::TcpActive => Ok((Media::Connect, 9)),
        }
    }
}

/// The transport tried after one that brought not one packet.
fn other_transport(t: GbTransport) -> GbTransport {
    match t {
        GbTransport::Udp => GbTransport::Tcp,
        GbTransport::Tcp => GbTransport::Udp,
        // The device could not be reached, or sent nothing: let it connect instead.
        GbTransport::TcpActive => GbTransport::Tcp,
    }
}

/// Why a call ended.
enum Ended {
    /// lookout is stopping or the camera went away: no new call.
    Stop,
    /// Something to retry after: why, and what it says about the next try.
    Retry(String, Next),
}

/// What an ended call says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The device is not there, or the media port could not be opened: wait as before.
    Wait,
    /// The INVITE was refused or not answered: the camera is `failed`.
    Refused,
    /// The stream was up but not one RTP packet came: try the other transport.
    Silent,
    /// Video played, then stopped: start over with the shortest wait.
    Played,
}

/// One camera's calls, one after the other, until `stop` or `shutdown`.
async fn play(
    server: Arc<SipServer>,
    camera: Arc<Camera>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: lookout_core::shutdown::Shutdown,
    ssrc_serial: Arc<AtomicU32>,
) {
    let Some(gb) = camera.config().gb28181.clone() else {
        return;
    };
    let mut wait = RETRY_FIRST;
    let mut transport = gb.transport;
    loop {
        let call = call(&server, &camera, &gb, transport, &mut stop, &ssrc_serial);
        let ended = tokio::select! {
            e = call => e,
            _ = shutdown.signalled() => Ended::Stop,
        };
        match ended {
            Ended::Stop => return,
            Ended::Retry(why, next) => {
                match next {
                    Next::Played => wait = RETRY_FIRST,
                    Next::Refused => camera.health.set_state(CameraState::Failed),
                    Next::Silent => {
                        transport = other_transport(transport);
                        tracing::warn!(camera = %camera.id, device = %gb.device, "no RTP at all; asking for RTP over {} next", transport_name(transport));
                    }
                    Next::Wait => {}
                }
                tracing::warn!(camera = %camera.id, device = %gb.device, channel = %gb.channel, stage = "gb28181", "{why}; again in {} s", wait.as_secs());
                camera.health.set_last_error(Some(why));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
            _ = shutdown.signalled() => return,
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// One call: wait for the device, INVITE, receive until something ends it, BYE.
async fn call(
    server: &Arc<SipServer>,
    camera: &Arc<Camera>,
    gb: &crate::config::GbCameraConfig,
    transport: GbTransport,
    stop: &mut watch::Receiver<bool>,
    ssrc_serial: &AtomicU32,
) -> Ended {
    // Wait for the device to be online.
    let mut logged = false;
    let device_addr = loop {
        if *stop.borrow() {
            return Ended::Stop;
        }
        if let Some(addr) = server.online_address(&gb.device) {
            break addr;
        }
        if !logged {
            logged = true;
            camera.health.set_state(CameraState::Waiting);
            camera.health.set_last_error(Some(format!(
                "GB/T 28181 device {} is not registered (or offline)",
                gb.device
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => return Ended::Stop,
        }
    };
    let ip = server.media_ip(device_addr);
    let (media, port) = match Media::open(ip, transport).await {
        Ok(m) => m,
        Err(e) => return Ended::Retry(format!("no media port on {ip}: {e}"), Next::Wait),
    };
    let ssrc = server.ssrc(ssrc_serial.fetch_add(1, Relaxed) % 10_000);
    let dialog = match server
        .invite(&gb.device, &gb.channel, ip, port, transport, &ssrc)
        .await
    {
        Ok(d) => d,
        Err(why) => return Ended::Retry(why, Next::Refused),
    };
    let session = camera.next_session();
    if session > 1 {
        camera.health.reconnects.fetch_add(1, Relaxed);
    }
    camera.health.set_transport(match transport {
        GbTransport::Udp => ActiveTransport::GbUdp,
        GbTransport::Tcp => ActiveTransport::GbTcp,
        GbTransport::TcpActive => ActiveTransport::GbTcpActive,
    });
    tracing::info!(camera = %camera.id, device = %gb.device, channel = %gb.channel, %ssrc, port, transport = transport_name(transport), session, "GB/T 28181 stream playing");
    let mut receiver = Receiver::new(camera.clone(), session);
    let stall = server.stall_timeout();
    let mut bye = dialog.bye.clone();
    let receiving = receive(media, dialog.media, &mut receiver, stall);
    let ended = tokio::select! {
        why = receiving => Ended::Retry(why, Next::Played),
        _ = bye.wait_for(|b| *b) => Ended::Retry("the device ended the stream (BYE)".into(), Next::Played),
        _ = stop.wait_for(|s| *s) => Ended::Stop,
        _ = server.wait_offline(&gb.device) => Ended::Retry(format!("device {} went offline", gb.device), Next::Wait),
    };
    let s = receiver.stats;
    // Nothing at all arrived: the transport, not the device, is the likelier trouble.
    let ended = match ended {
        Ended::Retry(why, Next::Played) if s.packets + s.malformed + s.foreign + s.late == 0 => {
            Ended::Retry(
                format!(
                    "{why}; not one RTP packet arrived over {}",
                    transport_name(transport)
                ),
                Next::Silent,
            )
        }
        e => e,
    };
    tracing::info!(camera = %camera.id, packets = s.packets, lost = s.lost, late = s.late, foreign_ssrc = s.foreign, malformed = s.malformed, "GB/T 28181 stream ended");
    if !*dialog.bye.borrow() {
        server.bye(&dialog).await;
    }
    ended
}

/// Receives until the stream stops; returns why. `answered` is the media address of
/// the device's answer, where TCP active connects.
async fn receive(
    media: Media,
    answered: Option<SocketAddr>,
    receiver: &mut Receiver,
    stall: Duration,
) -> String {
    match media {
        Media::Udp(socket) => {
            let mut buf = vec![0u8; 65_535];
            loop {
                match tokio::time::timeout(stall, socket.recv_from(&mut buf)).await {
                    Ok(Ok((n, _))) => receiver.packet(Bytes::copy_from_slice(&buf[..n])),
                    Ok(Err(e)) => return format!("RTP socket: {e}"),
                    Err(_) => return format!("no RTP for {} ms", stall.as_millis()),
                }
            }
        }
        Media::Tcp(listener) => {
            let stream = match tokio::time::timeout(TCP_CONNECT_TIMEOUT, listener.accept()).await {
                Ok(Ok((s, _))) => s,
                Ok(Err(e)) => return format!("RTP over TCP: accept: {e}"),
                Err(_) => {
                    return format!(
                        "the device did not connect for RTP over TCP within {} s",
                        TCP_CONNECT_TIMEOUT.as_secs()
                    );
                }
            };
            drop(listener);
            read_rfc4571(stream, receiver, stall).await
        }
        Media::Connect => {
            let Some(to) = answered else {
                return "the device's answer to a TCP-active INVITE names no media address (c= and m=video port)".into();
            };
            match tokio::time::timeout(TCP_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(to))
                .await
            {
                Ok(Ok(stream)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("RTP over TCP to {to}: TCP_NODELAY: {e}");
                    }
                    read_rfc4571(stream, receiver, stall).await
                }
                Ok(Err(e)) => format!("RTP over TCP: connecting to the device at {to}: {e}"),
                Err(_) => format!(
                    "RTP over TCP: the device at {to} did not accept the connection within {} s",
                    TCP_CONNECT_TIMEOUT.as_secs()
                ),
            }
        }
    }
}

/// Reads RTP packets framed as RFC 4571 (a 16-bit length, then the packet) until the
/// connection ends or stalls; returns why.
async fn read_rfc4571(
    mut stream: tokio::net::TcpStream,
    receiver: &mut Receiver,
    stall: Duration,
) -> String {
    let mut buf = BytesMut::with_capacity(128 * 1024);
    loop {
        while buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if buf.len() < 2 + len {
                break;
            }
            let mut frame = buf.split_to(2 + len);
            let packet = frame.split_off(2).freeze();
            receiver.packet(packet);
        }
        buf.reserve(64 * 1024);
        match tokio::time::timeout(stall, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return "the device closed the RTP connection".into(),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("RTP over TCP: {e}"),
            Err(_) => return format!("no RTP for {} ms", stall.as_millis()),
        }
    }
}
