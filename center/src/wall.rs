//! The video wall's server side: the page itself (embedded, no Node.js at
//! run time), each camera's live video as a stream of access units the
//! browser decodes with WebCodecs, and Server-Sent Events that push ledger
//! changes and camera states to every open page. `wall/` holds the page.
//!
//! Live video wire format (`GET /api/live?cameras=GW/CAM,GW/CAM,…`, one
//! HTTP response that never ends and carries every tile of a page, since a
//! browser keeps at most six HTTP/1.1 connections to one server): a sequence
//! of messages, each `u32 length` (big-endian, of what follows), `u8 kind`,
//! `u16 camera` (its index in the `cameras` list), then:
//! - kind 1, config: UTF-8 JSON `{"codec","width","height","gop_seq"}`,
//!   sent before the first keyframe and whenever the parameters change;
//! - kind 2, frame: `u8 flags` (bit 0 keyframe), `u64 capture_unix_ns`,
//!   `u64 received_unix_ns`, then the access unit in Annex-B form (keyframes
//!   with the parameter sets in front, so a decoder can start there).
//!
//! A viewer starts at the camera's next keyframe and only ever plays
//! forward (late GOPs are not on the live channel, `session.rs`); a viewer
//! that falls behind loses the oldest frames and waits for a keyframe.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::{self, Stream};
use lookout_codecs::Codec;
use lookout_codecs::relay::GopHeader;
use tokio::sync::broadcast;

use super::{AlertKey, Center, LiveFrame};

const INDEX: &str = include_str!("wall/index.html");
const SCRIPT: &str = include_str!("wall/wall.js");
const STYLE: &str = include_str!("wall/wall.css");

/// How often every page gets the camera table.
const CAMERA_PUSH: Duration = Duration::from_secs(1);

/// The sign-out button, on a wall that needs signing in.
const SIGN_OUT: &str = r#"<form id="sign-out" method="post" action="/logout"><button type="submit">Sign out</button></form>"#;

