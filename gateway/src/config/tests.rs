use std::path::Path;

use super::*;

const GOOD: &str = r#"
[gateway]
id = "gw-1"

[[camera]]
id = "tower-01"
kind = "tower"
url = "rtsp://admin:secret@127.0.0.1:8554/tower-01"
username = "admin"
password = "secret"
location = { lat = 30.5, lon = 114.2 }
sampling = "2fps"

[[camera]]
id = "drone-01"
kind = "drone"
url = "rtsp://127.0.0.1:8554/drone-01"
transport = "tcp"
"#;

fn problems(src: &str) -> Vec<Problem> {
    let path = Path::new("test.toml");
    match Config::parse(path, src) {
        Err(p) => p.0,
        Ok(c) => super::problems_at(path, src, c.validate()).0,
    }
}

#[test]
fn good_config_parses_with_defaults() {
    let c = Config::parse(Path::new("x.toml"), GOOD).expect("parses");
    assert!(c.validate().0.is_empty());
    assert_eq!(c.cameras.len(), 2);
    assert_eq!(c.cameras[0].sampling, Sampling::Fps(2.0));
    assert_eq!(c.cameras[1].sampling, Sampling::Keyframes);
    assert_eq!(c.cameras[1].transport, Transport::Tcp);
    assert_eq!(c.gateway.http_listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn unknown_key_is_reported_with_line_and_key() {
    let src = GOOD.replace("transport = \"tcp\"", "transprot = \"tcp\"");
    let p = problems(&src);
    assert_eq!(p.len(), 1, "{p:?}");
    let line = src
        .lines()
        .position(|l| l.starts_with("transprot"))
        .expect("line")
        + 1;
    assert_eq!(p[0].line, line);
    assert!(p[0].message.contains("transprot"), "{}", p[0].message);
    assert!(p[0].key.starts_with("camera[1]"), "{}", p[0].key);
}

#[test]
fn wrong_type_is_reported_with_line_and_key() {
    let src = GOOD.replace("lat = 30.5", "lat = \"north\"");
    let p = problems(&src);
    assert_eq!(p.len(), 1, "{p:?}");
    let line = src
        .lines()
        .position(|l| l.contains("\"north\""))
        .expect("line")
        + 1;
    assert_eq!(p[0].line, line);
    assert_eq!(p[0].key, "camera[0].location.lat");
}

#[test]
fn duplicate_camera_id_names_both() {
    let src = GOOD.replace("id = \"drone-01\"", "id = \"tower-01\"");
    let p = problems(&src);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "camera[1].id");
    let line = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("id = \"tower-01\""))
        .nth(1)
        .expect("second")
        .0
        + 1;
    assert_eq!(p[0].line, line);
    assert!(p[0].message.contains("camera[0]"), "{}", p[0].message);
}

#[test]
fn semantic_checks_report_every_mistake() {
    let src = GOOD
        .replace("lon = 114.2", "lon = 214.2")
        .replace("sampling = \"2fps\"", "detectors = [\"nope\"]")
        .replace("rtsp://127.0.0.1:8554/drone-01", "http://127.0.0.1/drone");
    let p = problems(&src);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "camera[0].location.lon",
            "camera[0].detectors",
            "camera[1].url"
        ],
        "{p:?}"
    );
    assert!(p.iter().all(|p| p.line > 0));
}

#[test]
fn bad_sampling_explains_the_form() {
    let src = GOOD.replace("\"2fps\"", "\"often\"");
    let p = problems(&src);
    assert_eq!(p.len(), 1);
    assert!(p[0].message.contains("keyframes"), "{}", p[0].message);
}

#[test]
fn credentials_never_appear_in_problems() {
    let src = GOOD.replace("sampling = \"2fps\"", "kind = \"tower\"");
    let p = problems(&src);
    assert!(!p.is_empty());
    for pr in &p {
        assert!(!pr.to_string().contains("secret"), "{pr}");
    }
    let src = GOOD.replace(
        "rtsp://admin:secret@127.0.0.1",
        "ftp://admin:secret@127.0.0.1",
    );
    let p = problems(&src);
    assert_eq!(p.len(), 1);
    assert!(!p[0].to_string().contains("secret"), "{}", p[0]);
}

#[test]
fn redacts_user_info() {
    assert_eq!(
        redact_url("rtsp://admin:pa@ss@10.0.0.1:554/stream?x=1"),
        "rtsp://***@10.0.0.1:554/stream?x=1"
    );
    assert_eq!(redact_url("rtsp://10.0.0.1/a@b"), "rtsp://10.0.0.1/a@b");
    assert_eq!(
        redact_text("could not open \"rtsp://u:p@host/x\" (timeout)"),
        "could not open \"rtsp://***@host/x\" (timeout)"
    );
}

