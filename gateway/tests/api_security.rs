//! The HTTP APIs' security promises, against real `lookout run` and
//! `lookout center` processes: an API off loopback without a token is
//! refused by the configuration check, and so is a token file other users
//! can read; with a token, requests without it get 401 (counted),
//! `/healthz` stays open, the wall's browser signs in through a form that
//! starts a server-side session (its cookie is not the token; signing out
//! ends it); writes from another site's page are refused, and so is every
//! request for a host name the API does not serve (DNS rebinding); camera
//! passwords, `/`, `?` and `#` in them included, never appear in the API,
//! metrics or logs; pages cannot be framed; a GET changes nothing; a
//! client that dribbles its headers is cut off; logged user text cannot
//! forge a log line; the ledger is its owner's alone.

mod procs;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use procs::{Proc, certs, http, lookout, refused_tcp_port};

const TOKEN: &str = "county-ops-7f3a9c1e5b2d";
const PASSWORD: &str = "Tower-Pass-9931";
/// Written unescaped in a camera URL, as installers do.
const SLASHED: &str = "Pa/Ss?W0rd#17";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// A token file as an operator must keep it: the owner's alone.
fn write_secret(path: &Path, text: &str) {
    write(path, text);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Sends `request` as is (any `Host`), returns the whole answer.
fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("request");
    let mut out = Vec::new();
    // A reset after the answer is still an answer.
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A request with `host` as its `Host` header, and optional extra header
/// lines and JSON body.
fn request(addr: &str, method: &str, path: &str, host: &str, extra: &[&str], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if body.is_empty() {
        r.push_str("\r\n");
    } else {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    raw(addr, &r)
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A header of an answer (names compared without case).
fn answer_header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer
        .split("\r\n\r\n")
        .next()?
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or_default()
}

#[test]
fn an_exposed_api_without_a_token_is_refused_by_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("exposed.toml");
    write(
        &config,
        "[gateway]\nid = \"gw-1\"\nhttp_listen = \"0.0.0.0:8080\"\n",
    );
    let out = lookout()
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("check-config runs");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("http_listen")
            && text.contains("api_token_file")
            && text.contains("0.0.0.0:8080"),
        "{text}"
    );
    // A token too short to be a secret is refused as well.
    write_secret(&dir.path().join("token"), "short\n");
    write(
        &config,
        "[gateway]\nid = \"gw-1\"\nhttp_listen = \"0.0.0.0:8080\"\napi_token_file = \"token\"\n",
    );
    let out = lookout()
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("check-config runs");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("at least 16"),
        "{text}"
    );
}

