//! What the relay fault tests (`relay_peers.rs`) share: real `lookout
//! center` and `lookout run` processes with certificates from `lookout
//! certs` (the harness in `procs/`), their logs, HTTP API, Prometheus and /proc figures (RSS,
//! open files); QUIC client configurations a hostile peer would use (no
//! certificate, a self-signed one, another ALPN); and a well-behaved gateway
//! written against `lookout_codecs::relay`, which keeps a camera's GOPs
//! flowing and sends alerts on demand, so a test can show that an attack on
//! the center leaves everyone else served. Everything runs on 127.0.0.1
//! over real sockets.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lookout::relay::stream::{MessageReader, write_message};
use lookout::relay::tls::{self, TlsFiles};
use lookout_codecs::relay::{
    Alert, AlertMessage, CameraInfo, CameraKind, CameraState, ControlMessage, Frame, GopHeader,
    Hello, PROTOCOL_VERSION, Pong, Role, VideoFormat, VideoMessage,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

/// Bound on any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

pub use crate::procs::{Proc, Usage, center_config, certs, gateway_config, wait};

/// The TLS files `lookout certs` wrote for `name` in `dir`.
pub fn files(dir: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}

/// A CA with a center (`center`, valid for 127.0.0.1) and the given
/// gateways, made by `lookout certs`.
pub fn pki(dir: &Path, gateways: &[&str]) -> PathBuf {
    let pki = dir.join("pki");
    let mut args = vec!["--center", "center,127.0.0.1"];
    for g in gateways {
        args.push("--gateway");
        args.push(g);
    }
    certs(&pki, &args);
    pki
}

/// `lookout center` on loopback with the certificates in `pki`.
pub fn center(dir: &Path, pki: &Path) -> Proc {
    let config = dir.join("center.toml");
    center_config(&config, "127.0.0.1:0", &dir.join("center-data"), pki);
    Proc::start(&["center", "--config"], &config, "lookout center running")
}

/// `lookout run` without cameras, dialling `quic` as gateway `id` with the
/// certificate of the same name; `outbox` alerts are in its outbox before it
/// starts (as if raised before a restart).
pub fn gateway(dir: &Path, pki: &Path, id: &str, quic: &str, outbox: &[Alert]) -> Proc {
    let data = dir.join(format!("{id}-data"));
    if !outbox.is_empty() {
        let path = data.join("outbox").join("center.sqlite3");
        let o = lookout::relay::outbox::Outbox::open(&path).expect("outbox opens");
        for a in outbox {
            o.push_alert(a).expect("alert queued");
        }
    }
    let path = dir.join(format!("{id}.toml"));
    gateway_config(&path, id, &data, quic, pki, id);
    Proc::start(&["run", "--config"], &path, "lookout gateway running")
}

/// An alert record as a gateway would send it.
pub fn alert(id: &str, camera: &str) -> Alert {
    Alert {
        id: id.to_string(),
        revision: 0,
        payload_json: serde_json::json!({
            "id": id,
            "state": "active",
            "camera": {"id": camera, "kind": "fixed"},
            "detector": "fire",
            "label": "smoke",
            "severity": "critical",
            "score": 0.9,
        })
        .to_string(),
        snapshot_jpeg: None,
    }
}

/// The ids of the alerts in the center's ledger.
pub fn alert_ids(center: &Proc) -> Vec<String> {
    center.get("/api/alerts")["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Frames the center received from `gateway`'s camera `camera`.
pub fn frames(center: &Proc, gateway: &str, camera: &str) -> u64 {
    center.get("/api/cameras")["cameras"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["gateway"] == gateway && c["id"] == camera)
                .and_then(|c| c["frames"].as_u64())
        })
        .unwrap_or(0)
}

/// Gateway ids the center lists as connected.
pub fn connected(center: &Proc) -> Vec<String> {
    center.get("/api/gateways")["gateways"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter(|g| g["state"] == "connected")
                .filter_map(|g| g["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("certificate file")
        .map(|c| c.expect("certificate"))
        .collect()
}

pub fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).expect("key file")
}

/// A certificate and key nobody issued: self-signed for `name`.
pub fn self_signed(name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("self-signed");
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key der");
    (vec![ck.cert.der().clone()], key)
}

/// A client that trusts the operator CA in `ca` (so it accepts the
/// center; the center is the one to refuse), presents `identity` or no
/// certificate, and offers `alpn`.
pub fn client(
    ca: &Path,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca) {
        roots.add(c).expect("CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let mut c = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(config).expect("QUIC TLS config"),
    ));
    c.transport_config(short_transport());
    c
}

/// The operator's certificate for `name`, as the gateway would load it.
pub fn operator_client(pki: &Path, name: &str) -> quinn::ClientConfig {
    let mut c = tls::client_config(&files(pki, name)).expect("client config");
    c.transport_config(short_transport());
    c
}

/// [`operator_client`] offering only ALPN `lookout/1`: a gateway of
/// protocol version 1 (no clip streams).
pub fn operator_client_v1(pki: &Path, name: &str) -> quinn::ClientConfig {
    let f = files(pki, name);
    let mut c = client(
        &f.ca,
        Some((load_certs(&f.cert), load_key(&f.key))),
        &[ALPN_V1],
    );
    c.transport_config(short_transport());
    c
}

/// The relay's transport, with room for the streams a hostile client opens.
fn short_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(10_000).into()));
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    Arc::new(t)
}

