//! `lookout-loadtest run` as an integrator runs it, at a size CI affords:
//! it finishes by itself, exits 0, and its report has every field of
//! docs/REPORT.md with consistent counts; the HTML
//! report is written next to it.

mod support;

use serde_json::Value;

#[test]
fn run_writes_a_complete_consistent_report() {
    let work = tempfile::tempdir().expect("tempdir");
    let (r, _) = support::loadtest_report(
        &[
            "run",
            "--cameras",
            "16",
            "--size",
            "small",
            // Spelled as integrators type it (the issue's own command).
            "--duration",
            "30s",
            "--warmup",
            "5s",
            "--baselines",
        ],
        work.path(),
    );
    let fields: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "lookout_version",
                "started_at",
                "machine",
                "setup",
                "frames",
                "incidents",
                "latency_ms",
                "cpu_cores",
                "memory_mib",
                "detector",
                "baselines",
                "ratios",
                "slo",
            ],
        ),
        ("machine", &["cpus", "model", "memory_gib"]),
        (
            "setup",
            &["cameras", "mix", "duration_s", "sampling", "link"],
        ),
        (
            "frames",
            &[
                "sent_by_cameras",
                "received_at_gateway",
                "lost_camera_to_gateway",
                "sent",
                "received_at_center",
                "lost_gateway_to_center",
                "lost",
                "gops_reset",
            ],
        ),
        (
            "incidents",
            &[
                "scripted",
                "alerted",
                "missed",
                "false_alerts",
                "duplicate_alerts",
            ],
        ),
        (
            "latency_ms",
            &[
                "relay",
                "capture_to_center",
                "capture_to_alert",
                "onset_to_alert",
            ],
        ),
        ("cpu_cores", &["gateway", "fleet", "center"]),
        ("memory_mib", &["gateway_rss_peak", "center_rss_peak"]),
        (
            "detector",
            &[
                "frames_in",
                "frames_dropped",
                "inferences_per_s",
                "batch_mean",
            ],
        ),
        (
            "baselines",
            &["gst_ingest_cpu_cores", "ort_raw_inferences_per_s"],
        ),
        ("ratios", &["ingest_cpu_vs_gst", "detector_vs_ort_raw"]),
        (
            "slo",
            &["capture_to_alert_p99_ms", "relay_p99_ms", "passed"],
        ),
    ];
    for (section, keys) in fields {
        let obj = if section.is_empty() { &r } else { &r[*section] };
        for k in *keys {
            assert!(!obj[*k].is_null(), "report lacks {section}.{k}: {obj}");
        }
    }
    for name in [
        "relay",
        "capture_to_center",
        "capture_to_alert",
        "onset_to_alert",
    ] {
        for k in ["p50", "p90", "p99", "p999", "max", "count"] {
            assert!(
                r["latency_ms"][name][k].is_number(),
                "latency_ms.{name}.{k}"
            );
        }
    }
    assert_eq!(r["setup"]["cameras"], 16);
    let n = |v: &Value| v.as_u64().expect("count");
    let f = &r["frames"];
    assert!(n(&f["sent"]) > 1000, "{f}");
    // Hop by hop: every fleet camera numbers its frames, so the camera side
    // is counted, and the end-to-end loss is the sum of both hops.
    assert_eq!(
        n(&f["sent_by_cameras"]),
        n(&f["received_at_gateway"]) + n(&f["lost_camera_to_gateway"]),
        "{f}"
    );
    assert_eq!(
        n(&f["sent"]),
        n(&f["received_at_center"]) + n(&f["lost_gateway_to_center"]),
        "{f}"
    );
    assert_eq!(
        n(&f["lost"]),
        n(&f["lost_camera_to_gateway"]) + n(&f["lost_gateway_to_center"]),
        "{f}"
    );
    assert!(n(&f["received_at_gateway"]) >= n(&f["sent"]), "{f}");
    let i = &r["incidents"];
    assert_eq!(n(&i["scripted"]), n(&i["alerted"]) + n(&i["missed"]), "{i}");
    assert!(r["cpu_cores"]["gateway"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(
        r["baselines"]["gst_ingest_cpu_cores"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(
        r["baselines"]["ort_raw_inferences_per_s"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    // The timeline says, per second, how much each process waited for a CPU
    // and how busy (and stolen) the machine was: what tells a starved run from
    // a slow one.
    let timeline = r["timeline"].as_array().expect("timeline");
    assert!(timeline.len() >= 10, "{} samples", timeline.len());
    for s in timeline {
        for p in ["gateway", "fleet", "center"] {
            let w = s["run_queue_wait"][p].as_f64().expect("run_queue_wait");
            assert!(w >= 0.0, "{s}");
        }
        for k in ["busy", "steal"] {
            let v = s["machine"][k].as_f64().expect("machine share");
            assert!((0.0..=1.0).contains(&v), "{s}");
        }
    }
    // The relay's delay second by second and over the window, from the
    // center's histogram: a count each second, a distribution that ends at 1.
    let seconds_with_video = timeline
        .iter()
        .filter(|s| s["relay_ms"]["count"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(
        seconds_with_video * 2 >= timeline.len(),
        "relay_ms per second: {timeline:?}"
    );
    let cdf = r["relay_cdf"].as_array().expect("relay_cdf");
    let shares: Vec<f64> = cdf.iter().filter_map(|p| p["share"].as_f64()).collect();
    assert!(shares.windows(2).all(|w| w[0] <= w[1]), "{cdf:?}");
    assert!(shares.last().is_some_and(|s| *s > 0.99), "{cdf:?}");

    // Every alert's clip at the center, playable, and every incident's clip
    // starting before the incident.
    let clips = &r["clips"];
    let at_center = clips["at_center"].as_u64().expect("clips.at_center");
    assert!(at_center >= 1, "{clips}");
    assert_eq!(
        clips["recorded_at_gateway"].as_u64(),
        Some(at_center),
        "{clips}"
    );
    assert_eq!(clips["failed_at_gateway"], 0, "{clips}");
    assert_eq!(clips["playable"].as_u64(), Some(at_center), "{clips}");
    assert_eq!(
        clips["start_before_onset"], clips["incidents_with_clip"],
        "{clips}"
    );

    let html = std::fs::read_to_string(work.path().join("report.html")).expect("HTML report");
    for want in [
        "<svg",
        "Percentiles over the window",
        "relay delay over time",
        "share of frames at or below",
        "The SLO was",
        "delivered",
    ] {
        assert!(html.contains(want), "the HTML report lacks {want:?}");
    }
}
