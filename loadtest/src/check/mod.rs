//! `lookout-loadtest check-report FILE...`: checks a report against the
//! contract in `docs/REPORT.md`, so a script or a reviewer can tell a report
//! it may compare from one it may not before reading a figure.
//!
//! The schema is written in code (`schema.rs`), one table of fields per kind of
//! report (`run`, `capacity`, `soak`, `detect`, `link`, `fleet`, as
//! `provenance::ReportKind` names them). Fields beyond the tables are
//! allowed: the contract lists what must be there, not all there may be.
//! Every problem names its JSON path (`latency_ms.relay.count`,
//! `samples[3].frames.sent`) and what was expected there.

mod schema;

use serde_json::Value;

use crate::provenance::{ReportKind, SCHEMA_VERSION};

use Ty::*;
use schema::{Field, PERCENTILE_FIGURES, Ty, schema};

/// `parent.name`, or `name` at the top.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// A value as it reads in a message, cut short.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Checks `v` at `path` against `ty`, adding `path: problem` lines.
fn check_value(path: &str, v: &Value, ty: Ty, out: &mut Vec<String>) {
    let mut bad =
        |expected: &str| out.push(format!("{path}: expected {expected}, found {}", shown(v)));
    match ty {
        Count if !v.is_u64() => bad("an integer count (e.g. 12, not 12.0)"),
        CountOrNull if !(v.is_u64() || v.is_null()) => bad("an integer count or null"),
        Int if !(v.is_i64() || v.is_u64()) => bad("an integer"),
        Num if !v.is_number() => bad("a number"),
        NumOrNull if !(v.is_number() || v.is_null()) => bad("a number, or null if not measured"),
        Str if !v.is_string() => bad("a string"),
        StrOrNull if !(v.is_string() || v.is_null()) => bad("a string or null"),
        Bool if !v.is_boolean() => bad("true or false"),
        Percentiles => check_percentiles(path, v, out),
        Obj(fields) => match v.as_object() {
            Some(_) => check_fields(path, v, fields, out),
            None => bad("an object"),
        },
        MapOf(item) => match v.as_object() {
            Some(map) => {
                for (k, x) in map {
                    check_value(&join(path, k), x, *item, out);
                }
            }
            None => bad("an object"),
        },
        ArrayOf(item) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    check_value(&format!("{path}[{i}]"), x, *item, out);
                }
            }
            None => bad("an array"),
        },
        _ => {}
    }
}

fn check_fields(path: &str, v: &Value, fields: &[Field], out: &mut Vec<String>) {
    for (name, ty) in fields {
        let at = join(path, name);
        match v.get(*name) {
            Some(x) => check_value(&at, x, *ty, out),
            None => out.push(format!("{at}: missing")),
        }
    }
}

fn check_percentiles(path: &str, v: &Value, out: &mut Vec<String>) {
    if !v.is_object() {
        out.push(format!(
            "{path}: expected a percentile object {{p50, p90, p99, p999, max, count}}, found {}",
            shown(v)
        ));
        return;
    }
    let count = match v.get("count") {
        Some(c) if c.is_u64() => c.as_u64(),
        Some(c) => {
            out.push(format!(
                "{path}.count: expected an integer count of samples, found {}",
                shown(c)
            ));
            None
        }
        None => {
            out.push(format!(
                "{path}.count: missing (every percentile object carries its sample count)"
            ));
            None
        }
    };
    for name in PERCENTILE_FIGURES {
        let at = join(path, name);
        match (v.get(name), count) {
            (None, _) => out.push(format!("{at}: missing")),
            (Some(x), Some(0)) if !x.is_null() => out.push(format!(
                "{at}: expected null with count 0 (nothing was measured), found {}",
                shown(x)
            )),
            (Some(x), Some(n)) if n > 0 && !x.is_number() => out.push(format!(
                "{at}: expected a number (count is {n}), found {}",
                shown(x)
            )),
            (Some(x), None) if !(x.is_number() || x.is_null()) => out.push(format!(
                "{at}: expected a number or null, found {}",
                shown(x)
            )),
            _ => {}
        }
    }
}

/// Every object anywhere in the report that looks like percentiles (has a
/// `p50` or a `p99`) is checked as one, whether the tables name it or not:
/// the contract asks every percentile object for its count.
fn scan_percentiles(path: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if map.contains_key("p50") || map.contains_key("p99") {
                check_percentiles(path, v, out);
            }
            for (k, x) in map {
                scan_percentiles(&join(path, k), x, out);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                scan_percentiles(&format!("{path}[{i}]"), x, out);
            }
        }
        _ => {}
    }
}