/// A client endpoint on loopback.
pub fn endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("client endpoint")
}

/// A camera in `Hello`, with a known format.
pub fn camera(id: &str) -> CameraInfo {
    CameraInfo {
        id: id.to_string(),
        kind: CameraKind::Fixed,
        state: CameraState::Live,
        name: Some(format!("{id} (test)")),
        group: None,
        location: None,
        format: Some(VideoFormat {
            codec: lookout_codecs::Codec::H264,
            width: 320,
            height: 240,
        }),
    }
}

pub fn hello(gateway: &str, cameras: Vec<CameraInfo>) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        gateway_id: gateway.to_string(),
        software_version: "relay_peers test".into(),
        cameras,
    }
}

pub fn gop_header(camera: &str, gop_seq: u64) -> GopHeader {
    GopHeader {
        camera_id: camera.to_string(),
        gop_seq,
        codec: lookout_codecs::Codec::H264,
        width: 320,
        height: 240,
        vps: None,
        sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00]),
        pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
    }
}

pub fn frame(seq: u64, keyframe: bool) -> Frame {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let nal = if keyframe { 0x65 } else { 0x41 };
    Frame {
        seq,
        keyframe,
        pts_ns: Some(seq * 100_000_000),
        capture_unix_ns: now,
        received_unix_ns: now,
        data: Bytes::from(vec![0, 0, 0, 1, nal, 0x88, 0x84, 0x21, 0xa0]),
    }
}

