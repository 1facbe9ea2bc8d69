//! `lookout check-config`: everything that can be checked without cameras —
//! the file's syntax, types and unknown keys, ids and references, files that
//! must exist, and every detector's model loaded in ONNX Runtime and compared
//! with its configuration, every upstream's TLS identity loaded. The daemon
//! runs the same checks before it starts. Command-center files (`[center]`)
//! get the same treatment. [`warnings`] are what is allowed but unwise (a
//! camera password written into its URL): printed, and logged at start,
//! without refusing the file.

use std::path::Path;

use crate::center::config::CenterConfig;
use crate::config::{Config, Findings, KeyPath, Problem, Problems};
use crate::detect::{model, runtime};

/// Loads and checks a configuration file completely.
pub fn check_file(path: &Path) -> Result<Config, Problems> {
    let (config, source) = Config::load_with_source(path)?;
    let mut findings = check_models(&config);
    for (i, u) in config.upstreams.iter().enumerate() {
        if let Some(e) = upstream_tls_problem(&u.resolved(|p| config.resolve(p))) {
            findings.push(KeyPath::root().key("upstream").index(i).key("cert"), e);
        }
    }
    if findings.0.is_empty() {
        Ok(config)
    } else {
        Err(crate::config::problems_at(path, &source, findings))
    }
}

/// What is allowed in a gateway file but unwise, located like problems.
/// Today: camera URLs that carry credentials. A URL travels — into
/// GStreamer's messages, tools' output, an operator's screen share — and
/// while lookout redacts every one it prints, the `username` and
/// `password` keys never put the secret in a URL at all.
pub fn warnings(path: &Path, config: &Config) -> Vec<Problem> {
    let mut f = Findings::default();
    for (i, c) in config.cameras.iter().enumerate() {
        if !crate::config::url_has_credentials(&c.url) {
            continue;
        }
        let mut message = String::from(
            "the URL carries credentials in the clear; move them to this camera's `username` \
             and `password` keys (the URL then holds none)",
        );
        let unusual = crate::config::url_parts(&c.url)
            .and_then(|p| p.userinfo)
            .is_some_and(|info| c.url[info].contains(['/', '?', '#', '@']));
        if unusual {
            message.push_str(
                "; its user-info has `/`, `?`, `#` or `@`, and is read up to the URL's last `@` \
                 (an `@` in the path must be written `%40`)",
            );
        }
        f.push(KeyPath::root().key("camera").index(i).key("url"), message);
    }
    if f.0.is_empty() {
        return Vec::new();
    }
    let source = std::fs::read_to_string(path).unwrap_or_default();
    crate::config::problems_at(path, &source, f).0
}

/// Opens every detector's model and compares it with its entry.
pub fn check_models(config: &Config) -> Findings {
    let mut f = Findings::default();
    if config.detectors.is_empty() {
        return f;
    }
    let explicit = config
        .gateway
        .onnxruntime
        .as_ref()
        .map(|p| config.resolve(p));
    let rt = match runtime::load(explicit.as_deref()) {
        Ok(rt) => rt,
        Err(e) => {
            f.push(
                KeyPath::root().key("detector").index(0).key("model"),
                e.to_string(),
            );
            return f;
        }
    };
    for (i, d) in config.detectors.iter().enumerate() {
        let p = KeyPath::root().key("detector").index(i);
        match model::open(rt, &config.resolve(&d.model), 1) {
            Ok(session) => {
                for (key, msg) in model::check(&session, d) {
                    let mut kp = p.clone();
                    for part in key.split('.') {
                        kp = kp.key(part);
                    }
                    f.push(kp, msg);
                }
            }
            Err(e) => f.push(p.key("model"), e.to_string()),
        }
    }
    f
}

/// Whether a file is a command center's (`[center]`, no `[gateway]`).
pub fn is_center_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .is_some_and(|t| t.contains_key("center") && !t.contains_key("gateway"))
}

/// Loads and checks a command center's file, its TLS identity included.
pub fn check_center_file(path: &Path) -> Result<CenterConfig, Problems> {
    let config = CenterConfig::load(path)?;
    let mut problems = Vec::new();
    let files = crate::relay::tls::TlsFiles {
        ca: config.resolve(&config.center.ca),
        cert: config.resolve(&config.center.cert),
        key: config.resolve(&config.center.key),
    };
    if let Err(e) = crate::relay::tls::server_config(&files) {
        problems.push(("center", 0, e.to_string()));
    }
    for (i, u) in config.upstreams.iter().enumerate() {
        if let Some(e) = upstream_tls_problem(&u.resolved(|p| config.resolve(p))) {
            problems.push(("upstream", i, e));
        }
    }
    if problems.is_empty() {
        return Ok(config);
    }
    let source = std::fs::read_to_string(path).unwrap_or_default();
    let mut findings = Findings::default();
    for (table, i, message) in problems {
        let key = if table == "center" {
            KeyPath::root().key("center").key("cert")
        } else {
            KeyPath::root().key("upstream").index(i).key("cert")
        };
        findings.push(key, message);
    }
    Err(crate::config::problems_at(path, &source, findings))
}

/// Whether an upstream's TLS identity (paths resolved) loads and chains to
/// its CA.
fn upstream_tls_problem(u: &crate::config::UpstreamConfig) -> Option<String> {
    crate::relay::tls::client_config(&crate::relay::tls::TlsFiles::from(u))
        .err()
        .map(|e| e.to_string())
}
