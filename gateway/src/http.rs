//! The gateway's HTTP API: `/healthz` for supervisors and load balancers,
//! `/metrics` for Prometheus, `/api/cameras` for operators and the video
//! wall (every camera's state and measured health, from `ingest`). It binds
//! to loopback unless configured otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::shutdown::Shutdown;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::ingest::Ingest;
use crate::metrics::Metrics;

/// What the handlers read.
pub struct ApiState {
    pub gateway_id: String,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    /// The live camera table behind `/api/cameras`.
    pub ingest: Arc<Ingest>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/cameras", get(cameras))
        .with_state(state)
}

async fn healthz(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "gateway": s.gateway_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs_f64(),
        "cameras_configured": s.ingest.len(),
    }))
}

async fn cameras(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    Json(json!({ "cameras": s.ingest.status() }))
}

async fn metrics(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Binds the listener (so a port clash is reported before the daemon says it
/// is ready) and serves until `shutdown` fires.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("HTTP API: cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    });
    Ok((local, task))
}