#[test]
fn a_token_file_other_users_can_read_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    write(&token, &format!("{TOKEN}\n"));
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let gateway = dir.path().join("gateway.toml");
    write(
        &gateway,
        "[gateway]\nid = \"gw-1\"\nhttp_listen = \"0.0.0.0:8080\"\napi_token_file = \"token\"\n",
    );
    let center = dir.path().join("center.toml");
    write(
        &center,
        "[center]\nid = \"c\"\nlisten = \"127.0.0.1:0\"\napi_token_file = \"token\"\n\
         ca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\n",
    );
    for config in [&gateway, &center] {
        let out = lookout()
            .arg("check-config")
            .arg(config)
            .output()
            .expect("check-config runs");
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("api_token_file")
                && text.contains(&token.display().to_string())
                && text.contains("chmod 600"),
            "the error names the key, the file and the fix: {text}"
        );
    }
    // The center refuses to start with it, too.
    let out = lookout()
        .args(["center", "--config"])
        .arg(&center)
        .output()
        .expect("center runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn the_gateway_api_needs_its_token_and_never_shows_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_secret(&dir.path().join("token"), &format!("{TOKEN}\n"));
    let config = dir.path().join("gateway.toml");
    write(
        &config,
        &format!(
            "[gateway]\nid = \"gw-1\"\nhttp_listen = \"127.0.0.1:0\"\napi_token_file = \"token\"\n\
             storage = \"data\"\n\n\
             [[camera]]\nid = \"tower-01\"\nkind = \"tower\"\n\
             url = \"rtsp://admin:{PASSWORD}@127.0.0.1:{}/stream\"\n\n\
             [[camera]]\nid = \"tower-02\"\nkind = \"tower\"\n\
             url = \"rtsp://127.0.0.1:{}/stream\"\nusername = \"admin\"\npassword = \"{PASSWORD}\"\n\n\
             [[camera]]\nid = \"tower-03\"\nkind = \"tower\"\n\
             url = \"rtsp://admin:{SLASHED}@127.0.0.1:{}/Streaming/101\"\n",
            refused_tcp_port(),
            refused_tcp_port(),
            refused_tcp_port(),
        ),
    );
    // The check accepts the file, warns about the credentials in the two
    // URLs, and shows neither password.
    let out = lookout()
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("check-config runs");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches("warning:").count(),
        2,
        "one warning per URL with credentials: {text}"
    );
    assert!(
        text.contains("camera[0].url")
            && text.contains("camera[2].url")
            && text.contains("`username`")
            && text.contains("`password`"),
        "{text}"
    );
    let secret_parts = [PASSWORD, SLASHED, "Ss?W0rd", "W0rd#17"];
    for part in secret_parts {
        assert!(!text.contains(part), "{part} in the check's output: {text}");
    }

    let gw = Proc::start_logging(
        &["run", "--config"],
        &config,
        "lookout gateway running",
        "info,lookout=debug",
    );
    let bearer = format!("Authorization: Bearer {TOKEN}");

    let (status, _) = gw.request("GET", "/healthz", None, &[]).expect("answer");
    assert_eq!(status, 200, "/healthz stays open for supervisors");
    for path in ["/api/cameras", "/api/alerts", "/metrics", "/api/upstreams"] {
        let (status, _) = gw.request("GET", path, None, &[]).expect("answer");
        assert_eq!(status, 401, "{path} without the token");
        let (status, _) = gw
            .request(
                "GET",
                path,
                None,
                &["Authorization: Bearer wrong-token-0000000"],
            )
            .expect("answer");
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, _) = gw.request("GET", path, None, &[&bearer]).expect("answer");
        assert_eq!(status, 200, "{path} with the token");
    }
    let alert = r#"{"id":"sos-1","camera":"tower-01","label":"sos","source":"operator:li"}"#;
    let (status, _) = gw
        .request("POST", "/api/alerts", Some(alert), &[])
        .expect("answer");
    assert_eq!(status, 401, "POST without the token");
    let (status, _) = gw
        .request(
            "POST",
            "/api/alerts",
            Some(alert),
            &[&bearer, "Origin: https://evil.example"],
        )
        .expect("answer");
    assert_eq!(status, 403, "a cross-origin write, even with the token");
    let (status, reply) = gw
        .request("POST", "/api/alerts", Some(alert), &[&bearer])
        .expect("answer");
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["alert"]["source"], "operator:li");
    let (status, reply) = gw
        .request(
            "POST",
            "/api/alerts",
            Some(r#"{"camera":"nowhere","label":"sos","source":"x"}"#),
            &[&bearer],
        )
        .expect("answer");
    assert!(
        status == 404
            && reply["error"]
                .as_str()
                .is_some_and(|e| e.contains("nowhere")),
        "{status} {reply}"
    );

    // Refusals are counted; the password is nowhere.
    let (_, metrics) = gw
        .request("GET", "/metrics", None, &[&bearer])
        .expect("answer");
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("lookout_http_refused_total{reason=\"token\"} 9"),
        "{metrics}"
    );
    assert!(metrics.contains("lookout_http_refused_total{reason=\"origin\"} 1"));
    assert!(metrics.contains("lookout_external_alerts_total{outcome=\"written\"} 1"));
    assert!(metrics.contains("lookout_http_refused_total{reason=\"host\"} 0"));
    assert!(metrics.contains("lookout_http_refused_total{reason=\"connections\"} 0"));

    // DNS rebinding: a page from a name the attacker points at 127.0.0.1
    // sends its own name as Host (and as Origin). Refused before anything
    // else, reads included; loopback names are served.
    let p = port(&gw.http);
    let rebound = format!("rebind.example:{p}");
    let origin = format!("Origin: http://{rebound}");
    let answer = request(&gw.http, "GET", "/api/cameras", &rebound, &[&bearer], "");
    assert_eq!(status_of(&answer), 421, "{answer}");
    let clear = r#"{"id":"sos-1","camera":"tower-01","label":"sos","source":"operator:li","state":"cleared"}"#;
    let answer = request(
        &gw.http,
        "POST",
        "/api/alerts",
        &rebound,
        &[&bearer, &origin],
        clear,
    );
    assert_eq!(status_of(&answer), 421, "{answer}");
    let answer = request(
        &gw.http,
        "GET",
        "/api/cameras",
        &format!("localhost:{p}"),
        &[&bearer],
        "",
    );
    assert_eq!(status_of(&answer), 200, "{answer}");
    let answer = request(&gw.http, "GET", "/healthz", &format!("[::1]:{p}"), &[], "");
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(answer_header(&answer, "x-frame-options"), Some("DENY"));
    let (_, alert) = gw
        .request("GET", "/api/alerts/sos-1", None, &[&bearer])
        .expect("answer");
    assert_eq!(
        alert["state"], "active",
        "the rebound clear changed nothing: {alert}"
    );
    let metrics = gw.text_with("/metrics", &bearer);
    assert!(
        metrics.contains("lookout_http_refused_total{reason=\"host\"} 2"),
        "{metrics}"
    );

    // Give the cameras a moment to fail (their errors quote the URL).
    std::thread::sleep(Duration::from_secs(2));
    let (_, cameras) = gw
        .request("GET", "/api/cameras", None, &[&bearer])
        .expect("answer");
    let cameras = cameras.to_string();
    assert!(
        cameras.contains("rtsp://***@127.0.0.1:"),
        "URLs are shown redacted: {cameras}"
    );
    let log = gw.log();
    for (what, text) in [
        ("/api/cameras", &cameras),
        ("/metrics", &metrics),
        ("the log", &log),
    ] {
        for part in secret_parts {
            assert!(
                !text.contains(part),
                "a camera password ({part}) is in {what}:\n{text}"
            );
        }
    }
    assert!(log.contains("tower-01"), "the log names the cameras");
    assert!(
        log.contains("connecting") && log.contains("tower-03"),
        "the debug lines (with the redacted URL) were seen:\n{log}"
    );
}

