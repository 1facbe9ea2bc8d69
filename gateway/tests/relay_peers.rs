//! Bad peers and bad input on the relay, against real `lookout center` and
//! `lookout run` processes over QUIC on loopback, with certificates from
//! `lookout certs`: clients without a valid certificate or ALPN and plain
//! UDP garbage; an authenticated gateway that sends malformed, misplaced or
//! oversized messages; a flood of connection attempts; and, the other way
//! round, a hostile "center" that a gateway dials. Each is refused (the
//! connection or the stream, with the protocol's error code), counted in
//! /metrics and logged, while a well-behaved gateway connected at the same
//! time keeps delivering video and alerts, and nothing crashes, hangs or
//! keeps memory. Every test prints its figures (run with `--nocapture`).

mod procs;
#[path = "support/relay.rs"]
mod relay;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use lookout::relay::stream::{MessageReader, write_message};
use lookout_codecs::relay::{
    AlertMessage, ControlMessage, ErrorCode, Hello, Ping, Role, StreamMessage, VideoMessage,
    Welcome,
};
use relay::*;

/// The tests measure a center's memory and handshake rate; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

const TLS_REFUSED: &str = "lookout_center_refused_connections_total{reason=\"tls\"}";

fn refused(reason: &str) -> String {
    format!("lookout_center_refused_connections_total{{reason=\"{reason}\"}}")
}

fn violations(gateway: &str, stream: &str) -> String {
    format!("lookout_center_protocol_violations_total{{gateway=\"{gateway}\",stream=\"{stream}\"}}")
}

/// `future`, or a panic naming `what` if it takes longer than [`WAIT`].
/// Dials the center with `config` and opens the control stream.
async fn control_stream(
    ep: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: std::net::SocketAddr,
) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
    let conn = ep
        .connect_with(config, addr, "center")
        .expect("dial")
        .await
        .expect("handshake");
    let (send, recv) = within("control stream", conn.open_bi())
        .await
        .expect("control");
    (conn, send, recv)
}

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A center with a well-behaved gateway `gw-steady` already delivering to it, and
/// certificates from the same CA for `others` too.
struct Served {
    dir: tempfile::TempDir,
    pki: std::path::PathBuf,
    center: Proc,
    rt: tokio::runtime::Runtime,
    steady: SteadyGateway,
    /// Frames of the steady gateway the center has counted so far.
    seen: u64,
}

fn served(others: &[&str]) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<&str> = std::iter::once("gw-steady")
        .chain(others.iter().copied())
        .collect();
    let pki = pki(dir.path(), &ids);
    let center = center(dir.path(), &pki);
    let rt = runtime();
    let steady = {
        let _rt = rt.enter();
        rt.block_on(SteadyGateway::start(&pki, "gw-steady", center.quic_addr()))
    };
    let seen = still_served(&center, &steady, 0, "steady-0");
    Served {
        dir,
        pki,
        center,
        rt,
        steady,
        seen,
    }
}

/// The well-behaved gateway still delivers: more frames than `since`, and an
/// alert sent now is stored and acknowledged.
fn still_served(center: &Proc, steady: &SteadyGateway, since: u64, alert_id: &str) -> u64 {
    assert_eq!(steady.failure(), None, "the good gateway was disturbed");
    assert!(
        wait(WAIT, || frames(center, &steady.id, &steady.camera) > since),
        "no video from the good gateway since {since} frames"
    );
    steady.send_alert(alert_id);
    assert!(
        wait(WAIT, || steady.acked(alert_id)
            && alert_ids(center).iter().any(|a| a == alert_id)),
        "the good gateway's alert {alert_id} did not arrive:\n{}",
        center.log()
    );
    assert!(connected(center).contains(&steady.id));
    frames(center, &steady.id, &steady.camera)
}

/// Dials with `config` and tries to get a `Welcome`; `Err` says how the
/// attempt ended.
async fn attempt(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    center: SocketAddr,
) -> Result<(), String> {
    let conn = match tokio::time::timeout(
        Duration::from_secs(5),
        endpoint
            .connect_with(config, center, "center")
            .map_err(|e| e.to_string())?,
    )
    .await
    {
        Err(_) => return Err("handshake timed out".into()),
        Ok(Err(e)) => return Err(format!("handshake: {e}")),
        Ok(Ok(c)) => c,
    };
    // TLS 1.3: the client may finish before the center judged its
    // certificate; the center's verdict then closes the connection.
    let welcome = async {
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        write_message(
            &mut send,
            &ControlMessage::Hello(hello("gw-steady", Vec::new())),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut ctl = MessageReader::<ControlMessage>::new(recv, Role::Center);
        match ctl.next().await {
            Ok(Some(ControlMessage::Welcome(_))) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), welcome).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer".into()),
    }
}

