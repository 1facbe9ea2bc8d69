//! Unit tests of `report`: the typed sections serialise as the report format says.
use super::*;

/// The typed sections write what the JSON maps they replaced wrote.
#[test]
fn typed_sections_write_the_same_json_as_before() {
    let same = |typed: String, map: serde_json::Value| assert_eq!(typed, map.to_string());
    let imp = Impairment {
        rate_bps: 4_000_000,
        delay: Duration::from_millis(300),
        loss: 0.02,
        ..Default::default()
    };
    let setup = |link: Option<&Impairment>, outage: Option<Outage>| Setup {
        cameras: 8,
        clips: true,
        center_outage: outage,
        detector: Some("smoke_flood".into()),
        duration_s: 60.0,
        link: "satellite".into(),
        link_settings: LinkSettings::of(link),
        mix: BTreeMap::from([("tower".to_string(), 3), ("drone".to_string(), 2)]),
        pushed_rtmp: 2,
        gb28181: 1,
        sampling: "keyframes",
        size: "small".into(),
        subscribe: "all".into(),
        warmup_s: 10.0,
    };
    let typed = |v: &Setup| serde_json::to_string(v).expect("serializes");
    same(
        typed(&setup(Some(&imp), None)),
        serde_json::json!({
            "cameras": 8, "mix": {"tower": 3, "drone": 2}, "pushed_rtmp": 2, "gb28181": 1,
            "sampling": "keyframes",
            "size": "small", "duration_s": 60.0, "warmup_s": 10.0,
            "detector": "smoke_flood", "link": "satellite",
            "link_settings": {
                "rate_kbps": 4000, "delay_ms": 300.0, "jitter_ms": 0.0, "loss": 0.02,
                "reorder": 0.0, "queue_ms": imp.queue.as_secs_f64() * 1000.0,
            },
            "subscribe": "all", "center_outage": null, "clips": true,
        }),
    );
    let outage = Outage {
        at_s: 20.0,
        length_s: 5.0,
    };
    let s = setup(None, Some(outage));
    assert!(typed(&s).contains(
        r#""center_outage":{"at_s":20.0,"length_s":5.0},"clips":true,"detector":"smoke_flood""#
    ));
    assert!(typed(&s).contains(r#""link_settings":"loopback","mix""#));
    same(
        serde_json::to_string(&Alerts {
            deliveries: 7,
            in_ledger: 5,
            missing_from_ledger: 1,
            not_raised_by_gateway: 0,
            raised_at_gateway: 6,
            stored_twice: 2,
        })
        .expect("serializes"),
        serde_json::json!({
            "raised_at_gateway": 6, "in_ledger": 5, "missing_from_ledger": 1,
            "stored_twice": 2, "not_raised_by_gateway": 0, "deliveries": 7,
        }),
    );
    same(
        serde_json::to_string(&Slo {
            capture_to_alert_p99_ms: 100,
            passed: true,
            relay_p99_ms: 5,
        })
        .expect("serializes"),
        serde_json::json!({"capture_to_alert_p99_ms": 100, "relay_p99_ms": 5, "passed": true}),
    );
    same(
        serde_json::to_string(&Memory {
            center_rss_peak: None,
            gateway_rss_peak: Some(81.5),
        })
        .expect("serializes"),
        serde_json::json!({"gateway_rss_peak": 81.5, "center_rss_peak": null}),
    );
    same(
        serde_json::to_string(&Cascade {
            alerts_in_ledger: 3,
            cameras: 8,
            frames_received: 900,
            gateways: vec!["fleet-gw".into()],
            missing: 0,
            stored_twice: 0,
        })
        .expect("serializes"),
        serde_json::json!({
            "alerts_in_ledger": 3, "stored_twice": 0, "missing": 0, "cameras": 8,
            "frames_received": 900, "gateways": ["fleet-gw"],
        }),
    );
}

fn pct(count: u64) -> Percentiles {
    Percentiles {
        p50: 0.5,
        p90: 0.9,
        p99: 1.25,
        p999: 3.0,
        max: 4.0,
        count,
    }
}

/// The sections that were JSON maps (`frames`, `baselines`, `ratios`,
/// `sensor_alerts`, `cpu_cores`, `timeline[]`, `machine`, `detector`, `link`)
/// write what those maps wrote: same keys, same order, integers as integers,
/// `null` where nothing was measured.
#[test]
fn sections_that_were_json_maps_write_the_same_json() {
    let same = |typed: String, map: serde_json::Value| assert_eq!(typed, map.to_string());
    fn text<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).expect("serializes")
    }
    same(
        text(&Frames {
            gops_reset: 2,
            lost: 5,
            lost_camera_to_gateway: None,
            lost_gateway_to_center: 5,
            received_at_center: 95,
            received_at_gateway: 100,
            sent: 100,
            sent_by_cameras: None,
        }),
        serde_json::json!({
            "sent_by_cameras": None::<u64>,
            "received_at_gateway": 100u64,
            "lost_camera_to_gateway": None::<u64>,
            "sent": 100u64,
            "received_at_center": 95u64,
            "lost_gateway_to_center": 5u64,
            "lost": 5u64,
            "gops_reset": 2u64,
        }),
    );
    for count in [0, 7] {
        same(
            text(&BaselineFigures {
                camera_to_gateway_ms: pct(count),
                gst_ingest_cpu_cores: Some(0.25),
                ort_raw_inferences_per_s: None,
                window_s: Some(24.5),
            }),
            serde_json::json!({
                "camera_to_gateway_ms": pct(count),
                "gst_ingest_cpu_cores": Some(0.25),
                "ort_raw_inferences_per_s": None::<f64>,
                "window_s": Some(24.5),
            }),
        );
    }
    same(
        text(&Ratios {
            detector_vs_ort_raw: Some(0.9),
            gateway_cpu_vs_gst: Some(3.5),
            ingest_cpu_vs_gst: None,
            relay_p99_vs_camera_hop_p99: Some(f64::NAN),
        }),
        serde_json::json!({
            "relay_p99_vs_camera_hop_p99": Some(f64::NAN),
            "ingest_cpu_vs_gst": None::<f64>,
            "gateway_cpu_vs_gst": Some(3.5),
            "detector_vs_ort_raw": Some(0.9),
        }),
    );
    same(
        text(&SensorAlerts {
            confirmed: 9,
            in_ledger: 8,
            missing_from_ledger: 1,
            missing_ids: vec!["gauge-3".into()],
            posted: 10,
            raise_to_stored_ms: pct(8),
        }),
        serde_json::json!({
            "posted": 10,
            "confirmed": 9,
            "in_ledger": 8,
            "missing_from_ledger": 1,
            "missing_ids": ["gauge-3"],
            "raise_to_stored_ms": pct(8),
        }),
    );
    same(
        text(&CpuCores {
            center: Some(0.5),
            fleet: Some(0.25),
            gateway: Some(1.5),
            gateway_by_role: Some(BTreeMap::from([
                ("ingest".to_string(), Some(0.75)),
                ("decode".to_string(), Some(0.5)),
            ])),
        }),
        serde_json::json!({
            "gateway": 1.5, "fleet": 0.25, "center": 0.5,
            "gateway_by_role": {"ingest": 0.75, "decode": 0.5},
        }),
    );
    same(
        text(&CpuCores {
            center: None,
            fleet: None,
            gateway: None,
            gateway_by_role: None,
        }),
        serde_json::json!({ "gateway": null, "fleet": null, "center": null }),
    );
    let relay_ms = DelaySummary {
        count: 3,
        max: Some(6.4),
        p50: Some(0.3),
        p90: Some(0.75),
        p99: None,
        p999: None,
    };
    let entry = |relay_ms: Option<DelaySummary>, busy: Option<f64>| TimelineEntry {
        cpu_cores: ByProcess {
            center: 0.05,
            fleet: 0.125,
            gateway: 0.375,
        },
        machine: MachineShare { busy, steal: busy },
        relay_ms,
        rss_mib: RssMib {
            center: Some(26.5),
            gateway: None,
        },
        run_queue_wait: ByProcess {
            center: Some(0.0625),
            fleet: None,
            gateway: Some(0.25),
        },
        t_s: 6.5,
    };
    let old_entry = |relay_ms: serde_json::Value, busy: Option<f64>| {
        serde_json::json!({
            "t_s": 6.5,
            "cpu_cores": { "gateway": 0.375, "fleet": 0.125, "center": 0.05 },
            "rss_mib": { "gateway": None::<f64>, "center": Some(26.5) },
            "run_queue_wait": { "gateway": 0.25, "fleet": null, "center": 0.0625 },
            "machine": { "busy": busy, "steal": busy },
            "relay_ms": relay_ms,
        })
    };
    same(
        text(&entry(Some(relay_ms.clone()), Some(0.5))),
        old_entry(
            serde_json::json!({
                "p50": 0.3, "p90": 0.75, "p99": null, "p999": null, "max": 6.4, "count": 3,
            }),
            Some(0.5),
        ),
    );
    same(
        text(&entry(None, None)),
        old_entry(serde_json::Value::Null, None),
    );
    same(
        text(&Machine {
            cpus: Some(2),
            memory_gib: Some(24.0),
            model: None,
        }),
        serde_json::json!({ "cpus": Some(2usize), "model": None::<String>, "memory_gib": Some(24.0) }),
    );
    let mut detector = detector_figures("", true, Duration::from_secs(10));
    same(
        text(&detector),
        serde_json::json!({
            "frames_in": 0u64,
            "frames_dropped": 0u64,
            "inferences_per_s": Some(0.0),
            "batch_mean": None::<f64>,
        }),
    );
    detector.stage_mean_ms = Some(crate::report::StageMeans {
        decode: Some(1.5),
        inference: Some(20.0),
        postprocess: None,
        preprocess: Some(0.5),
        queue: Some(3.0),
    });
    let mut old = serde_json::json!({
        "frames_in": 0u64,
        "frames_dropped": 0u64,
        "inferences_per_s": Some(0.0),
        "batch_mean": None::<f64>,
    });
    old["stage_mean_ms"] = serde_json::json!({
        "queue": Some(3.0),
        "decode": Some(1.5),
        "preprocess": Some(0.5),
        "inference": Some(20.0),
        "postprocess": None::<f64>,
    });
    same(text(&detector), old);
    let link = LinkStats {
        to_server: crate::link::DirStats {
            packets_in: 10,
            bytes_in: 1000,
            delivered: 9,
            lost: 1,
            queue_full: 0,
            partitioned: 0,
        },
        to_client: crate::link::DirStats::default(),
        clients: 1,
    };
    #[derive(Serialize)]
    struct WithLink {
        #[serde(serialize_with = "sorted_keys")]
        link: Option<LinkStats>,
    }
    same(
        text(&WithLink {
            link: Some(link.clone()),
        }),
        serde_json::json!({ "link": serde_json::to_value(&link).expect("serializes") }),
    );
    same(
        text(&WithLink { link: None }),
        serde_json::json!({ "link": null }),
    );
}

