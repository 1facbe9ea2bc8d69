//! An alert's evidence clip over HTTP (`clips.rs` stores them):
//! `GET /api/gateways/{gateway}/alerts/{id}/clip.mp4`, and `GET
//! /api/alerts/{id}/clip.mp4` with the id resolved as the snapshot's path resolves it
//! (`404` with none, `409` naming the gateways when several use it). Same guard as
//! every other route.
//!
//! The file is streamed in 64 KiB chunks, never read whole, and served with
//! `Accept-Ranges: bytes` so a browser's `<video>` can seek and read the `moov` box
//! first: one range per request (RFC 9110 §14), `bytes=a-b`, `bytes=a-` or a suffix
//! `bytes=-n`, answers `206` with `Content-Range: bytes a-b/size`; a range past the end
//! answers `416` with `Content-Range: bytes */size`; several ranges, another unit or a
//! malformed header, the whole file (`200`), as RFC 9110 allows. The clip's SHA-256 is
//! its entity tag (`If-None-Match` → `304`, `If-Range`), so a re-recorded clip is never
//! mistaken for the one a browser cached. `HEAD` answers the same headers, no body.
//!
//! The alert listings carry each alert's clip, `"clip": {"url", "bytes"}` or `null`:
//! one index lookup per alert ([`with_clips`]).

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{AppState, alert_path, error, resolve};
use crate::AlertKey;
use crate::clips::ClipStore;
use crate::ledger::LedgerAlert;
use lookout_core::logging::untrusted;

/// How much of the file each body chunk carries.
const CHUNK: usize = 64 * 1024;

/// What a request's `Range` asks of a file of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// No usable range: the whole file, `200`.
    Full,
    /// Bytes `first..=last`, `206`.
    Part { first: u64, last: u64 },
    /// Nothing of the file: `416`.
    Unsatisfiable,
}

/// Reads a `Range` header's value against a file of `size` bytes (RFC 9110 §14.1.2):
/// only a single byte range is honoured; whatever else is sent gets the whole file.
pub(crate) fn parse_range(value: &str, size: u64) -> RangeAnswer {
    let Some((unit, spec)) = value.trim().split_once('=') else {
        return RangeAnswer::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // More digits than u64 holds: further than any file reaches.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `bytes=-n`: the last n bytes (all of them when n ≥ size).
        return match number(last) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Part {
                first: size.saturating_sub(n),
                last: size - 1,
            },
        };
    }
    // `bytes=a-b` and `bytes=a-`.
    let Some(first) = number(first) else {
        return RangeAnswer::Full;
    };
    let last = match (last.is_empty(), number(last)) {
        (true, _) => None,
        (false, Some(last)) if last >= first => Some(last),
        // Malformed, or `last < first`: an invalid range, ignored.
        (false, _) => return RangeAnswer::Full,
    };
    if first >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part {
        first,
        last: last.map_or(size - 1, |l| l.min(size - 1)),
    }
}

/// Whether an `If-None-Match` value names this entity tag (weak comparison, RFC 9110
/// §13.1.2: `W/"…"` matches too, as does `*`).
fn none_match(value: Option<&axum::http::HeaderValue>, etag: &str) -> bool {
    value.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    })
}

/// Whether a range may be served: no `If-Range`, or one naming this very clip
/// (strong comparison, RFC 9110 §13.1.5; a date never matches, as no
/// `Last-Modified` is sent).
fn range_still_valid(value: Option<&axum::http::HeaderValue>, etag: &str) -> bool {
    value.is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag))
}

pub(super) async fn clip_by_id(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match resolve(&s, &id).await {
        Ok(key) => clip_of(&s.center.clips, key, &method, &headers).await,
        Err(r) => r,
    }
}

pub(super) async fn clip(
    State(s): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((gateway, id)): Path<(String, String)>,
) -> Response {
    clip_of(&s.center.clips, AlertKey { gateway, id }, &method, &headers).await
}