#[test]
fn unauthenticated_clients_are_refused_counted_and_logged() {
    let _serial = serial();
    let Served {
        dir: _dir,
        pki,
        mut center,
        rt,
        steady,
        mut seen,
    } = served(&["gw-other"]);
    let ca = pki.join("ca.pem");
    let addr = center.quic_addr();
    let _rt = rt.enter();
    let before = center.usage();
    let stored = alert_ids(&center).len();

    let operator = || {
        Some((
            load_certs(&pki.join("gw-other.pem")),
            load_key(&pki.join("gw-other.key")),
        ))
    };
    let cases: Vec<(&str, quinn::ClientConfig)> = vec![
        ("no client certificate", client(&ca, None, &[ALPN_V1])),
        (
            "a self-signed certificate",
            client(&ca, Some(self_signed("gw-steady")), &[ALPN_V1]),
        ),
        (
            "the operator's certificate, ALPN lookout/9",
            client(&ca, operator(), &[b"lookout/9"]),
        ),
        (
            "the operator's certificate, no ALPN",
            client(&ca, operator(), &[]),
        ),
    ];
    for (n, (what, config)) in cases.into_iter().enumerate() {
        let ep = endpoint();
        let local = ep.local_addr().expect("local address");
        let outcome = rt.block_on(attempt(&ep, config, addr));
        let Err(how) = outcome else {
            panic!("{what}: welcomed by the center")
        };
        let count = (n + 1) as f64;
        assert!(
            wait(WAIT, || center.metric(TLS_REFUSED) == count),
            "{what}: refusal not counted:\n{}",
            center.metrics()
        );
        let peer = format!("peer={local}");
        assert!(
            wait(WAIT, || !center
                .lines_with(&["refused at the TLS handshake", &peer])
                .is_empty()),
            "{what}: no log line naming {peer}:\n{}",
            center.log()
        );
        println!("{what}: refused ({how}); counted; logged with {peer}");
    }

    // Plain UDP at the QUIC port: random bytes, and datagrams that look like
    // QUIC Initial packets but carry garbage. quinn drops them without
    // creating any state.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let sent_at = Instant::now();
    let mut sent = 0;
    for i in 0..3000u64 {
        let len = if i % 2 == 0 {
            1200
        } else {
            1 + (next() % 1400) as usize
        };
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 {
            // Long header, Initial, QUIC v1, 8-byte connection ids.
            d[0] = 0xc0 | (d[0] & 0x0f);
            d[1..5].copy_from_slice(&[0, 0, 0, 1]);
            d[5] = 8;
            d[14] = 8;
        }
        if socket.send_to(&d, addr).is_ok() {
            sent += 1;
        }
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let took = sent_at.elapsed();
    seen = still_served(&center, &steady, seen, "steady-1");
    // Initial-looking ones that quinn took for a connection attempt fail to
    // authenticate: counted apart from TLS refusals, logged.
    let quic = center.metric(&refused("quic"));
    let quic_logged = center.lines_with(&["failed before TLS", "quic"]).len();
    assert_eq!(quic as usize, quic_logged, "{}", center.log());
    // The README says junk datagrams show up under reason="quic": some of
    // these (the generator is seeded, so always the same ones) get far
    // enough into quinn to be a failed connection attempt.
    assert!(quic > 0.0, "no junk datagram counted as reason=quic");
    assert_eq!(
        center.metric(TLS_REFUSED),
        4.0,
        "{}",
        center.lines_with(&["TLS handshake"]).join("\n")
    );
    assert!(center.alive(), "the center died:\n{}", center.log());
    let after = center.usage();
    println!(
        "UDP garbage: {sent} datagrams in {:.0} ms ({:.0}/s); no connection; {quic} looked \
         enough like a QUIC Initial to be counted and logged as reason=quic, the rest dropped \
         by quinn before any connection state; TLS refusals unchanged",
        took.as_secs_f64() * 1000.0,
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "center: RSS {:.1} → {:.1} MiB, fds {} → {}; good gateway frames {seen}",
        before.rss_mib(),
        after.rss_mib(),
        before.fds,
        after.fds
    );

    // Nothing of any of them got in.
    assert_eq!(connected(&center), vec!["gw-steady".to_string()]);
    assert_eq!(alert_ids(&center).len(), stored + 1);
    assert!(after.fds <= before.fds + 2, "{before:?} → {after:?}");
}

#[test]
fn malformed_frames_close_only_the_offender() {
    let _serial = serial();
    let Served {
        dir: _dir,
        pki,
        mut center,
        rt,
        steady,
        mut seen,
    } = served(&["gw-bad"]);
    let addr = center.quic_addr();
    let _rt = rt.enter();
    let bad = || operator_client(&pki, "gw-bad");
    let cam = || vec![camera("cam-bad")];
    let ep = endpoint();

    // Before Welcome: the connection is refused and counted by reason.
    let expect_refused = |what: &str, reason: &str, before: f64, log: &[&str]| {
        assert!(
            wait(WAIT, || center.metric(&refused(reason)) == before + 1.0),
            "{what}: not counted as {reason}:\n{}",
            center.metrics()
        );
        assert!(
            wait(WAIT, || !center.lines_with(log).is_empty()),
            "{what}: no log line with {log:?}:\n{}",
            center.log()
        );
        println!("{what}: refused, counted as {reason}, logged");
    };

    // The first bytes on the control stream are not a Hello: garbage where Hello should
    // be, and a message only the center sends. (what, bytes, close reason, log line)
    let welcome = ControlMessage::Welcome(Welcome {
        protocol_version: 1,
        center_id: "me".into(),
    });
    let not_hello: [(&str, Vec<u8>, Option<&str>, &str); 2] = [
        (
            "garbage instead of Hello",
            envelope(0x01, 4, &[0xde, 0xad, 0xbe, 0xef]),
            Some("Hello.protocol_version"),
            "Hello.protocol_version",
        ),
        (
            "Welcome sent by a gateway",
            welcome.encode().expect("encode").to_bytes().to_vec(),
            None,
            "only the center sends it",
        ),
    ];
    for (what, bytes, close_reason, log) in not_hello {
        let n = center.metric(&refused("protocol"));
        let (code, reason) = rt.block_on(async {
            let (conn, mut send, _recv) = control_stream(&ep, bad(), addr).await;
            send.write_all(&bytes).await.expect("write");
            closed(&conn).await
        });
        assert_eq!(code, 0x01, "{what}: {reason}");
        if let Some(expected) = close_reason {
            assert!(reason.contains(expected), "{what}: {reason}");
        }
        expect_refused(what, "protocol", n, &["gw-bad", log]);
    }

    // Another protocol version in Hello than the ALPN's (lookout/2):
    // Refuse UNSUPPORTED_VERSION.
    let n = center.metric(&refused("version"));
    let (refusal, code) = rt.block_on(async {
        let (conn, mut send, recv) = control_stream(&ep, bad(), addr).await;
        write_message(
            &mut send,
            &ControlMessage::Hello(Hello {
                protocol_version: 1,
                ..hello("gw-bad", cam())
            }),
        )
        .await
        .expect("write");
        let mut ctl = MessageReader::<ControlMessage>::new(recv, Role::Center);
        let refusal = match tokio::time::timeout(WAIT, ctl.next()).await {
            Ok(Ok(Some(ControlMessage::Refuse(r)))) => r,
            other => panic!("expected Refuse, got {other:?}"),
        };
        (refusal, closed(&conn).await.0)
    });
    assert_eq!(refusal.code, ErrorCode::UNSUPPORTED_VERSION, "{refusal:?}");
    assert_eq!(code, 0x02);
    expect_refused(
        "protocol version 1 in Hello over lookout/2",
        "version",
        n,
        &["protocol version 1 in Hello over ALPN lookout/2"],
    );

    // A GOP stream before Hello (PROTOCOL.md §4 rule 3).
    let n = center.metric(&refused("protocol"));
    let (code, reason) = rt.block_on(async {
        let conn = ep
            .connect_with(bad(), addr, "center")
            .expect("dial")
            .await
            .expect("handshake");
        let mut gop = within("uni stream", conn.open_uni()).await.expect("uni");
        write_message(&mut gop, &VideoMessage::GopHeader(gop_header("cam-bad", 1)))
            .await
            .expect("header");
        write_message(&mut gop, &VideoMessage::Frame(frame(1, true)))
            .await
            .expect("frame");
        let _ = gop.finish();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // By now the center has closed the connection, or does on Hello.
        if let Ok((mut send, _recv)) = conn.open_bi().await {
            let _ = write_message(&mut send, &ControlMessage::Hello(hello("gw-bad", cam()))).await;
        }
        closed(&conn).await
    });
    assert_eq!(code, 0x01, "{reason}");
    assert!(reason.contains("before Welcome"), "{reason}");
    expect_refused(
        "a GOP stream before Hello",
        "protocol",
        n,
        &["gw-bad", "before Welcome"],
    );
    assert!(
        frames(&center, "gw-bad", "cam-bad") == 0,
        "video of a gateway never welcomed was taken"
    );

    // After Welcome: the connection is closed with PROTOCOL_VIOLATION, the
    // violation counted per gateway and stream, and logged.
    struct Closing {
        what: &'static str,
        stream: &'static str,
        bytes: Vec<u8>,
        fin: bool,
        reason: &'static str,
    }
    let closing = vec![
        Closing {
            what: "garbage in a CameraUpdate on the control stream",
            stream: "control",
            bytes: envelope(0x05, 3, &[0xff, 0xff, 0xff]),
            fin: false,
            reason: "CameraUpdate",
        },
        Closing {
            what: "a second Hello",
            stream: "control",
            bytes: ControlMessage::Hello(hello("gw-bad", cam()))
                .encode()
                .expect("encode")
                .to_bytes()
                .to_vec(),
            fin: false,
            reason: "Hello is sent only once",
        },
        Closing {
            what: "a control message whose length lies, then FIN",
            stream: "control",
            bytes: envelope(0x06, 100, &[0; 8]),
            fin: true,
            reason: "8 of 100 payload bytes",
        },
        Closing {
            what: "an unknown message type on the alert stream",
            stream: "alert",
            bytes: envelope(0x1f, 2, &[1, 2]),
            fin: false,
            reason: "message type 0x1f is not defined",
        },
        Closing {
            what: "an alert whose length lies, then FIN",
            stream: "alert",
            bytes: envelope(0x10, 1000, b"0123456789"),
            fin: true,
            reason: "10 of 1000 payload bytes",
        },
        Closing {
            what: "a truncated Alert (ends inside a field)",
            stream: "alert",
            bytes: envelope(0x10, 3, &[0x24, b'a', b'b']),
            fin: false,
            reason: "Alert.id",
        },
        Closing {
            what: "an acknowledgement sent by a gateway",
            stream: "alert",
            bytes: envelope(0x12, 3, &[1, b'a', 0]),
            fin: false,
            reason: "only the center sends it",
        },
    ];
    for case in closing {
        let counter = violations("gw-bad", case.stream);
        let n = center.metric(&counter);
        let (code, reason) = rt.block_on(async {
            let (conn, mut ctl_send, _ctl) = welcomed(&ep, bad(), addr, "gw-bad", cam()).await;
            let mut alert_stream = None;
            let send = if case.stream == "control" {
                &mut ctl_send
            } else {
                &mut alert_stream
                    .insert(
                        within("alert stream", conn.open_bi())
                            .await
                            .expect("alert stream"),
                    )
                    .0
            };
            send.write_all(&case.bytes).await.expect("write");
            if case.fin {
                let _ = send.finish();
            }
            closed(&conn).await
        });
        assert_eq!(code, 0x01, "{}: {reason}", case.what);
        assert!(reason.contains(case.reason), "{}: {reason}", case.what);
        assert!(
            wait(WAIT, || center.metric(&counter) == n + 1.0),
            "{}: not counted:\n{}",
            case.what,
            center.metrics()
        );
        assert!(
            wait(WAIT, || !center
                .lines_with(&["gateway=gw-bad", case.reason])
                .is_empty()),
            "{}: not logged:\n{}",
            case.what,
            center.log()
        );
        println!(
            "{}: connection closed with PROTOCOL_VIOLATION ({reason})",
            case.what
        );
    }

    // A third bidirectional stream on a version-1 connection (lookout/1,
    // Hello version 1): the center grants it (version 2 uses such streams
    // for clips) and closes the connection as a violation of §4 rule 2.
    let (code, reason) = rt.block_on(async {
        let conn = within(
            "v1 handshake",
            ep.connect_with(operator_client_v1(&pki, "gw-bad"), addr, "center")
                .expect("dial"),
        )
        .await
        .expect("handshake");
        let (mut send, recv) = within("control", conn.open_bi()).await.expect("control");
        let v1_hello = ControlMessage::Hello(Hello {
            protocol_version: 1,
            ..hello("gw-bad", cam())
        });
        write_message(&mut send, &v1_hello).await.expect("Hello");
        let mut ctl = MessageReader::<ControlMessage>::new(recv, Role::Center);
        match tokio::time::timeout(WAIT, ctl.next()).await {
            Ok(Ok(Some(ControlMessage::Welcome(w)))) => assert_eq!(w.protocol_version, 1),
            other => panic!("a version-1 gateway: expected Welcome, got {other:?}"),
        }
        let (mut a, _r) = within("alert stream", conn.open_bi())
            .await
            .expect("alert stream");
        let msg = AlertMessage::Alert(alert("bad-1", "cam-bad"));
        write_message(&mut a, &msg).await.expect("alert");
        let (mut third, _r3) = within("third stream", conn.open_bi())
            .await
            .expect("granted");
        third.write_all(b"\x30").await.expect("write");
        closed(&conn).await
    });
    assert_eq!(code, 0x01, "{reason}");
    assert!(reason.contains("third bidirectional stream"), "{reason}");
    println!("a third bidirectional stream on version 1: connection closed ({reason})");

    // What the connection survives: an unknown control message is skipped
    // (§5.3); an alert whose JSON is broken is stored as text and
    // acknowledged (the protocol does not interpret it); bad GOP streams
    // are stopped one by one with PROTOCOL_VIOLATION.
    let video_counter = violations("gw-bad", "video");
    let video_before = center.metric(&video_counter);
    let gop_cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "a GOP stream of garbage",
            b"\x7f\xffnot a relay message at all".to_vec(),
            false,
        ),
        (
            "a Frame before the GopHeader",
            VideoMessage::Frame(frame(1, true))
                .encode()
                .expect("encode")
                .to_bytes()
                .to_vec(),
            false,
        ),
        (
            "a truncated Frame (ends inside a field)",
            {
                let mut b = VideoMessage::GopHeader(gop_header("cam-bad", 7))
                    .encode()
                    .expect("encode")
                    .to_bytes()
                    .to_vec();
                b.extend(envelope(0x21, 5, &[0, 0, 0, 0, 1]));
                b
            },
            false,
        ),
        (
            "a GOP for a camera not in Hello",
            {
                VideoMessage::GopHeader(gop_header("cam-nobody", 8))
                    .encode()
                    .expect("encode")
                    .to_bytes()
                    .to_vec()
            },
            false,
        ),
        (
            "a Frame whose length lies, then FIN",
            {
                let mut b = VideoMessage::GopHeader(gop_header("cam-bad", 9))
                    .encode()
                    .expect("encode")
                    .to_bytes()
                    .to_vec();
                b.extend(envelope(0x21, 500, &[0; 20]));
                b
            },
            true,
        ),
    ];
    let gop_count = gop_cases.len() as f64;
    let report = rt.block_on(async {
        let (conn, mut ctl_send, ctl) = welcomed(&ep, bad(), addr, "gw-bad", cam()).await;
        let mut ctl = ctl;
        let mut report = Vec::new();
        // Unknown control type 0x3e: skipped, and a Ping still answered.
        ctl_send
            .write_all(&envelope(0x3e, 5, b"hello"))
            .await
            .expect("write");
        write_message(&mut ctl_send, &ControlMessage::Ping(Ping { nonce: 42 }))
            .await
            .expect("ping");
        match tokio::time::timeout(WAIT, ctl.next()).await {
            Ok(Ok(Some(ControlMessage::Pong(p)))) if p.nonce == 42 => {}
            other => panic!("unknown control message: no Pong after it: {other:?}"),
        }
        report.push("an unknown control message: skipped, the Ping after it answered".to_string());

        let (mut alerts, alert_recv) = within("alert stream", conn.open_bi())
            .await
            .expect("alert stream");
        let mut acks = MessageReader::<AlertMessage>::new(alert_recv, Role::Center);
        let mut broken = alert("broken-json-1", "cam-bad");
        broken.payload_json = "{not json".into();
        write_message(&mut alerts, &AlertMessage::Alert(broken))
            .await
            .expect("alert");
        match tokio::time::timeout(WAIT, acks.next()).await {
            Ok(Ok(Some(AlertMessage::AlertAck(a)))) if a.id == "broken-json-1" => {}
            other => panic!("alert with broken JSON not acknowledged: {other:?}"),
        }
        report.push("an alert whose payload is not JSON: stored as text, acknowledged".into());

        for (what, bytes, fin) in gop_cases {
            let mut s = within("uni stream", conn.open_uni()).await.expect("uni");
            s.write_all(&bytes).await.expect("write");
            if fin {
                let _ = s.finish();
                // Nothing to stop once finished; the center's count says it.
                report.push(format!("{what}: GOP discarded"));
                continue;
            }
            match tokio::time::timeout(WAIT, s.stopped()).await {
                Ok(Ok(Some(code))) => {
                    assert_eq!(code.into_inner(), 0x01, "{what}");
                    report.push(format!("{what}: STOP_SENDING PROTOCOL_VIOLATION"));
                }
                other => panic!("{what}: stream not stopped: {other:?}"),
            }
        }
        // The connection carries on: a Ping is still answered.
        write_message(&mut ctl_send, &ControlMessage::Ping(Ping { nonce: 43 }))
            .await
            .expect("ping");
        match tokio::time::timeout(WAIT, ctl.next()).await {
            Ok(Ok(Some(ControlMessage::Pong(p)))) if p.nonce == 43 => {}
            other => panic!("connection did not survive its bad GOP streams: {other:?}"),
        }
        assert!(conn.close_reason().is_none());
        conn.close(0u32.into(), b"done");
        report
    });
    for r in report {
        println!("{r}");
    }
    assert!(
        wait(WAIT, || center.metric(&video_counter)
            == video_before + gop_count),
        "bad GOP streams not counted:\n{}",
        center.metrics()
    );
    assert!(
        wait(WAIT, || center
            .lines_with(&["gateway=gw-bad", "payload is not JSON"])
            .len()
            == 1),
        "{}",
        center.log()
    );
    let stored = center.get("/api/alerts/broken-json-1");
    assert_eq!(stored["alert"], "{not json", "{stored}");

    seen = still_served(&center, &steady, seen, "steady-after-malformed");
    assert!(center.alive(), "the center died:\n{}", center.log());
    println!(
        "center counted for gw-bad: refused {} (protocol) + {} (version); violations: control {}, \
         alert {}, video {}; good gateway meanwhile: {seen} frames, every alert acknowledged",
        center.metric(&refused("protocol")),
        center.metric(&refused("version")),
        center.metric(&violations("gw-bad", "control")),
        center.metric(&violations("gw-bad", "alert")),
        center.metric(&video_counter),
    );
}

