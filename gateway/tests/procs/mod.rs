//! Real `lookout` processes for the end-to-end tests (`lookout center`,
//! `lookout run`, `lookout certs`): started with a config file, their logs
//! collected, the addresses their start line announces, and a small HTTP
//! client for their APIs. Killing one is `SIGKILL` (`Child::kill`), the
//! crash a power cut or the OOM killer causes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn lookout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
}

/// `lookout certs --dir DIR ARGS…`, which must succeed.
pub fn certs(dir: &Path, args: &[&str]) {
    let out = lookout()
        .arg("certs")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("lookout certs runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a command center's configuration to `path`: QUIC on `listen`, the HTTP API on
/// a free loopback port, data under `storage`, the operator CA and the `center`
/// certificate from `pki` (`lookout certs`).
pub fn center_config(path: &Path, listen: &str, storage: &Path, pki: &Path) {
    std::fs::write(
        path,
        format!(
            "[center]\nid = \"center\"\nlisten = \"{listen}\"\nhttp_listen = \"127.0.0.1:0\"\n\
             storage = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            storage.display(),
            pki.join("ca.pem").display(),
            pki.join("center.pem").display(),
            pki.join("center.key").display(),
        ),
    )
    .expect("write center config");
}

/// Writes a gateway configuration to `path`: gateway `id`, data under `storage`, the
/// HTTP API on a free loopback port, and one upstream `center` at `quic` reached with the
/// operator CA and the certificate `cert` from `pki` (`lookout certs`).
pub fn gateway_config(path: &Path, id: &str, storage: &Path, quic: &str, pki: &Path, cert: &str) {
    std::fs::write(
        path,
        format!(
            "[gateway]\nid = \"{id}\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\n\
             [[upstream]]\nid = \"center\"\naddress = \"{quic}\"\nserver_name = \"center\"\n\
             ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            storage.display(),
            pki.join("ca.pem").display(),
            pki.join(format!("{cert}.pem")).display(),
            pki.join(format!("{cert}.key")).display(),
        ),
    )
    .expect("write gateway config");
}

/// A `lookout` process whose output is collected, and the addresses its
/// start line announced.
pub struct Proc {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    pub http: String,
    pub quic: Option<String>,
}

impl Proc {
    /// Starts `lookout ARGS… CONFIG` and waits (≤ 15 s) for a log line
    /// containing `ready`.
    pub fn start(args: &[&str], config: &Path, ready: &str) -> Proc {
        Proc::start_logging(args, config, ready, "info")
    }

    /// [`Proc::start`] with `RUST_LOG` set to `filter` (`info,lookout=debug`
    /// to see the debug lines too).
    pub fn start_logging(args: &[&str], config: &Path, ready: &str, filter: &str) -> Proc {
        let mut child = lookout()
            .args(args)
            .arg(config)
            .env("RUST_LOG", filter)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("lookout runs");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let l = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    l.lock().expect("log").push(line);
                }
            });
        }
        let start = Instant::now();
        let line = loop {
            let found = log
                .lock()
                .expect("log")
                .iter()
                .find(|l| l.contains(ready))
                .cloned();
            if let Some(l) = found {
                break l;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "did not start: {:?}",
                log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        Proc {
            child,
            log,
            http: field("http=").expect("http= in the start line"),
            quic: field("quic="),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (not exited, not crashed).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The QUIC address the start line announced.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic
            .as_deref()
            .expect("quic= in the start line")
            .parse()
            .expect("a socket address")
    }

    /// `GET path`, which must answer 200; the body as JSON (or a string).
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None, &[]).expect("API answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Any request; `None` when the connection fails or breaks (the process
    /// is gone). Headers are extra lines such as `Origin: …`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&str>,
        headers: &[&str],
    ) -> Option<(u16, Value)> {
        http(&self.http, method, path, json, headers)
    }

    /// `GET path` with extra header lines (a token), which must answer
    /// 200; the body as text.
    pub fn text_with(&self, path: &str, header: &str) -> String {
        let (status, body) = self
            .request("GET", path, None, &[header])
            .expect("API answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        match body {
            Value::String(s) => s,
            v => v.to_string(),
        }
    }

    pub fn text(&self, path: &str) -> String {
        match self.get(path) {
            Value::String(s) => s,
            v => v.to_string(),
        }
    }

    /// The Prometheus exposition at `/metrics`.
    pub fn metrics(&self) -> String {
        self.text("/metrics")
    }

    /// The value of one Prometheus series (`name{labels}` exactly as
    /// printed), 0 when it does not exist yet.
    pub fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics(), series)
    }

    pub fn logged(&self, text: &str) -> bool {
        self.lines(text) > 0
    }

    /// Log lines containing every one of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }

    /// How many log lines contain `text`.
    /// The SIP port a gateway with `[gateway.gb28181] sip_listen = "127.0.0.1:0"`
    /// bound, from its log.
    pub fn sip_port(&self) -> u16 {
        self.lines_with(&["GB/T 28181 SIP listening", "sip=127.0.0.1:"])
            .first()
            .and_then(|l| l.split("sip=127.0.0.1:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no SIP port in the log:\n{}", self.log()))
    }

    pub fn lines(&self, text: &str) -> usize {
        self.lines_with(&[text]).len()
    }

    /// Resident memory and open file descriptors, from /proc.
    pub fn usage(&self) -> Usage {
        Usage::of(self.pid())
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request to `addr` (ureq); the status and the body (JSON when it parses).
/// `headers` are extra header lines such as `Origin: …`. `None` when the connection
/// fails or breaks (the process is gone).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    headers: &[&str],
) -> Option<(u16, Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for h in headers {
        let (name, value) = h.split_once(':').expect("a header line `Name: value`");
        request = request.header(name.trim(), value.trim());
    }
    let response = match json {
        Some(body) => agent.run(
            request
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .ok()?,
        ),
        None => agent.run(request.body(()).ok()?),
    };
    let mut response = response.ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().ok()?;
    Some((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}

/// Polls `check` every 50 ms until it holds or `limit` passes (then once
/// more).
pub fn wait(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// One series' value in a Prometheus exposition, 0 when it is absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A process's resident memory and open files.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: usize,
}

impl Usage {
    pub fn of(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        Usage { rss_kib, fds }
    }

    /// CPU time the process has used (user + system), in seconds.
    pub fn cpu_seconds(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime, fields 14 and 15 of stat(5); USER_HZ is 100.
        (ticks(11) + ticks(12)) / 100.0
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// A UDP port on loopback that was free a moment ago (for a center that
/// must come back on the same address after a restart).
/// Writes a secret file (a password, one line) readable by its owner only, as the
/// gateway requires.
pub fn write_secret(path: &Path, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{secret}\n")).expect("secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A TCP port on loopback that nothing listens on.
pub fn refused_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// A center and a one-camera gateway relaying to it, configured in a
/// temporary folder (certificates made by `lookout certs`).
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub center_config: PathBuf,
    pub gateway_config: PathBuf,
}

pub fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("certs");
    certs(&ca, &["--center", "center,127.0.0.1", "--gateway", "gw-1"]);
    let quic = format!("127.0.0.1:{}", free_udp_port());
    let center_config = dir.path().join("center.toml");
    self::center_config(&center_config, &quic, &dir.path().join("center-data"), &ca);
    // The camera exists only so alerts can name it: nothing listens there, so
    // the gateway sends no video.
    let gateway_config = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_config,
        format!(
            "[gateway]\nid = \"gw-1\"\nhttp_listen = \"127.0.0.1:0\"\nstorage = \"{}\"\n\n\
             [[camera]]\nid = \"gauge-bridge-3\"\nkind = \"fixed\"\nurl = \"rtsp://127.0.0.1:{}/x\"\n\n\
             [[upstream]]\nid = \"center\"\naddress = \"{quic}\"\nserver_name = \"center\"\n\
             ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.path().join("gateway-data").display(),
            refused_tcp_port(),
            ca.join("ca.pem").display(),
            ca.join("gw-1.pem").display(),
            ca.join("gw-1.key").display(),
        ),
    )
    .expect("write gateway config");
    Setup {
        dir,
        center_config,
        gateway_config,
    }
}

pub fn start_center(config: &Path) -> Proc {
    Proc::start(&["center", "--config"], config, "lookout center running")
}
