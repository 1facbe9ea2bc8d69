//! What every report shares besides its provenance: when it was made
//! (UTC), what machine made it, the detector's figures from the gateway's
//! metrics, and writing it as JSON with an HTML page next to it.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

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

/// What this machine is, for comparing reports.
pub(crate) fn machine() -> Value {
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
    serde_json::json!({
        "cpus": std::thread::available_parallelism().ok().map(|n| n.get()),
        "model": model,
        "memory_gib": memory_gib,
    })
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

/// The detector's figures from the gateway's metrics: counts as integers;
/// rates `null` without a detector or without a batch.
pub(crate) fn detector_figures(metrics: &str, detecting: bool, duration: Duration) -> Value {
    let m = |name: &str| prom::sum(metrics, name);
    // Prometheus counters are floats on the wire; these count frames.
    let frames_in = m("lookout_detect_frames_total").round() as u64;
    let batches = m("lookout_detect_batch_size_count");
    serde_json::json!({
        "frames_in": frames_in,
        "frames_dropped": m("lookout_detect_dropped_frames_total").round() as u64,
        "inferences_per_s": (detecting && duration.as_secs_f64() > 0.0)
            .then(|| frames_in as f64 / duration.as_secs_f64()),
        "batch_mean": (batches > 0.0).then(|| m("lookout_detect_batch_size_sum") / batches),
    })
}
