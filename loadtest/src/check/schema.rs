//! The report contract (docs/REPORT.md) as data: the type each field must
//! hold and one table of required fields per kind of report.

use crate::provenance::ReportKind;

/// What a field must hold.
#[derive(Clone, Copy)]
pub(super) enum Ty {
    /// A non-negative integer (`12`, not `12.0`).
    Count,
    /// A count, or `null` where there was nothing to count.
    CountOrNull,
    /// Any integer, for differences that may be negative.
    Int,
    /// Any number.
    Num,
    /// A number, or `null`: not measured.
    NumOrNull,
    Str,
    StrOrNull,
    Bool,
    /// `{p50, p90, p99, p999, max, count}`: numbers with `count` above 0,
    /// all `null` with `count` 0.
    Percentiles,
    /// An object with at least these fields.
    Obj(&'static [Field]),
    /// An object whose every value is of this type.
    MapOf(&'static Ty),
    /// An array whose every item is of this type.
    ArrayOf(&'static Ty),
    /// Present, with any value.
    Any,
}

/// One required field.
pub(super) type Field = (&'static str, Ty);

use Ty::*;

const MACHINE: &[Field] = &[
    ("cpus", CountOrNull),
    ("model", StrOrNull),
    ("memory_gib", NumOrNull),
];

const INCIDENTS: &[Field] = &[
    ("scripted", Count),
    ("alerted", Count),
    ("missed", Count),
    ("false_alerts", Count),
    ("duplicate_alerts", Count),
    ("problems", ArrayOf(&Str)),
];

const ALERTS: &[Field] = &[
    ("raised_at_gateway", Count),
    ("in_ledger", Count),
    ("missing_from_ledger", Count),
    ("stored_twice", Count),
    ("not_raised_by_gateway", Count),
    ("deliveries", Count),
];

const DETECTOR: &[Field] = &[
    ("frames_in", Count),
    ("frames_dropped", Count),
    ("inferences_per_s", NumOrNull),
    ("batch_mean", NumOrNull),
];

const SETUP: &[Field] = &[
    ("cameras", Count),
    ("mix", MapOf(&Count)),
    ("duration_s", Num),
    ("sampling", Str),
    ("link", Str),
];

const RUN: &[Field] = &[
    ("started_at", Str),
    ("machine", Obj(MACHINE)),
    ("setup", Obj(SETUP)),
    (
        "frames",
        Obj(&[
            ("sent_by_cameras", CountOrNull),
            ("received_at_gateway", Count),
            ("lost_camera_to_gateway", CountOrNull),
            ("sent", Count),
            ("received_at_center", Count),
            ("lost_gateway_to_center", Count),
            ("lost", Count),
            ("gops_reset", Count),
        ]),
    ),
    (
        "cameras",
        MapOf(&Obj(&[
            ("received_at_gateway", Count),
            ("lost_camera_to_gateway", CountOrNull),
            ("sent", Count),
            ("received_at_center", Count),
            ("gops_sent", Count),
            ("gops_reset", Count),
            ("gops_skipped", Count),
        ])),
    ),
    ("incidents", Obj(INCIDENTS)),
    ("alerts", Obj(ALERTS)),
    (
        "latency_ms",
        Obj(&[
            ("relay", Percentiles),
            ("capture_to_center", Percentiles),
            ("capture_to_alert", Percentiles),
            ("onset_to_alert", Percentiles),
        ]),
    ),
    (
        "cpu_cores",
        Obj(&[
            ("gateway", NumOrNull),
            ("fleet", NumOrNull),
            ("center", NumOrNull),
        ]),
    ),
    (
        "memory_mib",
        Obj(&[
            ("gateway_rss_peak", NumOrNull),
            ("center_rss_peak", NumOrNull),
        ]),
    ),
    ("detector", Obj(DETECTOR)),
    (
        "baselines",
        Obj(&[
            ("camera_to_gateway_ms", Percentiles),
            ("gst_ingest_cpu_cores", NumOrNull),
            ("ort_raw_inferences_per_s", NumOrNull),
        ]),
    ),
    (
        "ratios",
        Obj(&[
            ("ingest_cpu_vs_gst", NumOrNull),
            ("detector_vs_ort_raw", NumOrNull),
        ]),
    ),
    (
        "slo",
        Obj(&[
            ("capture_to_alert_p99_ms", Num),
            ("relay_p99_ms", Num),
            ("passed", Bool),
        ]),
    ),
    ("timeline", ArrayOf(&Any)),
];

const CAPACITY: &[Field] = &[
    (
        "slo",
        Obj(&[
            ("capture_to_alert_p99_ms", NumOrNull),
            ("relay_p99_ms", NumOrNull),
            ("lost", CountOrNull),
        ]),
    ),
    ("capacity_cameras", CountOrNull),
    ("first_miss_cameras", CountOrNull),
    ("duration_s", Num),
    (
        "steps",
        ArrayOf(&Obj(&[
            ("cameras", Count),
            ("passed", Bool),
            ("misses", ArrayOf(&Str)),
            ("report", Str),
        ])),
    ),
];

const PER_PROCESS_NUM_OR_NULL: &[Field] = &[
    ("gateway", NumOrNull),
    ("center", NumOrNull),
    ("fleet", NumOrNull),
];
const PER_PROCESS_NUM: &[Field] = &[("gateway", Num), ("center", Num), ("fleet", Num)];
const PER_PROCESS_COUNT: &[Field] = &[("gateway", Count), ("center", Count), ("fleet", Count)];

const SOAK_SAMPLE: &[Field] = &[
    ("t_s", Num),
    ("interval_s", Num),
    ("after_warmup", Bool),
    ("rss_mib", Obj(PER_PROCESS_NUM)),
    ("fds", Obj(PER_PROCESS_COUNT)),
    ("threads", Obj(PER_PROCESS_COUNT)),
    ("cpu_cores", Obj(PER_PROCESS_NUM)),
    (
        "frames",
        Obj(&[
            ("sent", Count),
            ("received_at_center", Count),
            ("lost", Int),
            ("sent_total", Count),
            ("received_total", Count),
        ]),
    ),
    (
        "latency_ms",
        Obj(&[("relay", Percentiles), ("capture_to_center", Percentiles)]),
    ),
    (
        "alerts",
        Obj(&[
            ("raised_at_gateway", Count),
            ("in_ledger", Count),
            ("incidents_started", Count),
        ]),
    ),
];

const SOAK: &[Field] = &[
    ("started_at", Str),
    ("machine", Obj(MACHINE)),
    (
        "setup",
        Obj(&[
            ("cameras", Count),
            ("mix", MapOf(&Count)),
            ("duration_s", Num),
            ("interval_s", Num),
            ("warmup_s", Num),
            ("incident_every_s", Num),
            ("incident_script", ArrayOf(&Str)),
            ("sampling", Str),
            ("link", Str),
        ]),
    ),
    (
        "frames",
        Obj(&[
            ("sent", Count),
            ("received_at_center", Count),
            ("lost", Int),
            ("lost_after_warmup", Int),
            ("gops_reset", Count),
        ]),
    ),
    ("incidents", Obj(INCIDENTS)),
    ("alerts", Obj(ALERTS)),
    (
        "latency_ms",
        Obj(&[
            ("capture_to_alert", Percentiles),
            ("onset_to_alert", Percentiles),
            ("raise_to_stored", Percentiles),
        ]),
    ),
    ("cpu_cores", Obj(PER_PROCESS_NUM_OR_NULL)),
    ("memory_mib_peak", Obj(PER_PROCESS_NUM_OR_NULL)),
    ("samples", ArrayOf(&Obj(SOAK_SAMPLE))),
    (
        "verdict",
        Obj(&[
            ("passed", Bool),
            ("samples_after_warmup", Count),
            ("failures", ArrayOf(&Str)),
            ("rules", ArrayOf(&Str)),
        ]),
    ),
];

const DETECT: &[Field] = &[
    ("started_at", Str),
    ("machine", Obj(MACHINE)),
    ("setup", Obj(SETUP)),
    ("incidents", Obj(INCIDENTS)),
    (
        "latency_ms",
        Obj(&[
            ("capture_to_alert", Percentiles),
            ("onset_to_alert", Percentiles),
            ("receive_to_alert", Percentiles),
        ]),
    ),
    ("detector", Obj(DETECTOR)),
    ("baselines", Obj(&[("ort_raw_inferences_per_s", NumOrNull)])),
    ("ratios", Obj(&[("detector_vs_ort_raw", NumOrNull)])),
    ("bench", Any),
];

const LINK_DIRECTION: &[Field] = &[
    ("packets_in", Count),
    ("bytes_in", Count),
    ("delivered", Count),
    ("lost", Count),
    ("queue_full", Count),
    ("partitioned", Count),
];

const LINK: &[Field] = &[
    ("to_server", Obj(LINK_DIRECTION)),
    ("to_client", Obj(LINK_DIRECTION)),
    ("clients", Count),
];

const FLEET: &[Field] = &[
    ("cameras", Count),
    ("serving_s", Num),
    ("frames_produced", Count),
    ("frames_pushed", Count),
    ("frames_late", Count),
    ("on_time_ratio", Num),
    ("max_late_ms", Num),
    ("cpu_cores", Num),
    (
        "per_camera",
        ArrayOf(&Obj(&[
            ("id", Str),
            ("kind", Str),
            ("codec", Str),
            ("width", Count),
            ("height", Count),
            ("fps", Count),
            ("frames_pushed", Count),
            ("frames_late", Count),
        ])),
    ),
];

pub(super) fn schema(kind: ReportKind) -> &'static [Field] {
    match kind {
        ReportKind::Run => RUN,
        ReportKind::Capacity => CAPACITY,
        ReportKind::Soak => SOAK,
        ReportKind::Detect => DETECT,
        ReportKind::Link => LINK,
        ReportKind::Fleet => FLEET,
    }
}

/// The figures of a percentile object, besides `count`.
pub(super) const PERCENTILE_FIGURES: [&str; 5] = ["p50", "p90", "p99", "p999", "max"];
