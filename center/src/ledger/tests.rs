//! The ledger's unit tests, on a file in a temporary folder: what storing does (insert,
//! update, duplicate, conflict, snapshots early and late, two gateways with one id,
//! upward ids), acknowledgements, and the listings' filters and order. The file's life
//! (reopening, migration, failures, corrupt files, the randomised model check) is in
//! `tests/durability.rs`; the helpers here serve both.

mod durability;
mod export;

use super::*;
use bytes::Bytes;
use lookout_codecs::relay::MAX_ID_LEN;

fn payload(id: &str, revision: u32, camera: &str, label: &str, state: &str) -> String {
    serde_json::json!({
        "id": id,
        "state": state,
        "gateway": "gw-1",
        "camera": {"id": camera, "kind": "fixed", "name": "North gate"},
        "detector": "fire",
        "label": label,
        "severity": "critical",
        "score": 0.9,
        "updates": revision,
    })
    .to_string()
}

fn alert(id: &str, revision: u32) -> Alert {
    Alert {
        id: id.to_string(),
        revision,
        payload_json: payload(id, revision, "cam-1", "smoke", "active"),
        snapshot_jpeg: None,
    }
}

fn with_jpeg(mut a: Alert, jpeg: &[u8]) -> Alert {
    a.snapshot_jpeg = Some(Bytes::copy_from_slice(jpeg));
    a
}

fn snapshot(id: &str, jpeg: &[u8]) -> Incoming {
    Incoming::Snapshot(Snapshot {
        alert_id: id.to_string(),
        jpeg: Bytes::copy_from_slice(jpeg),
    })
}

fn outcome(id: &str, revision: u32, outcome: StoreOutcome) -> Stored {
    Stored::Alert {
        id: id.to_string(),
        revision,
        outcome,
    }
}

fn open_temp() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(&dir.path().join("center/ledger.sqlite3")).expect("open");
    (dir, ledger)
}

fn get(ledger: &Ledger, id: &str) -> LedgerAlert {
    get_of(ledger, "gw-1", id)
}

fn get_of(ledger: &Ledger, gateway: &str, id: &str) -> LedgerAlert {
    ledger.alert(gateway, id).expect("alert").expect("stored")
}

#[test]
fn ledger_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ledger>();
}

#[test]
fn insert_duplicate_and_update_outcomes_count_deliveries() {
    let (_dir, ledger) = open_temp();
    let stored = ledger
        .store("gw-1", &[Incoming::Alert(alert("a", 1))], 1_000)
        .expect("store");
    assert_eq!(stored, vec![outcome("a", 1, StoreOutcome::Inserted)]);
    let stored = ledger
        .store(
            "gw-1",
            &[
                Incoming::Alert(alert("a", 1)),
                Incoming::Alert(alert("a", 0)),
                Incoming::Alert(alert("a", 2)),
                Incoming::Alert(alert("a", 2)),
            ],
            2_000,
        )
        .expect("store");
    assert_eq!(
        stored,
        vec![
            outcome("a", 1, StoreOutcome::Duplicate),
            outcome("a", 0, StoreOutcome::Duplicate),
            outcome("a", 2, StoreOutcome::Updated),
            outcome("a", 2, StoreOutcome::Duplicate),
        ]
    );
    let a = get(&ledger, "a");
    assert_eq!(a.revision, 2);
    assert_eq!(a.deliveries, 5);
    assert_eq!(a.received_unix_ms, 1_000);
    assert_eq!(a.updated_unix_ms, 2_000);
    assert_eq!(a.gateway, "gw-1");
    assert_eq!(a.alert["updates"], 2);
    assert_eq!(ledger.count().expect("count"), 1);
}

