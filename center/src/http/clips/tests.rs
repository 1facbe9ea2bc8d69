//! The clip routes through the center's whole router (guard included), on a ledger and
//! a clip store in a temporary folder: byte ranges and their edge cases, `404`s, the
//! id-only path's resolution, `HEAD`, entity tags, streaming in chunks, and the clip
//! in the alerts' JSON. `parse_range` is also tested alone.

use super::*;
use crate::Center;
use crate::clips::{ClipOffer, ClipRetention};
use crate::config::CenterConfig;
use crate::ledger::{Incoming, Ledger};
use axum::Router;
use axum::http::Request;
use futures_util::StreamExt;
use lookout_codecs::relay::Alert;
use lookout_core::metrics::Metrics;
use lookout_core::sessions::{SessionPolicy, Sessions};
use sha2::Digest;
use std::time::Duration;

struct Fixture {
    _tmp: tempfile::TempDir,
    center: Arc<Center>,
    app: Router,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let config: CenterConfig = toml::from_str(
        "[center]\nid = \"c-1\"\nlisten = \"127.0.0.1:4433\"\n\
         ca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n",
    )
    .unwrap();
    let ledger = Arc::new(Ledger::open(&tmp.path().join("ledger.sqlite3")).unwrap());
    let clips =
        Arc::new(ClipStore::open(tmp.path().join("clips"), ClipRetention::default()).unwrap());
    let center = Arc::new(Center::new("c-1", ledger, clips, &config));
    let sessions = Arc::new(Sessions::new(SessionPolicy {
        idle: Duration::from_secs(60),
        max_age: Duration::from_secs(3600),
        secure: false,
    }));
    let guard = super::super::guard(
        None,
        lookout_core::auth::AllowedHosts::new(config.center.http_listen, &[]),
        sessions,
    );
    let metrics = Arc::new(Metrics::new("test", "none", "none"));
    let app = super::super::router(center.clone(), metrics, guard);
    Fixture {
        _tmp: tmp,
        center,
        app,
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Stores `bytes` as the clip of `gateway`'s alert `id`.
fn store_clip(center: &Center, gateway: &str, id: &str, bytes: &[u8]) {
    let offer = ClipOffer {
        gateway: gateway.to_string(),
        alert_id: id.to_string(),
        size: bytes.len() as u64,
        sha256: sha2::Sha256::digest(bytes).into(),
        meta_json: String::new(),
    };
    center.clips.append(&offer, 0, bytes).unwrap();
    center.clips.complete(&offer).unwrap();
}

/// Stores an alert of `gateway` with id `id` in the ledger.
fn store_alert(center: &Center, gateway: &str, id: &str) {
    let payload = serde_json::json!({
        "id": id, "state": "active", "gateway": gateway,
        "camera": {"id": "cam-1", "kind": "tower"}, "label": "smoke", "severity": "high",
    });
    let alert = Alert {
        id: id.to_string(),
        revision: 0,
        payload_json: payload.to_string(),
        snapshot_jpeg: None,
    };
    center
        .ledger
        .store(gateway, &[Incoming::Alert(alert)], 1_000)
        .unwrap();
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8090");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::empty()).unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> axum::response::Response {
    let svc = hyper_util::service::TowerToHyperService::new(app.clone());
    hyper::service::Service::call(&svc, req).await.unwrap()
}

async fn send(app: &Router, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let resp = call(app, request(method, path, headers)).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(app, Method::GET, path, headers).await
}

const CLIP: &str = "/api/gateways/gw-1/alerts/a-1/clip.mp4";

#[tokio::test]
async fn single_ranges_answer_206_with_exactly_those_bytes() {
    let f = fixture();
    let clip = data(1000);
    store_clip(&f.center, "gw-1", "a-1", &clip);
    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, 999),
        ("bytes=-10", 990, 999),
        ("bytes=990-5000", 990, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=999-999", 999, 999),
    ] {
        let a = get(&f.app, CLIP, &[("range", range)]).await;
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            a.header(header::CONTENT_RANGE),
            format!("bytes {first}-{last}/1000"),
            "{range}"
        );
        assert_eq!(
            a.header(header::CONTENT_LENGTH),
            (last - first + 1).to_string()
        );
        assert_eq!(a.header(header::CONTENT_TYPE), "video/mp4");
        assert_eq!(&a.body[..], &clip[first..=last], "{range}");
    }
}

