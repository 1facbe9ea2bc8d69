//! The command center's exports, against peers no one here wrote: a real
//! `mosquitto` broker (Debian's, MQTT 3.1.1 in clear and MQTT 5 over TLS)
//! read by `mosquitto_sub`, a webhook receiver
//! that refuses before it accepts, and CAP 1.2 documents read by the
//! `oasiscap` crate. Real processes throughout: `lookout center`,
//! `lookout run`, QUIC with mutual TLS on loopback.
//!
//! What is promised (README, "Exports"; docs/EXPORTS.md): every alert event
//! the ledger stores reaches every export at least once — through a broker
//! that is down for a while, a receiver that answers 503, a center and a
//! gateway killed with SIGKILL — each message carrying the alert's gateway, id and revision
//! so a consumer de-duplicates; webhook bodies are signed with HMAC-SHA256.

mod procs;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procs::{Proc, http, start_center, wait};

const SECRET: &str = "webhook-test-secret-0123456789";

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed (and reaped) when the test ends, failed or not.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mosquitto` on `port`, and with TLS on `tls_port` (the certificate `lookout
/// certs` made for 127.0.0.1 in `pki`), keeping its sessions and queued
/// messages in `dir` across a restart.
fn broker(port: u16, tls_port: u16, dir: &Path, pki: &Path) -> Owned {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\n\
             keyfile {}\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nlog_dest stderr\n\
             # Started as root, mosquitto would become user `mosquitto`, who cannot\n\
             # write its sessions to this test's private folder.\nuser root\n",
            pki.join("ca.pem").display(),
            pki.join("center.pem").display(),
            pki.join("center.key").display(),
            dir.display()
        ),
    )
    .expect("write mosquitto.conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    assert!(
        wait(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "mosquitto did not listen on {port}"
    );
    assert!(
        wait(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            tls_port
        ))
        .is_ok()),
        "mosquitto did not listen on {tls_port} (TLS)"
    );
    Owned(child)
}

/// Stops the broker the way a service manager does (SIGTERM: it saves its
/// sessions), and waits for it.
fn stop(mut broker: Owned) {
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(broker.0.id().to_string())
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM mosquitto");
    let _ = broker.0.wait();
}

/// What arrived: `(gateway, id, revision)` of each message, and how many
/// messages in all.
#[derive(Default)]
struct Received {
    keys: BTreeSet<(String, String, u64)>,
    messages: usize,
    bad: Vec<String>,
}

fn key_of(v: &serde_json::Value) -> Option<(String, String, u64)> {
    Some((
        v["gateway"].as_str()?.to_string(),
        v["id"].as_str()?.to_string(),
        v["revision"].as_u64()?,
    ))
}

/// `mosquitto_sub` on `PREFIX/alerts` with a persistent session at QoS 1.
fn subscriber(port: u16, prefix: &str, got: Arc<Mutex<Received>>) -> Owned {
    let topic = format!("{prefix}/alerts");
    let id = format!("exports-test-{prefix}");
    let mut child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", &topic, "-q", "1", "-c", "-i", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub runs");
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut g = got.lock().expect("lock");
            g.messages += 1;
            match serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .as_ref()
                .and_then(key_of)
            {
                Some(k) => {
                    g.keys.insert(k);
                }
                None => g.bad.push(line),
            }
        }
    });
    Owned(child)
}