/// A whole report, every optional section present: the top level in the
/// order the files have, nested sections that went through JSON maps with
/// their keys sorted, and `check-report` accepting it as a run report.
#[test]
fn a_whole_report_keeps_its_order_and_passes_the_check() {
    let frames = CameraFrames {
        received_at_gateway: 100,
        lost_camera_to_gateway: Some(0),
        sent: 100,
        received_at_center: 100,
        gops_sent: 4,
        gops_reset: 0,
        gops_skipped: 0,
    };
    let latency_ms: HashMap<String, Percentiles> = [
        "relay",
        "capture_to_center",
        "capture_to_alert",
        "onset_to_alert",
        "raise_to_stored",
    ]
    .into_iter()
    .map(|n| (n.to_string(), pct(10)))
    .collect();
    let mut watch = crate::faults::FaultWatch::new(vec![crate::faults::Fault {
        kind: "partition",
        start: Duration::from_secs(1),
        end: Duration::from_secs(2),
    }]);
    watch.observe(Duration::ZERO, &serde_json::json!({ "cameras": [] }), 50.0);
    let report = RelayReport {
        provenance: Provenance::now(ReportKind::Run, BTreeMap::new()),
        started_at: "2025-01-01T00:00:00Z".into(),
        machine: machine(),
        setup: Setup {
            cameras: 1,
            clips: true,
            center_outage: None,
            detector: Some("smoke_flood".into()),
            duration_s: 30.0,
            link: "cellular".into(),
            link_settings: LinkSettings::of(Some(&Impairment::default())),
            mix: BTreeMap::from([("tower".to_string(), 1)]),
            pushed_rtmp: 0,
            gb28181: 0,
            sampling: "keyframes",
            size: "small".into(),
            subscribe: "all".into(),
            warmup_s: 5.0,
        },
        frames: Frames {
            gops_reset: 0,
            lost: 0,
            lost_camera_to_gateway: Some(0),
            lost_gateway_to_center: 0,
            received_at_center: 100,
            received_at_gateway: 100,
            sent: 100,
            sent_by_cameras: Some(100),
        },
        cameras: BTreeMap::from([("tower-01".to_string(), frames)]),
        incidents: Score::default(),
        alerts: Alerts {
            deliveries: 0,
            in_ledger: 0,
            missing_from_ledger: 0,
            not_raised_by_gateway: 0,
            raised_at_gateway: 0,
            stored_twice: 0,
        },
        latency_ms,
        baselines: BaselineFigures {
            camera_to_gateway_ms: pct(10),
            gst_ingest_cpu_cores: None,
            ort_raw_inferences_per_s: None,
            window_s: Some(25.0),
        },
        ratios: Ratios {
            detector_vs_ort_raw: None,
            gateway_cpu_vs_gst: None,
            ingest_cpu_vs_gst: None,
            relay_p99_vs_camera_hop_p99: Some(1.0),
        },
        slo: Slo {
            capture_to_alert_p99_ms: 100,
            passed: true,
            relay_p99_ms: 5,
        },
        link: Some(LinkStats {
            to_server: crate::link::DirStats::default(),
            to_client: crate::link::DirStats::default(),
            clients: 1,
        }),
        faults: watch.report(),
        sensor_alerts: Some(SensorAlerts {
            confirmed: 1,
            in_ledger: 1,
            missing_from_ledger: 0,
            missing_ids: Vec::new(),
            posted: 1,
            raise_to_stored_ms: pct(1),
        }),
        cascade: None,
        clips: None,
        cpu_cores: CpuCores {
            center: Some(0.1),
            fleet: Some(0.1),
            gateway: Some(0.2),
            gateway_by_role: None,
        },
        memory_mib: Memory {
            center_rss_peak: Some(20.0),
            gateway_rss_peak: None,
        },
        detector: detector_figures("", true, Duration::from_secs(30)),
        timeline: Vec::new(),
        relay_cdf: None,
    };
    let text = serde_json::to_string(&report).expect("serializes");
    let order = [
        "schema_version",
        "kind",
        "started_at",
        "machine",
        "setup",
        "frames",
        "cameras",
        "incidents",
        "alerts",
        "latency_ms",
        "baselines",
        "ratios",
        "slo",
        "link",
        "faults",
        "sensor_alerts",
        "cascade",
        "cpu_cores",
        "memory_mib",
        "detector",
        "timeline",
        "relay_cdf",
    ];
    // Each key after the one before it (a nested key of the same name, as
    // `setup.link`, comes earlier and is passed over).
    let mut at = 0;
    for key in order {
        let found = text[at..].find(&format!("\"{key}\":"));
        assert!(found.is_some(), "{key} out of order in {text}");
        at += found.unwrap_or(0);
    }
    assert!(text.contains(r#""link":{"clients":1,"to_client":{"bytes_in":0,"#));
    assert!(text.contains(r#""camera_to_gateway_ms":{"count":10,"max":4.0,"#));
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(crate::check::check(&value), Ok(ReportKind::Run));
    assert!(crate::html::render(&report).contains("The SLO was met."));
}
