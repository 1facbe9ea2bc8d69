//! The center's HTTP API, for operators and the video wall (`wall.rs`
//! serves the page, live video and events): gateways,
//! every camera of every gateway with its live state, the alert ledger,
//! operator acknowledgements, the alerts' evidence clips (`http/clips.rs`),
//! each camera's latest GOP, relay latency percentiles and Prometheus
//! metrics; and the wall's sign-in and sign-out (server-side sessions,
//! `sessions.rs`). Loopback by default; `auth.rs` guards every route.
//! Reads are `GET` (and `HEAD` where useful), every change of state
//! (an acknowledgement, a latency reset, signing in or out) is `POST`.
//!
//! An alert is named by its gateway and id (`/api/gateways/{gateway}/alerts/{id}`):
//! ids are the gateways' own and two gateways may use the same one. The older
//! `/api/alerts/{id}` paths still work while the id is one gateway's only, and
//! answer `409` with the alerts to choose from when it is not.

pub(crate) mod clips;
mod exports;

use lookout_core::sync::Locked;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::ledger::{AckOutcome, LedgerQuery};
use super::{AlertKey, Center};
use lookout_core::auth::ApiGuard;
use lookout_core::logging::untrusted;
use lookout_core::metrics::Metrics;
use lookout_core::sessions::Sessions;

#[derive(Clone)]
struct AppState {
    center: Arc<Center>,
    metrics: Arc<Metrics>,
    /// Host, origin and token checks, and the wall's sessions (the login
    /// form checks the token and starts one).
    guard: Arc<ApiGuard>,
}

/// The form a browser gets at `/` when the API needs a token.
const LOGIN_PAGE: &str = include_str!("wall/login.html");
/// Its style sheet: a file of its own, since the pages' Content-Security-Policy
/// allows no inline style.
const LOGIN_STYLE: &str = include_str!("wall/login.css");

/// The center's guard: `/healthz`, the sign-in form and its style, and
/// signing out are open.
pub fn guard(
    token: Option<String>,
    hosts: lookout_core::auth::AllowedHosts,
    sessions: Arc<Sessions>,
) -> Arc<ApiGuard> {
    ApiGuard::with_sign_in(
        token,
        hosts,
        &["/healthz", "/login", "/login.css", "/logout"],
        LOGIN_PAGE,
        sessions,
    )
}

impl axum::extract::FromRef<AppState> for Arc<Center> {
    fn from_ref(s: &AppState) -> Arc<Center> {
        s.center.clone()
    }
}

impl axum::extract::FromRef<AppState> for Arc<ApiGuard> {
    fn from_ref(s: &AppState) -> Arc<ApiGuard> {
        s.guard.clone()
    }
}

