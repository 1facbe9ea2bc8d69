//! The HTTP APIs' security promises, against real `lookout run` and
//! `lookout center` processes: an API off loopback without a token is
//! refused by the configuration check; with a token, requests without it
//! get 401 (counted), `/healthz` stays open, the wall's browser signs in
//! once through a form that sets an HttpOnly cookie; writes from another
//! site's page are refused; camera passwords never appear in the API,
//! metrics or logs.

mod procs;

use std::path::Path;

use procs::{Proc, certs, http, lookout, refused_tcp_port};

const TOKEN: &str = "county-ops-7f3a9c1e5b2d";
const PASSWORD: &str = "Tower-Pass-9931";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
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
    write(&dir.path().join("token"), "short\n");
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
fn the_gateway_api_needs_its_token_and_never_shows_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("token"), &format!("{TOKEN}\n"));
    let config = dir.path().join("gateway.toml");
    write(
        &config,
        &format!(
            "[gateway]\nid = \"gw-1\"\nhttp_listen = \"127.0.0.1:0\"\napi_token_file = \"token\"\n\
             storage = \"data\"\n\n\
             [[camera]]\nid = \"tower-01\"\nkind = \"tower\"\n\
             url = \"rtsp://admin:{PASSWORD}@127.0.0.1:{}/stream\"\n\n\
             [[camera]]\nid = \"tower-02\"\nkind = \"tower\"\n\
             url = \"rtsp://127.0.0.1:{}/stream\"\nusername = \"admin\"\npassword = \"{PASSWORD}\"\n",
            refused_tcp_port(),
            refused_tcp_port(),
        ),
    );
    let gw = Proc::start(&["run", "--config"], &config, "lookout gateway running");
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
    let (_, cameras) = gw
        .request("GET", "/api/cameras", None, &[&bearer])
        .expect("answer");
    for (what, text) in [
        ("/api/cameras", cameras.to_string()),
        ("/metrics", metrics),
        ("the log", gw.log()),
    ] {
        assert!(!text.contains(PASSWORD), "the camera password is in {what}");
    }
    assert!(gw.log().contains("tower-01"), "the log names the cameras");
}

#[test]
fn the_center_wall_signs_in_with_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("certs");
    certs(&ca, &["--center", "center,127.0.0.1"]);
    write(&dir.path().join("token"), &format!("{TOKEN}\n"));
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
            .is_some_and(|p| p.contains("action=\"/login\"")),
        "{page}"
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
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default();
    let header = format!("Cookie: {pair}");
    for path in ["/", "/wall.js", "/api/alerts", "/api/cameras"] {
        let (status, _) = center
            .request("GET", path, None, &[&header])
            .expect("answer");
        assert_eq!(status, 200, "{path} with the cookie");
    }
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
    let (_, metrics) = center
        .request("GET", "/metrics", None, &[&header])
        .expect("answer");
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("lookout_center_http_refused_total{reason=\"token\"} 3")
            && metrics.contains("lookout_center_http_refused_total{reason=\"origin\"} 1"),
        "{metrics}"
    );
}
