//! `lookout run`: the daemon. Checks the configuration completely, starts
//! every stage, serves the HTTP API, and on SIGINT/SIGTERM stops each stage
//! at a safe point.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::check;
use crate::config::Config;
use crate::detect::runtime;
use crate::http::{self, ApiState};
use crate::metrics::Metrics;
use crate::shutdown::Trigger;

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
    let state = Arc::new(ApiState {
        gateway_id: config.gateway.id.clone(),
        started: Instant::now(),
        metrics: metrics.clone(),
        cameras_configured: config.cameras.len(),
    });
    let (addr, _http) = http::serve(
        config.gateway.http_listen,
        http::router(state),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(
        gateway = %config.gateway.id,
        http = %addr,
        cameras = config.cameras.len(),
        detectors = config.detectors.len(),
        "lookout gateway running"
    );
    drop(shutdown);

    wait_for_stop_signal().await?;
    tracing::info!("stopping");
    if !trigger.fire_and_wait(SHUTDOWN_GRACE).await {
        tracing::warn!(
            limit_s = SHUTDOWN_GRACE.as_secs(),
            "some stages did not stop in time"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