#[test]
fn passwords_with_url_delimiters_are_redacted_whole() {
    for (url, shown) in [
        (
            "rtsp://admin:Pa/SsW0rd@10.0.0.1:554/stream",
            "rtsp://***@10.0.0.1:554/stream",
        ),
        ("rtsp://admin:1234/5678@cam/live", "rtsp://***@cam/live"),
        ("rtsp://admin:a?b#c@cam/live?x=1", "rtsp://***@cam/live?x=1"),
        ("rtsp://admin:p@s/s@cam/live", "rtsp://***@cam/live"),
        ("rtsp://admin@cam/live", "rtsp://***@cam/live"),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
        assert!(url_has_credentials(url), "{url}");
        let text = redact_text(&format!("rtspsrc: could not open {url}: timeout"));
        assert_eq!(text, format!("rtspsrc: could not open {shown}: timeout"));
    }
    // No `:` before the `@`, no `@` in the authority: nothing secret, the
    // `@` is the path's.
    assert!(!url_has_credentials("rtsp://10.0.0.1/a@b"));
    assert!(!url_has_credentials("rtsp://10.0.0.1:554/live"));
    // The check sees the host after the last `@`.
    assert!(check_rtsp_url("rtsp://admin:Pa/SsW0rd@10.0.0.1/stream").is_ok());
    assert!(
        check_rtsp_url("rtsp://admin:Pa/SsW0rd@/stream")
            .is_err_and(|e| e.contains("no host") && !e.contains("SsW0rd"))
    );
}

/// A detector entry whose model file exists (this very source file stands in:
/// `validate` only checks that it is there).
fn with_detector(extra_detector: &str, extra_camera: &str) -> String {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    format!(
        r#"{GOOD}detectors = ["sf"]
{extra_camera}

[[detector]]
id = "sf"
model = "{}"
output = "classification"
labels = ["none", "smoke", "flood"]
alert_labels = ["smoke", "flood"]
input = {{ width = 224, height = 224 }}
{extra_detector}
"#,
        model.display()
    )
}

#[test]
fn zones_and_alert_policy_parse_with_defaults() {
    let src = with_detector(
        "alert = { raise_after = 3, window = 5, severity = { flood = \"critical\" } }",
        "[[camera.zone]]\nmode = \"include\"\nlabels = [\"flood\"]\npolygon = [[0, 400], [1280, 400], [1280, 720]]",
    );
    let c = Config::parse(Path::new("x.toml"), &src).expect("parses");
    assert!(c.validate().0.is_empty(), "{:?}", c.validate().0);
    let z = &c.cameras[1].zones[0];
    assert_eq!(z.mode, ZoneMode::Include);
    assert_eq!(z.polygon.len(), 3);
    let a = &c.detectors[0].alert;
    assert_eq!((a.raise_after, a.window, a.clear_after), (3, 5, 3));
    assert_eq!(a.cooldown_s, 60.0);
    assert_eq!(a.severity.get("flood"), Some(&Severity::Critical));
    assert_eq!(c.detectors[0].batch_wait_ms, 5);
    assert_eq!(c.detectors[0].preprocess, crate::config::Preprocess::Auto);
}

#[test]
fn preprocess_placement_is_read_and_a_wrong_one_is_named() {
    for (text, want) in [
        ("inline", crate::config::Preprocess::Inline),
        ("overlap", crate::config::Preprocess::Overlap),
    ] {
        let src = with_detector(&format!("preprocess = \"{text}\""), "");
        let c = Config::parse(Path::new("x.toml"), &src).expect("parses");
        assert_eq!(c.detectors[0].preprocess, want);
    }
    let src = with_detector("preprocess = \"gpu\"", "");
    let e = Config::parse(Path::new("x.toml"), &src).expect_err("unknown placement");
    let text = e.to_string();
    assert!(
        text.contains("preprocess") && text.contains("gpu"),
        "{text}"
    );
}

#[test]
fn bad_zones_and_alert_policy_are_located() {
    let src = with_detector(
        "alert = { raise_after = 4, window = 3, severity = { fire = \"high\" } }\nqueue_limit = 0",
        "[[camera.zone]]\nlabels = [\"fire\"]\npolygon = [[0, 0], [10, 0]]",
    );
    let keys: Vec<String> = problems(&src).into_iter().map(|p| p.key).collect();
    for want in [
        "camera[1].zone[0].polygon",
        "camera[1].zone[0].labels",
        "detector[0].alert.raise_after",
        "detector[0].alert.severity",
        "detector[0].queue_limit",
    ] {
        assert!(keys.iter().any(|k| k == want), "{want} not in {keys:?}");
    }
}

#[test]
fn gb28181_cameras_need_the_sip_side_and_twenty_digit_ids() {
    let camera = "\n[[camera]]\nid = \"bc-1\"\nkind = \"bodycam\"\n\
                  gb28181 = { device = \"3402000000132000000\", channel = \"34020000001310000001\" }\n\
                  \n[[camera]]\nid = \"bc-2\"\nkind = \"bodycam\"\nurl = \"rtsp://127.0.0.1/x\"\n\
                  gb28181 = { device = \"34020000001320000001\", channel = \"34020000001310000001\", transport = \"tcp\" }\n";
    let p = problems(&format!("{GOOD}{camera}"));
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "camera[2].gb28181",
            "camera[2].gb28181.device",
            "camera[3].url",
            "camera[3].gb28181",
        ],
        "{p:?}"
    );
    // With the SIP side configured, only the id and the url remain wrong.
    let src = GOOD.replace(
        "id = \"gw-1\"\n",
        "id = \"gw-1\"\n\n[gateway.gb28181]\nsip_listen = \"127.0.0.1:5060\"\n\
         id = \"34020000002000000001\"\ndomain = \"3402000000\"\npassword_file = \"/nonexistent\"\n",
    );
    let p = problems(&format!("{src}{camera}"));
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"camera[2].gb28181.device"), "{p:?}");
    assert!(keys.contains(&"camera[3].url"), "{p:?}");
    assert!(!keys.contains(&"camera[2].gb28181"), "{p:?}");
}
