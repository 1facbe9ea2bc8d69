//! The load-test report as one self-contained HTML file (inline SVG, no
//! scripts, no external assets), written next to the JSON: the SLO verdict
//! first, then HDR-style latency percentile plots (log-scale percentile
//! axis), CPU and memory over time, and the per-camera table.

use serde_json::Value;

use crate::relay::{RelayReport, TimelineEntry};
use crate::report::json_text;
use crate::stats::Percentiles;
use crate::stats::buckets::CdfPoint;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A figure with `decimals` places, or "not measured" where the report has `null`
/// (`None`, or not a finite number).
fn figure(v: Option<f64>, decimals: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "not measured".to_string(), |x| format!("{x:.decimals$}"))
}

/// Percentile → x position: log scale of 1 / (1 - p), as HDR plots do.
fn px(p: f64, width: f64) -> f64 {
    let max = (1.0f64 / (1.0 - 0.999)).log10(); // 3 nines
    let v = (1.0 / (1.0 - p.min(0.999))).log10();
    40.0 + v / max * (width - 60.0)
}

/// One latency series as a percentile plot.
fn percentile_plot(title: &str, p: &Percentiles) -> String {
    let (w, h) = (420.0, 200.0);
    let points = [(0.5, p.p50), (0.9, p.p90), (0.99, p.p99), (0.999, p.p999)];
    let top = points
        .iter()
        .map(|(_, v)| *v)
        .fold(p.max, f64::max)
        .max(0.001);
    let py = |v: f64| h - 30.0 - v / top * (h - 50.0);
    let mut svg = format!(
        r##"<figure><figcaption>{} <small>(n = {}, max {:.2} ms)</small></figcaption><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}">"##,
        esc(title),
        p.count,
        p.max
    );
    put!(
        svg,
        r##"<line x1="40" y1="{}" x2="{}" y2="{}" stroke="#888"/><line x1="40" y1="20" x2="40" y2="{}" stroke="#888"/>"##,
        h - 30.0,
        w - 20.0,
        h - 30.0,
        h - 30.0
    );
    for (q, label) in [(0.5, "50%"), (0.9, "90%"), (0.99, "99%"), (0.999, "99.9%")] {
        let x = px(q, w);
        put!(
            svg,
            r##"<text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{label}</text>"##,
            h - 15.0
        );
    }
    put!(
        svg,
        r##"<text x="4" y="24" font-size="10">{top:.1} ms</text><text x="4" y="{}" font-size="10">0</text>"##,
        h - 30.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|(q, v)| format!("{:.1},{:.1}", px(*q, w), py(*v)))
        .collect();
    put!(
        svg,
        r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    );
    for (q, v) in points {
        put!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#1f6feb"><title>p{} = {v:.2} ms</title></circle>"##,
            px(q, w),
            py(v),
            q * 100.0
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// CPU (cores) or memory (MiB) of each process over the run.
pub(crate) fn timeline_plot(
    title: &str,
    timeline: &[Value],
    field: &str,
    series: &[&str],
) -> String {
    let (w, h) = (420.0, 200.0);
    let colours = ["#1f6feb", "#d29922", "#3fb950"];
    let t_max = timeline
        .last()
        .and_then(|v| v["t_s"].as_f64())
        .unwrap_or(1.0)
        .max(1.0);
    let t_min = timeline
        .first()
        .and_then(|v| v["t_s"].as_f64())
        .unwrap_or(0.0);
    let top = timeline
        .iter()
        .flat_map(|v| series.iter().filter_map(|s| v[field][*s].as_f64()))
        .fold(0.0f64, f64::max)
        .max(0.01);
    let x = |t: f64| 40.0 + (t - t_min) / (t_max - t_min).max(1e-3) * (w - 60.0);
    let y = |v: f64| h - 30.0 - v / top * (h - 50.0);
    let mut svg = format!(
        r##"<figure><figcaption>{}</figcaption><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}"><line x1="40" y1="{}" x2="{}" y2="{}" stroke="#888"/><text x="4" y="24" font-size="10">{top:.2}</text><text x="4" y="{}" font-size="10">0</text>"##,
        esc(title),
        h - 30.0,
        w - 20.0,
        h - 30.0,
        h - 30.0
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = timeline
            .iter()
            .filter_map(|v| {
                Some(format!(
                    "{:.1},{:.1}",
                    x(v["t_s"].as_f64()?),
                    y(v[field][*s].as_f64()?)
                ))
            })
            .collect();
        let colour = colours[i % colours.len()];
        put!(
            svg,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><text x="{}" y="{}" font-size="11" fill="{colour}">{s}</text>"##,
            points.join(" "),
            50.0 + i as f64 * 80.0,
            h - 2.0
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A y or x position on a log10 scale between `lo` and `hi` (both > 0).
fn log_pos(v: f64, lo: f64, hi: f64, from: f64, to: f64) -> f64 {
    let v = v.clamp(lo, hi);
    from + (v.log10() - lo.log10()) / (hi.log10() - lo.log10()).max(1e-9) * (to - from)
}

/// The relay's delay second by second (p50 and p99 of each second, from the
/// center's histogram buckets), on a log scale.
fn latency_over_time_plot(timeline: &[TimelineEntry]) -> String {
    let (w, h) = (420.0, 200.0);
    let points: Vec<(f64, Option<f64>, Option<f64>)> = timeline
        .iter()
        .map(|v| {
            let relay = v.relay_ms.as_ref();
            (v.t_s, relay.and_then(|r| r.p50), relay.and_then(|r| r.p99))
        })
        .collect();
    if points.iter().all(|p| p.1.is_none() && p.2.is_none()) {
        return "<p>No per-second relay delays (an older center, or no video).</p>".into();
    }
    let (lo, hi) = (0.05, 5000.0);
    let t0 = points.first().map_or(0.0, |p| p.0);
    let t1 = points.last().map_or(1.0, |p| p.0).max(t0 + 1.0);
    let x = |t: f64| 40.0 + (t - t0) / (t1 - t0) * (w - 60.0);
    let y = |ms: f64| log_pos(ms, lo, hi, h - 30.0, 20.0);
    let mut svg = format!(
        r##"<figure><figcaption>relay delay over time, ms (log scale; each second's p50 and p99)</figcaption><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}"><line x1="40" y1="{}" x2="{}" y2="{}" stroke="#888"/>"##,
        h - 30.0,
        w - 20.0,
        h - 30.0
    );
    for ms in [0.1, 1.0, 10.0, 100.0, 1000.0] {
        put!(
            svg,
            r##"<line x1="40" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/><text x="2" y="{2:.1}" font-size="10">{ms}</text>"##,
            y(ms),
            w - 20.0,
            y(ms) + 3.0
        );
    }
    for (i, (name, colour)) in [("p50", "#1f6feb"), ("p99", "#cf222e")].iter().enumerate() {
        let line: Vec<String> = points
            .iter()
            .filter_map(|p| {
                let v = if i == 0 { p.1 } else { p.2 }?;
                Some(format!("{:.1},{:.1}", x(p.0), y(v.max(lo))))
            })
            .collect();
        put!(
            svg,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><text x="{}" y="{}" font-size="11" fill="{colour}">{name}</text>"##,
            line.join(" "),
            50.0 + i as f64 * 60.0,
            h - 2.0
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// The relay's delay over the window as a cumulative distribution, log x.
fn cdf_plot(cdf: Option<&[CdfPoint]>) -> String {
    let Some(points) = cdf.filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let (w, h) = (420.0, 200.0);
    let (lo, hi) = (0.05, 5000.0);
    let x = |ms: f64| log_pos(ms, lo, hi, 40.0, w - 20.0);
    let y = |share: f64| h - 30.0 - share * (h - 50.0);
    let mut svg = format!(
        r##"<figure><figcaption>relay delay, share of frames at or below (log scale)</figcaption><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}"><line x1="40" y1="{}" x2="{}" y2="{}" stroke="#888"/><text x="4" y="24" font-size="10">100%</text><text x="4" y="{}" font-size="10">0</text>"##,
        h - 30.0,
        w - 20.0,
        h - 30.0,
        h - 30.0
    );
    for ms in [0.1, 1.0, 10.0, 100.0, 1000.0] {
        put!(
            svg,
            r##"<line x1="{0:.1}" y1="20" x2="{0:.1}" y2="{1}" stroke="#eee"/><text x="{0:.1}" y="{2}" font-size="10">{ms} ms</text>"##,
            x(ms),
            h - 30.0,
            h - 16.0
        );
    }
    let line: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.le_ms), y(p.share)))
        .collect();
    put!(
        svg,
        r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
        line.join(" ")
    );
    svg.push_str("</svg></figure>");
    svg
}

/// Share of a camera's frames that reached the center: of those it numbered when
/// it numbers them, else of those the gateway received.
fn delivered_share(c: &crate::relay::CameraFrames) -> Option<f64> {
    let from = c.received_at_gateway + c.lost_camera_to_gateway.unwrap_or(0);
    (from > 0).then(|| c.received_at_center as f64 / from as f64)
}

/// One plain sentence (or a few) on whether the run met its SLO and, if not, why.
pub(crate) fn verdict(r: &RelayReport) -> String {
    let mut why = Vec::new();
    let relay_p99 = r.latency_ms.get("relay").and_then(|p| p.p99_measured());
    let limit = r.slo.relay_p99_ms as f64;
    match relay_p99 {
        Some(p) if p > limit => why.push(format!("relay p99 was {p:.1} ms, over {limit} ms")),
        None => why.push("no relay delay was measured".into()),
        _ => {}
    }
    let alert_limit = r.slo.capture_to_alert_p99_ms as f64;
    if let Some(p) = r
        .latency_ms
        .get("capture_to_alert")
        .and_then(|p| p.p99_measured())
        && p > alert_limit
    {
        why.push(format!(
            "capture → alert p99 was {p:.0} ms, over {alert_limit} ms"
        ));
    }
    let lost = r.frames.lost;
    if lost > 0 {
        why.push(format!(
            "{lost} frames were lost ({} between cameras and gateway, {} between gateway and center)",
            json_text(&r.frames.lost_camera_to_gateway),
            r.frames.lost_gateway_to_center
        ));
    }
    let i = &r.incidents;
    if i.missed > 0 {
        let named: Vec<&str> = i
            .problems
            .iter()
            .filter(|p| p.starts_with("missed"))
            .take(3)
            .map(String::as_str)
            .collect();
        why.push(format!(
            "{} of {} incidents were missed ({}{})",
            i.missed,
            i.scripted,
            named.join("; "),
            if i.missed > 3 { "; …" } else { "" }
        ));
    }
    if i.false_alerts > 0 {
        why.push(format!("{} false alerts were raised", i.false_alerts));
    }
    if i.duplicate_alerts > 0 {
        why.push(format!(
            "{} incidents were alerted twice",
            i.duplicate_alerts
        ));
    }
    let mut text = if why.is_empty() {
        "The SLO was met.".to_string()
    } else {
        format!("The SLO was not met: {}.", why.join("; "))
    };
    let reset = r.frames.gops_reset;
    if reset > 0 {
        let worst = r
            .cameras
            .iter()
            .filter_map(|(id, c)| Some((id, delivered_share(c)?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        put!(
            text,
            " The relay reset {reset} stale GOPs rather than queue them (the link carried less than the cameras sent; cameras with an alert keep priority)"
        );
        if let Some((id, share)) = worst {
            put!(
                text,
                "; the camera least delivered, {}, got {:.0} % of its frames through",
                esc(id),
                share * 100.0
            );
        }
        text.push('.');
    }
    text
}

/// The whole report as HTML.
pub fn render(r: &RelayReport) -> String {
    let passed = r.slo.passed;
    let mut out = String::new();
    put!(
        out,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lookout load test {}</title>
<style>body{{font:14px system-ui,sans-serif;margin:20px;color:#1f2328}}h1{{font-size:20px}}
.slo{{padding:8px 12px;border-radius:4px;font-weight:700;display:inline-block}}
.pass{{background:#dafbe1;color:#1a7f37}}.fail{{background:#ffebe9;color:#cf222e}}
figure{{display:inline-block;margin:8px;vertical-align:top}}figcaption{{font-weight:600}}
table{{border-collapse:collapse;margin-top:8px}}td,th{{border:1px solid #d0d7de;padding:3px 8px;text-align:right}}
th:first-child,td:first-child{{text-align:left}}code{{background:#f6f8fa;padding:1px 4px}}</style></head><body>
<h1>lookout load test — {} cameras, {} s, link {}</h1>
<p class="slo {}">SLO {}: relay p99 ≤ {} ms, capture→alert p99 ≤ {} ms, no frame lost, every incident alerted once, no false alert</p>
<p><strong>{}</strong></p>
<p>lookout {} · revision {} · started {} · machine: {} CPUs, {} GiB, {}</p>
<p>Command: <code>{}</code></p>"##,
        esc(&r.started_at),
        r.setup.cameras,
        // As JSON writes it (`60.0`).
        json_text(&r.setup.duration_s),
        esc(&json_text(&r.setup.link)),
        if passed { "pass" } else { "fail" },
        if passed { "passed" } else { "failed" },
        r.slo.relay_p99_ms,
        r.slo.capture_to_alert_p99_ms,
        esc(&verdict(r)),
        esc(&r.provenance.lookout_version),
        esc(r
            .provenance
            .git_revision
            .as_deref()
            .unwrap_or("unknown (not a git checkout)")),
        esc(&r.started_at),
        json_text(&r.machine.cpus),
        json_text(&r.machine.memory_gib),
        esc(r.machine.model.as_deref().unwrap_or("")),
        esc(&r.provenance.argv.join(" ")),
    );
    put!(
        out,
        "<p>Frames: {} received at the gateway ({} lost on the way from the cameras), {} sent on, {} received at the center, {} lost in all, {} GOPs reset. Incidents: {} scripted, {} alerted, {} missed, {} false, {} duplicate.</p>",
        r.frames.received_at_gateway,
        match r.frames.lost_camera_to_gateway {
            Some(n) => n.to_string(),
            None => "not counted: no camera numbers its frames".into(),
        },
        r.frames.sent,
        r.frames.received_at_center,
        r.frames.lost,
        r.frames.gops_reset,
        r.incidents.scripted,
        r.incidents.alerted,
        r.incidents.missed,
        r.incidents.false_alerts,
        r.incidents.duplicate_alerts
    );
    out.push_str("<h2>Latency</h2>");
    out.push_str(&latency_over_time_plot(&r.timeline));
    out.push_str(&cdf_plot(r.relay_cdf.as_deref()));
    out.push_str("<h3>Percentiles over the window (HDR histograms)</h3>");
    for (name, title) in [
        ("relay", "relay: gateway received → center received"),
        ("capture_to_center", "capture → center"),
        ("capture_to_alert", "capture → alert stored"),
        ("onset_to_alert", "onset → alert stored"),
    ] {
        if let Some(p) = r.latency_ms.get(name) {
            out.push_str(&percentile_plot(title, p));
        }
    }
    out.push_str("<h2>CPU and memory</h2>");
    // The plots read the timeline as its JSON file has it (shared with the soak's).
    let timeline: Vec<Value> = r
        .timeline
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect();
    out.push_str(&timeline_plot(
        "CPU, cores",
        &timeline,
        "cpu_cores",
        &["gateway", "fleet", "center"],
    ));
    out.push_str(&timeline_plot(
        "resident memory, MiB",
        &timeline,
        "rss_mib",
        &["gateway", "center"],
    ));
    out.push_str(&timeline_plot(
        "waiting for a CPU, thread-seconds per second (starved when it rises)",
        &timeline,
        "run_queue_wait",
        &["gateway", "fleet", "center"],
    ));
    out.push_str(&timeline_plot(
        "whole machine: busy and stolen share of its CPUs",
        &timeline,
        "machine",
        &["busy", "steal"],
    ));
    put!(
        out,
        "<p>Whole run: CPU gateway {}, fleet {}, center {} cores; peak RSS gateway {} MiB, center {} MiB. Baselines: bare GStreamer ingest {} cores, bare ONNX Runtime {} inferences/s; ratios {}.</p>",
        figure(r.cpu_cores.gateway, 2),
        figure(r.cpu_cores.fleet, 2),
        figure(r.cpu_cores.center, 2),
        figure(r.memory_mib.gateway_rss_peak, 0),
        figure(r.memory_mib.center_rss_peak, 0),
        figure(r.baselines.gst_ingest_cpu_cores, 2),
        figure(r.baselines.ort_raw_inferences_per_s, 0),
        esc(&json_text(&r.ratios))
    );
    if let Some(roles) = &r.cpu_cores.gateway_by_role {
        out.push_str(
            "<p>The gateway's CPU by what its threads do (cores):</p><table><tr><th>role</th><th>cores</th></tr>",
        );
        for (role, cores) in roles {
            put!(
                out,
                "<tr><td>{}</td><td>{:.3}</td></tr>",
                esc(role),
                cores.unwrap_or(0.0)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Cameras</h2><table><tr><th>camera</th><th>received at the gateway</th><th>lost on the way from the camera</th><th>sent on</th><th>received at the center</th><th>delivered</th><th>GOPs sent</th><th>reset</th><th>skipped</th></tr>");
    for (id, c) in &r.cameras {
        put!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(id),
            c.received_at_gateway,
            c.lost_camera_to_gateway
                .map_or_else(|| "not counted".to_string(), |n| n.to_string()),
            c.sent,
            c.received_at_center,
            delivered_share(c).map_or_else(|| "—".to_string(), |s| format!("{:.1} %", s * 100.0)),
            c.gops_sent,
            c.gops_reset,
            c.gops_skipped
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