/// A webhook receiver: answers 503 to the first `refuse` requests, then 200;
/// checks each body's signature (ring's HMAC-SHA256 with the shared secret).
fn receiver(refuse: usize, got: Arc<Mutex<Received>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    std::thread::spawn(move || {
        let mut seen = 0usize;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers: HashMap<String, String> = HashMap::new();
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            seen += 1;
            let status = if seen <= refuse {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if seen <= refuse {
                continue;
            }
            let mut g = got.lock().expect("lock");
            g.messages += 1;
            let signed = headers
                .get("x-lookout-signature-256")
                .and_then(|s| s.strip_prefix("sha256="))
                .and_then(|hex| {
                    (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .is_some_and(|tag| ring::hmac::verify(&key, &body, &tag).is_ok());
            let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
            match (signed, parsed.as_ref().and_then(key_of)) {
                (true, Some(k)) => {
                    g.keys.insert(k);
                }
                (s, _) => g.bad.push(format!(
                    "signature ok: {s}: {}",
                    String::from_utf8_lossy(&body)
                )),
            }
        }
    });
    port
}

fn raise(gw: &Proc, id: &str) {
    post(gw, id, "active");
}

/// Raises (`active`) or clears an external alert through the gateway's API.
fn post(gw: &Proc, id: &str, state: &str) {
    let body = format!(
        r#"{{"id":"{id}","camera":"gauge-bridge-3","label":"flood","source":"gauge-17","severity":"critical","score":0.97,"state":"{state}"}}"#
    );
    let (status, reply) =
        http(&gw.http, "POST", "/api/alerts", Some(&body), &[]).expect("the gateway answers");
    assert!(
        status == 201 || status == 200,
        "POST {id} {state}: {status} {reply}"
    );
}

/// `(gateway, id, revision)` of every alert in the ledger.
fn ledger(center: &Proc) -> BTreeSet<(String, String, u64)> {
    center.get("/api/alerts?limit=10000")["alerts"]
        .as_array()
        .map(|a| a.iter().filter_map(key_of).collect())
        .unwrap_or_default()
}

fn exports_idle(center: &Proc) -> bool {
    center.get("/api/exports")["exports"]
        .as_array()
        .is_some_and(|e| e.len() == 3 && e.iter().all(|x| x["backlog"] == 0))
}

#[test]
fn every_alert_event_reaches_mqtt_and_a_webhook_through_outages_and_a_killed_center() {
    if !have("mosquitto") || !have("mosquitto_sub") {
        panic!("mosquitto and mosquitto_sub are needed (cargo xtask setup installs them)");
    }
    let procs::Setup {
        dir,
        center_config,
        gateway_config,
    } = procs::setup();
    let mqtt_port = free_tcp_port();
    let mqtts_port = free_tcp_port();
    let pki = dir.path().join("certs");
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).expect("broker dir");
    let secret = dir.path().join("webhook.secret");
    procs::write_secret(&secret, SECRET);
    let hooks = Arc::new(Mutex::new(Received::default()));
    let hook_port = receiver(3, hooks.clone());
    let mut config = std::fs::read_to_string(&center_config).expect("center config");
    config.push_str(&format!(
        "\n[[export]]\nid = \"broker\"\nkind = \"mqtt\"\nurl = \"mqtt://127.0.0.1:{mqtt_port}\"\n\
         timeout_s = 3\n\n\
         [[export]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{hook_port}/lookout\"\n\
         secret_file = \"{}\"\nconcurrency = 2\ntimeout_s = 3\n\n\
         [[export]]\nid = \"broker-v5-tls\"\nkind = \"mqtt\"\nurl = \"mqtts://127.0.0.1:{mqtts_port}\"\n\
         mqtt_version = \"5\"\nca = \"{}\"\ntopic_prefix = \"lookout5\"\ntimeout_s = 3\n",
        secret.display(),
        pki.join("ca.pem").display(),
    ));
    std::fs::write(&center_config, config).expect("write center config");

    let mut mosquitto = broker(mqtt_port, mqtts_port, &broker_dir, &pki);
    let mqtt = Arc::new(Mutex::new(Received::default()));
    let _sub = subscriber(mqtt_port, "lookout", mqtt.clone());
    // The MQTT 5 export over TLS, read on the same broker.
    let mqtt5 = Arc::new(Mutex::new(Received::default()));
    let _sub5 = subscriber(mqtt_port, "lookout5", mqtt5.clone());
    let mut center = start_center(&center_config);
    let gw = Proc::start(
        &["run", "--config"],
        &gateway_config,
        "lookout gateway running",
    );

    // 1. Everything up.
    for i in 0..5 {
        raise(&gw, &format!("up-{i}"));
    }
    // 2. The broker down: events wait in the ledger's log. Two alerts are
    //    cleared, a second event (revision 2) of an alert already exported.
    assert!(wait(Duration::from_secs(20), || ledger(&center).len() == 5));
    stop(mosquitto);
    for i in 0..5 {
        raise(&gw, &format!("broker-down-{i}"));
    }
    post(&gw, "up-0", "cleared");
    assert!(wait(Duration::from_secs(20), || ledger(&center).len() == 10));
    post(&gw, "broker-down-0", "cleared");
    assert!(
        wait(Duration::from_secs(20), || ledger(&center).len() == 10),
        "the ledger: {:?}",
        ledger(&center)
    );
    // 3. The center killed (SIGKILL) with a backlog; alerts raised meanwhile,
    //    then the gateway killed too (they wait in its outbox); both started
    //    again.
    center.kill();
    for i in 0..5 {
        raise(&gw, &format!("center-down-{i}"));
    }
    gw.kill();
    // Held to the end: it delivers what its outbox kept.
    let _gateway_again = Proc::start(
        &["run", "--config"],
        &gateway_config,
        "lookout gateway running",
    );
    center = start_center(&center_config);
    assert!(
        wait(Duration::from_secs(30), || ledger(&center).len() == 15),
        "the ledger after the restart: {:?}",
        ledger(&center)
    );
    let during = center.get("/api/exports");
    eprintln!("exports with the broker down: {during}");
    let broker_status = during["exports"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["id"] == "broker").cloned())
        .unwrap_or_default();
    assert!(
        broker_status["backlog"].as_u64().unwrap_or(0) > 0 && broker_status["connected"] == false,
        "the broker export should be waiting: {broker_status}"
    );
    // 4. The broker back.
    mosquitto = broker(mqtt_port, mqtts_port, &broker_dir, &pki);
    assert!(
        wait(Duration::from_secs(60), || exports_idle(&center)),
        "exports did not catch up: {}\n{}",
        center.get("/api/exports"),
        center.log()
    );
    // Every event the ledger stored: the first revision (0) of each alert, and
    // revision 1 (cleared) of the two cleared ones, which the ledger now holds.
    let held = ledger(&center);
    let mut want: BTreeSet<(String, String, u64)> = held
        .iter()
        .map(|(g, id, _)| (g.clone(), id.clone(), 0))
        .collect();
    for id in ["up-0", "broker-down-0"] {
        let cleared = ("gw-1".to_string(), id.to_string(), 1);
        assert!(
            held.contains(&cleared),
            "{id} not cleared in the ledger: {held:?}"
        );
        want.insert(cleared);
    }
    assert_eq!(want.len(), 17);
    assert!(
        wait(Duration::from_secs(20), || mqtt.lock().expect("lock").keys
            == want),
        "mosquitto_sub got {:?}\nthe ledger holds {want:?}",
        mqtt.lock().expect("lock").keys
    );
    assert!(
        wait(Duration::from_secs(20), || mqtt5.lock().expect("lock").keys
            == want),
        "MQTT 5 over TLS: mosquitto_sub got {:?}\nthe ledger holds {want:?}",
        mqtt5.lock().expect("lock").keys
    );
    let m = mqtt.lock().expect("lock");
    let h = hooks.lock().expect("lock");
    assert!(m.bad.is_empty(), "unreadable MQTT messages: {:?}", m.bad);
    assert!(h.bad.is_empty(), "bad webhook deliveries: {:?}", h.bad);
    assert_eq!(h.keys, want, "the webhook receiver's alerts");
    eprintln!(
        "{} alert events: MQTT {} messages, webhook {} accepted (after 3 refused)",
        want.len(),
        m.messages,
        h.messages
    );
    // The metrics say the same.
    let metrics = center.metrics();
    assert!(
        metrics.contains("lookout_export_backlog_events{export=\"broker\"} 0"),
        "{metrics}"
    );
    assert!(procs::metric(&metrics, "lookout_export_failures_total{export=\"hook\"}") >= 1.0);

    // Every alert as CAP 1.2, read by an independent implementation.
    for (gateway, id, _) in &held {
        let xml = center.text(&format!("/api/gateways/{gateway}/alerts/{id}/cap.xml"));
        let parsed: Result<oasiscap::Alert, _> = xml.parse();
        assert!(
            matches!(parsed, Ok(oasiscap::Alert::V1dot2(_))),
            "{id}: {parsed:?}\n{xml}"
        );
    }
    let feed = center.text("/api/cap.atom");
    assert_eq!(feed.matches("<entry>").count(), 15, "{feed}");
    drop(m);
    drop(h);
    stop(mosquitto);
}

/// A township gateway's own export, without a center: its alert events reach a
/// webhook receiver that refuses at first, through a SIGKILL of the gateway.
#[test]
fn a_gateways_own_export_delivers_every_event_through_a_kill() {
    let procs::Setup {
        dir,
        center_config: _,
        gateway_config,
    } = procs::setup();
    let secret = dir.path().join("webhook.secret");
    procs::write_secret(&secret, SECRET);
    let hooks = Arc::new(Mutex::new(Received::default()));
    let hook_port = receiver(2, hooks.clone());
    let mut config = std::fs::read_to_string(&gateway_config).expect("gateway config");
    config.push_str(&format!(
        "\n[[export]]\nid = \"township-hook\"\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:{hook_port}/lookout\"\nsecret_file = \"{}\"\ntimeout_s = 3\n",
        secret.display()
    ));
    std::fs::write(&gateway_config, config).expect("write gateway config");

    let gw = Proc::start(
        &["run", "--config"],
        &gateway_config,
        "lookout gateway running",
    );
    for i in 0..3 {
        raise(&gw, &format!("gw-{i}"));
    }
    post(&gw, "gw-0", "cleared");
    raise(&gw, "gw-3");
    // Killed right after: whatever the export had not delivered waits in
    // exports.sqlite3.
    gw.kill();
    let gw = Proc::start(
        &["run", "--config"],
        &gateway_config,
        "lookout gateway running",
    );
    raise(&gw, "gw-4");
    let mut want: BTreeSet<(String, String, u64)> = (0..5)
        .map(|i| ("gw-1".to_string(), format!("gw-{i}"), 0))
        .collect();
    want.insert(("gw-1".to_string(), "gw-0".to_string(), 1));
    assert!(
        wait(Duration::from_secs(60), || hooks.lock().expect("lock").keys
            == want),
        "the receiver got {:?}, want {want:?}\n{}\n{}",
        hooks.lock().expect("lock").keys,
        gw.get("/api/exports"),
        gw.log()
    );
    let h = hooks.lock().expect("lock");
    assert!(h.bad.is_empty(), "bad webhook deliveries: {:?}", h.bad);
    assert!(
        wait(
            Duration::from_secs(10),
            || gw.get("/api/exports")["exports"][0]["backlog"] == 0
        ),
        "{}",
        gw.get("/api/exports")
    );
    eprintln!(
        "gateway export: {} events, {} accepted after 2 refused",
        want.len(),
        h.messages
    );
}