#[test]
fn replaying_the_same_messages_leaves_one_record_per_id() {
    let (_dir, ledger) = open_temp();
    let batch = vec![
        Incoming::Alert(with_jpeg(alert("a", 0), b"a0")),
        Incoming::Alert(alert("b", 0)),
        snapshot("b", b"b-late"),
        Incoming::Alert(alert("a", 1)),
        Incoming::Alert(alert("c", 3)),
    ];
    let first = ledger.store("gw-1", &batch, 10).expect("store");
    let second = ledger.store("gw-1", &batch, 20).expect("store again");
    assert_eq!(
        first,
        vec![
            outcome("a", 0, StoreOutcome::Inserted),
            outcome("b", 0, StoreOutcome::Inserted),
            Stored::Snapshot {
                alert_id: "b".into(),
                stored: true
            },
            outcome("a", 1, StoreOutcome::Updated),
            outcome("c", 3, StoreOutcome::Inserted),
        ]
    );
    assert_eq!(
        second,
        vec![
            outcome("a", 0, StoreOutcome::Duplicate),
            outcome("b", 0, StoreOutcome::Duplicate),
            Stored::Snapshot {
                alert_id: "b".into(),
                stored: false
            },
            outcome("a", 1, StoreOutcome::Duplicate),
            outcome("c", 3, StoreOutcome::Duplicate),
        ]
    );
    assert_eq!(ledger.count().expect("count"), 3);
    let all = ledger.alerts(&LedgerQuery::default()).expect("alerts");
    let mut ids: Vec<_> = all.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(get(&ledger, "a").deliveries, 4);
    assert_eq!(get(&ledger, "a").revision, 1);
    assert_eq!(get(&ledger, "a").updated_unix_ms, 10);
    assert_eq!(
        ledger.snapshot("gw-1", "a").expect("snapshot").as_deref(),
        Some(&b"a0"[..])
    );
    assert_eq!(
        ledger.snapshot("gw-1", "b").expect("snapshot").as_deref(),
        Some(&b"b-late"[..])
    );
    assert!(!get(&ledger, "c").has_snapshot);
    assert_eq!(ledger.snapshot("gw-1", "c").expect("snapshot"), None);
}

#[test]
fn snapshot_before_its_alert_is_attached_when_the_alert_comes() {
    let (_dir, ledger) = open_temp();
    let stored = ledger
        .store("gw-1", &[snapshot("a", b"early")], 1)
        .expect("store");
    assert_eq!(
        stored,
        vec![Stored::Snapshot {
            alert_id: "a".into(),
            stored: true
        }]
    );
    assert_eq!(ledger.count().expect("count"), 0);
    assert_eq!(
        ledger.snapshot("gw-1", "a").expect("snapshot"),
        None,
        "no alert yet"
    );
    // The alert's own snapshot comes second: the first one stays.
    ledger
        .store(
            "gw-1",
            &[Incoming::Alert(with_jpeg(alert("a", 0), b"inline"))],
            2,
        )
        .expect("store");
    let a = get(&ledger, "a");
    assert!(a.has_snapshot);
    assert_eq!(
        ledger.snapshot("gw-1", "a").expect("snapshot").as_deref(),
        Some(&b"early"[..])
    );
}

#[test]
fn acknowledge_outcomes() {
    let (_dir, ledger) = open_temp();
    assert_eq!(
        ledger
            .acknowledge("gw-1", "a", "op-1", None, 5)
            .expect("ack"),
        AckOutcome::NotFound
    );
    ledger
        .store("gw-1", &[Incoming::Alert(alert("a", 0))], 1)
        .expect("store");
    assert_eq!(
        ledger
            .acknowledge("gw-1", "a", "op-1", Some("crew sent"), 5)
            .expect("ack"),
        AckOutcome::Acknowledged
    );
    assert_eq!(
        ledger
            .acknowledge("gw-1", "a", "op-2", None, 6)
            .expect("ack"),
        AckOutcome::AlreadyAcknowledged {
            by: "op-1".into(),
            at_unix_ms: 5
        }
    );
    // A later revision keeps the acknowledgement and the first-received time.
    ledger
        .store("gw-1", &[Incoming::Alert(alert("a", 1))], 9)
        .expect("store");
    let a = get(&ledger, "a");
    assert_eq!(a.revision, 1);
    assert_eq!(a.acked_by.as_deref(), Some("op-1"));
    assert_eq!(a.acked_unix_ms, Some(5));
    assert_eq!(a.ack_note.as_deref(), Some("crew sent"));
    assert_eq!(a.received_unix_ms, 1);
    assert_eq!(a.updated_unix_ms, 9);
    assert_eq!(
        serde_json::to_value(AckOutcome::AlreadyAcknowledged {
            by: "x".into(),
            at_unix_ms: 1
        })
        .expect("json"),
        serde_json::json!({"already_acknowledged": {"by": "x", "at_unix_ms": 1}})
    );
}

