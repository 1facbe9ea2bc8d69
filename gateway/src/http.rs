//! The gateway's HTTP API: `/healthz` for supervisors and load balancers,
//! `/metrics` for Prometheus, `/api/cameras` for operators and the video
//! wall (every camera's state and measured health, from `ingest`). It binds
//! to loopback unless configured otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::shutdown::Shutdown;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::detect::hub::{AlertHub, AlertQuery, RECENT_ALERTS};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use serde::Deserialize;

/// What the handlers read.
pub struct ApiState {
    pub gateway_id: String,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    /// The live camera table behind `/api/cameras`.
    pub ingest: Arc<Ingest>,
    /// Recent alerts behind `/api/alerts`.
    pub alerts: Arc<AlertHub>,
    /// The command-center connections behind `/api/upstreams`.
    pub relay: Arc<crate::relay::Relay>,
}

#[derive(Debug, Deserialize)]
struct AlertParams {
    camera: Option<String>,
    label: Option<String>,
    /// `true`: only alerts still active.
    active: Option<bool>,
    limit: Option<usize>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/cameras", get(cameras))
        .route("/api/upstreams", get(upstreams))
        .route("/api/alerts", get(alerts))
        .route("/api/alerts/{id}", get(alert))
        .route("/api/alerts/{id}/snapshot.jpg", get(alert_snapshot))
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

async fn upstreams(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    Json(json!({ "upstreams": s.relay.status() }))
}

async fn alerts(State(s): State<Arc<ApiState>>, Query(p): Query<AlertParams>) -> impl IntoResponse {
    let q = AlertQuery {
        camera: p.camera,
        label: p.label,
        active_only: p.active.unwrap_or(false),
        limit: p.limit,
    };
    Json(json!({ "alerts": s.alerts.list(&q) }))
}

async fn alert(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match s.alerts.get(&id) {
        Some(a) => Json(a).into_response(),
        None => not_found(&format!(
            "no alert {id} (only the latest {RECENT_ALERTS} are kept)"
        )),
    }
}

async fn alert_snapshot(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match s.alerts.snapshot(&id) {
        Some(jpeg) => ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        None => not_found(&format!("no snapshot for alert {id}")),
    }
}

fn not_found(message: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response()
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
