//! GB/T 28181 registration against a SIP peer no one here wrote: SIPp (Debian
//! `sip-tester`, installed by `cargo xtask setup`) plays a device from the scenarios in
//! `tests/sipp/`. With the configured password it registers after the 401 digest
//! challenge, answers the catalog query lookout sends and keeps alive; lookout lists it
//! online with both channels. With a wrong password it gets 403, never 200, and the
//! refusal is counted.

mod procs;

use std::path::Path;
use std::process::Command;

use procs::{Proc, free_udp_port, wait};
use serde_json::Value;

const PLATFORM: &str = "34020000002000000001";
const DOMAIN: &str = "3402000000";
const PASSWORD: &str = "tower-s3cret";

/// Runs SIPp as device `device` with `scenario` against `sip` (UDP); its exit status
/// and its error log.
fn sipp(dir: &Path, scenario: &str, device: &str, password: &str, sip: u16) -> (bool, String) {
    let inf = dir.join(format!("{device}.csv"));
    std::fs::write(&inf, format!("SEQUENTIAL\n{device};{PLATFORM};{DOMAIN};\n")).expect("inf");
    let errors = dir.join(format!("{device}-errors.log"));
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{sip}"))
        .arg("-sf")
        .arg(&scenario)
        .arg("-oocsf")
        .arg(scenario.with_file_name("catalog_answer.xml"))
        .arg("-inf")
        .arg(&inf)
        .args(["-au", device, "-ap", password])
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args(["-m", "1", "-timeout", "20s", "-timeout_error", "-trace_err"])
        .arg("-error_file")
        .arg(&errors)
        .output()
        .expect("sipp runs (Debian sip-tester; `cargo xtask setup` installs it)");
    let log = format!(
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    (out.status.success(), log)
}

fn device(gw: &Proc, id: &str) -> Option<Value> {
    gw.get("/api/gb28181/devices")["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["id"] == id).cloned())
}

#[test]
fn sipp_registers_with_digest_answers_the_catalog_and_keeps_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("gb-password");
    procs::write_secret(&secret, PASSWORD);
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\n\
             [gateway.gb28181]\nsip_listen = \"127.0.0.1:0\"\nid = \"{PLATFORM}\"\n\
             domain = \"{DOMAIN}\"\npassword_file = \"{}\"\n\n\
             [[gateway.gb28181.adopt]]\ndevice = \"34020000001320000001\"\nkind = \"tower\"\n\
             group = \"forestry\"\n",
            dir.path().join("data").display(),
            secret.display()
        ),
    )
    .expect("config");
    let gw = Proc::start(&["run", "--config"], &config, "lookout gateway running");
    let sip = gw.sip_port();

    let good = "34020000001320000001";
    let (ok, log) = sipp(dir.path(), "device.xml", good, PASSWORD, sip);
    assert!(
        ok,
        "SIPp's device scenario failed:\n{log}\ngateway:\n{}",
        gw.log()
    );
    let d = device(&gw, good).unwrap_or_else(|| panic!("{good} not listed:\n{}", gw.log()));
    assert_eq!(d["status"], "online", "{d}");
    assert_eq!(d["catalog_total"], 2, "{d}");
    let names: Vec<&str> = d["channels"]
        .as_array()
        .map(|c| c.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["north tower visible", "north tower thermal"], "{d}");
    assert!(d["last_keepalive_unix_ms"].as_u64().is_some(), "{d}");
    assert!(gw.metric("lookout_gb28181_devices_online") >= 1.0);

    // The adopt rule makes both channels of the catalog cameras, named as the catalog
    // names them, with the rule's kind and group.
    let adopted = || -> Vec<Value> {
        gw.get("/api/cameras")["cameras"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|x| x["id"].as_str().is_some_and(|id| id.starts_with("gb-")))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        wait(std::time::Duration::from_secs(10), || adopted().len() == 2),
        "the catalog's channels were not adopted: {:?}\n{}",
        adopted(),
        gw.log()
    );
    let cams = adopted();
    let by_id = |id: &str| {
        cams.iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let visible = by_id("gb-34020000001310000001");
    assert_eq!(visible["name"], "north tower visible", "{visible}");
    assert_eq!(visible["kind"], "tower", "{visible}");
    assert_eq!(visible["group"], "forestry", "{visible}");
    assert_eq!(
        by_id("gb-34020000001310000002")["name"],
        "north tower thermal"
    );

    // The wrong password: 403 (the scenario fails on a 200), counted, never online.
    let bad = "34020000001320000009";
    let (ok, log) = sipp(
        dir.path(),
        "wrong_password.xml",
        bad,
        "not-the-password",
        sip,
    );
    assert!(ok, "SIPp's wrong-password scenario did not get 403:\n{log}");
    assert!(device(&gw, bad).is_none_or(|d| d["status"] != "online"));
    assert!(
        gw.metric("lookout_gb28181_refused_total{reason=\"wrong_password\"}") >= 1.0,
        "{}",
        gw.metrics()
    );
    assert!(!gw.logged(PASSWORD), "the password was logged");
    assert!(
        !gw.logged("not-the-password"),
        "a device's wrong password was logged"
    );

    // The registered device stays listed while SIPp (gone now) would have to keep alive.
    assert!(wait(std::time::Duration::from_secs(2), || device(
        &gw, good
    )
    .is_some()));
    gw.kill();
}