#[test]
fn the_center_wall_signs_in_with_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("certs");
    certs(&ca, &["--center", "center,127.0.0.1"]);
    write_secret(&dir.path().join("token"), &format!("{TOKEN}\n"));
    let config = dir.path().join("center.toml");
    write(
        &config,
        &format!(
            "[center]\nid = \"center\"\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             api_token_file = \"token\"\nstorage = \"data\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            ca.join("ca.pem").display(),
            ca.join("center.pem").display(),
            ca.join("center.key").display(),
        ),
    );
    let center = Proc::start(&["center", "--config"], &config, "lookout center running");

    // A browser without the cookie gets the sign-in form, the API a 401.
    let (status, page) = center.request("GET", "/", None, &[]).expect("answer");
    assert_eq!(status, 200);
    assert!(
        page.as_str()
            .is_some_and(|p| p.contains("action=\"/login\"") && !p.contains("<style")),
        "the form, without inline style (the CSP forbids it): {page}"
    );
    let (status, _) = center
        .request("GET", "/login.css", None, &[])
        .expect("answer");
    assert_eq!(status, 200, "the form's style is served before sign-in");
    let answer = request(&center.http, "GET", "/", &center.http, &[], "");
    assert!(
        answer_header(&answer, "content-security-policy")
            .is_some_and(|c| c.contains("frame-ancestors 'none'")),
        "{answer}"
    );
    let (status, _) = center
        .request("GET", "/api/alerts", None, &[])
        .expect("answer");
    assert_eq!(status, 401);
    let (status, _) = center
        .request("GET", "/wall.js", None, &[])
        .expect("answer");
    assert_eq!(status, 401);

    // The form: a wrong token shows it again, the right one sets the cookie.
    let form = |token: &str| {
        let body = format!("token={token}");
        let mut s = std::net::TcpStream::connect(&center.http).expect("connect");
        use std::io::{Read, Write};
        write!(
            s,
            "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            center.http,
            body.len()
        )
        .expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    };
    let wrong = form("not-the-token-123456");
    assert!(
        wrong.starts_with("HTTP/1.1 401") && wrong.contains("Wrong token"),
        "{wrong}"
    );
    let right = form(TOKEN);
    assert!(right.starts_with("HTTP/1.1 303"), "{right}");
    let cookie = right
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/")
            && cookie.contains("Max-Age="),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default();
    let (name, session) = pair.split_once('=').expect("name=value");
    assert_eq!(name, "lookout_session");
    assert!(
        !cookie.contains(TOKEN) && session.len() >= 64,
        "the cookie is a random session id, never the token: {cookie}"
    );
    let header = format!("Cookie: {pair}");
    for path in ["/", "/wall.js", "/api/alerts", "/api/cameras"] {
        let (status, _) = center
            .request("GET", path, None, &[&header])
            .expect("answer");
        assert_eq!(status, 200, "{path} with the cookie");
    }
    let (_, page) = center
        .request("GET", "/", None, &[&header])
        .expect("answer");
    assert!(
        page.as_str()
            .is_some_and(|p| p.contains("action=\"/logout\"")),
        "the wall has a sign-out button: {page}"
    );
    // The token as a cookie (what the wall used to set) is nothing.
    let (status, _) = center
        .request(
            "GET",
            "/api/alerts",
            None,
            &[&format!("Cookie: lookout_token={TOKEN}")],
        )
        .expect("answer");
    assert_eq!(status, 401, "the token in a cookie");
    // With the cookie, another site's page still cannot write.
    let (status, _) = http(
        &center.http,
        "POST",
        "/api/alerts/x/ack",
        Some(r#"{"operator":"intruder"}"#),
        &[&header, "Origin: http://evil.example"],
    )
    .expect("answer");
    assert_eq!(status, 403);
    // Signing out ends the session on the server: the same cookie, kept
    // or copied, opens nothing any more.
    let logout = request(
        &center.http,
        "POST",
        "/logout",
        &center.http,
        &[&header, &format!("Origin: http://{}", center.http)],
        "",
    );
    assert_eq!(status_of(&logout), 303, "{logout}");
    assert!(
        answer_header(&logout, "set-cookie").is_some_and(|c| c.contains("Max-Age=0")),
        "{logout}"
    );
    let (status, _) = center
        .request("GET", "/api/alerts", None, &[&header])
        .expect("answer");
    assert_eq!(status, 401, "the signed-out session");
    let metrics = center.text_with("/metrics", &format!("Authorization: Bearer {TOKEN}"));
    assert!(
        metrics.contains("lookout_center_http_refused_total{reason=\"token\"} 5")
            && metrics.contains("lookout_center_http_refused_total{reason=\"origin\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_default_center_refuses_rebinding_framing_get_resets_slow_headers_and_forged_log_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("certs");
    certs(&ca, &["--center", "center,127.0.0.1"]);
    let config = dir.path().join("center.toml");
    // The default: loopback, no token.
    write(
        &config,
        &format!(
            "[center]\nid = \"center\"\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
             storage = \"data\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            ca.join("ca.pem").display(),
            ca.join("center.pem").display(),
            ca.join("center.key").display(),
        ),
    );
    let center = Proc::start(&["center", "--config"], &config, "lookout center running");
    let p = port(&center.http);

    // DNS rebinding: Origin and Host agree, both the attacker's name.
    let rebound = format!("rebind.example:{p}");
    let ack = r#"{"operator":"intruder"}"#;
    let answer = request(
        &center.http,
        "POST",
        "/api/alerts/x/ack",
        &rebound,
        &[&format!("Origin: http://{rebound}")],
        ack,
    );
    assert_eq!(status_of(&answer), 421, "{answer}");
    for path in ["/api/alerts", "/api/gateways", "/", "/metrics"] {
        let answer = request(&center.http, "GET", path, &rebound, &[], "");
        assert_eq!(status_of(&answer), 421, "GET {path}: {answer}");
    }
    let answer = request(
        &center.http,
        "GET",
        "/api/alerts",
        &format!("localhost:{p}"),
        &[],
        "",
    );
    assert_eq!(status_of(&answer), 200, "{answer}");

    // Pages cannot be framed or sniffed, and load only their own files.
    for path in ["/", "/wall.js", "/api/alerts"] {
        let answer = request(&center.http, "GET", path, &center.http, &[], "");
        assert_eq!(status_of(&answer), 200, "{path}");
        assert_eq!(
            answer_header(&answer, "x-frame-options"),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            answer_header(&answer, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        let csp = answer_header(&answer, "content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
    }
    let (status, page) = center.request("GET", "/", None, &[]).expect("answer");
    assert_eq!(status, 200);
    assert!(
        page.as_str().is_some_and(|p| !p.contains("/logout")),
        "no sign-out without a sign-in"
    );

    // A GET changes nothing: the reset is a POST.
    let (status, reply) = center
        .request("GET", "/api/latency?reset=true", None, &[])
        .expect("answer");
    assert_eq!(status, 405, "{reply}");
    assert!(
        reply.to_string().contains("POST /api/latency/reset"),
        "{reply}"
    );
    let (status, _) = center
        .request("GET", "/api/latency", None, &[])
        .expect("answer");
    assert_eq!(status, 200);
    let (status, reply) = center
        .request("POST", "/api/latency/reset", Some("{}"), &[])
        .expect("answer");
    assert_eq!(status, 200, "{reply}");
    assert!(reply["capture_to_center"]["count"].is_u64(), "{reply}");

    // An operator name that would forge a log line (a newline, then what
    // looks like another entry, then a terminal escape) is refused, and
    // logged escaped on the line that says so.
    let forged = r#"{"operator":"intruder\n2026-11-29T08:15:00.000000Z  INFO alert acknowledged operator=chief\u001b[2K"}"#;
    let (status, reply) = center
        .request("POST", "/api/alerts/sos-1/ack", Some(forged), &[])
        .expect("answer");
    assert_eq!(status, 400, "{reply}");
    assert!(
        procs::wait(Duration::from_secs(5), || center
            .logged("intruder\\n2026-11-29T08:15:00.000000Z")),
        "{}",
        center.log()
    );
    let log = center.log();
    assert!(!log.contains('\x1b'), "a raw escape reached the log");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-11-29T08:15:00.000000Z")),
        "a forged line:\n{log}"
    );
    assert!(log.contains("\\u{1b}[2K"), "{log}");

    // The ledger and its WAL files are the owner's alone.
    for name in ["ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"] {
        let path = dir.path().join("data").join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}: {mode:o}");
    }
    let folder = std::fs::metadata(dir.path().join("data")).expect("data");
    assert_eq!(folder.permissions().mode() & 0o777, 0o700);

    // Half a request: the connection is closed after the header timeout
    // (5 s), not held for as long as the client likes.
    let mut slow = TcpStream::connect(&center.http).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    slow.write_all(
        format!(
            "GET /api/alerts HTTP/1.1\r\nHost: {}\r\nX-Slow: 1",
            center.http
        )
        .as_bytes(),
    )
    .expect("half a request");
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    let held = started.elapsed();
    assert!(
        closed.is_ok() && held >= Duration::from_secs(4) && held <= Duration::from_secs(9),
        "closed after {held:?}: {closed:?} {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(center.get("/healthz")["status"] == "ok");
}