#[test]
fn oversized_messages_are_refused_before_they_are_buffered() {
    let _serial = serial();
    let Served {
        dir: _dir,
        pki,
        mut center,
        rt,
        steady,
        mut seen,
    } = served(&["gw-big"]);
    let addr = center.quic_addr();
    let _rt = rt.enter();
    let big = || operator_client(&pki, "gw-big");
    let cam = || vec![camera("cam-big")];
    let ep = endpoint();
    let baseline = center.usage();

    // A Hello announcing 2 MiB: refused on its header, without waiting for
    // (or holding) the payload, which never comes.
    let (code, reason) = rt.block_on(async {
        let conn = ep
            .connect_with(big(), addr, "center")
            .expect("dial")
            .await
            .expect("handshake");
        let (mut send, _recv) = within("control stream", conn.open_bi())
            .await
            .expect("control");
        send.write_all(&envelope(0x01, 2 << 20, &[0; 1024]))
            .await
            .expect("write");
        closed(&conn).await
    });
    assert_eq!(code, 0x01, "{reason}");
    assert!(reason.contains("at most 1048576"), "{reason}");
    assert!(wait(WAIT, || center.metric(&refused("protocol")) == 1.0));
    println!("Hello announcing 2 MiB (limit 1 MiB): closed on its header ({reason})");

    // An Alert announcing 17 MiB, and a Frame announcing 9 MB.
    let (code, reason) = rt.block_on(async {
        let (conn, ctl_send, _ctl) = welcomed(&ep, big(), addr, "gw-big", cam()).await;
        let mut gop = within("uni stream", conn.open_uni()).await.expect("uni");
        let mut b = VideoMessage::GopHeader(gop_header("cam-big", 1))
            .encode()
            .expect("encode")
            .to_bytes()
            .to_vec();
        b.extend(envelope(0x21, 9_000_000, &[0; 4096]));
        gop.write_all(&b).await.expect("write");
        match tokio::time::timeout(WAIT, gop.stopped()).await {
            Ok(Ok(Some(code))) => assert_eq!(code.into_inner(), 0x01),
            other => panic!("9 MB frame: stream not stopped: {other:?}"),
        }
        println!("Frame announcing 9000000 bytes (limit 8 MiB): GOP stream stopped");
        let (mut alerts, _r) = within("alert stream", conn.open_bi())
            .await
            .expect("alert stream");
        alerts
            .write_all(&envelope(0x10, 17 << 20, &[0; 4096]))
            .await
            .expect("write");
        let r = closed(&conn).await;
        drop(ctl_send);
        r
    });
    assert_eq!(code, 0x01, "{reason}");
    assert!(reason.contains("at most 16777216"), "{reason}");
    assert!(wait(WAIT, || center.metric(&violations("gw-big", "alert"))
        == 1.0));
    assert!(wait(WAIT, || center.metric(&violations("gw-big", "video"))
        == 1.0));
    println!("Alert announcing 17 MiB (limit 16 MiB): connection closed ({reason})");

    // Huge messages streamed slowly: an Alert of the largest size allowed
    // and 40 GOP streams each announcing a Frame of 8 MiB, most of their
    // bytes sent over several seconds, none finished. Without a bound per
    // connection the center would hold all of it (about 256 MiB); with it,
    // GOP streams beyond the connection's budget are stopped (UNWANTED) and
    // dropped, and the connection itself carries on.
    const STREAMS: u64 = 40;
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let peak = peak.clone();
        let sampling = sampling.clone();
        let pid = center.pid();
        std::thread::spawn(move || {
            while sampling.load(Relaxed) {
                peak.fetch_max(Usage::of(pid).rss_kib, Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let (sent_mib, announced_mib) = rt.block_on(async {
        let (conn, ctl_send, ctl) = welcomed(&ep, big(), addr, "gw-big", cam()).await;
        let (mut alerts, _r) = within("alert stream", conn.open_bi())
            .await
            .expect("alert stream");
        alerts
            .write_all(&envelope(0x10, 16 << 20, &[]))
            .await
            .expect("write");
        let mut streams = vec![(alerts, (16u64 << 20) - (256 << 10))];
        for i in 0..STREAMS {
            let mut s = within("uni stream", conn.open_uni()).await.expect("uni");
            let mut b = VideoMessage::GopHeader(gop_header("cam-big", 10 + i))
                .encode()
                .expect("encode")
                .to_bytes()
                .to_vec();
            b.extend(envelope(0x21, 8 << 20, &[]));
            s.write_all(&b).await.expect("write");
            streams.push((s, 6 << 20));
        }
        // Each stream: 128 KiB every 50 ms until its share is sent or the
        // center stops taking it (flow control), for at most 5 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut tasks = tokio::task::JoinSet::new();
        for (mut s, share) in streams {
            tasks.spawn(async move {
                let chunk = vec![0x20u8; 128 << 10];
                let mut sent = 0u64;
                while sent < share {
                    let w = tokio::time::timeout_at(deadline, s.write_all(&chunk)).await;
                    if !matches!(w, Ok(Ok(()))) {
                        break;
                    }
                    sent += chunk.len() as u64;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (s, sent)
            });
        }
        let mut sent = 0;
        let mut held = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (s, n) = r.expect("writer");
            sent += n;
            held.push(s);
        }
        // The center still serves the connection (a Ping is answered);
        // then the sender gives up and goes.
        let mut ctl_send = ctl_send;
        let mut ctl = ctl;
        write_message(&mut ctl_send, &ControlMessage::Ping(Ping { nonce: 7 }))
            .await
            .expect("ping");
        let pong = tokio::time::timeout(WAIT, ctl.next()).await;
        assert!(
            matches!(pong, Ok(Ok(Some(ControlMessage::Pong(_))))),
            "{pong:?}"
        );
        conn.close(0u32.into(), b"giving up");
        drop(held);
        (sent >> 20, 16 + STREAMS * 8)
    });
    sampling.store(false, Relaxed);
    let _ = sampler.join();
    let peak_kib = peak.load(Relaxed);
    let settled = wait(WAIT, || {
        center.usage().rss_kib <= baseline.rss_kib + 64 * 1024
    });
    let after = center.usage();
    println!(
        "slow huge messages: {announced_mib} MiB announced on {} streams, {sent_mib} MiB taken \
         by the center in {:.1} s; center RSS {:.1} MiB before, peak {:.1}, after {:.1}; fds {} → {}",
        STREAMS + 1,
        started.elapsed().as_secs_f64(),
        baseline.rss_mib(),
        peak_kib as f64 / 1024.0,
        after.rss_mib(),
        baseline.fds,
        after.fds
    );
    let shed = center.metric(
        "lookout_center_gops_total{gateway=\"gw-big\",camera=\"cam-big\",outcome=\"shed\"}",
    );
    println!("slow huge messages: {shed} GOP streams stopped over the connection's budget");
    assert!(shed >= 1.0, "{}", center.metrics());
    // One alert message (16 MiB) and the connection's video budget
    // (64 MiB), with room for the allocator.
    assert!(
        peak_kib <= baseline.rss_kib + 128 * 1024,
        "center memory grew {:.1} MiB",
        (peak_kib - baseline.rss_kib) as f64 / 1024.0
    );
    assert!(
        settled,
        "center memory stayed up: {after:?} after {baseline:?}"
    );
    seen = still_served(&center, &steady, seen, "steady-after-oversized");
    assert!(center.alive(), "the center died:\n{}", center.log());
    println!("good gateway: {seen} frames, alerts acknowledged");
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    NoCertificate,
    SelfSigned,
    WrongAlpn,
    NoHello,
}

#[test]
fn a_connection_flood_leaves_the_center_serving() {
    let _serial = serial();
    let Served {
        dir,
        pki,
        mut center,
        rt,
        steady,
        seen,
    } = served(&["gw-flood", "gw-late"]);
    let ca = pki.join("ca.pem");
    let addr = center.quic_addr();
    let _rt = rt.enter();
    std::thread::sleep(Duration::from_secs(1));
    let before = center.usage();

    const ATTEMPTS: usize = 1200;
    const ROUNDS: usize = 2;
    const IN_FLIGHT: usize = 48;
    let kinds = |i: usize| match i % 10 {
        0..=3 => Kind::NoCertificate,
        4 | 5 => Kind::SelfSigned,
        6 => Kind::WrongAlpn,
        _ => Kind::NoHello,
    };
    let forged = self_signed("gw-flood");
    let configs: Vec<(Kind, quinn::ClientConfig)> = vec![
        (Kind::NoCertificate, client(&ca, None, &[ALPN_V1])),
        (Kind::SelfSigned, client(&ca, Some(forged), &[ALPN_V1])),
        (
            Kind::WrongAlpn,
            client(
                &ca,
                Some((
                    load_certs(&pki.join("gw-flood.pem")),
                    load_key(&pki.join("gw-flood.key")),
                )),
                &[b"h3"],
            ),
        ),
        (Kind::NoHello, operator_client(&pki, "gw-flood")),
    ];
    let peak_rss = Arc::new(AtomicU64::new(0));
    let peak_fds = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak_rss, peak_fds, sampling) = (peak_rss.clone(), peak_fds.clone(), sampling.clone());
        let pid = center.pid();
        std::thread::spawn(move || {
            while sampling.load(Relaxed) {
                let u = Usage::of(pid);
                peak_rss.fetch_max(u.rss_kib, Relaxed);
                peak_fds.fetch_max(u.fds as u64, Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let frames_before = frames(&center, "gw-steady", "cam-1");
    let cpu_before = Usage::cpu_seconds(center.pid());
    // Two rounds, with the center's usage read after each: a leak per
    // connection would show as growth from one to the next.
    let mut took = Duration::ZERO;
    let mut outcomes = Vec::new();
    let mut launched = 0;
    let mut settled_after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 0..ROUNDS {
        let started = Instant::now();
        let (round_outcomes, round_launched) = rt.block_on(async {
            let endpoints: Vec<quinn::Endpoint> = (0..4).map(|_| endpoint()).collect();
            let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            let mut tasks = tokio::task::JoinSet::new();
            let mut launched = 0;
            for i in round * ATTEMPTS / ROUNDS..(round + 1) * ATTEMPTS / ROUNDS {
                if Instant::now() > deadline {
                    break;
                }
                let permit = limit.clone().acquire_owned().await.expect("semaphore");
                let kind = kinds(i);
                let config = configs
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, c)| c.clone())
                    .expect("config");
                let ep = endpoints[i % endpoints.len()].clone();
                launched += 1;
                tasks.spawn(async move {
                    let _permit = permit;
                    let connecting = match ep.connect_with(config, addr, "center") {
                        Ok(c) => c,
                        Err(e) => return (kind, Err(format!("dial: {e}"))),
                    };
                    let conn = match tokio::time::timeout(Duration::from_secs(5), connecting).await
                    {
                        Err(_) => return (kind, Err("handshake timed out".into())),
                        Ok(Err(e)) => return (kind, Err(e.to_string())),
                        Ok(Ok(c)) => c,
                    };
                    if kind == Kind::NoHello {
                        conn.close(0u32.into(), b"bye");
                        return (kind, Ok(()));
                    }
                    // Refused after the client's half of TLS 1.3: wait for it.
                    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
                        Ok(e) => (kind, Err(e.to_string())),
                        Err(_) => (kind, Ok(())),
                    }
                });
            }
            let mut outcomes = Vec::new();
            while let Some(r) = tasks.join_next().await {
                outcomes.push(r.expect("attempt task"));
            }
            for ep in &endpoints {
                ep.close(0u32.into(), b"done");
            }
            (outcomes, launched)
        });
        took += started.elapsed();
        outcomes.extend(round_outcomes);
        launched += round_launched;
        std::thread::sleep(Duration::from_secs(2));
        settled_after.push(center.usage());
    }
    let center_cpu = Usage::cpu_seconds(center.pid()) - cpu_before;
    let frames_during = frames(&center, "gw-steady", "cam-1") - frames_before;
    let count = |k: Kind, refused: bool| {
        outcomes
            .iter()
            .filter(|(kind, r)| *kind == k && r.is_err() == refused)
            .count()
    };
    let bad = launched - count(Kind::NoHello, false) - count(Kind::NoHello, true);
    let bad_refused: usize = [Kind::NoCertificate, Kind::SelfSigned, Kind::WrongAlpn]
        .iter()
        .map(|k| count(*k, true))
        .sum();
    let no_hello = count(Kind::NoHello, false);
    println!(
        "flood: {launched} attempts in {:.1} s ({:.0}/s), {IN_FLIGHT} at once, center CPU {center_cpu:.1} s: \
         no certificate {} refused, self-signed {} refused, wrong ALPN {} refused, \
         valid certificate dropped before Hello {no_hello} (of which {} failed)",
        took.as_secs_f64(),
        launched as f64 / took.as_secs_f64(),
        count(Kind::NoCertificate, true),
        count(Kind::SelfSigned, true),
        count(Kind::WrongAlpn, true),
        count(Kind::NoHello, true),
    );
    assert_eq!(bad_refused, bad, "a bad client got in: {outcomes:?}");
    assert!(took < Duration::from_secs(40));

    // Every refusal counted by the center. A client whose Initial is
    // retransmitted after the center dropped its first one makes a second
    // attempt, refused and counted again: a little over is fine.
    let within_range = |counted: f64, seen: usize| {
        counted >= seen as f64 && counted <= (seen + seen / 50 + 2) as f64
    };
    let counted = wait(WAIT, || {
        within_range(center.metric(TLS_REFUSED), bad)
            && within_range(center.metric(&refused("no_hello")), no_hello)
    });
    println!(
        "center counted: tls {}, no_hello {} (the test saw {bad} and {no_hello}); \
         log lines naming a refused peer: {}",
        center.metric(TLS_REFUSED),
        center.metric(&refused("no_hello")),
        center.lines("refused at the TLS handshake")
    );
    assert!(counted, "{}", center.metrics());
    assert!(center.alive(), "the center died:\n{}", center.log());

    // The good gateway kept flowing and still works; a real gateway that
    // dials now gets in and delivers the alert waiting in its outbox.
    assert!(
        frames_during > 0,
        "no video reached the center during the flood"
    );
    let seen = still_served(&center, &steady, seen, "steady-after-flood");
    let late = gateway(
        dir.path(),
        &pki,
        "gw-late",
        &addr.to_string(),
        &[alert("late-1", "cam-x")],
    );
    assert!(
        wait(WAIT, || alert_ids(&center).iter().any(|a| a == "late-1")
            && late.get("/api/upstreams")["upstreams"][0]["outbox_pending"]
                == 0),
        "{}\n{}",
        late.log(),
        center.log()
    );
    drop(late);

    // Memory and files back near where they were.
    let settled = wait(Duration::from_secs(20), || {
        let u = center.usage();
        u.fds <= before.fds + 2 && u.rss_kib <= before.rss_kib + 48 * 1024
    });
    sampling.store(false, Relaxed);
    let _ = sampler.join();
    let after = center.usage();
    println!(
        "center RSS {:.1} MiB before, peak {:.1}, after round 1 {:.1}, after round 2 {:.1}, \
         at the end {:.1}; fds {} before, peak {}, at the end {}; \
         good gateway {frames_during} frames during the flood, {seen} in all",
        before.rss_mib(),
        peak_rss.load(Relaxed) as f64 / 1024.0,
        settled_after[0].rss_mib(),
        settled_after[ROUNDS - 1].rss_mib(),
        after.rss_mib(),
        before.fds,
        peak_fds.load(Relaxed),
        after.fds
    );
    assert!(
        settled,
        "center did not come back to its baseline: {before:?} → {after:?}"
    );
    assert!(
        settled_after[ROUNDS - 1].rss_kib <= settled_after[0].rss_kib + 16 * 1024,
        "the center's memory grew from round to round: {settled_after:?}"
    );
}

/// What a hostile center does with a gateway's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostile {
    /// Answers `Hello` with bytes that are not a valid `Welcome`.
    Garbage,
    /// Answers with a `Welcome` header announcing 1 GiB.
    Oversized,
    /// Reads `Hello`, never answers.
    Silent,
    /// Lets the gateway open no stream at all.
    NoStreams,
    /// Welcomes, takes the alert, answers it with garbage.
    GarbageAck,
}

/// A QUIC server with the operator's center certificate that misbehaves as
/// told; counts connections and the alerts it was sent.
async fn hostile_center(
    pki: &std::path::Path,
    how: Hostile,
) -> (quinn::Endpoint, Arc<AtomicU64>, Arc<AtomicU64>) {
    let mut server =
        lookout::relay::tls::server_config(&files(pki, "center")).expect("server config");
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(10_000).into()));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(if how == Hostile::NoStreams {
        0
    } else {
        2
    }));
    server.transport_config(Arc::new(t));
    let endpoint =
        quinn::Endpoint::server(server, "127.0.0.1:0".parse().expect("addr")).expect("server");
    let attempts = Arc::new(AtomicU64::new(0));
    let alerts = Arc::new(AtomicU64::new(0));
    {
        let endpoint = endpoint.clone();
        let (attempts, alerts) = (attempts.clone(), alerts.clone());
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                attempts.fetch_add(1, Relaxed);
                let alerts = alerts.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    if how != Hostile::NoStreams
                        && let Ok((mut send, recv)) = conn.accept_bi().await
                    {
                        let mut ctl = MessageReader::<ControlMessage>::new(recv, Role::Gateway);
                        let _hello = ctl.next().await;
                        match how {
                            Hostile::Garbage => {
                                let _ = send
                                    .write_all(&[0x02, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff])
                                    .await;
                            }
                            Hostile::Oversized => {
                                let _ = send.write_all(&envelope(0x02, 1 << 30, &[0; 4096])).await;
                            }
                            Hostile::GarbageAck => {
                                let _ = write_message(
                                    &mut send,
                                    &ControlMessage::Welcome(Welcome {
                                        protocol_version: 1,
                                        center_id: "hostile".into(),
                                    }),
                                )
                                .await;
                                if let Ok((mut a_send, a_recv)) = conn.accept_bi().await {
                                    let mut reader =
                                        MessageReader::<AlertMessage>::new(a_recv, Role::Gateway);
                                    if let Ok(Some(_)) = reader.next().await {
                                        alerts.fetch_add(1, Relaxed);
                                        let _ = a_send
                                            .write_all(&envelope(0x12, 3, &[0xff, 0xff, 0xff]))
                                            .await;
                                    }
                                }
                            }
                            Hostile::Silent | Hostile::NoStreams => {}
                        }
                        // Keep the stream handles alive until the gateway gives up.
                        conn.closed().await;
                        drop(send);
                        return;
                    }
                    conn.closed().await;
                });
            }
        });
    }
    (endpoint, attempts, alerts)
}

