//! `lookout run`: the daemon. Checks the configuration completely, starts
//! every stage (camera ingest first), serves the HTTP API, re-reads the
//! configuration on SIGHUP (a bad file is rejected and the running one kept),
//! and on SIGINT/SIGTERM stops each stage at a safe point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::api::{self, ApiState};
use crate::check;
use crate::config::Config;
use crate::detect::runtime;
use crate::detect::service::{DetectMetrics, DetectService};
use crate::ingest::{Ingest, IngestCollector, IngestSettings};
use crate::metrics::Metrics;
use crate::relay::RelayMetrics;
use crate::roster::{Roster, adopt_loop};
use crate::shutdown::{Shutdown, Trigger};

/// How long stages get to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs until a stop signal.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config: Config = check::check_file(config_path)
        .map_err(|p| anyhow::anyhow!("configuration has {} problem(s):\n{p}", p.0.len()))?;
    gstreamer::init().context("initialising GStreamer")?;
    let onnx_version = if config.detectors.is_empty() {
        "not loaded".to_string()
    } else {
        // check_file loaded it already; this returns the same runtime.
        let explicit = config
            .gateway
            .onnxruntime
            .as_ref()
            .map(|p| config.resolve(p));
        runtime::load(explicit.as_deref())?.version.clone()
    };
    let metrics = Arc::new(Metrics::new(
        env!("CARGO_PKG_VERSION"),
        &crate::gstreamer_version(),
        &onnx_version,
    ));

    let (trigger, shutdown) = Trigger::new();

    let settings = IngestSettings::from_config(&config.gateway);
    let ingest = Ingest::new(settings)?;
    metrics.register_collector(Box::new(IngestCollector::new(Arc::downgrade(&ingest))));
    metrics.register_collector(Box::new(crate::threads::CpuCollector));
    ingest.apply(settings, &config.cameras).await;
    // Cameras that push dial in here; the listener and its connections end with
    // the daemon.
    if let Some(rtmp) = &config.gateway.rtmp {
        let rtmp_metrics = crate::ingest::rtmp::RtmpMetrics::default();
        rtmp_metrics.register(&metrics);
        crate::ingest::rtmp::RtmpServer::start(
            rtmp.listen,
            ingest.clone(),
            rtmp_metrics,
            shutdown.clone(),
        )
        .await?;
    }

    // The outboxes first: the hub is built with them as its journal, so even
    // the first alert is on disk before it is announced.
    let opened = crate::relay::open(&config)?;
    let export_log = open_export_log(&config)?;
    let hub = crate::relay::hub(&opened, export_log.clone());
    let exports = start_exports(&config, export_log, &hub, &metrics)?;
    let relay_metrics = Arc::new(RelayMetrics::default());
    relay_metrics.register(&metrics);
    let clips = crate::alert::clips::Clips::start(
        &config.gateway.clips,
        &config.resolve(&config.gateway.storage),
        config.upstreams.iter().map(|u| u.id.clone()).collect(),
        ingest.clone(),
        &hub,
        &metrics,
        shutdown.clone(),
    )?;
    let relay = crate::relay::start(
        opened,
        ingest.clone(),
        hub.clone(),
        relay_metrics,
        clips
            .as_ref()
            .map(|c| c.library() as Arc<dyn lookout_core::relay::source::ClipSource>),
    );

    let detect_metrics = DetectMetrics::new();
    detect_metrics.register(&metrics);
    let detect = DetectService::start(&config, ingest.clone(), hub.clone(), detect_metrics).await?;

    // Devices and platforms that register over GB/T 28181.
    let gb28181 = start_gb28181(&config, &metrics, &ingest, &shutdown).await?;
    let roster = Roster::new(
        config.clone(),
        ingest.clone(),
        detect.clone(),
        gb28181.clone(),
    );
    if gb28181.is_some() {
        tokio::spawn(adopt_loop(roster.clone(), shutdown.clone()));
    }
    lookout_core::metrics::spawn_heap_trim(lookout_core::metrics::HEAP_TRIM_PERIOD);
    let state = Arc::new(ApiState {
        gateway_id: config.gateway.id.clone(),
        started: Instant::now(),
        metrics: metrics.clone(),
        ingest: ingest.clone(),
        alerts: hub.clone(),
        relay: relay.clone(),
        guard: crate::auth::ApiGuard::new(
            api_token(&config)?,
            crate::auth::AllowedHosts::new(
                config.gateway.http_listen,
                &config.gateway.allowed_hosts,
            ),
            &["/healthz"],
        ),
        external: Default::default(),
        gb28181,
        exports,
    });
    state.register();
    let refused_connections = state.guard.refusal_counter("connections");
    // Installed before the daemon says it is running, so an early SIGHUP
    // reloads instead of killing the process.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP handler")?;
    let (addr, _http) = crate::http::serve(
        config.gateway.http_listen,
        api::router(state),
        shutdown.clone(),
        refused_connections,
    )
    .await?;
    for warning in check::warnings(config_path, &config) {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        gateway = %config.gateway.id,
        http = %addr,
        cameras = config.cameras.len(),
        detectors = config.detectors.len(),
        upstreams = config.upstreams.len(),
        "lookout gateway running"
    );

    {
        let ingest = ingest.clone();
        let detect = detect.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.clone().wait().await;
            // Detection first: its samplers read from ingest.
            detect.stop().await;
            tracing::info!("detection stopped");
            // After detection, so its last alerts reach the outbox.
            relay.stop().await;
            tracing::info!("relay stopped");
            ingest.stop().await;
            tracing::info!("ingest stopped");
            drop(shutdown);
        });
    }
    let reloader = tokio::spawn(reload_on_sighup(
        hup,
        config_path.to_path_buf(),
        config,
        roster,
        shutdown.clone(),
    ));
    drop(shutdown);

    crate::shutdown::stop_signal().await?;
    tracing::info!("stopping");
    if !trigger.fire_and_wait(SHUTDOWN_GRACE).await {
        tracing::warn!(
            limit_s = SHUTDOWN_GRACE.as_secs(),
            "some stages did not stop in time"
        );
    }
    reloader.abort();
    tracing::info!("stopped");
    Ok(())
}

