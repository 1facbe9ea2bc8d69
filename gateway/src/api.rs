//! The gateway's HTTP API: `/healthz` for supervisors and load balancers,
//! `/metrics` for Prometheus, `/api/cameras` for operators and the video
//! wall (every camera's state and measured health, from `ingest`), recent
//! alerts, and `POST /api/alerts` for alerts from outside the video path
//! (`alert/external.rs`). It binds to loopback unless configured
//! otherwise, and then needs a token (`auth.rs`). [`serve`] runs this API
//! and the center's (`lookout-center`'s `http.rs`) on hyper with a header-read timeout
//! and a cap on open connections, so half-sent requests cannot hold them.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

use crate::alert::external::{self, ExternalAlert, Outcome, Refusal};
use crate::alert::hub::{AlertHub, AlertQuery, RECENT_ALERTS};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use serde::Deserialize;

/// What the handlers read.
pub struct ApiState {
    /// The configured gateway id: reported by `/healthz`, and the `gateway`
    /// of alerts posted to `POST /api/alerts`.
    pub gateway_id: String,
    /// When the daemon started: `/healthz`'s `uptime_s` is measured from it.
    pub started: Instant,
    /// The registry `/metrics` encodes (OpenMetrics text).
    pub metrics: Arc<Metrics>,
    /// The live camera table behind `/api/cameras`.
    pub ingest: Arc<Ingest>,
    /// Recent alerts behind `/api/alerts`.
    pub alerts: Arc<AlertHub>,
    /// The command-center connections behind `/api/upstreams`.
    pub relay: Arc<crate::relay::Relay>,
    /// Host, origin and token checks, with their refusal counter.
    pub guard: Arc<crate::auth::ApiGuard>,
    /// `lookout_external_alerts_total{outcome}`: `written`, `unchanged`,
    /// `invalid`, `not_found`, `not_durable`.
    pub external: Family<Vec<(String, String)>, Counter>,
    /// The GB/T 28181 SIP side behind `/api/gb28181/devices`; `None` without
    /// `[gateway.gb28181]`.
    pub gb28181: Option<Arc<crate::gb28181::SipServer>>,
    /// The `[[export]]`s behind `/api/exports`; `None` without any.
    pub exports: Option<Arc<lookout_core::export::Exports>>,
}

impl ApiState {
    /// Registers the API's own series.
    pub fn register(&self) {
        self.metrics.register(
            "http_refused",
            crate::auth::REFUSED_HELP,
            self.guard.refused.clone(),
        );
        self.metrics.register(
            "external_alerts",
            "POST /api/alerts requests by outcome",
            self.external.clone(),
        );
    }
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
        .route("/api/gb28181/devices", get(gb28181_devices))
        .route("/api/exports", get(exports))
        .route("/api/alerts", get(alerts).post(post_alert))
        .route("/api/alerts/{id}", get(alert))
        .route("/api/alerts/{id}/snapshot.jpg", get(alert_snapshot))
        .layer(axum::middleware::from_fn_with_state(
            state.guard.clone(),
            crate::auth::guard,
        ))
        .with_state(state)
}

/// `POST /api/alerts`: an alert from a sensor, a feed or an operator. `201`
/// once it is on disk in every outbox; `200` for a retry of one already
/// here; `4xx` naming the field; `503` if it could not be made durable.
async fn post_alert(
    State(s): State<Arc<ApiState>>,
    body: Result<Json<ExternalAlert>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let count = |outcome: &str| {
        s.external
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc();
    };
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            count("invalid");
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": format!("alert body: {}", e.body_text()) })),
            )
                .into_response();
        }
    };
    let camera = s.ingest.camera(&req.camera).map(|c| c.config());
    let hub = s.alerts.clone();
    let gateway = s.gateway_id.clone();
    let now = lookout_core::clock::unix_now_ns();
    let result = tokio::task::spawn_blocking(move || {
        external::apply(&hub, &gateway, camera.as_deref(), req, now)
    })
    .await;
    let (status, body) = match result {
        Ok(Ok(Outcome::Written(a))) => {
            count("written");
            (StatusCode::CREATED, json!({ "alert": a, "durable": true }))
        }
        Ok(Ok(Outcome::Unchanged(a))) => {
            count("unchanged");
            (StatusCode::OK, json!({ "alert": a, "durable": true }))
        }
        Ok(Err(Refusal::Invalid(m))) => {
            count("invalid");
            (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": m }))
        }
        Ok(Err(Refusal::NotFound(m))) => {
            count("not_found");
            (StatusCode::NOT_FOUND, json!({ "error": m }))
        }
        Ok(Err(Refusal::NotDurable(m))) => {
            count("not_durable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": format!("the alert could not be written to disk; send it again: {m}") }),
            )
        }
        Err(e) => {
            count("not_durable");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": e.to_string() }),
            )
        }
    };
    (status, Json(body)).into_response()
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

/// `GET /api/gb28181/devices`: every GB/T 28181 device and lower platform that has
/// registered, online or not, with its catalog's channels; `404` when the gateway has
/// no `[gateway.gb28181]`.
async fn gb28181_devices(State(s): State<Arc<ApiState>>) -> Response {
    match &s.gb28181 {
        Some(sip) => Json(json!({ "devices": sip.devices() })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "GB/T 28181 is not configured ([gateway.gb28181])" })),
        )
            .into_response(),
    }
}

async fn upstreams(State(s): State<Arc<ApiState>>) -> Response {
    // The status counts outbox entries in SQLite: not on a runtime worker.
    let relay = s.relay.clone();
    match tokio::task::spawn_blocking(move || relay.status()).await {
        Ok(list) => Json(json!({ "upstreams": list })).into_response(),
        Err(e) => {
            tracing::error!("reading the upstreams' status failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "upstream status unavailable\n",
            )
                .into_response()
        }
    }
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

/// Each `[[export]]`: its state, backlog and the age of its oldest undelivered event.
async fn exports(State(s): State<Arc<ApiState>>) -> Response {
    let Some(exports) = s.exports.clone() else {
        return Json(json!({ "exports": [] })).into_response();
    };
    match tokio::task::spawn_blocking(move || exports.status()).await {
        Ok(list) => Json(json!({ "exports": list })).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
