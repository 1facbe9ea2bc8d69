//! The `lookout` binary as an operator uses it: version, configuration
//! checks on every shipped file and on broken copies of them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn lookout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn shipped_configs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .expect("configs/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn version_works_without_environment() {
    let out = lookout()
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(concat!("lookout ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("GStreamer 1."), "{text}");
    assert!(text.contains("ONNX Runtime 1.31"), "{text}");
}

/// The demo's certificates, which configs/demo.toml and configs/center.toml
/// name, made the way the demo makes them.
fn ensure_demo_certs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(make_demo_certs);
}

fn make_demo_certs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.lookout/certs");
    // The GB/T 28181 password file configs/demo.toml names, as the demo writes it (the
    // fleet's devices register with this password).
    let password = dir.join("gb28181-password");
    if !password.is_file() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&dir).expect("certs dir");
        std::fs::write(&password, "fleet-gb28181-password\n").expect("password");
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    if dir.join("center.pem").is_file() && dir.join("demo-gw.pem").is_file() {
        return;
    }
    let out = lookout()
        .arg("certs")
        .arg("--dir")
        .arg(&dir)
        .args([
            "--center",
            "center,127.0.0.1,localhost",
            "--gateway",
            "demo-gw",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_shipped_config_checks_clean() {
    ensure_demo_certs();
    let files = shipped_configs();
    assert!(files.len() >= 2, "expected the demo and county configs");
    for f in files {
        let out = lookout()
            .arg("check-config")
            .arg(&f)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Writes a broken copy of the demo config next to the original (so its
/// relative paths still resolve) and returns check-config's stderr.
fn check_broken(name: &str, edit: impl Fn(&str) -> String) -> (bool, String, String) {
    ensure_demo_certs();
    let original = std::fs::read_to_string(configs_dir().join("demo.toml")).expect("demo.toml");
    let broken = edit(&original);
    assert_ne!(broken, original, "{name}: the edit changed nothing");
    let dir = tempfile::tempdir_in(configs_dir()).expect("tempdir");
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, &broken).expect("write");
    let out = lookout()
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        broken,
    )
}

fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .expect("needle present")
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let (ok, err, text) = check_broken("unknown-key", |s| {
        s.replacen("transport = \"tcp\"", "transprot = \"tcp\"", 1)
    });
    assert!(!ok);
    let line = line_of(&text, "transprot", 0);
    assert!(err.contains(&format!(":{line}:")), "{err}");
    assert!(err.contains("transprot"), "{err}");
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let (ok, err, text) = check_broken("wrong-type", |s| {
        s.replacen("lat = 29.31", "lat = \"north\"", 1)
    });
    assert!(!ok);
    let line = line_of(&text, "\"north\"", 0);
    assert!(err.contains(&format!(":{line}:")), "{err}");
    assert!(err.contains("camera[0].location.lat"), "{err}");
}

#[test]
fn duplicate_camera_id_is_named_with_its_line() {
    let (ok, err, text) = check_broken("duplicate-id", |s| {
        s.replacen("id = \"tower-02\"", "id = \"tower-01\"", 1)
    });
    assert!(!ok);
    let line = line_of(&text, "id = \"tower-01\"", 1);
    assert!(err.contains(&format!(":{line}:")), "{err}");
    assert!(err.contains("duplicate camera id `tower-01`"), "{err}");
}

#[test]
fn missing_model_is_named() {
    let (ok, err, _) = check_broken("missing-model", |s| {
        format!(
            "{s}\n[[detector]]\nid = \"smoke\"\nmodel = \"no-such-model.onnx\"\noutput = \"classification\"\nlabels = [\"none\", \"smoke\"]\nalert_labels = [\"smoke\"]\ninput = {{ width = 224, height = 224 }}\n"
        )
    });
    assert!(!ok);
    assert!(err.contains("detector[0].model"), "{err}");
    assert!(err.contains("no-such-model.onnx"), "{err}");
}

#[test]
fn unreadable_file_fails_cleanly() {
    let out = lookout()
        .args(["check-config", "/nonexistent/lookout.toml"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/lookout.toml"), "{err}");
}

#[test]
fn detect_reports_unreadable_images_and_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/yolo");
    let good = fixture.join("images/smoke_tower_320x320_2000019.png");
    let missing = dir.path().join("missing.jpg");
    let out = lookout()
        .args(["detect", "--config"])
        .arg(fixture.join("detector.toml"))
        .arg(&junk)
        .arg(&good)
        .arg(&missing)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The readable image is still detected.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json line");
    assert_eq!(line["detector"], "yolo");
    assert!(!line["detections"].as_array().expect("array").is_empty());
    // Each bad one is named.
    assert!(stderr.contains("junk.png"), "{stderr}");
    assert!(stderr.contains("missing.jpg"), "{stderr}");
    assert!(
        stderr.contains("2 of 3 image(s) could not be read"),
        "{stderr}"
    );
}

#[test]
fn detect_names_an_unknown_detector() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/yolo");
    let out = lookout()
        .args(["detect", "--detector", "nope", "--config"])
        .arg(fixture.join("detector.toml"))
        .arg(fixture.join("images/smoke_tower_320x320_2000019.png"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no [[detector]] with id `nope`"),
        "{stderr}"
    );
    assert!(stderr.contains("yolo"), "{stderr}");
}