/// The exports' log (`STORAGE/exports.sqlite3`) when `[[export]]`s are configured.
fn open_export_log(
    config: &Config,
) -> anyhow::Result<Option<Arc<lookout_core::export::log::ExportLog>>> {
    if config.exports.is_empty() {
        return Ok(None);
    }
    let ids: Vec<String> = config.exports.iter().map(|e| e.id.clone()).collect();
    let path = config
        .resolve(&config.gateway.storage)
        .join("exports.sqlite3");
    let log = lookout_core::export::log::ExportLog::open(&path, &config.gateway.id, &ids)
        .map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(log)))
}

/// Starts the `[[export]]`s on `log`, woken by every alert event of `hub`.
fn start_exports(
    config: &Config,
    log: Option<Arc<lookout_core::export::log::ExportLog>>,
    hub: &Arc<crate::alert::hub::AlertHub>,
    metrics: &Arc<crate::metrics::Metrics>,
) -> anyhow::Result<Option<Arc<lookout_core::export::Exports>>> {
    let Some(log) = log else {
        return Ok(None);
    };
    let resolved: Vec<lookout_core::export::ExportConfig> = config
        .exports
        .iter()
        .map(|e| e.resolved(|p| config.resolve(p)))
        .collect();
    let origin = lookout_core::export::Origin {
        id: config.gateway.id.clone(),
        public_url: None,
    };
    let exports =
        lookout_core::export::Exports::start(&resolved, log, origin, metrics, hub.subscribe())
            .map_err(anyhow::Error::msg)?;
    Ok(Some(exports))
}

/// The API token, when `gateway.api_token_file` is set.
fn api_token(config: &Config) -> anyhow::Result<Option<String>> {
    config
        .gateway
        .api_token_file
        .as_ref()
        .map(|f| crate::auth::read_token(&config.resolve(f)).map_err(anyhow::Error::msg))
        .transpose()
}