#[tokio::test]
async fn a_range_beyond_the_end_answers_416_with_the_size() {
    let f = fixture();
    store_clip(&f.center, "gw-1", "a-1", &data(1000));
    for range in [
        "bytes=1000-",
        "bytes=1000-1200",
        "bytes=-0",
        "bytes=99999999999999999999-",
    ] {
        let a = get(&f.app, CLIP, &[("range", range)]).await;
        assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(a.header(header::CONTENT_RANGE), "bytes */1000", "{range}");
        assert!(a.body.is_empty());
    }
}

#[tokio::test]
async fn without_a_usable_range_the_whole_clip_is_sent() {
    let f = fixture();
    let clip = data(1000);
    store_clip(&f.center, "gw-1", "a-1", &clip);
    let etag = format!("\"{}\"", hex_of(&clip));
    for headers in [
        vec![],
        vec![("range", "bytes=0-1,5-6")],
        vec![("range", "bytes=5-1")],
        vec![("range", "items=0-1")],
        vec![("range", "bytes=abc")],
        // The browser's copy is another clip: the range is not of this one.
        vec![("range", "bytes=0-9"), ("if-range", "\"0000\"")],
    ] {
        let a = get(&f.app, CLIP, &headers).await;
        assert_eq!(a.status, StatusCode::OK, "{headers:?}");
        assert_eq!(a.header(header::CONTENT_TYPE), "video/mp4");
        assert_eq!(a.header(header::ACCEPT_RANGES), "bytes");
        assert_eq!(a.header(header::CONTENT_LENGTH), "1000");
        assert_eq!(a.header(header::ETAG), etag);
        assert!(a.headers.get(header::CONTENT_RANGE).is_none());
        assert_eq!(&a.body[..], &clip[..], "{headers:?}");
    }
    // With the right tag, `If-Range` lets the range through.
    let a = get(&f.app, CLIP, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], &clip[..10]);
    // And `If-None-Match` with it (or its weak form) answers 304, no body.
    let weak = format!("W/{etag}");
    for tag in [&etag, &weak] {
        let a = get(&f.app, CLIP, &[("if-none-match", tag)]).await;
        assert_eq!(a.status, StatusCode::NOT_MODIFIED, "{tag}");
        assert!(a.body.is_empty());
    }
    let a = get(&f.app, CLIP, &[("if-none-match", "\"0000\"")]).await;
    assert_eq!(a.status, StatusCode::OK);
}

