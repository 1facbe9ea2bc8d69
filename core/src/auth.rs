//! Who may use an HTTP API (the gateway's and the command center's), and
//! what every answer says to the browser. One middleware, [`guard`], runs
//! before every handler of both APIs:
//!
//! 1. `Host` must be one the API answers for (`config/hosts.rs`):
//!    loopback, the listen address, `allowed_hosts`. Anything else is
//!    refused with 421, reads included, which defeats DNS rebinding (a
//!    hostile page whose name resolves to 127.0.0.1).
//! 2. A write (`POST`, `PUT`, `PATCH`, `DELETE`) whose `Origin` is another
//!    site is refused (403), so a page on the Internet cannot act through
//!    an operator's signed-in browser.
//! 3. With a token (`api_token_file`, required off loopback), every request
//!    but the open paths (`/healthz`, the sign-in form) carries
//!    `Authorization: Bearer TOKEN` or, on the center, the cookie of a
//!    signed-in wall session (`sessions.rs`); otherwise 401.
//!
//! Every answer carries `X-Frame-Options: DENY` and a Content-Security-Policy
//! that allows only the API's own scripts, styles and images and no
//! framing (the wall's Acknowledge button cannot be clickjacked), and
//! `X-Content-Type-Options: nosniff`. Refusals are counted by reason.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::json;

pub use crate::config::hosts::AllowedHosts;
pub use crate::config::token::{MIN_TOKEN_LEN, exposure_problem, read_token};
use crate::logging::untrusted;
use crate::sessions::Sessions;

/// The reasons a request or a connection is refused, each a series of
/// `lookout_http_refused_total` / `lookout_center_http_refused_total`
/// (created at 0, so a dashboard sees every one before it first happens).
pub const REFUSALS: [&str; 4] = ["host", "origin", "token", "connections"];

/// The help text of the refusal series.
pub const REFUSED_HELP: &str = "API requests and connections refused: `host` (a Host this API does \
     not serve: DNS rebinding), `origin` (a write from another site's page), `token` (missing or \
     wrong), `connections` (over the connection cap)";

/// The policy every page and answer carries: scripts, styles, images and
/// requests from the API itself only, no plugins, no `<base>` games, forms
/// post only here, and no page may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the middleware checks, and where it counts refusals.
pub struct ApiGuard {
    token: Option<String>,
    /// The `Host` values this API answers.
    hosts: AllowedHosts,
    /// `{reason}`: see [`REFUSALS`].
    pub refused: Family<Vec<(String, String)>, Counter>,
    /// Paths served without a token (health checks, the sign-in form).
    open_paths: &'static [&'static str],
    /// The page a browser gets at `/` without a token or session (the
    /// center's sign-in form).
    login_page: Option<&'static str>,
    /// Signed-in browsers (the center's wall); `None`: bearer token only.
    sessions: Option<Arc<Sessions>>,
}

impl ApiGuard {
    /// An API used with the bearer token only (the gateway's).
    pub fn new(
        token: Option<String>,
        hosts: AllowedHosts,
        open_paths: &'static [&'static str],
    ) -> Arc<ApiGuard> {
        Arc::new(ApiGuard::build(token, hosts, open_paths, None, None))
    }

    /// Like [`ApiGuard::new`], and a browser may sign in: without a token
    /// or session it gets `page` at `/`, and a session from `sessions`
    /// counts as the token.
    pub fn with_sign_in(
        token: Option<String>,
        hosts: AllowedHosts,
        open_paths: &'static [&'static str],
        page: &'static str,
        sessions: Arc<Sessions>,
    ) -> Arc<ApiGuard> {
        Arc::new(ApiGuard::build(
            token,
            hosts,
            open_paths,
            Some(page),
            Some(sessions),
        ))
    }

    fn build(
        token: Option<String>,
        hosts: AllowedHosts,
        open_paths: &'static [&'static str],
        login_page: Option<&'static str>,
        sessions: Option<Arc<Sessions>>,
    ) -> ApiGuard {
        let refused: Family<Vec<(String, String)>, Counter> = Family::default();
        for reason in REFUSALS {
            refused.get_or_create(&reason_label(reason)).inc_by(0);
        }
        ApiGuard {
            token,
            hosts,
            refused,
            open_paths,
            login_page,
            sessions,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn sessions(&self) -> Option<&Arc<Sessions>> {
        self.sessions.as_ref()
    }

    /// Whether `headers` carry the token, or a live session's cookie;
    /// always true without a token.
    pub fn authorised(&self, headers: &HeaderMap, now: Instant) -> bool {
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
        match (&self.sessions, crate::sessions::session_id(headers)) {
            (Some(sessions), Some(id)) => sessions.check(id, now),
            _ => false,
        }
    }

    /// Whether the token itself is `candidate` (the sign-in form).
    pub fn matches(&self, candidate: &str) -> bool {
        self.token.as_deref().is_some_and(|t| same(candidate, t))
    }

    /// Counts a refusal (one of [`REFUSALS`]).
    pub fn refuse(&self, reason: &str) {
        self.refused.get_or_create(&reason_label(reason)).inc();
    }

    /// The counter of one refusal reason (for the server's connection cap).
    pub fn refusal_counter(&self, reason: &str) -> Counter {
        self.refused.get_or_create(&reason_label(reason)).clone()
    }
}

fn reason_label(reason: &str) -> Vec<(String, String)> {
    vec![("reason".to_string(), reason.to_string())]
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

/// Whether a request's `Origin` (if any) is the site it was sent to. Only
/// meaningful once `Host` is known to be ours: a rebound name makes both
/// the attacker's.
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
        .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host))
}