/// SIGHUP: re-read and fully re-check the file; apply it only if it is
/// clean, touching only the cameras that changed.
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    path: PathBuf,
    mut running: Config,
    roster: Arc<Roster>,
    shutdown: Shutdown,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = stop.signalled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        tracing::info!(file = %path.display(), "SIGHUP: reloading configuration");
        // Model loading in the checks can take a moment; keep it off the
        // async threads.
        let p = path.clone();
        let checked = tokio::task::spawn_blocking(move || check::check_file(&p)).await;
        let next = match checked {
            Ok(Ok(c)) => c,
            Ok(Err(problems)) => {
                tracing::error!(
                    file = %path.display(),
                    problems = problems.0.len(),
                    "reload rejected, the running configuration stays in force:\n{problems}"
                );
                continue;
            }
            Err(e) => {
                tracing::error!("reload check failed: {e}");
                continue;
            }
        };
        if next.detectors != running.detectors {
            tracing::warn!("[[detector]] entries changed; they take effect after a restart");
        }
        for (what, changed) in [
            ("gateway.id", next.gateway.id != running.gateway.id),
            (
                "gateway.http_listen",
                next.gateway.http_listen != running.gateway.http_listen,
            ),
            (
                "gateway.storage",
                next.gateway.storage != running.gateway.storage,
            ),
            (
                "gateway.gb28181 (other than adopt)",
                without_adopt(&next) != without_adopt(&running),
            ),
            ("gateway.rtmp", next.gateway.rtmp != running.gateway.rtmp),
            (
                "gateway.api_token_file",
                next.gateway.api_token_file != running.gateway.api_token_file,
            ),
            (
                "gateway.allowed_hosts",
                next.gateway.allowed_hosts != running.gateway.allowed_hosts,
            ),
        ] {
            if changed {
                tracing::warn!("{what} changed; it takes effect after a restart");
            }
        }
        let summary = roster.reload(next.clone()).await;
        tracing::info!(
            added = ?summary.added,
            removed = ?summary.removed,
            restarted = ?summary.restarted,
            updated = ?summary.updated,
            unchanged = summary.unchanged,
            "configuration reloaded"
        );
        running = next;
    }
}

/// `[gateway.gb28181]` less its adopt rules (which a reload applies).
fn without_adopt(config: &Config) -> Option<crate::config::Gb28181Section> {
    config.gateway.gb28181.clone().map(|mut gb| {
        gb.adopt.clear();
        gb
    })
}

/// The GB/T 28181 SIP side, when `[gateway.gb28181]` is configured: it plays `ingest`'s
/// GB/T 28181 cameras.
async fn start_gb28181(
    config: &Config,
    metrics: &Arc<Metrics>,
    ingest: &Arc<Ingest>,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Arc<crate::gb28181::SipServer>>> {
    Ok(match &config.gateway.gb28181 {
        Some(gb) => {
            let gb_metrics = crate::gb28181::GbMetrics::default();
            gb_metrics.register(metrics);
            let password = crate::config::read_secret(&config.resolve(&gb.password_file))
                .map_err(|e| anyhow::anyhow!("[gateway.gb28181] password_file: {e}"))?;
            let settings = crate::gb28181::Settings {
                listen: gb.sip_listen,
                id: gb.id.clone(),
                domain: gb.domain.clone(),
                password,
                max_devices: gb.max_devices,
                keepalive_timeout: std::time::Duration::from_secs(gb.keepalive_timeout_s),
                media_ip: gb.media_ip,
                stall_timeout: std::time::Duration::from_millis(config.gateway.stall_timeout_ms),
                digest: gb.digest.iter().map(|d| d.algorithm()).collect(),
            };
            Some(
                crate::gb28181::SipServer::start(
                    settings,
                    gb_metrics,
                    ingest.clone(),
                    shutdown.clone(),
                )
                .await?,
            )
        }
        None => None,
    })
}
