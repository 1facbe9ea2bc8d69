//! The incident script (which camera shows which event when) and the ground
//! truth the fleet writes as incidents start, so a benchmark can compute
//! onset-to-alert latency, misses and false alerts.
//!
//! Script, as a TOML file:
//! ```toml
//! [[incident]]
//! camera = "tower-07"
//! class = "smoke"     # smoke | flood
//! at_s = 20           # seconds after the fleet starts serving
//! for_s = 12          # optional: the scene is clean again after this long
//! ```
//! or inline: `--incidents tower-07:smoke@20+12,drone-02:flood@35` (`+SECONDS`
//! optional). A camera may have several incidents; without `for_s` an incident
//! lasts until the next one on its camera, or to the end.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use lookout_scene::EventClass;
use serde::{Deserialize, Serialize};

/// One scripted incident.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// The camera's id (`tower-01`, …).
    pub camera: String,
    /// `smoke` or `flood`.
    pub class: String,
    /// When it begins, seconds after the fleet starts serving.
    pub at_s: f64,
    /// How long the event is shown; `None`: until the camera's next incident.
    #[serde(default)]
    pub for_s: Option<f64>,
}

impl Incident {
    pub fn event_class(&self) -> anyhow::Result<EventClass> {
        match self.class.as_str() {
            "smoke" => Ok(EventClass::Smoke),
            "flood" => Ok(EventClass::Flood),
            other => bail!(
                "incident on {}: unknown class `{other}` (smoke or flood)",
                self.camera
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    #[serde(default)]
    incident: Vec<Incident>,
}

/// Reads `--incidents`: a file path, or the inline form.
pub fn parse(spec: &str) -> anyhow::Result<Vec<Incident>> {
    let path = Path::new(spec);
    let incidents = if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let script: Script =
            toml::from_str(&text).with_context(|| format!("incident script {}", path.display()))?;
        script.incident
    } else {
        spec.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(parse_inline)
            .collect::<anyhow::Result<_>>()?
    };
    for i in &incidents {
        i.event_class()?;
        if !(i.at_s >= 0.0 && i.at_s.is_finite()) {
            bail!("incident on {}: at_s must be 0 or more", i.camera);
        }
        if i.for_s.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
            bail!("incident on {}: for_s must be more than 0", i.camera);
        }
    }
    Ok(incidents)
}

fn parse_inline(s: &str) -> anyhow::Result<Incident> {
    let err = || format!("incident `{s}`: expected CAMERA:CLASS@SECONDS, e.g. tower-07:smoke@20");
    let (camera, rest) = s.trim().split_once(':').with_context(err)?;
    let (class, at) = rest.split_once('@').with_context(err)?;
    let (at, length) = match at.split_once('+') {
        Some((a, l)) => (a, Some(l)),
        None => (at, None),
    };
    let seconds = |v: &str| v.trim().trim_end_matches('s').parse::<f64>().ok();
    let at_s = seconds(at).with_context(err)?;
    let for_s = match length {
        Some(l) => Some(seconds(l).with_context(err)?),
        None => None,
    };
    Ok(Incident {
        camera: camera.trim().to_string(),
        class: class.trim().to_string(),
        at_s,
        for_s,
    })
}

/// The moment an incident became visible on a camera's stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Onset {
    /// The camera's id.
    pub camera: String,
    /// `smoke` or `flood`.
    pub class: String,
    /// When the script said it begins, seconds after the fleet started serving.
    pub scripted_at_s: f64,
    /// Frame number (as in the SEI stamp) of the first frame with the event.
    pub onset_frame: u64,
    /// Capture time (as in the SEI stamp) of that frame.
    pub onset_capture_unix_ns: u64,
}

/// Ground truth, rewritten whole (atomically) each time an incident starts.
pub struct GroundTruth {
    path: Option<PathBuf>,
    onsets: Mutex<Vec<Onset>>,
}

impl GroundTruth {
    pub fn new(path: Option<PathBuf>) -> Self {
        let gt = GroundTruth {
            path,
            onsets: Mutex::new(Vec::new()),
        };
        gt.write();
        gt
    }

    pub fn record(&self, onset: Onset) {
        if let Ok(mut o) = self.onsets.lock() {
            o.push(onset);
        }
        self.write();
    }

    pub fn onsets(&self) -> Vec<Onset> {
        self.onsets.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn write(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let json = serde_json::to_string_pretty(&self.onsets()).unwrap_or_else(|_| "[]".into());
        let tmp = PathBuf::from(format!("{}.part", path.display()));
        // The benchmarks score alerts against this file: an onset that never
        // reaches it is an incident they cannot see, so a failure is said.
        let written = std::fs::write(&tmp, json)
            .map_err(|e| format!("writing {}: {e}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, path)
                    .map_err(|e| format!("renaming it to {}: {e}", path.display()))
            });
        if let Err(e) = written {
            eprintln!("fleet: ground truth not updated: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inline_incidents() {
        let v = parse("tower-07:smoke@20,drone-02:flood@35.5s").expect("parses");
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].camera, "drone-02");
        assert_eq!(v[1].at_s, 35.5);
        assert_eq!(v[1].for_s, None);
        let v = parse("tower-07:smoke@20+12,tower-07:flood@34.5+12s").expect("parses");
        assert_eq!((v[0].at_s, v[0].for_s), (20.0, Some(12.0)));
        assert_eq!((v[1].at_s, v[1].for_s), (34.5, Some(12.0)));
        assert!(parse("tower-07:smoke@20+0").is_err());
        assert!(parse("tower-07:smoke@20+x").is_err());
        assert!(parse("tower-07:fire@20").is_err());
        assert!(parse("tower-07@20").is_err());
    }

    #[test]
    fn parses_script_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s.toml");
        std::fs::write(
            &p,
            "[[incident]]\ncamera = \"t\"\nclass = \"flood\"\nat_s = 3\n",
        )
        .expect("write");
        let v = parse(p.to_str().expect("utf8")).expect("parses");
        assert_eq!(v[0].class, "flood");
    }
}
