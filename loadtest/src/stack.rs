//! Orchestration of the stack a benchmark starts (a fleet, a gateway, one
//! or two command centers): the work folder and the certificates, the
//! configurations each process reads, starting each one and waiting until
//! it answers, HTTP to them, and the wait at the end until the gateway has
//! delivered what it took. `run` (`relay`), `soak` and `detect` all start
//! their processes through here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use serde_json::Value;

use crate::fleet::profile::{Mix, Size};
use crate::procs::{self, Proc};
use crate::prom;
use crate::scoring::default_incidents;

/// Creates the work folder and its `logs` folder; returns both, absolute:
/// the configurations written there name files in it, and lookout
/// resolves a relative path against the configuration's own folder.
pub(crate) fn workdir(path: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let workdir =
        std::path::absolute(path).with_context(|| format!("work folder {}", path.display()))?;
    let logs = workdir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    Ok((workdir, logs))
}

/// What removing `path` to start fresh came to: removed, or never there, is
/// fine; anything else (no permission, a busy file) fails the run, since what
/// was left (an old ledger, configuration or certificate) would be read as
/// this run's.
pub(crate) fn removed(result: std::io::Result<()>, path: &Path) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Certificates from a fresh operator CA, as an operator would make them:
/// one per center in `centers` (for 127.0.0.1 and localhost) and the
/// gateway's, `fleet-gw`.
pub(crate) fn make_certs(lookout: &Path, certs: &Path, centers: &[&str]) -> anyhow::Result<()> {
    removed(std::fs::remove_dir_all(certs), certs)?;
    let mut cmd = std::process::Command::new(lookout);
    cmd.args(["certs", "--dir"]).arg(certs);
    for c in centers {
        cmd.arg("--center").arg(format!("{c},127.0.0.1,localhost"));
    }
    let out = cmd
        .args(["--gateway", "fleet-gw"])
        .output()
        .context("running lookout certs")?;
    if !out.status.success() {
        bail!(
            "lookout certs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Writes the gateway's configuration `gw_config` (the fleet's cameras are
/// already in it): HTTP on a free loopback port, fresh storage in
/// `WORKDIR/gateway`, the detector (id, block) if any on keyframes, and an
/// upstream to center `center` at `dial` with `fleet-gw`'s certificate.
/// Returns the HTTP address.
pub(crate) fn gateway_config(
    workdir: &Path,
    gw_config: &Path,
    certs: &Path,
    detector: Option<&(String, String)>,
    dial: &str,
) -> anyhow::Result<String> {
    let gw_dir = workdir.join("gateway");
    removed(std::fs::remove_dir_all(&gw_dir), &gw_dir)?;
    let gw_http = format!("127.0.0.1:{}", free_port()?);
    let mut blocks: Vec<String> = detector.iter().map(|(_, b)| b.clone()).collect();
    blocks.push(upstream_block("center", dial, certs, "fleet-gw"));
    write_gateway_config(
        gw_config,
        &[
            format!("http_listen = \"{gw_http}\""),
            format!("storage = \"{}\"", gw_dir.display()),
        ],
        detector.map(|(id, _)| (id.as_str(), "keyframes")),
        &blocks,
    )?;
    Ok(gw_http)
}

/// HTTP to the gateway and the centers.
pub(crate) struct Http(ureq::Agent);

impl Http {
    /// Each request gives up after `timeout`; `None`: no limit.
    pub(crate) fn new(timeout: Option<Duration>) -> Http {
        Http(
            ureq::Agent::config_builder()
                .timeout_global(timeout)
                .build()
                .into(),
        )
    }

    fn get(&self, url: &str) -> anyhow::Result<String> {
        let mut r = self
            .0
            .get(url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        Ok(r.body_mut().read_to_string()?)
    }

    pub(crate) fn text(&self, url: &str) -> Option<String> {
        self.get(url).ok()
    }

    /// `POST url` without a body (an action such as the center's latency
    /// reset); the answer as JSON, `None` when there is none.
    pub(crate) fn post_json(&self, url: &str) -> Option<Value> {
        let mut r = self.0.post(url).send_empty().ok()?;
        serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
    }

    pub(crate) fn json(&self, url: &str) -> Option<Value> {
        serde_json::from_str(&self.text(url)?).ok()
    }

    /// A metric's sum, or `None` when the endpoint did not answer.
    pub(crate) fn metric(&self, url: &str, name: &str) -> Option<f64> {
        self.text(url).map(|t| prom::sum(&t, name))
    }

    /// The length of the array `key` of a JSON answer.
    pub(crate) fn count(&self, url: &str, key: &str) -> Option<u64> {
        Some(self.json(url)?[key].as_array()?.len() as u64)
    }

    fn required_json(&self, url: &str) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&self.get(url)?)?)
    }
}

/// What the gateway and the center hold once the run is over.
pub(crate) struct EndOfRun {
    /// The gateway's `/metrics` text at the end, also kept in
    /// `gateway-metrics.txt` in the work folder.
    pub gw_metrics: String,
    /// The center's `/metrics` text at the end, also kept in
    /// `center-metrics.txt` in the work folder.
    pub center_metrics: String,
    /// The gateway's `GET /api/alerts?limit=1000` answer: the alerts it raised.
    pub gw_alerts: Value,
    /// The center's `GET /api/alerts?limit=10000` answer: its ledger's records.
    pub ledger: Value,
}

/// The end of a run, once the cameras have stopped: what the gateway
/// already took must reach the center (alerts acknowledged, frames
/// delivered). Waits, 20 s at the most, until the gateway's outbox is empty
/// and the center has every frame the gateway relayed (or stopped getting
/// more), then reads both sides.
pub(crate) fn drain(
    http: &Http,
    workdir: &Path,
    gw_http: &str,
    center_http: &str,
) -> anyhow::Result<EndOfRun> {
    let gw_metrics = format!("http://{gw_http}/metrics");
    let center_metrics = format!("http://{center_http}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last_frames = -1.0;
    loop {
        let pending = http
            .json(&format!("http://{gw_http}/api/upstreams"))
            .and_then(|u| u["upstreams"][0]["outbox_pending"].as_u64())
            .unwrap_or(1);
        let sent = http
            .metric(&gw_metrics, "lookout_relay_frames_total")
            .unwrap_or(0.0);
        let got = http
            .metric(&center_metrics, "lookout_center_frames_total")
            .unwrap_or(0.0);
        let settled = pending == 0 && (got >= sent || got == last_frames);
        last_frames = got;
        if settled || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let gw_metrics = http.text(&gw_metrics).unwrap_or_default();
    let center_metrics = http.text(&center_metrics).unwrap_or_default();
    // Copies for whoever digs into a run; the report is made from the texts in
    // memory, so a failed write loses only the copy, and is said.
    for (name, text) in [
        ("gateway-metrics.txt", &gw_metrics),
        ("center-metrics.txt", &center_metrics),
    ] {
        let path = workdir.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("drain: writing {}: {e}", path.display());
        }
    }
    let gw_alerts = http
        .required_json(&format!("http://{gw_http}/api/alerts?limit=1000"))
        .context("reading the gateway's alerts")?;
    let ledger = http
        .required_json(&format!("http://{center_http}/api/alerts?limit=10000"))
        .context("reading the center's ledger")?;
    Ok(EndOfRun {
        gw_metrics,
        center_metrics,
        gw_alerts,
        ledger,
    })
}

/// The fleet part of a benchmark run.
pub(crate) struct FleetRun {
    /// Cameras (split 3:2:2:1 towers:drones:bodycams:fixed) unless `mix` is given.
    pub cameras: usize,
    /// Cameras per kind, e.g. `towers=24,drones=16`; overrides `cameras`.
    pub mix: Option<String>,
    /// Picture size, `full` or `small`.
    pub size: String,
    /// Folder of encoded clips (made once, reused).
    pub cache: PathBuf,
    /// `None`: `default_incidents`: two 12 s incidents per camera, one of each class.
    pub incidents: Option<String>,
    /// The run's length: the fleet stops by itself 120 s after it, and default incidents must fit
    /// in it.
    pub duration: Duration,
}

/// The camera ids the fleet gives `cameras` (or `mix`) of `size`: it names
/// its cameras by plan, so this asks the same plan.
pub(crate) fn planned_ids(
    cameras: usize,
    mix: Option<&str>,
    size: &str,
) -> anyhow::Result<Vec<String>> {
    let mix = Mix::parse(cameras, mix)?;
    let size = if size == "small" {
        Size::Small
    } else {
        Size::Full
    };
    Ok(crate::fleet::plan(&mix, size, false)
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Starts `lookout-loadtest fleet` on a free port with the incidents, and
/// waits until it serves. Returns it, the gateway configuration it wrote
/// for its cameras, its ground-truth file, and when it started serving.
pub(crate) fn start_fleet(
    run: &FleetRun,
    workdir: &Path,
) -> anyhow::Result<(Proc, PathBuf, PathBuf, Instant)> {
    let me = std::env::current_exe().context("locating lookout-loadtest")?;
    let gw_config = workdir.join("gateway.toml");
    let ground_truth = workdir.join("ground-truth.json");
    removed(std::fs::remove_file(&gw_config), &gw_config)?;
    let mut fleet_args: Vec<String> = vec![
        "fleet".into(),
        "--port".into(),
        "0".into(),
        "--size".into(),
        run.size.clone(),
        "--cache".into(),
        run.cache.display().to_string(),
        "--emit-gateway-config".into(),
        gw_config.display().to_string(),
        "--ground-truth".into(),
        ground_truth.display().to_string(),
        "--duration-s".into(),
        format!("{}", run.duration.as_secs_f64() + 120.0),
    ];
    match &run.mix {
        Some(m) => fleet_args.extend(["--mix".into(), m.clone()]),
        None => fleet_args.extend(["--cameras".into(), run.cameras.to_string()]),
    }
    let incidents = match &run.incidents {
        Some(s) => s.clone(),
        None => {
            let ids = planned_ids(run.cameras, run.mix.as_deref(), &run.size)?;
            default_incidents(&ids, run.duration.as_secs_f64())
        }
    };
    if !incidents.is_empty() {
        fleet_args.extend(["--incidents".into(), incidents.clone()]);
    }
    println!("fleet: incidents {incidents}");
    let mut fleet = Proc::start(
        "fleet",
        &me,
        &fleet_args,
        &workdir.join("logs").join("fleet.log"),
    )?;
    procs::wait_for_log(&mut fleet, "fleet: serving", Duration::from_secs(900))?;
    Ok((fleet, gw_config, ground_truth, Instant::now()))
}

/// Starts `lookout run` on `config` and waits for its API on `http`;
/// returns it and how many cameras the file lists.
pub(crate) fn start_gateway(
    lookout: &Path,
    config: &Path,
    logs: &Path,
    http: &str,
) -> anyhow::Result<(Proc, usize)> {
    let mut gateway = Proc::start(
        "gateway",
        lookout,
        &[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &logs.join("gateway.log"),
    )?;
    procs::wait_http_ok(
        &format!("http://{http}/healthz"),
        Duration::from_secs(60),
        &mut gateway,
    )?;
    let cameras = std::fs::read_to_string(config)
        .map(|t| t.lines().filter(|l| *l == "[[camera]]").count())
        .unwrap_or(0);
    Ok((gateway, cameras))
}

/// Completes the gateway configuration the fleet wrote: `gateway_lines`
/// go into `[gateway]`, every camera gets the detector (id, sampling) if
/// given, and `blocks` (TOML tables) are appended.
pub(crate) fn write_gateway_config(
    path: &Path,
    gateway_lines: &[String],
    detector: Option<(&str, &str)>,
    blocks: &[String],
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cfg = String::new();
    for line in text.lines() {
        cfg.push_str(line);
        cfg.push('\n');
        if line == "id = \"fleet-gw\"" {
            for l in gateway_lines {
                cfg.push_str(l);
                cfg.push('\n');
            }
        }
        if let Some((id, sampling)) = detector
            && line.starts_with("kind = \"")
        {
            cfg.push_str(&format!(
                "detectors = [\"{id}\"]\nsampling = \"{sampling}\"\n"
            ));
        }
    }
    for b in blocks {
        cfg.push('\n');
        cfg.push_str(b);
    }
    std::fs::write(path, cfg).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `WORKDIR/ID.toml` for a center named `id` (its certificate
/// `ID.pem` from `certs`, a fresh ledger in `WORKDIR/ID/`, QUIC and HTTP on
/// free loopback ports) with `extra` lines after `[center]`'s keys; returns
/// the file, the QUIC port and the HTTP address.
pub(crate) fn center_config(
    workdir: &std::path::Path,
    certs: &std::path::Path,
    id: &str,
    extra: &str,
) -> anyhow::Result<(PathBuf, u16, String)> {
    let storage = workdir.join(id);
    removed(std::fs::remove_dir_all(&storage), &storage)?;
    let quic_port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let http = format!("127.0.0.1:{}", free_port()?);
    let path = workdir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "[center]\nid = \"{id}\"\nlisten = \"127.0.0.1:{quic_port}\"\nhttp_listen = \"{http}\"\nstorage = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
            storage.display(),
            certs.join("ca.pem").display(),
            certs.join(format!("{id}.pem")).display(),
            certs.join(format!("{id}.key")).display(),
        ),
    )?;
    Ok((path, quic_port, http))
}

/// An `[[upstream]]` entry dialling center `id` at `address` with the
/// certificate `NAME.pem` from `certs`.
pub(crate) fn upstream_block(
    id: &str,
    address: &str,
    certs: &std::path::Path,
    name: &str,
) -> String {
    format!(
        "\n[[upstream]]\nid = \"{id}\"\naddress = \"{address}\"\nserver_name = \"{id}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.join("ca.pem").display(),
        certs.join(format!("{name}.pem")).display(),
        certs.join(format!("{name}.key")).display(),
    )
}

pub(crate) fn start_center(
    lookout: &std::path::Path,
    config: &std::path::Path,
    log: &std::path::Path,
    http: &str,
) -> anyhow::Result<Proc> {
    let mut center = Proc::start(
        "center",
        lookout,
        &[
            "center".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        log,
    )?;
    procs::wait_http_ok(
        &format!("http://{http}/healthz"),
        Duration::from_secs(30),
        &mut center,
    )?;
    Ok(center)
}

/// The first `[[detector]]` of a gateway config file, with its model path
/// made absolute (it moves into the generated config), as TOML text; and its
/// id.
pub(crate) fn detector_block(path: &Path) -> anyhow::Result<(String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let dir = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let v: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut d = v
        .get("detector")
        .and_then(|d| d.as_array())
        .and_then(|a| a.first())
        .and_then(|d| d.as_table())
        .cloned()
        .with_context(|| format!("{}: no [[detector]] entry", path.display()))?;
    let id = d
        .get("id")
        .and_then(|i| i.as_str())
        .with_context(|| format!("{}: the [[detector]] has no id", path.display()))?
        .to_string();
    if let Some(model) = d.get("model").and_then(|m| m.as_str()) {
        let abs = dir.join(model);
        d.insert(
            "model".into(),
            toml::Value::String(abs.display().to_string()),
        );
    }
    let mut root = toml::Table::new();
    root.insert(
        "detector".into(),
        toml::Value::Array(vec![toml::Value::Table(d)]),
    );
    Ok((id, toml::to_string(&root)?))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn get_json(url: &str) -> anyhow::Result<Value> {
    let mut r = ureq::get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let text = r.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&text)?)
}

/// The camera ids in a gateway config, in order.
pub(crate) fn camera_ids(config: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(config)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("camera").and_then(|c| c.as_array()).cloned())
        .map(|cams| {
            cams.iter()
                .filter_map(|c| c.get("id")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Cameras per kind in a gateway configuration (every kind, 0 for one it
/// lacks), as the reports' `setup.mix` writes them.
/// How many lines of the gateway configuration `gw_config` begin with `prefix`.
fn lines_starting(gw_config: &std::path::Path, prefix: &str) -> usize {
    std::fs::read_to_string(gw_config)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim().starts_with(prefix))
        .count()
}

/// How many cameras in the gateway configuration `gw_config` push over RTMP.
pub(crate) fn pushed_rtmp_count(gw_config: &std::path::Path) -> usize {
    lines_starting(gw_config, "push = { protocol = \"rtmp\"")
}

/// How many cameras in the gateway configuration `gw_config` are GB/T 28181 channels.
pub(crate) fn gb28181_count(gw_config: &std::path::Path) -> usize {
    lines_starting(gw_config, "gb28181 = {")
}

pub(crate) fn mix_counts(gw_config: &std::path::Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(gw_config).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for kind in ["tower", "drone", "bodycam", "fixed"] {
        let n = text
            .lines()
            .filter(|l| l.trim() == format!("kind = \"{kind}\""))
            .count();
        counts.insert(kind.to_string(), n);
    }
    counts
}