#[test]
fn query_filters_and_order() {
    let (_dir, ledger) = open_temp();
    let make = |id: &str, camera: &str, label: &str, state: &str| {
        Incoming::Alert(Alert {
            id: id.to_string(),
            revision: 0,
            payload_json: payload(id, 0, camera, label, state),
            snapshot_jpeg: None,
        })
    };
    ledger
        .store("gw-1", &[make("a", "cam-1", "smoke", "active")], 100)
        .expect("store");
    ledger
        .store(
            "gw-1",
            &[
                make("b", "cam-2", "smoke", "cleared"),
                make("c", "cam-1", "fire", "active"),
            ],
            200,
        )
        .expect("store");
    ledger
        .store("gw-2", &[make("d", "cam-1", "smoke", "active")], 300)
        .expect("store");
    ledger
        .acknowledge("gw-1", "c", "op", None, 250)
        .expect("ack");

    let ids = |q: LedgerQuery| -> Vec<String> {
        ledger
            .alerts(&q)
            .expect("alerts")
            .into_iter()
            .map(|a| a.id)
            .collect()
    };
    assert_eq!(ids(LedgerQuery::default()), ["d", "c", "b", "a"]);
    assert_eq!(
        ids(LedgerQuery {
            gateway: Some("gw-1".into()),
            ..Default::default()
        }),
        ["c", "b", "a"]
    );
    assert_eq!(
        ids(LedgerQuery {
            camera: Some("cam-1".into()),
            label: Some("smoke".into()),
            ..Default::default()
        }),
        ["d", "a"]
    );
    assert_eq!(
        ids(LedgerQuery {
            state: Some("cleared".into()),
            ..Default::default()
        }),
        ["b"]
    );
    assert_eq!(
        ids(LedgerQuery {
            camera: Some("cam-1".into()),
            unacknowledged_only: true,
            ..Default::default()
        }),
        ["d", "a"]
    );
    assert_eq!(
        ids(LedgerQuery {
            limit: Some(2),
            ..Default::default()
        }),
        ["d", "c"]
    );
    assert!(
        ids(LedgerQuery {
            camera: Some("nope".into()),
            ..Default::default()
        })
        .is_empty()
    );

    let c = get(&ledger, "c");
    assert_eq!(c.camera.as_deref(), Some("cam-1"));
    assert_eq!(c.label.as_deref(), Some("fire"));
    assert_eq!(c.severity.as_deref(), Some("critical"));
    assert_eq!(c.state.as_deref(), Some("active"));
}

#[test]
fn batch_with_a_payload_that_is_not_json_still_stores() {
    let (_dir, ledger) = open_temp();
    let broken = Alert {
        id: "x".into(),
        revision: 0,
        payload_json: "{not json".into(),
        snapshot_jpeg: None,
    };
    let stored = ledger
        .store(
            "gw-1",
            &[Incoming::Alert(alert("a", 0)), Incoming::Alert(broken)],
            1,
        )
        .expect("store");
    assert_eq!(stored[1], outcome("x", 0, StoreOutcome::Inserted));
    let x = get(&ledger, "x");
    assert_eq!(x.alert, Value::String("{not json".into()));
    assert_eq!(
        (x.camera, x.label, x.severity, x.state),
        (None, None, None, None)
    );
    assert_eq!(ledger.count().expect("count"), 2);
    let listed = serde_json::to_value(ledger.alerts(&LedgerQuery::default()).expect("alerts"))
        .expect("serialize");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
}