/// The page; with a token configured it carries the sign-out button (a
/// plain form: no script is needed to end a session).
pub async fn index(State(guard): State<Arc<lookout_core::auth::ApiGuard>>) -> impl IntoResponse {
    let page = if guard.has_token() {
        INDEX.replace("<!--sign-out-->", SIGN_OUT)
    } else {
        INDEX.to_string()
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
}

/// The WebCodecs codec string of a GOP's stream.
fn codec_string(h: &GopHeader) -> String {
    match h.codec {
        Codec::H264 => {
            // avc1.PPCCLL from the SPS: profile_idc, constraint flags, level_idc.
            let b = |i: usize| h.sps.get(i).copied().unwrap_or(0);
            format!("avc1.{:02x}{:02x}{:02x}", b(1), b(2), b(3))
        }
        // Main profile, level 4.1 as a stand-in; browsers that decode HEVC
        // accept it for the fleet's streams.
        Codec::H265 => "hev1.1.6.L123.B0".to_string(),
    }
}

/// Appends one message to `out`: the envelope, then what `body` writes.
/// The length is filled in afterwards, so nothing is written twice.
fn put_message(out: &mut BytesMut, kind: u8, index: u16, body: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    out.put_u8(kind);
    out.put_u16(index);
    body(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_config(out: &mut BytesMut, index: u16, h: &GopHeader) {
    let json = serde_json::json!({
        "codec": codec_string(h),
        "h265": h.codec == Codec::H265,
        "width": h.width,
        "height": h.height,
        "gop_seq": h.gop_seq,
    });
    put_message(out, 1, index, |b| b.put_slice(json.to_string().as_bytes()));
}

/// A frame: flags, times, then the access unit (a keyframe with the
/// parameter sets in front) — the unit's bytes copied once, into `out`.
fn put_frame(out: &mut BytesMut, index: u16, f: &LiveFrame) {
    put_message(out, 2, index, |b| {
        b.put_u8(u8::from(f.frame.keyframe));
        b.put_u64(f.frame.capture_unix_ns);
        b.put_u64(f.frame.received_unix_ns);
        if f.frame.keyframe {
            for ps in f.header.vps.iter().chain([&f.header.sps, &f.header.pps]) {
                b.put_slice(&[0, 0, 0, 1]);
                b.put_slice(ps);
            }
        }
        b.put_slice(&f.frame.data);
    });
}

#[derive(Debug, serde::Deserialize)]
pub struct LiveParams {
    /// `GATEWAY/CAMERA` ids, comma-separated.
    cameras: String,
}

/// Most cameras one live stream carries.
const MAX_LIVE: usize = 256;

/// Live video of several cameras, interleaved, for one wall page.
pub async fn live(
    State(center): State<Arc<Center>>,
    axum::extract::Query(p): axum::extract::Query<LiveParams>,
) -> Response {
    let wanted: Vec<&str> = p.cameras.split(',').filter(|c| !c.is_empty()).collect();
    if wanted.is_empty() || wanted.len() > MAX_LIVE {
        return (
            StatusCode::BAD_REQUEST,
            format!("cameras: 1 to {MAX_LIVE} GATEWAY/CAMERA ids, comma-separated"),
        )
            .into_response();
    }
    let mut streams = Vec::new();
    for (index, id) in wanted.iter().enumerate() {
        let found = id.split_once('/').and_then(|(gateway, camera)| {
            center
                .gateways
                .get(gateway)
                .and_then(|g| g.cameras.get(camera).map(|c| c.clone()))
        });
        let Some(cam) = found else {
            return (StatusCode::NOT_FOUND, format!("no camera {id}")).into_response();
        };
        streams.push(Box::pin(camera_stream(cam.live.subscribe(), index as u16)));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.lookout.live")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream::select_all(streams)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// One camera's messages, from its next keyframe on.
fn camera_stream(
    rx: broadcast::Receiver<LiveFrame>,
    index: u16,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    struct Viewer {
        rx: broadcast::Receiver<LiveFrame>,
        /// The parameters last announced; `None` until a keyframe.
        config: Option<Arc<GopHeader>>,
        index: u16,
    }
    let viewer = Viewer {
        rx,
        config: None,
        index,
    };
    stream::unfold(viewer, |mut v| async move {
        loop {
            let f = match v.rx.recv().await {
                Ok(f) => f,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Frames were lost: start again at a keyframe.
                    v.config = None;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let mut out = BytesMut::with_capacity(f.frame.data.len() + 512);
            match &v.config {
                None if !f.frame.keyframe => continue,
                Some(h)
                    if h.codec == f.header.codec
                        && h.sps == f.header.sps
                        && h.pps == f.header.pps => {}
                _ => {
                    put_config(&mut out, v.index, &f.header);
                    v.config = Some(f.header.clone());
                }
            }
            put_frame(&mut out, v.index, &f);
            return Some((Ok::<Bytes, Infallible>(out.freeze()), v));
        }
    })
}

/// Server-Sent Events for every open page: `alert` (a ledger record with
/// its clip, when it is stored, updated or acknowledged, or its clip
/// arrives) and `cameras` (the camera table, every second). `EventSource`
/// reconnects by itself.
pub async fn events(
    State(center): State<Arc<Center>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct Feed {
        center: Arc<Center>,
        alerts: broadcast::Receiver<AlertKey>,
        tick: tokio::time::Interval,
    }
    let mut tick = tokio::time::interval(CAMERA_PUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        alerts: center.alert_events.subscribe(),
        center,
        tick,
    };
    let events = stream::unfold(feed, |mut f| async move {
        loop {
            tokio::select! {
                key = f.alerts.recv() => match key {
                    Ok(key) => {
                        let ledger = f.center.ledger.clone();
                        let clips = f.center.clips.clone();
                        let read = move || {
                            ledger.alert(&key.gateway, &key.id).map(|found| {
                                found.map(|a| crate::http::clips::with_clip(&clips, a))
                            })
                        };
                        let found = tokio::task::spawn_blocking(read).await;
                        if let Ok(Ok(Some(a))) = found
                            && let Ok(json) = serde_json::to_string(&a)
                        {
                            return Some((Ok(Event::default().event("alert").data(json)), f));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // The page reloads the list when told it missed some.
                        return Some((Ok(Event::default().event("resync").data("alerts")), f));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = f.tick.tick() => {
                    let json = serde_json::json!({ "cameras": f.center.cameras() }).to_string();
                    return Some((Ok(Event::default().event("cameras").data(json)), f));
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
