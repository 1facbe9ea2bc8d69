//! The exports' event log in the ledger: what `store` appends (new revisions only, and
//! only while exports are on), where a new export's cursor starts, delivery, backlog and
//! pruning, and that all of it survives reopening the file.

use lookout_core::export::EventLog;

use super::*;

fn seqs(events: &[lookout_core::export::ExportEvent]) -> Vec<(String, u32)> {
    events
        .iter()
        .map(|e| (e.alert_id.clone(), e.revision))
        .collect()
}

fn store(ledger: &Ledger, messages: &[Incoming]) {
    ledger.store("gw-1", messages, 1_000).expect("stores");
}

#[test]
fn stored_revisions_are_logged_once_each_while_exports_are_on() {
    let (dir, ledger) = open_temp();
    // Off: nothing is logged.
    store(&ledger, &[Incoming::Alert(alert("before", 1))]);
    ledger
        .enable_exports(&["mqtt".to_string(), "hook".to_string()])
        .expect("on");
    assert!(ledger.pending("mqtt", 10).expect("read").is_empty());
    store(
        &ledger,
        &[
            Incoming::Alert(alert("a", 1)),
            Incoming::Alert(alert("a", 1)), // a re-send: not a new event
            Incoming::Alert(alert("b", 1)),
            Incoming::Alert(alert("a", 2)),
            Incoming::Alert(alert("a", 1)), // late and lower: not a new event
        ],
    );
    let pending = ledger.pending("mqtt", 10).expect("read");
    assert_eq!(
        seqs(&pending),
        [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]
    );
    assert_eq!(pending[2].alert["updates"], 2);
    assert_eq!(ledger.backlog("mqtt").expect("backlog").0, 3);

    // One export delivers two; the other none: each has its own cursor.
    ledger.delivered("mqtt", pending[1].seq).expect("delivered");
    assert_eq!(
        seqs(&ledger.pending("mqtt", 10).expect("read")),
        [("a".into(), 2)]
    );
    assert_eq!(ledger.pending("hook", 10).expect("read").len(), 3);
    // A cursor never goes back.
    ledger.delivered("mqtt", pending[0].seq).expect("delivered");
    assert_eq!(ledger.backlog("mqtt").expect("backlog").0, 1);

    // Reopened (a restart, a kill -9): the log and the cursors are the file's.
    drop(ledger);
    let ledger = Ledger::open(&dir.path().join("center/ledger.sqlite3")).expect("reopen");
    ledger
        .enable_exports(&["mqtt".to_string(), "hook".to_string()])
        .expect("on");
    assert_eq!(ledger.backlog("mqtt").expect("backlog").0, 1);
    assert_eq!(ledger.backlog("hook").expect("backlog").0, 3);

    // A new export starts at the end; one removed no longer holds events back, and
    // what every remaining cursor passed is deleted.
    ledger
        .enable_exports(&["mqtt".to_string(), "new".to_string()])
        .expect("reconfigured");
    assert!(ledger.pending("new", 10).expect("read").is_empty());
    ledger.delivered("mqtt", pending[2].seq).expect("delivered");
    let left: i64 = ledger
        .lock()
        .query_row("SELECT COUNT(*) FROM export_events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0);
    store(&ledger, &[Incoming::Alert(alert("c", 1))]);
    assert_eq!(
        seqs(&ledger.pending("new", 10).expect("read")),
        [("c".into(), 1)]
    );

    // No exports: the log is off and emptied.
    ledger.enable_exports(&[]).expect("off");
    store(&ledger, &[Incoming::Alert(alert("d", 1))]);
    let left: i64 = ledger
        .lock()
        .query_row("SELECT COUNT(*) FROM export_events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0);
}

#[test]
fn a_failed_batch_logs_nothing() {
    // The log is written in the batch's transaction. A read-only file fails the batch at
    // its first write, before the log is reached, which alone would not show that; so
    // the log's own insert is also made to fail (a temporary trigger, as a full disk
    // would): then the alert stored earlier in the same batch must be gone with it.
    let (_dir, ledger) = open_temp();
    ledger.enable_exports(&["mqtt".to_string()]).expect("on");
    store(&ledger, &[Incoming::Alert(alert("a", 1))]);
    ledger
        .lock()
        .execute_batch("PRAGMA query_only = ON")
        .expect("read-only");
    assert!(
        ledger
            .store("gw-1", &[Incoming::Alert(alert("b", 1))], 2_000)
            .is_err()
    );
    ledger
        .lock()
        .execute_batch("PRAGMA query_only = OFF")
        .expect("writable");
    ledger
        .lock()
        .execute_batch(
            "CREATE TEMP TRIGGER log_full BEFORE INSERT ON export_events \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .expect("trigger");
    assert!(
        ledger
            .store("gw-1", &[Incoming::Alert(alert("c", 1))], 3_000)
            .is_err()
    );
    assert!(
        ledger.alert("gw-1", "c").expect("read").is_none(),
        "an alert stored without its event"
    );
    assert_eq!(
        seqs(&ledger.pending("mqtt", 10).expect("read")),
        [("a".into(), 1)]
    );
}
