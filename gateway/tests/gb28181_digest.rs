//! GB/T 28181-2022's SHA-256 digest on the wire: a gateway configured with
//! `digest = ["SHA-256", "MD5"]` challenges a REGISTER with two `WWW-Authenticate`
//! headers, SHA-256 first (RFC 8760), and takes a SHA-256 answer (the hash itself is
//! checked against RFC 7616's example in `lookout-codecs`); one configured with
//! `["SHA-256"]` alone refuses an MD5 answer.

mod procs;

use std::net::UdpSocket;
use std::time::Duration;

use lookout_codecs::sip::{DigestAlgorithm, Limits, Message, digest_params, digest_response_with};
use procs::Proc;

const PLATFORM: &str = "34020000002000000001";
const DOMAIN: &str = "3402000000";
const PASSWORD: &str = "tower-s3cret";
const DEVICE: &str = "34020000001320000042";

fn gateway(dir: &std::path::Path, digest: &str) -> Proc {
    let secret = dir.join("gb-password");
    procs::write_secret(&secret, PASSWORD);
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\n\
             [gateway.gb28181]\nsip_listen = \"127.0.0.1:0\"\nid = \"{PLATFORM}\"\n\
             domain = \"{DOMAIN}\"\npassword_file = \"{}\"\ndigest = {digest}\n",
            dir.join("data").display(),
            secret.display()
        ),
    )
    .expect("config");
    Proc::start(&["run", "--config"], &config, "lookout gateway running")
}

/// A device's REGISTER over UDP, with `authorization` or without; the answer.
fn register(sock: &UdpSocket, sip: u16, cseq: u32, authorization: Option<String>) -> Message {
    let local = sock.local_addr().expect("local");
    let mut text = format!(
        "REGISTER sip:{PLATFORM}@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{cseq:08x}\r\n\
         From: <sip:{DEVICE}@{DOMAIN}>;tag=dev42\r\n\
         To: <sip:{DEVICE}@{DOMAIN}>\r\n\
         Call-ID: digest-test@{local}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{DEVICE}@{local}>\r\n\
         Max-Forwards: 70\r\n\
         Expires: 3600\r\n"
    );
    if let Some(a) = authorization {
        text.push_str(&format!("Authorization: {a}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    sock.send_to(text.as_bytes(), ("127.0.0.1", sip))
        .expect("send");
    let mut buf = vec![0u8; 65_536];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer within 5 s");
    lookout_codecs::sip::parse(&buf[..n], &Limits::default()).expect("a SIP answer")
}

fn status(m: &Message) -> u16 {
    match &m.start {
        lookout_codecs::sip::StartLine::Response { code, .. } => *code,
        other => panic!("not a response: {other:?}"),
    }
}

/// The Authorization answering `challenge` with `algorithm`.
fn answer(challenge: &str, algorithm: DigestAlgorithm, password: &str) -> String {
    let p = digest_params(challenge).expect("a digest challenge");
    let get = |k: &str| {
        p.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .expect(k)
    };
    let (realm, nonce) = (get("realm"), get("nonce"));
    let uri = format!("sip:{PLATFORM}@{DOMAIN}");
    let r = digest_response_with(
        algorithm, DEVICE, &realm, password, "REGISTER", &uri, &nonce, None,
    );
    format!(
        "Digest username=\"{DEVICE}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm={}",
        algorithm.name()
    )
}

#[test]
fn sha_256_is_offered_first_and_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), "[\"SHA-256\", \"MD5\"]");
    let sip = gw.sip_port();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");

    let first = register(&sock, sip, 1, None);
    assert_eq!(status(&first), 401, "{first:?}");
    let challenges: Vec<String> = first
        .headers_named("WWW-Authenticate")
        .map(str::to_string)
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(
        challenges[0].contains("algorithm=SHA-256"),
        "{challenges:?}"
    );
    assert!(challenges[1].contains("algorithm=MD5"), "{challenges:?}");

    // A wrong password hashed with SHA-256: 403.
    let wrong = register(
        &sock,
        sip,
        2,
        Some(answer(&challenges[0], DigestAlgorithm::Sha256, "not-it")),
    );
    assert_eq!(status(&wrong), 403, "{wrong:?}");
    // The right one: 200.
    let again = register(&sock, sip, 3, None);
    let sha = again
        .headers_named("WWW-Authenticate")
        .find(|c| c.contains("SHA-256"))
        .map(str::to_string)
        .expect("a SHA-256 challenge");
    let ok = register(
        &sock,
        sip,
        4,
        Some(answer(&sha, DigestAlgorithm::Sha256, PASSWORD)),
    );
    assert_eq!(status(&ok), 200, "{ok:?}\n{}", gw.log());
    assert!(!gw.logged(PASSWORD), "the password was logged");
    gw.kill();
}

#[test]
fn a_platform_requiring_sha_256_refuses_md5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), "[\"SHA-256\"]");
    let sip = gw.sip_port();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let first = register(&sock, sip, 1, None);
    let challenges: Vec<&str> = first.headers_named("WWW-Authenticate").collect();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    let md5 = register(
        &sock,
        sip,
        2,
        Some(answer(challenges[0], DigestAlgorithm::Md5, PASSWORD)),
    );
    assert_eq!(status(&md5), 403, "{md5:?}");
    assert!(
        gw.metric("lookout_gb28181_refused_total{reason=\"bad_credentials\"}") >= 1.0,
        "{}",
        gw.metrics()
    );
    gw.kill();
}