/// Writes a capture (pcap, Ethernet) of `stream` cut into RTP packets of PS (payload
/// type 96, 1,400 bytes each, SSRC 0100000001 as the scenario's `y=` says), spread
/// evenly over `seconds`, loopback to loopback.
fn write_pcap(path: &Path, stream: &[u8], seconds: f64) {
    let chunks: Vec<&[u8]> = stream.chunks(1400).collect();
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone, accuracy, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, chunk) in chunks.iter().enumerate() {
        let t = seconds * i as f64 / chunks.len() as f64;
        let mut rtp = vec![0x80, 96];
        rtp.extend_from_slice(&(i as u16).to_be_bytes());
        rtp.extend_from_slice(&((t * 90_000.0) as u32).to_be_bytes());
        rtp.extend_from_slice(&100_000_001u32.to_be_bytes());
        rtp.extend_from_slice(chunk);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&(ip_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        frame.extend_from_slice(&40_000u16.to_be_bytes());
        frame.extend_from_slice(&40_002u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        out.extend_from_slice(&(t as u32).to_le_bytes());
        out.extend_from_slice(&(((t.fract()) * 1e6) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).expect("pcap");
}

const DEVICE: &str = "34020000001320000001";
const CHANNEL: &str = "34020000001310000001";

/// A gateway with the SIP side and one camera, channel [`CHANNEL`] of [`DEVICE`].
fn gb_gateway(dir: &Path) -> Proc {
    let secret = dir.join("gb-password");
    procs::write_secret(&secret, PASSWORD);
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\
             stall_timeout_ms = 3000\n\n\
             [gateway.gb28181]\nsip_listen = \"127.0.0.1:0\"\nid = \"{PLATFORM}\"\n\
             domain = \"{DOMAIN}\"\npassword_file = \"{}\"\n\n\
             [[camera]]\nid = \"bodycam-gb\"\nkind = \"bodycam\"\n\
             gb28181 = {{ device = \"{DEVICE}\", channel = \"{CHANNEL}\" }}\n",
            dir.join("data").display(),
            secret.display()
        ),
    )
    .expect("config");
    Proc::start(&["run", "--config"], &config, "lookout gateway running")
}

/// The camera as `GET /api/cameras` shows it.
fn gb_camera(gw: &Proc) -> Value {
    gw.get("/api/cameras")["cameras"]
        .as_array()
        .and_then(|c| c.iter().find(|x| x["id"] == "bodycam-gb").cloned())
        .unwrap_or(Value::Null)
}

/// SIPp as [`DEVICE`], in the background: registers and stays up (`device_play.xml`)
/// while `answers` (its out-of-call scenario) answers the gateway's requests.
fn spawn_device(dir: &Path, answers: &Path, sip: u16) -> std::process::Child {
    let inf = dir.join("device.csv");
    std::fs::write(&inf, format!("SEQUENTIAL\n{DEVICE};{PLATFORM};{DOMAIN};\n")).expect("inf");
    Command::new("sipp")
        .arg(format!("127.0.0.1:{sip}"))
        .arg("-sf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/device_play.xml"))
        .arg("-oocsf")
        .arg(answers)
        .arg("-inf")
        .arg(&inf)
        .args(["-au", DEVICE, "-ap", PASSWORD])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p"])
        .arg(free_udp_port().to_string())
        .args(["-m", "1", "-timeout", "30s", "-trace_err"])
        .arg("-error_file")
        .arg(dir.join("sipp-errors.log"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp runs (Debian sip-tester; `cargo xtask setup` installs it)")
}

/// Stops SIPp; returns its error log.
fn stop_device(dir: &Path, mut sipp: std::process::Child) -> String {
    if let Err(e) = sipp.kill() {
        eprintln!("sipp: {e}");
    }
    if let Err(e) = sipp.wait() {
        eprintln!("sipp: {e}");
    }
    std::fs::read_to_string(dir.join("sipp-errors.log")).unwrap_or_default()
}

/// A configured channel is played live: SIPp is the device (registers, answers lookout's
/// INVITE with an SDP answer, then sends PS over RTP from a capture of ffmpeg's own
/// Program Stream of an ffmpeg clip to the port lookout offered). The camera goes live
/// with the clip's codec, size and frame rate, over `gb28181-udp`.
#[test]
fn sipp_device_channel_plays_live_video() {
    let dir = tempfile::tempdir().expect("tempdir");
    // ffmpeg's PS (no PSM, 2048-byte packs) of an 8 s 640×360 25 fps H.264 clip.
    let ps = dir.path().join("clip.ps");
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
        ])
        .args(["-i", "testsrc2=size=640x360:rate=25", "-t", "8"])
        .args(["-c:v", "libx264", "-g", "25", "-bf", "0", "-f", "vob", "-y"])
        .arg(&ps)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap = dir.path().join("clip.pcap");
    write_pcap(&pcap, &std::fs::read(&ps).expect("ps"), 8.0);
    let answers = dir.path().join("device_answers.xml");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/device_answers.xml");
    std::fs::write(
        &answers,
        std::fs::read_to_string(template)
            .expect("scenario")
            .replace("@PCAP@", &pcap.display().to_string()),
    )
    .expect("scenario");

    let gw = gb_gateway(dir.path());
    let sip = gw.sip_port();
    let camera = || gb_camera(&gw);
    assert_eq!(camera()["state"], "waiting", "{}", camera());
    let sipp = spawn_device(dir.path(), &answers, sip);
    let live = wait(std::time::Duration::from_secs(15), || {
        let c = camera();
        c["state"] == "live" && c["fps"].as_f64().is_some_and(|f| (f - 25.0).abs() < 2.5)
    });
    let c = camera();
    let errors = stop_device(dir.path(), sipp);
    assert!(
        live,
        "not live at 25 fps within 15 s: {c}\nSIPp:\n{errors}\ngateway:\n{}",
        gw.log()
    );
    assert_eq!(c["codec"], "h264", "{c}");
    assert_eq!(
        (c["width"].as_u64(), c["height"].as_u64()),
        (Some(640), Some(360)),
        "{c}"
    );
    assert_eq!(c["transport"], "gb28181-udp", "{c}");
    // No lookout stamp in ffmpeg's video: capture time from the stream's own clock.
    assert_eq!(c["timestamp_source"], "stream_clock", "{c}");
    assert_eq!(c["malformed_nals"], 0, "{c}");
    assert!(
        gw.metric("lookout_gb28181_invites_total") >= 1.0,
        "{}",
        gw.metrics()
    );
    gw.kill();
}

