//! Who may use an HTTP API (the gateway's and the command center's): an
//! optional bearer token, and no writes from another site's web page.
//!
//! Both APIs bind to loopback by default, where only this machine's users
//! reach them. An API bound to any other address must have a token
//! (`api_token_file`; the configuration check refuses it otherwise): every
//! request but `/healthz` then carries `Authorization: Bearer TOKEN`, or the
//! `lookout_token` cookie that the center's login form sets for the wall's
//! browser. Independently of the token, a write (`POST`, `PUT`, `PATCH`,
//! `DELETE`) whose `Origin` is another site is refused, so a page on the
//! Internet cannot act through an operator's logged-in browser.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

pub use crate::config::token::{MIN_TOKEN_LEN, exposure_problem, read_token};

/// The cookie the center's login form sets.
pub const COOKIE: &str = "lookout_token";

/// What the middleware checks, and where it counts refusals.
pub struct ApiGuard {
    token: Option<String>,
    /// `lookout_http_refused_total{reason}`: `token`, `origin`.
    pub refused: Family<Vec<(String, String)>, Counter>,
    /// Paths served without a token (health checks, the login form).
    open_paths: &'static [&'static str],
    /// The page a browser gets at `/` without the token (the center's wall).
    login_page: Option<&'static str>,
}

impl ApiGuard {
    pub fn new(token: Option<String>, open_paths: &'static [&'static str]) -> Arc<ApiGuard> {
        Arc::new(ApiGuard {
            token,
            refused: Family::default(),
            open_paths,
            login_page: None,
        })
    }

    /// Like [`ApiGuard::new`], and a browser without the token gets `page`
    /// at `/`.
    pub fn with_login(
        token: Option<String>,
        open_paths: &'static [&'static str],
        page: &'static str,
    ) -> Arc<ApiGuard> {
        Arc::new(ApiGuard {
            token,
            refused: Family::default(),
            open_paths,
            login_page: Some(page),
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry the token (header or cookie); always true
    /// without one.
    pub fn authorised(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if bearer.is_some_and(|b| same(b, token)) {
            return true;
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == COOKIE && same(v, token))
    }

    /// Whether the token itself is `candidate` (the login form).
    pub fn matches(&self, candidate: &str) -> bool {
        self.token.as_deref().is_some_and(|t| same(candidate, t))
    }

    /// Counts a refusal (`token`, `origin`).
    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

/// Compares without stopping at the first difference, so response times
/// don't reveal how much of a guess was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Whether a request's `Origin` (if any) is the site it was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // curl, scripts, integrations: not a browser page
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host)
}

/// The middleware: refuses cross-origin writes (403) and, with a token,
/// requests without it (401).
pub async fn guard(State(g): State<Arc<ApiGuard>>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && !same_origin(req.headers()) {
        g.refuse("origin");
        tracing::warn!(
            path = %req.uri().path(),
            origin = ?req.headers().get(header::ORIGIN),
            "cross-origin write refused"
        );
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": "cross-origin writes are refused" })),
        )
            .into_response();
    }
    if g.open_paths.contains(&req.uri().path()) || g.authorised(req.headers()) {
        return next.run(req).await;
    }
    if let Some(page) = g.login_page
        && req.method() == Method::GET
        && req.uri().path() == "/"
    {
        // A browser opening the wall: ask for the token once (the form
        // posts it to `/login`, which sets the cookie).
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    }
    g.refuse("token");
    tracing::warn!(path = %req.uri().path(), "API request without a valid token refused");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(
            json!({ "error": "this API requires a token: send `Authorization: Bearer TOKEN`" }),
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn token_from_header_or_cookie() {
        let g = ApiGuard::new(Some("s3cret-token-0123456".into()), &[]);
        assert!(g.authorised(&headers(&[(
            "authorization",
            "Bearer s3cret-token-0123456"
        )])));
        assert!(g.authorised(&headers(&[(
            "cookie",
            "a=b; lookout_token=s3cret-token-0123456"
        )])));
        assert!(!g.authorised(&headers(&[("authorization", "Bearer s3cret-token-012345")])));
        assert!(!g.authorised(&headers(&[("authorization", "s3cret-token-0123456")])));
        assert!(!g.authorised(&headers(&[("cookie", "other=s3cret-token-0123456")])));
        assert!(!g.authorised(&HeaderMap::new()));
        let open = ApiGuard::new(None, &[]);
        assert!(open.authorised(&HeaderMap::new()));
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same("abcdef", "abcdef"));
        assert!(!same("abcdeg", "abcdef"));
        assert!(!same("abcde", "abcdef"));
        assert!(!same("abcdefg", "abcdef"));
        assert!(!same("", "abcdef"));
    }

    #[test]
    fn origins() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8090")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8090"),
            ("origin", "http://127.0.0.1:8090")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8090"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[("origin", "null")])));
    }

    #[test]
    fn exposure_rule() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert!(exposure_problem(lo, false).is_none());
        assert!(exposure_problem(any, true).is_none());
        assert!(
            exposure_problem(any, false)
                .is_some_and(|p| p.contains("0.0.0.0:8080") && p.contains("api_token_file"))
        );
    }

    #[test]
    fn token_files() {
        let dir = std::env::temp_dir().join(format!("lookout-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("t");
        std::fs::write(&f, "short\n").expect("write");
        assert!(read_token(&f).is_err_and(|e| e.contains("at least")));
        std::fs::write(&f, "0123456789abcdef-long\n").expect("write");
        assert_eq!(read_token(&f).as_deref(), Ok("0123456789abcdef-long"));
        assert!(read_token(&dir.join("missing")).is_err_and(|e| e.contains("missing")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