#[test]
fn a_hostile_center_cannot_take_a_gateway_down() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            Hostile::Garbage,
            "gw-garbage",
            "protocol violation by the command center",
        ),
        (Hostile::Oversized, "gw-oversized", "at most 1048576"),
        (Hostile::Silent, "gw-silent", "timed out waiting for"),
        (Hostile::NoStreams, "gw-nostreams", "timed out waiting for"),
        (
            Hostile::GarbageAck,
            "gw-garbageack",
            "protocol violation by the command center",
        ),
    ];
    let ids: Vec<&str> = cases.iter().map(|c| c.1).collect();
    let pki = pki(dir.path(), &ids);
    let rt = runtime();
    let _rt = rt.enter();
    let mut running = Vec::new();
    for (how, id, expected) in cases {
        let (endpoint, attempts, alerts) = rt.block_on(hostile_center(&pki, how));
        let addr = endpoint.local_addr().expect("address");
        let gw = gateway(
            dir.path(),
            &pki,
            id,
            &addr.to_string(),
            &[alert(&format!("{id}-alert"), "cam-1")],
        );
        running.push((how, id, expected, gw, endpoint, attempts, alerts));
    }
    let deadline = Instant::now() + Duration::from_secs(35);
    for (how, id, expected, gw, _endpoint, attempts, alerts) in &mut running {
        let upstream = |gw: &Proc| gw.get("/api/upstreams")["upstreams"][0].clone();
        let ok = wait(deadline.saturating_duration_since(Instant::now()), || {
            let u = upstream(gw);
            attempts.load(Relaxed) >= 2
                && u["state"] == "backoff"
                && u["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(*expected))
        });
        let u = upstream(gw);
        assert!(
            ok,
            "{how:?}: gateway {id} did not report `{expected}` and retry: {u}\n{}",
            gw.log()
        );
        assert!(gw.alive(), "{how:?}: the gateway died:\n{}", gw.log());
        assert_eq!(u["outbox_pending"], 1, "{how:?}: {u}");
        let retry_ms = u["retry_in_ms"].as_u64().unwrap_or(0);
        assert!(retry_ms > 0, "{how:?}: no backoff: {u}");
        if *how == Hostile::GarbageAck {
            assert!(alerts.load(Relaxed) >= 1, "the alert was never sent");
            assert!(u["connects"].as_u64().unwrap_or(0) >= 1, "{u}");
        }
        let errors = gw.metrics();
        println!(
            "{how:?}: {} connection attempt(s); gateway says `{}`, retries in {retry_ms} ms, \
             outbox still holds {} alert(s); relay errors: {}",
            attempts.load(Relaxed),
            u["last_error"].as_str().unwrap_or_default(),
            u["outbox_pending"],
            errors
                .lines()
                .filter(|l| l.starts_with("lookout_relay_connection_errors_total"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