/// Issue 19: gw1's info alert and gw2's critical flood alert chose the same id. The
/// ledger used to keep gw1's and drop gw2's (acknowledging it all the same); now
/// both are stored, intact, each under its own gateway.
#[test]
fn the_same_id_from_two_gateways_is_two_alerts() {
    let (_dir, ledger) = open_temp();
    let id = "gauge17-2026-12-07T0815";
    let record = |gateway: &str, severity: &str, label: &str| Alert {
        id: id.into(),
        revision: 0,
        payload_json: serde_json::json!({
            "id": id, "gateway": gateway, "state": "active", "label": label,
            "severity": severity, "camera": {"id": "tower-01"},
        })
        .to_string(),
        snapshot_jpeg: None,
    };
    let first = ledger
        .store("gw1", &[Incoming::Alert(record("gw1", "info", "gauge"))], 1)
        .expect("store");
    assert_eq!(first, vec![outcome(id, 0, StoreOutcome::Inserted)]);
    let second = ledger
        .store(
            "gw2",
            &[
                Incoming::Alert(with_jpeg(record("gw2", "critical", "flood"), b"gw2")),
                snapshot(id, b"ignored: one snapshot per alert"),
            ],
            2,
        )
        .expect("store");
    assert_eq!(
        second,
        vec![
            outcome(id, 0, StoreOutcome::Inserted),
            Stored::Snapshot {
                alert_id: id.into(),
                stored: false
            },
        ]
    );
    assert_eq!(ledger.count().expect("count"), 2);
    let gw1 = get_of(&ledger, "gw1", id);
    let gw2 = get_of(&ledger, "gw2", id);
    assert_eq!(
        (
            gw1.severity.as_deref(),
            gw1.label.as_deref(),
            gw1.alert["gateway"].as_str()
        ),
        (Some("info"), Some("gauge"), Some("gw1"))
    );
    assert_eq!(
        (
            gw2.severity.as_deref(),
            gw2.label.as_deref(),
            gw2.alert["gateway"].as_str()
        ),
        (Some("critical"), Some("flood"), Some("gw2"))
    );
    assert_eq!((gw1.deliveries, gw2.deliveries), (1, 1));
    // Each has its own snapshot (or none) and its own acknowledgement.
    assert!(!gw1.has_snapshot);
    assert_eq!(ledger.snapshot("gw1", id).expect("snapshot"), None);
    assert_eq!(
        ledger.snapshot("gw2", id).expect("snapshot").as_deref(),
        Some(&b"gw2"[..])
    );
    assert_eq!(
        ledger.acknowledge("gw2", id, "op", None, 3).expect("ack"),
        AckOutcome::Acknowledged
    );
    assert_eq!(get_of(&ledger, "gw1", id).acked_by, None);
    // Upward (a cascade) they need two ids: the first keeps its own.
    assert_eq!(gw1.upward_id, id);
    assert_eq!(gw2.upward_id, format!("gw2/{id}"));
    // An id alone finds both, oldest first.
    let both: Vec<String> = ledger
        .alerts_with_id(id)
        .expect("lookup")
        .into_iter()
        .map(|a| a.gateway)
        .collect();
    assert_eq!(both, ["gw1", "gw2"]);
    // A re-send from either is a duplicate of its own record only.
    let again = ledger
        .store(
            "gw2",
            &[Incoming::Alert(record("gw2", "critical", "flood"))],
            4,
        )
        .expect("store");
    assert_eq!(again, vec![outcome(id, 0, StoreOutcome::Duplicate)]);
    assert_eq!(get_of(&ledger, "gw1", id).deliveries, 1);
    assert_eq!(get_of(&ledger, "gw2", id).deliveries, 2);
}

