//! `lookout check-config`: everything that can be checked without cameras —
//! the file's syntax, types and unknown keys, ids and references, files that
//! must exist, and every detector's model loaded in ONNX Runtime and compared
//! with its configuration. The daemon runs the same checks before it starts.

use std::path::Path;

use crate::config::{Config, Findings, KeyPath, Problems};
use crate::detect::{model, runtime};

/// Loads and checks a configuration file completely.
pub fn check_file(path: &Path) -> Result<Config, Problems> {
    let (config, source) = Config::load_with_source(path)?;
    let findings = check_models(&config);
    if findings.0.is_empty() {
        Ok(config)
    } else {
        Err(Config::problems_at(path, &source, findings))
    }
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
