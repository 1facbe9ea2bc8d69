//! Running `lookout-loadtest` the way the benchmark tests do, and the
//! small pieces the process tests share.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::Value;

/// Runs `lookout-loadtest ARGS --workdir WORK --report WORK/report.json`
/// from the workspace root, prints what it printed, fails with that and the
/// ends of the gateway's and center's logs if it fails, and returns the
/// report (and what it printed).
pub fn loadtest_report(args: &[&str], work: &Path) -> (Value, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let report: PathBuf = work.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .current_dir(&root)
        .args(args)
        .arg("--workdir")
        .arg(work)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("lookout-loadtest runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    let tail = |name: &str| {
        std::fs::read_to_string(work.join("logs").join(name))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(25)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}\ncenter log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail("gateway.log"),
        tail("center.log")
    );
    check_report(&report);
    let text = std::fs::read_to_string(&report).expect("report");
    (serde_json::from_str(&text).expect("report is JSON"), stdout)
}

/// Runs `lookout-loadtest check-report FILES...`: its exit status and what
/// it printed.
pub fn check_report_output(files: &[&Path]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .arg("check-report")
        .args(files)
        .output()
        .expect("lookout-loadtest check-report runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Fails unless the report at `path` meets the contract (docs/REPORT.md):
/// every report a benchmark test makes is checked as a user's would be.
pub fn check_report(path: &Path) {
    let (ok, text) = check_report_output(&[path]);
    assert!(ok, "check-report {}:\n{text}", path.display());
}

/// `GET url`, the body; `None` on any failure.
pub fn get(url: &str) -> Option<String> {
    let mut resp = ureq::get(url).call().ok()?;
    resp.body_mut().read_to_string().ok()
}

/// Every camera of a gateway's `GET /api/cameras` by id, and the raw body.
pub fn cameras(http: &str) -> Option<(std::collections::BTreeMap<String, Value>, String)> {
    let body = get(&format!("http://{http}/api/cameras"))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let map = v["cameras"]
        .as_array()?
        .iter()
        .filter_map(|c| Some((c["id"].as_str()?.to_string(), c.clone())))
        .collect();
    Some((map, body))
}

/// A camera's text field, `""` when absent.
pub fn s<'a>(c: &'a Value, key: &str) -> &'a str {
    c[key].as_str().unwrap_or("")
}

/// A camera's count field, 0 when absent.
pub fn n(c: &Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or(0)
}

/// A child process killed (and reaped) when the test lets go of it.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary of this workspace built next to `lookout-loadtest` (`lookout`).
pub fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_lookout-loadtest"))
        .parent()
        .expect("bin dir")
        .join(name)
}

/// A TCP port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