async fn clip_of(
    clips: &Arc<ClipStore>,
    key: AlertKey,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let store = clips.clone();
    let k = key.clone();
    let found = match tokio::task::spawn_blocking(move || store.open_clip(&k.gateway, &k.id)).await
    {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no clip for alert {} of gateway {}", key.id, key.gateway),
            );
        }
        Ok(Err(e)) => {
            tracing::error!("serving a clip: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (clip, file) = found;
    let size = clip.size;
    let etag = format!("\"{}\"", clip.sha256);
    let common = |status: StatusCode| {
        Response::builder()
            .status(status)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::ETAG, &etag)
            .header(header::CACHE_CONTROL, "private, no-cache")
    };
    if none_match(headers.get(header::IF_NONE_MATCH), &etag) {
        return common(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"));
    }
    // A range is honoured for GET only (RFC 9110 §14.2), and only while the
    // browser's copy is this clip (`If-Range`).
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| method == Method::GET)
        .filter(|_| range_still_valid(headers.get(header::IF_RANGE), &etag))
        .map_or(RangeAnswer::Full, |v| parse_range(v, size));
    let (status, first, len) = match range {
        RangeAnswer::Full => (StatusCode::OK, 0, size),
        RangeAnswer::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        RangeAnswer::Unsatisfiable => {
            return common(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"));
        }
    };
    let mut response = common(status)
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::CONTENT_LENGTH, len);
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{}/{size}", first + len - 1),
        );
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let mut file = tokio::fs::File::from_std(file);
        if let Err(e) = file.seek(std::io::SeekFrom::Start(first)).await {
            tracing::error!(file = %clip.path.display(), "seeking in a clip to {first}: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", clip.path.display()),
            );
        }
        file_body(file, len, clip.path)
    };
    response
        .body(body)
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// `len` bytes of `file` from where it stands, as a body read chunk by chunk. A read
/// error ends the body early (the client sees the connection fail, its length unmet)
/// and is logged with the file.
fn file_body(file: tokio::fs::File, len: u64, path: std::path::PathBuf) -> Body {
    let chunks = stream::unfold(Some(file.take(len)), move |state| {
        let path = path.clone();
        async move {
            let mut reader = state?;
            let mut buf = BytesMut::with_capacity(CHUNK);
            match reader.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok::<Bytes, std::io::Error>(buf.freeze()), Some(reader))),
                Err(e) => {
                    tracing::error!(file = %path.display(), "reading a clip being served: {e}");
                    Some((Err(e), None))
                }
            }
        }
    });
    Body::from_stream(chunks)
}

/// An alert as the API lists it: the ledger's record, and its clip.
#[derive(serde::Serialize)]
pub(crate) struct AlertWithClip {
    #[serde(flatten)]
    alert: LedgerAlert,
    /// `{"url", "bytes"}` of its stored clip, or `null`.
    clip: Option<serde_json::Value>,
}

/// `{"url", "bytes"}` of an alert's clip.
fn link(alert: &LedgerAlert, bytes: u64) -> serde_json::Value {
    serde_json::json!({
        "url": format!("{}/clip.mp4", alert_path(&alert.gateway, &alert.id)),
        "bytes": bytes,
    })
}

/// Each alert with its clip, one index lookup each. The index failing leaves every
/// `clip` null (logged): the listing matters more than the clips.
pub(crate) fn with_clips(clips: &ClipStore, alerts: Vec<LedgerAlert>) -> Vec<AlertWithClip> {
    let sizes = match clips.sizes(alerts.iter().map(|a| (a.gateway.as_str(), a.id.as_str()))) {
        Ok(sizes) => sizes,
        Err(e) => {
            tracing::error!("alert listing shown without clips: {e}");
            Vec::new()
        }
    };
    alerts
        .into_iter()
        .enumerate()
        .map(|(i, alert)| {
            let clip = sizes
                .get(i)
                .copied()
                .flatten()
                .map(|bytes| link(&alert, bytes));
            AlertWithClip { alert, clip }
        })
        .collect()
}

/// One alert with its clip (see [`with_clips`]).
pub(crate) fn with_clip(clips: &ClipStore, alert: LedgerAlert) -> AlertWithClip {
    let size = match clips.sizes([(alert.gateway.as_str(), alert.id.as_str())]) {
        Ok(sizes) => sizes.first().copied().flatten(),
        Err(e) => {
            tracing::error!(
                gateway = %untrusted(&alert.gateway),
                alert = %untrusted(&alert.id),
                "alert shown without its clip: {e}"
            );
            None
        }
    };
    let clip = size.map(|bytes| link(&alert, bytes));
    AlertWithClip { alert, clip }
}