pub fn router(center: Arc<Center>, metrics: Arc<Metrics>, guard: Arc<ApiGuard>) -> Router {
    metrics.register(
        "center_http_refused",
        lookout_core::auth::REFUSED_HELP,
        guard.refused.clone(),
    );
    Router::new()
        .route("/login", post(login))
        .route("/login.css", get(login_style))
        .route("/logout", post(logout))
        .route("/", get(super::wall::index))
        .route("/wall.js", get(super::wall::script))
        .route("/wall.css", get(super::wall::style))
        .route("/api/events", get(super::wall::events))
        .route("/api/live", get(super::wall::live))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route("/api/gateways", get(gateways))
        .route("/api/cameras", get(cameras))
        .route("/api/cameras/{gateway}/{camera}/gop", get(latest_gop))
        .route("/api/alerts", get(alerts))
        .route("/api/alerts/{id}", get(alert_by_id))
        .route("/api/alerts/{id}/snapshot.jpg", get(snapshot_by_id))
        .route("/api/alerts/{id}/clip.mp4", get(clips::clip_by_id))
        .route("/api/alerts/{id}/ack", post(acknowledge_by_id))
        .route("/api/alerts/{id}/cap.xml", get(exports::cap_by_id))
        .route(
            "/api/gateways/{gateway}/alerts/{id}/cap.xml",
            get(exports::cap),
        )
        .route("/api/cap.atom", get(exports::atom))
        .route("/api/exports", get(exports::exports))
        .route("/api/gateways/{gateway}/alerts/{id}", get(alert))
        .route(
            "/api/gateways/{gateway}/alerts/{id}/snapshot.jpg",
            get(snapshot),
        )
        .route(
            "/api/gateways/{gateway}/alerts/{id}/clip.mp4",
            get(clips::clip),
        )
        .route("/api/gateways/{gateway}/alerts/{id}/ack", post(acknowledge))
        .route("/api/latency", get(latency))
        .route("/api/latency/reset", post(latency_reset))
        .route("/api/upstreams", get(upstreams))
        .layer(axum::middleware::from_fn_with_state(
            guard.clone(),
            lookout_core::auth::guard,
        ))
        .with_state(AppState {
            center,
            metrics,
            guard,
        })
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// The login form's target: with the right token, starts a session (its
/// random id in an HttpOnly, SameSite=Strict cookie; never the token) and
/// goes back to the wall; otherwise shows the form again.
async fn login(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    form: axum::extract::Form<LoginForm>,
) -> Response {
    if !s.guard.matches(form.token.trim()) {
        s.guard.refuse("token");
        tracing::warn!("wall login with a wrong token refused");
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            LOGIN_PAGE.replace("<!--error-->", "<p class=\"error\">Wrong token.</p>"),
        )
            .into_response();
    }
    let Some(sessions) = s.guard.sessions() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no session store");
    };
    // A new id at every sign-in (never one the browser brought: session
    // fixation), and the one it replaces ends now rather than idling on.
    if let Some(old) = lookout_core::sessions::session_id(&headers) {
        sessions.end(old);
    }
    let id = match sessions.start(std::time::Instant::now()) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("wall sign-in failed: {e}");
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    tracing::info!(sessions = sessions.len(), "wall signed in");
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::SET_COOKIE, sessions.cookie(&id))
        .body(Body::empty())
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// Signing out (the wall's button): the session is forgotten on the
/// server, so the cookie is worthless even where a copy of it survives,
/// and the browser is told to drop it. Open, so that an expired session
/// can still sign out; it only ever ends the session it names.
async fn logout(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let Some(sessions) = s.guard.sessions() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no session store");
    };
    if let Some(id) = lookout_core::sessions::session_id(&headers)
        && sessions.end(id)
    {
        tracing::info!(sessions = sessions.len(), "wall signed out");
    }
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::SET_COOKIE, sessions.clearing_cookie())
        .body(Body::empty())
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

async fn login_style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        LOGIN_STYLE,
    )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "center": s.center.id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.center.started.elapsed().as_secs_f64(),
        "gateways_connected": s.center.gateways.iter().filter(|g| g.connected.load(std::sync::atomic::Ordering::Relaxed)).count(),
    }))
}