fn hex_of(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn head_answers_the_headers_without_the_body() {
    let f = fixture();
    store_clip(&f.center, "gw-1", "a-1", &data(1000));
    let a = send(&f.app, Method::HEAD, CLIP, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header(header::CONTENT_LENGTH), "1000");
    assert_eq!(a.header(header::CONTENT_TYPE), "video/mp4");
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn an_unknown_clip_answers_404_saying_so() {
    let f = fixture();
    store_clip(&f.center, "gw-1", "a-1", &data(100));
    let a = get(&f.app, "/api/gateways/gw-1/alerts/nope/clip.mp4", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        text.contains("no clip for alert nope of gateway gw-1"),
        "{text}"
    );
    let a = get(&f.app, "/api/gateways/gw-2/alerts/a-1/clip.mp4", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // By id alone, an alert the ledger does not know.
    let a = get(&f.app, "/api/alerts/nope/clip.mp4", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_id_only_path_resolves_like_the_snapshot() {
    let f = fixture();
    let clip = data(300);
    store_alert(&f.center, "gw-1", "a-1");
    store_clip(&f.center, "gw-1", "a-1", &clip);
    let a = get(&f.app, "/api/alerts/a-1/clip.mp4", &[("range", "bytes=-3")]).await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&a.body[..], &clip[297..]);
    // A second gateway uses the id: the path must name the gateway.
    store_alert(&f.center, "gw-2", "a-1");
    let a = get(&f.app, "/api/alerts/a-1/clip.mp4", &[]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    // The alert is known but has no clip.
    store_alert(&f.center, "gw-1", "a-2");
    let a = get(&f.app, "/api/alerts/a-2/clip.mp4", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ids_with_slashes_are_found_through_their_encoded_path() {
    let f = fixture();
    let clip = data(50);
    store_clip(&f.center, "gw-1", "../a/b", &clip);
    let a = get(&f.app, "/api/gateways/gw-1/alerts/..%2Fa%2Fb/clip.mp4", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], &clip[..]);
}

#[tokio::test]
async fn a_large_clip_is_streamed_in_chunks() {
    let f = fixture();
    let clip = data(5 * CHUNK + 123);
    store_clip(&f.center, "gw-1", "a-1", &clip);
    let resp = call(&f.app, request(Method::GET, CLIP, &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut chunks = resp.into_body().into_data_stream();
    let mut got = Vec::new();
    let mut count = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= CHUNK, "a chunk of {} bytes", chunk.len());
        got.extend_from_slice(&chunk);
        count += 1;
    }
    assert!(count >= 6, "{count} chunks");
    assert_eq!(got, clip);
}

#[tokio::test]
async fn the_alerts_json_carries_the_clip_or_null() {
    let f = fixture();
    store_alert(&f.center, "gw-1", "a-1");
    store_alert(&f.center, "gw-1", "a/2");
    store_clip(&f.center, "gw-1", "a-1", &data(1234));
    let a = get(&f.app, "/api/alerts", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    for alert in alerts {
        match alert["id"].as_str().unwrap() {
            "a-1" => {
                assert_eq!(alert["clip"]["url"], CLIP);
                assert_eq!(alert["clip"]["bytes"], 1234);
                // The ledger's own fields are still there, flattened.
                assert_eq!(alert["gateway"], "gw-1");
                assert_eq!(alert["label"], "smoke");
            }
            "a/2" => assert!(alert["clip"].is_null(), "{alert}"),
            other => panic!("unexpected alert {other}"),
        }
    }
    let a = get(&f.app, "/api/gateways/gw-1/alerts/a-1", &[]).await;
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(body["clip"]["bytes"], 1234);
    let a = get(&f.app, "/api/alerts/a%2F2", &[]).await;
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(body["clip"].is_null(), "{body}");
    assert_eq!(body["id"], "a/2");
}

#[test]
fn parse_range_follows_rfc_9110() {
    use RangeAnswer::*;
    let part = |first, last| Part { first, last };
    for (value, size, want) in [
        ("bytes=0-99", 1000, part(0, 99)),
        ("bytes=100-", 1000, part(100, 999)),
        ("bytes=-10", 1000, part(990, 999)),
        ("bytes=-1000", 1000, part(0, 999)),
        ("bytes=-2000", 1000, part(0, 999)),
        ("bytes=0-0", 1, part(0, 0)),
        ("bytes=0-18446744073709551615", 10, part(0, 9)),
        ("bytes=0-99999999999999999999999", 10, part(0, 9)),
        ("BYTES=1-2", 10, part(1, 2)),
        ("bytes=1000-", 1000, Unsatisfiable),
        ("bytes=1000-1001", 1000, Unsatisfiable),
        ("bytes=-0", 1000, Unsatisfiable),
        ("bytes=5-4", 1000, Full),
        ("bytes=0-1, 3-4", 1000, Full),
        ("bytes=", 1000, Full),
        ("bytes=-", 1000, Full),
        ("bytes=a-b", 1000, Full),
        ("bytes=+1-2", 1000, Full),
        ("bytes=1", 1000, Full),
        ("chars=0-1", 1000, Full),
        ("", 1000, Full),
    ] {
        assert_eq!(parse_range(value, size), want, "{value:?} of {size}");
    }
}

/// One raw HTTP/1.1 exchange with a real server: the head as text, and the body.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> (String, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec())
        .unwrap()
        .to_lowercase();
    (head, raw[end + 4..].to_vec())
}

#[tokio::test]
async fn over_a_real_connection_head_keeps_the_length_and_ranges_arrive_whole() {
    let f = fixture();
    let clip = data(3 * CHUNK + 7);
    store_clip(&f.center, "gw-1", "a-1", &clip);
    let (_trigger, shutdown) = lookout_core::shutdown::Trigger::new();
    let (addr, _server) = lookout_core::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        f.app.clone(),
        shutdown,
        Default::default(),
    )
    .await
    .unwrap();
    let ask = |method: &str, extra: &str| {
        format!("{method} {CLIP} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n{extra}\r\n")
    };
    let (head, body) = exchange(addr, &ask("HEAD", "")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", clip.len())),
        "{head}"
    );
    assert!(body.is_empty());
    let (head, body) = exchange(addr, &ask("GET", "range: bytes=100-\r\n")).await;
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(
        head.contains(&format!(
            "content-range: bytes 100-{}/{}",
            clip.len() - 1,
            clip.len()
        )),
        "{head}"
    );
    assert_eq!(body, &clip[100..]);
}