/// The `Host` a request names: the header, or an absolute request target's
/// authority (HTTP/1.1 allows both; a request with neither names none).
fn requested_host(req: &Request) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok().map(str::to_string),
        None => req.uri().authority().map(|a| a.to_string()),
    }
}

/// The middleware: see the module's description.
pub async fn guard(State(g): State<Arc<ApiGuard>>, req: Request, next: Next) -> Response {
    let mut response = check(&g, req, next).await;
    let h = response.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser
    // sends `Origin: null` with a form's POST, which the origin check must
    // then refuse (the sign-in form would never work).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn check(g: &ApiGuard, req: Request, next: Next) -> Response {
    let host = requested_host(&req);
    if !host.as_deref().is_some_and(|h| g.hosts.allows(h)) {
        g.refuse("host");
        tracing::warn!(
            path = %req.uri().path(),
            host = %untrusted(host.as_deref().unwrap_or("(none)")),
            "request for a host this API does not serve refused (add it to `allowed_hosts` if it is this machine's name)"
        );
        return (
            StatusCode::MISDIRECTED_REQUEST,
            axum::Json(json!({
                "error": "this API does not answer for that host name; \
                          an operator can add it to `allowed_hosts` (docs/SECURITY.md)"
            })),
        )
            .into_response();
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && !same_origin(req.headers()) {
        g.refuse("origin");
        tracing::warn!(
            path = %req.uri().path(),
            origin = %untrusted(req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("(not text)")),
            "cross-origin write refused"
        );
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": "cross-origin writes are refused" })),
        )
            .into_response();
    }
    if g.open_paths.contains(&req.uri().path()) || g.authorised(req.headers(), Instant::now()) {
        return next.run(req).await;
    }
    if let Some(page) = g.login_page
        && req.method() == Method::GET
        && req.uri().path() == "/"
    {
        // A browser opening the wall: ask for the token once (the form
        // posts it to `/login`, which starts a session).
        return (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            page,
        )
            .into_response();
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

    fn loopback() -> AllowedHosts {
        AllowedHosts::new("127.0.0.1:8090".parse().expect("addr"), &[])
    }

    #[test]
    fn token_from_header_or_a_session_never_from_a_token_cookie() {
        let sessions = Arc::new(Sessions::new(crate::sessions::SessionPolicy {
            idle: std::time::Duration::from_secs(60),
            max_age: std::time::Duration::from_secs(600),
            secure: false,
        }));
        let g = ApiGuard::with_sign_in(
            Some("s3cret-token-0123456".into()),
            loopback(),
            &[],
            "<form>",
            sessions.clone(),
        );
        let now = Instant::now();
        assert!(g.authorised(
            &headers(&[("authorization", "Bearer s3cret-token-0123456")]),
            now
        ));
        let id = sessions.start(now).expect("session");
        assert!(g.authorised(
            &headers(&[("cookie", &format!("a=b; lookout_session={id}"))]),
            now
        ));
        // The token itself is no cookie: a leaked cookie must not be it.
        assert!(!g.authorised(
            &headers(&[("cookie", "lookout_token=s3cret-token-0123456")]),
            now
        ));
        assert!(!g.authorised(
            &headers(&[("cookie", "lookout_session=s3cret-token-0123456")]),
            now
        ));
        sessions.end(&id);
        assert!(!g.authorised(
            &headers(&[("cookie", &format!("lookout_session={id}"))]),
            now
        ));
        assert!(!g.authorised(
            &headers(&[("authorization", "Bearer s3cret-token-012345")]),
            now
        ));
        assert!(!g.authorised(&headers(&[("authorization", "s3cret-token-0123456")]), now));
        assert!(!g.authorised(&HeaderMap::new(), now));
        let open = ApiGuard::new(None, loopback(), &[]);
        assert!(open.authorised(&HeaderMap::new(), now));
        // Every refusal reason is a series from the start.
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("refused", "r", open.refused.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for reason in REFUSALS {
            assert!(
                text.contains(&format!("refused_total{{reason=\"{reason}\"}} 0")),
                "{text}"
            );
        }
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
        // A rebound name passes this check (both are the attacker's): the
        // Host check before it is what refuses it.
        assert!(same_origin(&headers(&[
            ("host", "rebind.evil.example:8090"),
            ("origin", "http://rebind.evil.example:8090")
        ])));
        assert!(!loopback().allows("rebind.evil.example:8090"));
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
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        assert!(read_token(&f).is_err_and(|e| e.contains("at least")));
        std::fs::write(&f, "0123456789abcdef-long\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            read_token(&f).is_err_and(|e| e.contains("chmod 600")
                && e.contains(&f.display().to_string())
                && e.contains("0644")),
            "a token other users can read is refused, naming the file and the fix"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(read_token(&f).is_err(), "group-readable");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_token(&f).as_deref(), Ok("0123456789abcdef-long"));
        assert!(read_token(&dir.join("missing")).is_err_and(|e| e.contains("missing")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