fn is_hex(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The provenance fields every kind carries.
fn check_provenance(v: &Value, out: &mut Vec<String>) {
    match v.get("lookout_version") {
        Some(x) => check_value("lookout_version", x, Str, out),
        None => out.push("lookout_version: missing".into()),
    }
    match v.get("git_revision") {
        None => out.push("git_revision: missing (null when not built from a git checkout)".into()),
        Some(Value::Null) => {}
        Some(Value::String(r)) => {
            let hash = r.strip_suffix("-dirty").unwrap_or(r);
            if !is_hex(hash, 7..=40) {
                out.push(format!(
                    "git_revision: expected a short commit hash, with -dirty when the tree had changes, found {r:?}"
                ));
            }
        }
        Some(x) => out.push(format!(
            "git_revision: expected a string or null, found {}",
            shown(x)
        )),
    }
    match v.get("argv") {
        None => out.push("argv: missing (the command line that wrote the report)".into()),
        Some(Value::Array(a)) if a.is_empty() => {
            out.push("argv: empty; expected the command line, program first".into())
        }
        Some(x) => check_value("argv", x, ArrayOf(&Str), out),
    }
    match v.get("model_sha256") {
        None => out.push(
            "model_sha256: missing (an object of model path → SHA-256; {} when no model ran)"
                .into(),
        ),
        Some(Value::Object(models)) => {
            for (path, digest) in models {
                if !digest.as_str().is_some_and(|d| is_hex(d, 64..=64)) {
                    out.push(format!(
                        "{}: expected 64 lowercase hex digits, found {}",
                        join("model_sha256", path),
                        shown(digest)
                    ));
                }
            }
        }
        Some(x) => out.push(format!(
            "model_sha256: expected an object of model path → SHA-256, found {}",
            shown(x)
        )),
    }
}

/// Rules between fields that the contract states.
fn check_rules(kind: ReportKind, v: &Value, out: &mut Vec<String>) {
    if kind == ReportKind::Run && v["slo"]["passed"] == Value::Bool(true) {
        for name in ["missed", "false_alerts", "duplicate_alerts"] {
            if let Some(n) = v["incidents"][name].as_u64()
                && n > 0
            {
                out.push(format!(
                    "slo.passed: true, but incidents.{name} is {n} (the SLO requires 0)"
                ));
            }
        }
    }
}

/// The kind of a valid report, or every problem found, each naming its path.
pub fn check(v: &Value) -> Result<ReportKind, Vec<String>> {
    let mut out = Vec::new();
    if !v.is_object() {
        return Err(vec![format!(
            "(top): expected a JSON object, found {}",
            shown(v)
        )]);
    }
    match v.get("schema_version") {
        None => {
            return Err(vec![format!(
                "schema_version: missing: a report from before schema {SCHEMA_VERSION} (no provenance, 0.0 for what was not measured); regenerate it with this lookout-loadtest"
            )]);
        }
        Some(x) => match x.as_u64() {
            Some(SCHEMA_VERSION) => {}
            Some(n) if n > SCHEMA_VERSION => {
                return Err(vec![format!(
                    "schema_version: {n} is newer than this lookout-loadtest knows ({SCHEMA_VERSION})"
                )]);
            }
            _ => {
                return Err(vec![format!(
                    "schema_version: expected {SCHEMA_VERSION}, found {}",
                    shown(x)
                )]);
            }
        },
    }
    let names: Vec<&str> = ReportKind::ALL.iter().map(|k| k.name()).collect();
    let kind = match v.get("kind") {
        Some(Value::String(k)) => match ReportKind::from_name(k) {
            Some(kind) => kind,
            None => {
                return Err(vec![format!(
                    "kind: {k:?} is not one of {}",
                    names.join(", ")
                )]);
            }
        },
        Some(x) => {
            return Err(vec![format!(
                "kind: expected one of {}, found {}",
                names.join(", "),
                shown(x)
            )]);
        }
        None => return Err(vec![format!("kind: missing (one of {})", names.join(", "))]),
    };
    check_provenance(v, &mut out);
    check_fields("", v, schema(kind), &mut out);
    scan_percentiles("", v, &mut out);
    check_rules(kind, v, &mut out);
    // A percentile object named by the tables is also found by the scan.
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    if out.is_empty() { Ok(kind) } else { Err(out) }
}

/// `check-report`: checks each file, prints a line per file and per
/// problem; fails if any file is unreadable or invalid.
pub fn run(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut invalid = 0;
    for path in files {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|text| {
                serde_json::from_str::<Value>(&text).map_err(|e| format!("not JSON: {e}"))
            });
        let result = match parsed {
            Ok(v) => check(&v),
            Err(e) => Err(vec![e]),
        };
        match result {
            Ok(kind) => println!(
                "{}: valid {} report (schema {SCHEMA_VERSION})",
                path.display(),
                kind.name()
            ),
            Err(problems) => {
                invalid += 1;
                println!(
                    "{}: invalid, {} problem(s):",
                    path.display(),
                    problems.len()
                );
                for p in problems {
                    println!("  {p}");
                }
            }
        }
    }
    anyhow::ensure!(
        invalid == 0,
        "{invalid} of {} report(s) do not meet the contract (docs/REPORT.md)",
        files.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provenance(kind: &str) -> Value {
        json!({
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "lookout_version": "0.1.0",
            "git_revision": "e31ba52df388-dirty",
            "argv": ["lookout-loadtest", kind],
            "model_sha256": {},
        })
    }

    fn with(mut base: Value, figures: Value) -> Value {
        if let (Some(b), Some(f)) = (base.as_object_mut(), figures.as_object()) {
            b.extend(f.clone());
        }
        base
    }

    fn pct(count: u64) -> Value {
        if count == 0 {
            json!({"p50": null, "p90": null, "p99": null, "p999": null, "max": null, "count": 0})
        } else {
            json!({"p50": 1.0, "p90": 2.0, "p99": 3.0, "p999": 4.0, "max": 5, "count": count})
        }
    }

    fn problems(v: &Value) -> Vec<String> {
        check(v).err().unwrap_or_default()
    }

    #[test]
    fn a_link_report_passes_and_a_float_count_names_its_path() {
        let dir = json!({"packets_in": 10, "bytes_in": 1000, "delivered": 9, "lost": 1, "queue_full": 0, "partitioned": 0});
        let good = with(
            provenance("link"),
            json!({"to_server": dir, "to_client": dir, "clients": 1}),
        );
        assert_eq!(check(&good).ok(), Some(ReportKind::Link));
        let mut bad = good.clone();
        bad["to_client"]["lost"] = json!(1.0);
        let p = problems(&bad);
        assert!(
            p.len() == 1 && p[0].starts_with("to_client.lost: expected an integer count"),
            "{p:?}"
        );
    }

    #[test]
    fn capacity_and_fleet_reports_pass() {
        let capacity = with(
            provenance("capacity"),
            json!({
                "slo": {"capture_to_alert_p99_ms": 100.0, "relay_p99_ms": 5.0, "lost": 0},
                "capacity_cameras": 64, "first_miss_cameras": null, "duration_s": 40.0,
                "steps": [{"cameras": 64, "passed": true, "misses": [], "report": "r.json"}],
            }),
        );
        assert_eq!(check(&capacity).ok(), Some(ReportKind::Capacity));
        let fleet = with(
            provenance("fleet"),
            json!({
                "cameras": 1, "serving_s": 2.0, "frames_produced": 50, "frames_pushed": 50,
                "frames_late": 0, "on_time_ratio": 1.0, "max_late_ms": 0.4, "cpu_cores": 0.1,
                "per_camera": [{"id": "tower-01", "kind": "tower", "codec": "h264", "width": 1280,
                    "height": 720, "fps": 25, "frames_pushed": 50, "frames_late": 0}],
            }),
        );
        assert_eq!(check(&fleet).ok(), Some(ReportKind::Fleet));
    }

    #[test]
    fn percentiles_need_a_count_and_null_when_empty() {
        let mut v = with(provenance("link"), json!({}));
        v["extra"] = json!({"lat": {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "count": 0}});
        v["other"] = json!({"p50": 1.0, "p99": 2.0});
        let p = problems(&v);
        assert!(
            p.iter()
                .any(|x| x.starts_with("extra.lat.p99: expected null with count 0")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x.starts_with("other.count: missing")),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x == "to_server: missing"), "{p:?}");
        assert_eq!(check_one(&pct(0)), Vec::<String>::new());
        assert_eq!(check_one(&pct(3)), Vec::<String>::new());
    }

    fn check_one(p: &Value) -> Vec<String> {
        let mut out = Vec::new();
        check_percentiles("x", p, &mut out);
        out
    }

    #[test]
    fn old_reports_and_bad_provenance_are_refused() {
        let old = json!({"lookout_version": "0.1.0", "frames": {}});
        let p = problems(&old);
        assert!(p[0].starts_with("schema_version: missing"), "{p:?}");
        let mut v = provenance("run");
        v["git_revision"] = json!("not a hash");
        v["argv"] = json!([]);
        v["model_sha256"] = json!({"models/m.onnx": "abc"});
        let p = problems(&v);
        for prefix in [
            "git_revision: expected a short commit hash",
            "argv: empty",
            "model_sha256.models/m.onnx: expected 64",
            "latency_ms: missing",
        ] {
            assert!(p.iter().any(|x| x.starts_with(prefix)), "{prefix}: {p:?}");
        }
        v["kind"] = json!("bogus");
        assert!(problems(&v)[0].starts_with("kind: \"bogus\" is not one of"));
    }

    #[test]
    fn a_passed_slo_with_a_missed_incident_is_refused() {
        let mut v = provenance("run");
        v["slo"] = json!({"passed": true});
        v["incidents"] = json!({"missed": 1, "false_alerts": 0, "duplicate_alerts": 2});
        let p = problems(&v);
        assert!(
            p.iter()
                .any(|x| x == "slo.passed: true, but incidents.missed is 1 (the SLO requires 0)"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("slo.passed: true, but incidents.duplicate_alerts is 2")),
            "{p:?}"
        );
    }
}
