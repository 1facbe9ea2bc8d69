//! What every report shares besides its provenance: when it was made
//! (UTC), what machine made it, the detector's figures from the gateway's
//! metrics, and writing it as JSON with an HTML page next to it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::prom;

/// Writes the report as JSON to `path` and as HTML next to it (`.html`).
pub(crate) fn write_report<R: Serialize>(
    path: &Path,
    report: &R,
    html: impl FnOnce(&R) -> String,
) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let page = path.with_extension("html");
    std::fs::write(&page, html(report)).with_context(|| format!("writing {}", page.display()))?;
    println!("report: {} and {}", path.display(), page.display());
    Ok(())
}

/// What machine made a report (the report's `machine`), for comparing
/// reports; what could not be read is `null`, not 0.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may run on (`available_parallelism`, so a cgroup or
    /// affinity limit counts); `null` when unknown.
    pub cpus: Option<usize>,
    /// Total memory, GiB to one decimal, from `MemTotal` in `/proc/meminfo`;
    /// `null` when unreadable.
    pub memory_gib: Option<f64>,
    /// The CPU's `model name` from `/proc/cpuinfo`; `null` when absent (not x86).
    pub model: Option<String>,
}

/// What this machine is, for comparing reports.
pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|m| !m.is_empty());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    // What could not be read is `null`, not 0.
    Machine {
        cpus: std::thread::available_parallelism().ok().map(|n| n.get()),
        memory_gib,
        model,
    }
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The detector's figures over a run (the report's `detector`), from the
/// gateway's metrics at the end.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorFigures {
    /// Mean frames per inference batch (`lookout_detect_batch_size` sum ÷
    /// count); `null` when no batch ran.
    pub batch_mean: Option<f64>,
    /// Frames the detector dropped because it was busy
    /// (`lookout_detect_dropped_frames_total`), all cameras.
    pub frames_dropped: u64,
    /// Frames handed to the detector (`lookout_detect_frames_total`), all cameras.
    pub frames_in: u64,
    /// `frames_in` per second of the run's whole duration; `null` without a
    /// detector.
    pub inferences_per_s: Option<f64>,
    /// Mean time per detector stage (`detect` only; absent from `run`'s report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_mean_ms: Option<StageMeans>,
}

/// Mean time per detector stage, ms, from the gateway's
/// `lookout_detect_stage_seconds` (sum ÷ count); `null` for a stage without a sample.
#[derive(Debug, Clone, Serialize)]
pub struct StageMeans {
    /// Decoding a sampled frame to pixels, ms per frame.
    pub decode: Option<f64>,
    /// The model's run in ONNX Runtime, ms per batch.
    pub inference: Option<f64>,
    /// Turning the model's output into detections, ms per batch.
    pub postprocess: Option<f64>,
    /// Filling the batch's input tensor from the decoded frames, ms per batch.
    pub preprocess: Option<f64>,
    /// Waiting in the detector's queue between decode and batch, ms per frame.
    pub queue: Option<f64>,
}

/// The detector's figures from the gateway's metrics: counts as integers;
/// rates `null` without a detector or without a batch.
pub(crate) fn detector_figures(
    metrics: &str,
    detecting: bool,
    duration: Duration,
) -> DetectorFigures {
    let m = |name: &str| prom::sum(metrics, name);
    // Prometheus counters are floats on the wire; these count frames.
    let frames_in = m("lookout_detect_frames_total").round() as u64;
    let batches = m("lookout_detect_batch_size_count");
    DetectorFigures {
        batch_mean: (batches > 0.0).then(|| m("lookout_detect_batch_size_sum") / batches),
        frames_dropped: m("lookout_detect_dropped_frames_total").round() as u64,
        frames_in,
        inferences_per_s: (detecting && duration.as_secs_f64() > 0.0)
            .then(|| frames_in as f64 / duration.as_secs_f64()),
        stage_mean_ms: None,
    }
}

/// A report figure as its JSON file writes it (`60.0`, `null`, `[\"a\"]`), for
/// summaries and pages that quote the file's own text.
pub(crate) fn json_text<T: Serialize + ?Sized>(v: &T) -> String {
    // A figure (number, string, list of them) always serializes.
    serde_json::to_string(v).unwrap_or_default()
}

/// Serializes `v` with its object keys in alphabetical order, as serde_json's own
/// map (`serde_json::Value`) orders them: for a typed section nested in a report
/// where the report's file has always had it through a `Value`
/// (`#[serde(serialize_with = "sorted_keys")]`), so the files keep their order.
pub(crate) fn sorted_keys<T: Serialize, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    serde_json::to_value(v)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}