/// Dials and completes `Hello` → `Welcome` as `gateway`; the control
/// stream's halves come back for the caller to go on (or misbehave) with.
pub async fn welcomed(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    center: SocketAddr,
    gateway: &str,
    cameras: Vec<CameraInfo>,
) -> (
    quinn::Connection,
    quinn::SendStream,
    MessageReader<ControlMessage>,
) {
    let conn = tokio::time::timeout(
        WAIT,
        endpoint
            .connect_with(config, center, "center")
            .expect("dial"),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let (mut send, recv) = tokio::time::timeout(WAIT, conn.open_bi())
        .await
        .expect("control stream in time")
        .expect("control stream");
    write_message(&mut send, &ControlMessage::Hello(hello(gateway, cameras)))
        .await
        .expect("Hello written");
    let mut ctl = MessageReader::<ControlMessage>::new(recv, Role::Center);
    match tokio::time::timeout(WAIT, ctl.next()).await {
        Ok(Ok(Some(ControlMessage::Welcome(_)))) => {}
        other => panic!("{gateway}: expected Welcome, got {other:?}"),
    }
    (conn, send, ctl)
}

/// A well-behaved gateway: one camera at 10 frames a second, a GOP (own
/// unidirectional stream) every 5 frames, alerts sent when asked, the
/// center's pings answered. Everything it does is on the runtime it was
/// started on; dropping it closes the connection.
pub struct SteadyGateway {
    pub id: String,
    pub camera: String,
    alerts: mpsc::Sender<Alert>,
    acked: Arc<Mutex<HashSet<String>>>,
    failure: Arc<Mutex<Option<String>>>,
    pub gops_sent: Arc<AtomicU64>,
    conn: quinn::Connection,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _endpoint: quinn::Endpoint,
}

impl SteadyGateway {
    pub async fn start(pki: &Path, id: &str, center: SocketAddr) -> SteadyGateway {
        let endpoint = endpoint();
        let camera = "cam-1".to_string();
        let (conn, ctl_send, ctl) = welcomed(
            &endpoint,
            operator_client(pki, id),
            center,
            id,
            vec![self::camera(&camera)],
        )
        .await;
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let fail = |f: &Arc<Mutex<Option<String>>>, what: String| {
            if let Ok(mut slot) = f.lock() {
                slot.get_or_insert(what);
            }
        };
        let mut tasks = Vec::new();

        // Control: answer pings; anything else the center says is fine.
        {
            let failure = failure.clone();
            let mut ctl = ctl;
            let mut send = ctl_send;
            tasks.push(tokio::spawn(async move {
                loop {
                    match ctl.next().await {
                        Ok(Some(ControlMessage::Ping(p))) => {
                            let pong = ControlMessage::Pong(Pong { nonce: p.nonce });
                            if let Err(e) = write_message(&mut send, &pong).await {
                                fail(&failure, format!("control: {e}"));
                                return;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            fail(&failure, "control stream finished".into());
                            return;
                        }
                        Err(e) => {
                            fail(&failure, format!("control: {e}"));
                            return;
                        }
                    }
                }
            }));
        }

        // Alerts out, acknowledgements back.
        let (alerts, mut alert_rx) = mpsc::channel::<Alert>(64);
        let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (mut alert_send, alert_recv) = tokio::time::timeout(WAIT, conn.open_bi())
            .await
            .expect("alert stream in time")
            .expect("alert stream");
        {
            let failure = failure.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(a) = alert_rx.recv().await {
                    if let Err(e) = write_message(&mut alert_send, &AlertMessage::Alert(a)).await {
                        fail(&failure, format!("alert stream: {e}"));
                        return;
                    }
                }
            }));
        }
        {
            let failure = failure.clone();
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let mut reader = MessageReader::<AlertMessage>::new(alert_recv, Role::Center);
                loop {
                    match reader.next().await {
                        Ok(Some(AlertMessage::AlertAck(a))) => {
                            if let Ok(mut s) = acked.lock() {
                                s.insert(a.id);
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            fail(&failure, "alert stream finished".into());
                            return;
                        }
                        Err(e) => {
                            fail(&failure, format!("acknowledgements: {e}"));
                            return;
                        }
                    }
                }
            }));
        }

        // Video: a GOP of 5 frames every half second.
        let gops_sent = Arc::new(AtomicU64::new(0));
        {
            let failure = failure.clone();
            let conn = conn.clone();
            let camera = camera.clone();
            let gops = gops_sent.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut gop: Option<quinn::SendStream> = None;
                let mut gop_seq = 0;
                for seq in 0u64.. {
                    tick.tick().await;
                    let keyframe = seq % 5 == 0;
                    if keyframe {
                        if let Some(mut s) = gop.take() {
                            let _ = s.finish();
                            gops.fetch_add(1, Relaxed);
                        }
                        gop_seq += 1;
                        let mut s = match conn.open_uni().await {
                            Ok(s) => s,
                            Err(e) => {
                                fail(&failure, format!("opening a GOP stream: {e}"));
                                return;
                            }
                        };
                        let header = VideoMessage::GopHeader(gop_header(&camera, gop_seq));
                        if let Err(e) = write_message(&mut s, &header).await {
                            fail(&failure, format!("GOP header: {e}"));
                            return;
                        }
                        gop = Some(s);
                    }
                    if let Some(s) = gop.as_mut() {
                        let f = VideoMessage::Frame(frame(seq, keyframe));
                        if let Err(e) = write_message(s, &f).await {
                            fail(&failure, format!("frame: {e}"));
                            return;
                        }
                    }
                }
            }));
        }
        SteadyGateway {
            id: id.to_string(),
            camera,
            alerts,
            acked,
            failure,
            gops_sent,
            conn,
            tasks,
            _endpoint: endpoint,
        }
    }

    pub fn send_alert(&self, id: &str) {
        self.alerts
            .try_send(alert(id, &self.camera))
            .expect("the fake gateway's alert task is running and keeping up");
    }

    pub fn acked(&self, id: &str) -> bool {
        self.acked.lock().is_ok_and(|s| s.contains(id))
    }

    /// What went wrong, if anything did; `None` while all is well.
    pub fn failure(&self) -> Option<String> {
        let f = self.failure.lock().ok().and_then(|f| f.clone());
        f.or_else(|| self.conn.close_reason().map(|r| format!("closed: {r}")))
    }
}

impl Drop for SteadyGateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.conn.close(0u32.into(), b"test over");
    }
}

/// A QUIC varint (RFC 9000 §16), shortest form, for hand-made frames.
pub fn varint(v: u64) -> Vec<u8> {
    if v < 1 << 6 {
        vec![v as u8]
    } else if v < 1 << 14 {
        ((v as u16) | 0x4000).to_be_bytes().to_vec()
    } else if v < 1 << 30 {
        ((v as u32) | 0x8000_0000).to_be_bytes().to_vec()
    } else {
        (v | 0xc000_0000_0000_0000).to_be_bytes().to_vec()
    }
}

/// One message envelope: `type`, `length` (which may lie), then `payload`.
pub fn envelope(msg_type: u64, length: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = varint(msg_type);
    out.extend(varint(length));
    out.extend_from_slice(payload);
    out
}

/// Waits for the connection to be closed by the peer; returns the
/// application error code and reason.
pub async fn closed(conn: &quinn::Connection) -> (u64, String) {
    match tokio::time::timeout(WAIT, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => (
            c.error_code.into_inner(),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        Ok(other) => panic!("closed otherwise than by the application: {other}"),
        Err(_) => panic!("the center did not close the connection within {WAIT:?}"),
    }
}

pub const ALPN_V1: &[u8] = lookout_codecs::relay::ALPN_V1;