async fn prometheus(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn gateways(State(s): State<AppState>) -> impl IntoResponse {
    Json(json!({ "gateways": s.center.gateways() }))
}

async fn cameras(State(s): State<AppState>) -> impl IntoResponse {
    Json(json!({ "cameras": s.center.cameras() }))
}

/// The camera's latest whole GOP as an H.264/H.265 Annex-B elementary
/// stream (parameter sets first), playable by any decoder.
async fn latest_gop(
    State(s): State<AppState>,
    Path((gateway, camera)): Path<(String, String)>,
) -> Response {
    let Some(link) = s.center.gateways.get(&gateway).map(|g| g.clone()) else {
        return error(StatusCode::NOT_FOUND, format!("no gateway {gateway}"));
    };
    let Some(cam) = link.cameras.get(&camera).map(|c| c.clone()) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("gateway {gateway} has no camera {camera}"),
        );
    };
    let Some(gop) = cam.latest_gop.locked().clone() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no GOP of {gateway}/{camera} received yet"),
        );
    };
    let mut out = Vec::new();
    let start = [0u8, 0, 0, 1];
    for ps in gop
        .header
        .vps
        .iter()
        .chain([&gop.header.sps, &gop.header.pps])
    {
        out.extend_from_slice(&start);
        out.extend_from_slice(ps);
    }
    for f in &gop.frames {
        out.extend_from_slice(&f.data);
    }
    let content_type = match gop.header.codec {
        lookout_codecs::Codec::H264 => "video/h264",
        lookout_codecs::Codec::H265 => "video/h265",
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header("x-lookout-gop-seq", gop.header.gop_seq.to_string())
        .header("x-lookout-frames", gop.frames.len().to_string())
        .body(Body::from(out))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

#[derive(Debug, Deserialize)]
struct AlertParams {
    gateway: Option<String>,
    camera: Option<String>,
    label: Option<String>,
    state: Option<String>,
    /// `true`: only alerts no operator has acknowledged.
    unacknowledged: Option<bool>,
    limit: Option<usize>,
}

async fn alerts(State(s): State<AppState>, Query(p): Query<AlertParams>) -> Response {
    let q = LedgerQuery {
        gateway: p.gateway,
        camera: p.camera,
        label: p.label,
        state: p.state,
        unacknowledged_only: p.unacknowledged.unwrap_or(false),
        limit: p.limit,
    };
    let ledger = s.center.ledger.clone();
    let store = s.center.clips.clone();
    let listed = move || {
        ledger
            .alerts(&q)
            .map(|list| clips::with_clips(&store, list))
    };
    match tokio::task::spawn_blocking(listed).await {
        Ok(Ok(list)) => Json(json!({ "alerts": list })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The path of one gateway's alert, as the API names it.
pub(crate) fn alert_path(gateway: &str, id: &str) -> String {
    format!(
        "/api/gateways/{}/alerts/{}",
        path_segment(gateway),
        path_segment(id)
    )
}

/// `text` as one URL path segment: every byte but RFC 3986's unreserved ones
/// percent-encoded (a cascade's alert ids hold `/`).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which alert an id alone names: the one gateway's alert with that id, or a
/// response — `404` when there is none, `409` listing them when several
/// gateways use the id (a client must then name the gateway).
async fn resolve(s: &AppState, id: &str) -> Result<AlertKey, Response> {
    let ledger = s.center.ledger.clone();
    let key = id.to_string();
    let found = match tokio::task::spawn_blocking(move || ledger.alerts_with_id(&key)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    match found.as_slice() {
        [] => Err(error(StatusCode::NOT_FOUND, format!("no alert {id}"))),
        [one] => Ok(AlertKey {
            gateway: one.gateway.clone(),
            id: one.id.clone(),
        }),
        several => Err((
            StatusCode::CONFLICT,
            Json(json!({
                "error": format!(
                    "{} gateways have an alert {id}; name the gateway: /api/gateways/{{gateway}}/alerts/{{id}}",
                    several.len()
                ),
                "gateways": several.iter().map(|a| a.gateway.as_str()).collect::<Vec<_>>(),
                "alerts": several.iter().map(|a| alert_path(&a.gateway, &a.id)).collect::<Vec<_>>(),
            })),
        )
            .into_response()),
    }
}

async fn alert_by_id(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match resolve(&s, &id).await {
        Ok(key) => alert_of(&s, key).await,
        Err(r) => r,
    }
}

async fn alert(State(s): State<AppState>, Path((gateway, id)): Path<(String, String)>) -> Response {
    alert_of(&s, AlertKey { gateway, id }).await
}

async fn alert_of(s: &AppState, key: AlertKey) -> Response {
    let ledger = s.center.ledger.clone();
    let store = s.center.clips.clone();
    let k = key.clone();
    let read = move || {
        ledger
            .alert(&k.gateway, &k.id)
            .map(|found| found.map(|a| clips::with_clip(&store, a)))
    };
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(Some(a))) => Json(a).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no alert {} of gateway {}", key.id, key.gateway),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn snapshot_by_id(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match resolve(&s, &id).await {
        Ok(key) => snapshot_of(&s, key).await,
        Err(r) => r,
    }
}

async fn snapshot(
    State(s): State<AppState>,
    Path((gateway, id)): Path<(String, String)>,
) -> Response {
    snapshot_of(&s, AlertKey { gateway, id }).await
}

async fn snapshot_of(s: &AppState, key: AlertKey) -> Response {
    let ledger = s.center.ledger.clone();
    let k = key.clone();
    match tokio::task::spawn_blocking(move || ledger.snapshot(&k.gateway, &k.id)).await {
        Ok(Ok(Some(jpeg))) => ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no snapshot for alert {} of gateway {}",
                key.id, key.gateway
            ),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct AckBody {
    /// Who acknowledged (operator name or console id).
    operator: String,
    note: Option<String>,
}

async fn acknowledge_by_id(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<AckBody>>,
) -> Response {
    // The body is checked first: a malformed request says so, whatever the id.
    let body = match ack_body(body) {
        Ok(b) => b,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match resolve(&s, &id).await {
        Ok(key) => acknowledge_of(&s, key, body).await,
        Err(r) => r,
    }
}

/// An operator acknowledges an alert: recorded once, with who and when.
async fn acknowledge(
    State(s): State<AppState>,
    Path((gateway, id)): Path<(String, String)>,
    body: Option<Json<AckBody>>,
) -> Response {
    match ack_body(body) {
        Ok(body) => acknowledge_of(&s, AlertKey { gateway, id }, body).await,
        Err(why) => error(StatusCode::BAD_REQUEST, why),
    }
}

/// The acknowledgement's body, checked; `Err` says what is wrong with it.
fn ack_body(body: Option<Json<AckBody>>) -> Result<AckBody, &'static str> {
    // Cross-origin writes never get here: `auth::guard` refuses them.
    let Some(Json(mut body)) = body else {
        return Err("expected a JSON body {\"operator\": NAME, \"note\": TEXT?}");
    };
    body.operator = body.operator.trim().to_string();
    if body.operator.is_empty() || body.operator.len() > 128 {
        return Err("operator: 1–128 characters");
    }
    if body.operator.chars().any(char::is_control) {
        // A name is one line of text; a newline or an escape is an attempt
        // to forge a log line or a console's display. Refused, and logged
        // escaped.
        tracing::warn!(
            operator = %untrusted(&body.operator),
            "acknowledgement refused: the operator name has control characters"
        );
        return Err("operator: no control characters (newlines, escapes)");
    }
    if body.note.as_ref().is_some_and(|n| n.len() > 4096) {
        return Err("note: at most 4096 bytes");
    }
    Ok(body)
}

async fn acknowledge_of(s: &AppState, key: AlertKey, body: AckBody) -> Response {
    let ledger = s.center.ledger.clone();
    let k = key.clone();
    let operator = body.operator.clone();
    let note = body.note.clone();
    let result = tokio::task::spawn_blocking(move || {
        ledger.acknowledge(
            &k.gateway,
            &k.id,
            &operator,
            note.as_deref(),
            super::unix_ms(),
        )
    })
    .await;
    let AlertKey { gateway, id } = key.clone();
    match result {
        Ok(Ok(AckOutcome::Acknowledged)) => {
            tracing::info!(gateway = %untrusted(&gateway), alert = %untrusted(&id), operator = %untrusted(&body.operator), "alert acknowledged");
            if s.center.alert_events.send(key).is_err() {
                tracing::trace!("no one follows alert changes");
            }
            Json(json!({ "gateway": gateway, "id": id, "acknowledged": true })).into_response()
        }
        Ok(Ok(AckOutcome::AlreadyAcknowledged { by, at_unix_ms })) => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": format!("alert {id} of gateway {gateway} was already acknowledged by {by}"),
                "acked_by": by,
                "acked_unix_ms": at_unix_ms,
            })),
        )
            .into_response(),
        Ok(Ok(AckOutcome::NotFound)) => error(
            StatusCode::NOT_FOUND,
            format!("no alert {id} of gateway {gateway}"),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The centers this one forwards to (a cascade), as a gateway's
/// `/api/upstreams` shows them.
async fn upstreams(State(s): State<AppState>) -> Response {
    let Some(relay) = s.center.upstreams.get().cloned() else {
        return Json(json!({ "upstreams": [] })).into_response();
    };
    // The status counts outbox entries in SQLite: not on a runtime worker.
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

#[derive(Debug, Deserialize)]
struct LatencyParams {
    /// The old way to reset (`?reset=true` on a GET): refused, since a GET
    /// must change nothing (a link, a prefetch, an image tag could send it).
    reset: Option<String>,
}

/// Percentiles since start or the last reset.
async fn latency(State(s): State<AppState>, Query(p): Query<LatencyParams>) -> Response {
    if p.reset.is_some() {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            Json(json!({
                "error": "a reset changes state: POST /api/latency/reset (it answers the \
                          percentiles of the window it ends)"
            })),
        )
            .into_response();
    }
    Json(s.center.latency(false)).into_response()
}

/// The percentiles of the window so far, then a new window begins.
async fn latency_reset(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.center.latency(true))
}