/// A gateway that reuses one of its own ids for another alert (its outbox lost, an
/// API client's id reused) gets a conflict: nothing stored, nothing to acknowledge,
/// the held record untouched — at the stored revision and at a lower one the
/// ledger remembers.
#[test]
fn a_reused_id_with_another_record_is_a_conflict_and_changes_nothing() {
    let (_dir, ledger) = open_temp();
    let other = |revision: u32| Alert {
        id: "a".into(),
        revision,
        payload_json: payload("a", revision, "cam-9", "flood", "active"),
        snapshot_jpeg: Some(Bytes::from_static(b"other")),
    };
    ledger
        .store("gw-1", &[Incoming::Alert(alert("a", 0))], 1)
        .expect("store");
    let stored = ledger
        .store("gw-1", &[Incoming::Alert(other(0))], 2)
        .expect("store");
    let [
        Stored::Alert {
            outcome: StoreOutcome::Conflict { why },
            revision: 0,
            ..
        },
    ] = stored.as_slice()
    else {
        panic!("expected a conflict, got {stored:?}");
    };
    assert!(why.contains("gw-1") && why.contains("revision 0"), "{why}");
    let a = get(&ledger, "a");
    assert_eq!((a.label.as_deref(), a.deliveries), (Some("smoke"), 1));
    assert!(!a.has_snapshot, "a refused alert's snapshot is not stored");

    // Revision 1 replaces revision 0; a different revision 0 still conflicts, the
    // real one is a late duplicate.
    ledger
        .store("gw-1", &[Incoming::Alert(alert("a", 1))], 3)
        .expect("store");
    let stored = ledger
        .store(
            "gw-1",
            &[Incoming::Alert(other(0)), Incoming::Alert(alert("a", 0))],
            4,
        )
        .expect("store");
    assert!(
        matches!(
            stored[0],
            Stored::Alert {
                outcome: StoreOutcome::Conflict { .. },
                ..
            }
        ),
        "{stored:?}"
    );
    assert_eq!(stored[1], outcome("a", 0, StoreOutcome::Duplicate));
    let a = get(&ledger, "a");
    assert_eq!((a.revision, a.deliveries), (1, 3));
    // Another gateway's alert "a" is no conflict at all.
    let stored = ledger
        .store("gw-2", &[Incoming::Alert(other(0))], 5)
        .expect("store");
    assert_eq!(stored, vec![outcome("a", 0, StoreOutcome::Inserted)]);
}

/// Upward ids stay unique and within the protocol's 64 bytes, however the ids
/// collide.
#[test]
fn upward_ids_are_unique_and_short_enough() {
    let (_dir, ledger) = open_temp();
    let long_gateway = "g".repeat(64);
    for (gateway, id) in [
        ("gw-1", "x"),
        ("gw-2", "x"),
        // Takes what gw-3's "x" would get second.
        ("gw-4", "gw-3/x"),
        ("gw-3", "x"),
        (long_gateway.as_str(), "x"),
    ] {
        ledger
            .store(gateway, &[Incoming::Alert(alert(id, 0))], 1)
            .expect("store");
    }
    let ups: Vec<String> = ledger
        .alerts(&LedgerQuery::default())
        .expect("alerts")
        .into_iter()
        .map(|a| a.upward_id)
        .collect();
    let unique: std::collections::HashSet<&String> = ups.iter().collect();
    assert_eq!(unique.len(), ups.len(), "{ups:?}");
    assert!(
        ups.iter().all(|u| !u.is_empty() && u.len() <= MAX_ID_LEN),
        "{ups:?}"
    );
    assert_eq!(get_of(&ledger, "gw-2", "x").upward_id, "gw-2/x");
    assert!(get_of(&ledger, "gw-3", "x").upward_id.starts_with('~'));
    assert!(
        get_of(&ledger, &long_gateway, "x")
            .upward_id
            .starts_with('~')
    );
}
