//! What `run` (`relay.rs`) and `soak` (`soak.rs`) share around the stack
//! they start (a fleet, a command center and a gateway relaying to it):
//! the work folder and the certificates, the gateway's configuration, HTTP
//! to the processes, the wait at the end until the gateway has delivered
//! what it took, the center's ledger checked against the gateway's alerts,
//! and writing the report.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use crate::detect::{
    Percentiles, Score, SeenAlert, free_port, histogram, metric_sum, percentiles, score,
    write_gateway_config,
};
use crate::fleet::incidents::Onset;
use crate::relay::upstream_block;

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

/// Certificates from a fresh operator CA, as an operator would make them:
/// one per center in `centers` (for 127.0.0.1 and localhost) and the
/// gateway's, `fleet-gw`.
pub(crate) fn make_certs(lookout: &Path, certs: &Path, centers: &[&str]) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(certs);
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
    let _ = std::fs::remove_dir_all(&gw_dir);
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
        self.text(url).map(|t| metric_sum(&t, name))
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
    /// The metrics texts, also kept in `gateway-metrics.txt` and
    /// `center-metrics.txt` in the work folder.
    pub gw_metrics: String,
    pub center_metrics: String,
    /// `GET /api/alerts` of the gateway and of the center (its ledger).
    pub gw_alerts: Value,
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
    let _ = std::fs::write(workdir.join("gateway-metrics.txt"), &gw_metrics);
    let _ = std::fs::write(workdir.join("center-metrics.txt"), &center_metrics);
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

/// The ids of the alerts in an `/api/alerts` answer, in its order.
pub(crate) fn alert_ids(alerts: &Value) -> Vec<String> {
    alerts["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The center's ledger against the alerts the gateway raised.
pub(crate) struct LedgerCheck {
    /// Alert ids the gateway lists.
    pub raised: HashSet<String>,
    /// The ledger's records.
    pub records: Vec<Value>,
    /// Records per alert id.
    pub per_id: HashMap<String, usize>,
    /// Raised by the gateway, not in the ledger.
    pub missing: usize,
    /// Ids stored more than once.
    pub doubled: usize,
    /// Ids in the ledger the gateway did not raise.
    pub invented: usize,
    /// Deliveries over all records.
    pub deliveries: u64,
    /// When the center stored each alert, Unix ms, by id.
    pub received_ms: HashMap<String, u64>,
    /// The alerts as stored.
    pub stored: Vec<SeenAlert>,
}

impl LedgerCheck {
    pub(crate) fn new(gw_alerts: &Value, ledger: &Value) -> LedgerCheck {
        let raised: HashSet<String> = alert_ids(gw_alerts).into_iter().collect();
        let records = ledger["alerts"].as_array().cloned().unwrap_or_default();
        let mut per_id: HashMap<String, usize> = HashMap::new();
        for r in &records {
            if let Some(id) = r["id"].as_str() {
                *per_id.entry(id.to_string()).or_default() += 1;
            }
        }
        let missing = raised.iter().filter(|id| !per_id.contains_key(*id)).count();
        let doubled = per_id.values().filter(|n| **n > 1).count();
        let invented = per_id.keys().filter(|id| !raised.contains(*id)).count();
        let deliveries: u64 = records
            .iter()
            .filter_map(|r| r["deliveries"].as_u64())
            .sum();
        let stored: Vec<SeenAlert> = records
            .iter()
            .filter_map(|r| SeenAlert::from_json(&r["alert"]))
            .collect();
        let received_ms: HashMap<String, u64> = records
            .iter()
            .filter_map(|r| {
                Some((
                    r["id"].as_str()?.to_string(),
                    r["received_unix_ms"].as_u64()?,
                ))
            })
            .collect();
        LedgerCheck {
            raised,
            records,
            per_id,
            missing,
            doubled,
            invented,
            deliveries,
            received_ms,
            stored,
        }
    }

    /// `alerts` (some of `stored`) scored against the scripted incidents,
    /// and their latencies to being stored in the ledger. Every alert is scored; only
    /// those raised at or after `since_unix_ns` (the end of the warm-up, when the
    /// cameras' first seconds of backlog are through) are timed, as the relay's
    /// latencies are.
    pub(crate) fn timing(
        &self,
        onsets: &[Onset],
        alerts: &[SeenAlert],
        since_unix_ns: u64,
    ) -> AlertTiming {
        let (incidents, matched) = score(onsets, alerts);
        let mut cap = histogram();
        let mut raise = histogram();
        for a in alerts.iter().filter(|a| a.raised_unix_ns >= since_unix_ns) {
            let Some(at_ms) = self.received_ms.get(&a.id) else {
                continue;
            };
            let at_us = at_ms * 1000;
            let _ = cap.record(at_us.saturating_sub(a.capture_unix_ns / 1000).max(1));
            let _ = raise.record(at_us.saturating_sub(a.raised_unix_ns / 1000).max(1));
        }
        let mut onset_h = histogram();
        for (o, a) in &matched {
            if let Some(at_ms) = self.received_ms.get(&a.id) {
                let _ = onset_h.record(
                    (at_ms * 1000)
                        .saturating_sub(o.onset_capture_unix_ns / 1000)
                        .max(1),
                );
            }
        }
        AlertTiming {
            incidents,
            capture_to_alert: percentiles(&cap),
            raise_to_stored: percentiles(&raise),
            onset_to_alert: percentiles(&onset_h),
        }
    }
}

/// Alerts scored against the incidents, and how long they took to be
/// stored.
pub(crate) struct AlertTiming {
    pub incidents: Score,
    /// Capture of the frame → stored in the ledger.
    pub capture_to_alert: Percentiles,
    /// Raised by the gateway → stored in the ledger.
    pub raise_to_stored: Percentiles,
    /// The incident's first frame → its alert stored in the ledger.
    pub onset_to_alert: Percentiles,
}

impl AlertTiming {
    /// The three latencies under their report names.
    pub(crate) fn latencies(&self) -> [(String, Percentiles); 3] {
        [
            ("capture_to_alert".into(), self.capture_to_alert.clone()),
            ("raise_to_stored".into(), self.raise_to_stored.clone()),
            ("onset_to_alert".into(), self.onset_to_alert.clone()),
        ]
    }
}

/// Writes the report as JSON to `path` and as HTML next to it (`.html`).
pub(crate) fn write_report<R: Serialize>(
    path: &Path,
    report: &R,
    html: impl FnOnce(&R) -> String,
) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let page = path.with_extension("html");
    std::fs::write(&page, html(report)).with_context(|| format!("writing {}", page.display()))?;
    println!("report: {} and {}", path.display(), page.display());
    Ok(())
}
