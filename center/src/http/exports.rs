//! The exports' part of the center's API: `GET /api/exports` (each export's state and
//! backlog), each alert as a CAP 1.2 document (`…/cap.xml`) and the CAP Atom feed
//! (`/api/cap.atom`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, error, resolve};
use crate::AlertKey;

/// Alerts the feed lists when the query sets no limit, and at most.
const FEED_DEFAULT: usize = 100;
const FEED_MAX: usize = 1000;

pub(super) async fn exports(State(s): State<AppState>) -> Response {
    let Some(exports) = s.center.exports.get().cloned() else {
        return Json(json!({ "exports": [] })).into_response();
    };
    match tokio::task::spawn_blocking(move || exports.status()).await {
        Ok(list) => Json(json!({ "exports": list })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(super) async fn cap_by_id(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match resolve(&s, &id).await {
        Ok(key) => cap_of(&s, key).await,
        Err(r) => r,
    }
}

pub(super) async fn cap(
    State(s): State<AppState>,
    Path((gateway, id)): Path<(String, String)>,
) -> Response {
    cap_of(&s, AlertKey { gateway, id }).await
}

/// The radius of the CAP area: the first export's, else the exports' default.
fn radius(s: &AppState) -> f64 {
    s.center
        .exports_radius_km
        .unwrap_or(lookout_core::export::config::DEFAULT_CAP_RADIUS_KM)
}

async fn cap_of(s: &AppState, key: AlertKey) -> Response {
    let ledger = s.center.ledger.clone();
    let k = key.clone();
    let found = tokio::task::spawn_blocking(move || ledger.event_of(&k.gateway, &k.id)).await;
    match found {
        Ok(Ok(Some(event))) => (
            [(header::CONTENT_TYPE, "application/cap+xml; charset=utf-8")],
            lookout_core::export::cap::alert_xml(&event, &s.center.origin, radius(s)),
        )
            .into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no alert {} of gateway {}", key.id, key.gateway),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    limit: Option<usize>,
}

pub(super) async fn atom(State(s): State<AppState>, Query(q): Query<FeedQuery>) -> Response {
    let limit = q.limit.unwrap_or(FEED_DEFAULT).clamp(1, FEED_MAX);
    let ledger = s.center.ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.latest_events(limit)).await {
        Ok(Ok(events)) => {
            let entries: Vec<lookout_core::export::cap::FeedEntry> = events
                .into_iter()
                .map(|event| lookout_core::export::cap::FeedEntry { event })
                .collect();
            let self_url = format!(
                "{}/api/cap.atom",
                s.center
                    .origin
                    .public_url
                    .as_deref()
                    .unwrap_or("")
                    .trim_end_matches('/')
            );
            (
                [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
                lookout_core::export::cap::atom_feed(&entries, &s.center.origin, &self_url),
            )
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
