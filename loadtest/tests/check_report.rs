//! `lookout-loadtest check-report` on the reports the repository publishes
//! and on broken copies of valid ones: every committed report that claims
//! schema 2 passes, every older one is refused as older (not as broken in
//! some other way), and a report missing a field or with a count written as
//! a float is refused with the JSON path named.
//!
//! Runs no fleet and no gateway: the valid reports are the committed ones
//! and the counters of a one-second `link` run.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn reports_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reports")
}

/// The committed JSON reports, and whether each claims a schema version.
fn committed() -> Vec<(PathBuf, Value)> {
    // The folder and its subfolders (a capacity search's steps).
    let entries = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    };
    let top = entries(&reports_dir());
    let below = top.iter().filter(|p| p.is_dir()).flat_map(|d| entries(d));
    let mut out: Vec<(PathBuf, Value)> = below
        .chain(top.iter().cloned())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn committed_reports_of_the_current_schema_pass_and_older_ones_are_told_apart() {
    let reports = committed();
    assert!(!reports.is_empty(), "no report in docs/reports");
    let mut current = 0;
    for (path, v) in &reports {
        let (ok, text) = support::check_report_output(&[path]);
        if v.get("schema_version").is_some() {
            current += 1;
            assert!(ok, "{} claims a schema version:\n{text}", path.display());
        } else {
            // Written before schema 2: refused for that reason first, so a
            // reader knows to regenerate it rather than to fix it by hand.
            assert!(!ok, "{} has no schema_version yet passed", path.display());
            assert!(
                text.contains("schema_version: missing"),
                "{}:\n{text}",
                path.display()
            );
            println!("older than schema 2: {}", path.display());
        }
    }
    assert!(
        current > 0,
        "docs/reports holds no schema-2 report to check"
    );
}

/// Writes `v` to a file in `dir` and runs check-report on it.
fn check_value(dir: &Path, name: &str, v: &Value) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(v).expect("serialise")).expect("write");
    support::check_report_output(&[&path])
}

/// Removes the field at a dotted path.
fn remove(v: &mut Value, path: &str) {
    let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
    let mut at = &mut *v;
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        at = &mut at[part];
    }
    let removed = at.as_object_mut().and_then(|o| o.remove(name));
    assert!(removed.is_some(), "no field {path} to remove");
}

/// Sets the field at a dotted path to a float of the same value.
fn as_float(v: &mut Value, path: &str) {
    let mut at = &mut *v;
    for part in path.split('.') {
        at = &mut at[part];
    }
    let n = at
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a count"));
    *at = Value::from(n as f64);
}

fn refused(dir: &Path, label: &str, v: &Value, path: &str) {
    let (ok, text) = check_value(dir, &format!("{label}.json"), v);
    assert!(!ok, "{label}: check-report accepted it:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with(&format!("{path}:"))),
        "{label}: the problem should name {path}:\n{text}"
    );
}

#[test]
fn a_removed_field_or_a_float_count_is_refused_by_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A real run report, as published.
    let (_, run) = committed()
        .into_iter()
        .find(|(_, v)| v["kind"] == "run" && v["schema_version"] == 2)
        .expect("a schema-2 run report in docs/reports");
    assert!(check_value(dir.path(), "run.json", &run).0);
    for field in [
        "frames.sent",
        "latency_ms.relay.count",
        "baselines.ort_raw_inferences_per_s",
        "git_revision",
        "model_sha256",
        "slo.passed",
    ] {
        let mut v = run.clone();
        remove(&mut v, field);
        refused(dir.path(), &format!("without-{field}"), &v, field);
    }
    for count in [
        "frames.sent",
        "incidents.missed",
        "detector.frames_in",
        "latency_ms.relay.count",
    ] {
        let mut v = run.clone();
        as_float(&mut v, count);
        refused(dir.path(), &format!("float-{count}"), &v, count);
    }

    // The link emulator's counters, written by the tool a moment ago.
    let stats = dir.path().join("link.json");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .args([
            "link",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "127.0.0.1:9",
            "--duration",
            "1s",
            "--stats",
        ])
        .arg(&stats)
        .output()
        .expect("lookout-loadtest link runs");
    assert!(out.status.success(), "{out:?}");
    support::check_report(&stats);
    let link: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("JSON");
    assert_eq!(link["kind"], "link");
    assert!(link["argv"].as_array().is_some_and(|a| a.len() > 1));
    let mut v = link.clone();
    remove(&mut v, "to_server.lost");
    refused(dir.path(), "link-without-lost", &v, "to_server.lost");
    let mut v = link;
    as_float(&mut v, "clients");
    refused(dir.path(), "link-float-clients", &v, "clients");
}