/// A device that refuses to play (every INVITE answered 486 Busy Here, from SIPp): the
/// camera is `failed` with the SIP status in its `last_error`, the refusal is counted
/// by status, and the gateway keeps retrying rather than giving up.
#[test]
fn a_refused_invite_fails_the_camera_with_the_sip_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gb_gateway(dir.path());
    let sip = gw.sip_port();
    let busy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/device_busy.xml");
    let sipp = spawn_device(dir.path(), &busy, sip);
    let failed = wait(std::time::Duration::from_secs(15), || {
        let c = gb_camera(&gw);
        c["state"] == "failed"
            && c["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("486 Busy Here"))
    });
    let c = gb_camera(&gw);
    let refusals = gw.metric("lookout_gb28181_invite_failed_total{status=\"486\"}");
    // Retried with backoff: a second INVITE after the first wait (1 s, then 2 s).
    let retried = wait(std::time::Duration::from_secs(8), || {
        gw.metric("lookout_gb28181_invite_failed_total{status=\"486\"}") >= 2.0
    });
    let errors = stop_device(dir.path(), sipp);
    assert!(
        failed,
        "not failed with the status: {c}\nSIPp:\n{errors}\ngateway:\n{}",
        gw.log()
    );
    assert!(refusals >= 1.0, "{}", gw.metrics());
    assert!(retried, "no second INVITE: {}", gw.log());
    gw.kill();
}

/// A device that answers the INVITE but whose video never arrives (SIPp sends no RTP,
/// as when a NAT or firewall drops it): after the stall timeout the gateway hangs up
/// and INVITEs again asking for RTP over TCP, and says why.
#[test]
fn a_silent_udp_stream_is_asked_for_again_over_tcp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gb_gateway(dir.path());
    let sip = gw.sip_port();
    let silent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/device_silent.xml");
    let sipp = spawn_device(dir.path(), &silent, sip);
    let tcp = wait(std::time::Duration::from_secs(20), || {
        gb_camera(&gw)["transport"] == "gb28181-tcp"
    });
    let c = gb_camera(&gw);
    let errors = stop_device(dir.path(), sipp);
    assert!(
        tcp,
        "not asked for over TCP: {c}\nSIPp:\n{errors}\ngateway:\n{}",
        gw.log()
    );
    assert!(
        gw.logged("not one RTP packet arrived over UDP"),
        "{}",
        gw.log()
    );
    assert!(gw.logged("asking for RTP over TCP next"), "{}", gw.log());
    assert!(gw.metric("lookout_gb28181_invites_total") >= 2.0);
    gw.kill();
}
