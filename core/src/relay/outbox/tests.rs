//! Unit tests of `outbox`.
use super::*;

fn alert(id: &str, revision: u32, jpeg: Option<&[u8]>) -> Alert {
    Alert {
        id: id.to_string(),
        revision,
        payload_json: format!(r#"{{"id":"{id}","revision":{revision}}}"#),
        snapshot_jpeg: jpeg.map(Bytes::copy_from_slice),
    }
}

fn snapshot(id: &str, jpeg: &[u8]) -> Snapshot {
    Snapshot {
        alert_id: id.to_string(),
        jpeg: Bytes::copy_from_slice(jpeg),
    }
}

#[test]
fn recent_alerts_keep_the_latest_record_after_ack_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("o.sqlite3");
    {
        let outbox = Outbox::open(&path).expect("open");
        outbox.push_alert(&alert("a", 0, None)).expect("push");
        outbox.push_alert(&alert("b", 0, None)).expect("push");
        outbox.push_alert(&alert("a", 1, None)).expect("push");
        outbox.ack_alert("a", 1).expect("ack");
        // An old revision changes nothing.
        outbox.push_alert(&alert("b", 0, None)).expect("push");
    }
    let outbox = Outbox::open(&path).expect("reopen");
    assert_eq!(
        outbox.recent_alerts(10).expect("read"),
        [
            r#"{"id":"a","revision":1}"#.to_string(),
            r#"{"id":"b","revision":0}"#.to_string()
        ]
    );
    assert_eq!(outbox.recent_alerts(1).expect("read").len(), 1);
}

fn open_temp() -> (tempfile::TempDir, Outbox) {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(&dir.path().join("center-a.sqlite3")).expect("open");
    (dir, outbox)
}

/// (kind, id, revision) of every waiting entry, oldest first.
fn summary(outbox: &Outbox) -> Vec<(&'static str, String, Option<u32>)> {
    outbox
        .pending(0, usize::MAX)
        .expect("pending")
        .into_iter()
        .map(|e| match e {
            OutboxEntry::Alert { alert, .. } => ("alert", alert.id, Some(alert.revision)),
            OutboxEntry::Snapshot { snapshot, .. } => ("snapshot", snapshot.alert_id, None),
        })
        .collect()
}

#[test]
fn outbox_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Outbox>();
}

#[test]
fn push_then_pending_returns_entries_oldest_first() {
    let (_dir, outbox) = open_temp();
    assert!(outbox.is_empty().expect("is_empty"));
    let a = alert("a", 0, Some(b"jpeg-a"));
    let b = alert("b", 0, None);
    let s = snapshot("b", b"jpeg-b");
    let seq_a = outbox.push_alert(&a).expect("push").expect("queued");
    let seq_b = outbox.push_alert(&b).expect("push").expect("queued");
    let seq_s = outbox.push_snapshot(&s).expect("push").expect("queued");
    assert!(seq_a < seq_b && seq_b < seq_s);
    assert_eq!(
        outbox.pending(0, 10).expect("pending"),
        vec![
            OutboxEntry::Alert {
                seq: seq_a,
                alert: a
            },
            OutboxEntry::Alert {
                seq: seq_b,
                alert: b
            },
            OutboxEntry::Snapshot {
                seq: seq_s,
                snapshot: s
            },
        ]
    );
    assert_eq!(outbox.len().expect("len"), 3);
    assert!(!outbox.is_empty().expect("is_empty"));
}

#[test]
fn repushing_a_revision_not_above_the_highest_is_ignored_even_after_acks() {
    let (_dir, outbox) = open_temp();
    assert!(
        outbox
            .push_alert(&alert("a", 2, None))
            .expect("push")
            .is_some()
    );
    assert_eq!(outbox.push_alert(&alert("a", 2, None)).expect("push"), None);
    assert_eq!(outbox.push_alert(&alert("a", 1, None)).expect("push"), None);
    assert_eq!(outbox.ack_alert("a", 2).expect("ack"), 1);
    assert!(outbox.is_empty().expect("is_empty"));
    // The hub is re-fed after a lag: nothing is queued twice.
    assert_eq!(outbox.push_alert(&alert("a", 0, None)).expect("push"), None);
    assert_eq!(outbox.push_alert(&alert("a", 2, None)).expect("push"), None);
    assert!(outbox.is_empty().expect("is_empty"));
    assert!(
        outbox
            .push_alert(&alert("a", 3, None))
            .expect("push")
            .is_some()
    );
    assert_eq!(summary(&outbox), vec![("alert", "a".into(), Some(3))]);
}

#[test]
fn snapshot_is_queued_once_per_alert() {
    let (_dir, outbox) = open_temp();
    assert!(
        outbox
            .push_snapshot(&snapshot("a", b"1"))
            .expect("push")
            .is_some()
    );
    assert_eq!(
        outbox.push_snapshot(&snapshot("a", b"2")).expect("push"),
        None
    );
    assert_eq!(outbox.ack_snapshot("a").expect("ack"), 1);
    assert_eq!(
        outbox.push_snapshot(&snapshot("a", b"3")).expect("push"),
        None
    );
    // A snapshot that went inside an Alert counts too.
    outbox.push_alert(&alert("b", 0, Some(b"b"))).expect("push");
    assert_eq!(
        outbox
            .push_snapshot(&snapshot("b", b"again"))
            .expect("push"),
        None
    );
    // A snapshot queued first does not stop the alert's revisions.
    assert!(
        outbox
            .push_alert(&alert("a", 0, None))
            .expect("push")
            .is_some()
    );
    assert_eq!(
        summary(&outbox),
        vec![
            ("alert", "b".into(), Some(0)),
            ("alert", "a".into(), Some(0))
        ]
    );
}

#[test]
fn higher_revision_supersedes_a_waiting_one_and_keeps_its_snapshot() {
    let (_dir, outbox) = open_temp();
    outbox
        .push_alert(&alert("a", 0, Some(b"first-frame")))
        .expect("push");
    outbox.push_alert(&alert("b", 0, None)).expect("push");
    let seq = outbox
        .push_alert(&alert("a", 1, None))
        .expect("push")
        .expect("queued");
    let entries = outbox.pending(0, 10).expect("pending");
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[1],
        OutboxEntry::Alert {
            seq,
            alert: alert("a", 1, Some(b"first-frame")),
        }
    );
    // A new revision with its own snapshot keeps its own.
    outbox
        .push_alert(&alert("a", 2, Some(b"own")))
        .expect("push");
    let entries = outbox.pending(0, 10).expect("pending");
    assert!(matches!(&entries[1], OutboxEntry::Alert { alert, .. }
        if alert.revision == 2 && alert.snapshot_jpeg.as_deref() == Some(&b"own"[..])));
    // An ack of a superseded revision leaves the higher one waiting.
    assert_eq!(outbox.ack_alert("a", 1).expect("ack"), 0);
    assert_eq!(outbox.len().expect("len"), 2);
}

#[test]
fn superseding_moves_a_waiting_snapshot_behind_the_new_revision() {
    let (_dir, outbox) = open_temp();
    outbox.push_alert(&alert("a", 0, None)).expect("push");
    outbox.push_snapshot(&snapshot("a", b"late")).expect("push");
    outbox.push_alert(&alert("a", 1, None)).expect("push");
    assert_eq!(
        summary(&outbox),
        vec![
            ("alert", "a".into(), Some(1)),
            ("snapshot", "a".into(), None)
        ]
    );
    // If the revision waiting was acknowledged already, the snapshot stays put.
    outbox.push_alert(&alert("b", 0, None)).expect("push");
    outbox.push_snapshot(&snapshot("b", b"late")).expect("push");
    outbox.ack_alert("b", 0).expect("ack");
    outbox.push_alert(&alert("b", 1, None)).expect("push");
    assert_eq!(
        summary(&outbox),
        vec![
            ("alert", "a".into(), Some(1)),
            ("snapshot", "a".into(), None),
            ("snapshot", "b".into(), None),
            ("alert", "b".into(), Some(1)),
        ]
    );
}

#[test]
fn acks_remove_entries() {
    let (_dir, outbox) = open_temp();
    outbox.push_alert(&alert("a", 0, None)).expect("push");
    outbox.push_alert(&alert("b", 3, None)).expect("push");
    outbox.push_snapshot(&snapshot("a", b"x")).expect("push");
    assert_eq!(
        outbox.ack_alert("b", 2).expect("ack"),
        0,
        "lower revision acked"
    );
    assert_eq!(outbox.ack_alert("zzz", 9).expect("ack"), 0, "unknown id");
    assert_eq!(outbox.ack_alert("a", 0).expect("ack"), 1);
    assert_eq!(outbox.ack_alert("a", 0).expect("ack"), 0, "repeated ack");
    assert_eq!(outbox.ack_snapshot("b").expect("ack"), 0);
    assert_eq!(outbox.ack_snapshot("a").expect("ack"), 1);
    assert_eq!(
        outbox.ack_alert("b", 7).expect("ack"),
        1,
        "higher revision acked"
    );
    assert!(outbox.is_empty().expect("is_empty"));
}

#[test]
fn entries_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/folders/center.sqlite3");
    let (first, second) = {
        let outbox = Outbox::open(&path).expect("open");
        let first = outbox
            .push_alert(&alert("a", 4, Some(b"jpeg")))
            .expect("push");
        let second = outbox.push_snapshot(&snapshot("c", b"c")).expect("push");
        outbox.push_alert(&alert("b", 0, None)).expect("push");
        outbox.ack_alert("b", 0).expect("ack");
        (first.expect("queued"), second.expect("queued"))
    };
    let outbox = Outbox::open(&path).expect("reopen");
    assert_eq!(outbox.path(), path);
    assert_eq!(
        outbox.pending(0, 10).expect("pending"),
        vec![
            OutboxEntry::Alert {
                seq: first,
                alert: alert("a", 4, Some(b"jpeg")),
            },
            OutboxEntry::Snapshot {
                seq: second,
                snapshot: snapshot("c", b"c"),
            },
        ]
    );
    // What was queued is remembered too, and seq never goes back, even though the
    // newest entry ("b") was deleted before the restart.
    assert_eq!(outbox.push_alert(&alert("b", 0, None)).expect("push"), None);
    assert_eq!(outbox.push_alert(&alert("a", 4, None)).expect("push"), None);
    let next = outbox
        .push_alert(&alert("d", 0, None))
        .expect("push")
        .expect("queued");
    assert_eq!(next, second + 2);
}

#[test]
fn pending_pages_with_after() {
    let (_dir, outbox) = open_temp();
    for i in 0..7 {
        outbox
            .push_alert(&alert(&format!("id-{i}"), 0, None))
            .expect("push");
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = outbox.pending(after, 3).expect("pending");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(OutboxEntry::seq).expect("non-empty");
        seen.extend(page);
    }
    let ids: Vec<String> = seen
        .iter()
        .map(|e| match e {
            OutboxEntry::Alert { alert, .. } => alert.id.clone(),
            OutboxEntry::Snapshot { .. } => unreachable!(),
        })
        .collect();
    assert_eq!(ids, (0..7).map(|i| format!("id-{i}")).collect::<Vec<_>>());
    assert!(seen.windows(2).all(|w| w[0].seq() < w[1].seq()));
    assert!(outbox.pending(u64::MAX, 10).expect("pending").is_empty());
    assert!(outbox.pending(0, 0).expect("pending").is_empty());
}

#[test]
fn file_is_wal_and_fully_synchronous() {
    let (_dir, outbox) = open_temp();
    let conn = outbox.lock();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("journal_mode");
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .expect("synchronous");
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
}

#[test]
fn corrupt_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.sqlite3");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).expect("write");
    let err = Outbox::open(&path).expect_err("garbage must not open");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.starts_with("outbox "), "{message}");
}

#[test]
fn another_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.sqlite3");
    Connection::open(&path)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
        .expect("other database");
    let err = Outbox::open(&path).expect_err("foreign");
    assert!(
        matches!(
            err,
            OutboxError::Open {
                cause: crate::durable::OpenError::Foreign { .. },
                ..
            }
        ),
        "{err}"
    );

    let newer = dir.path().join("newer.sqlite3");
    drop(Outbox::open(&newer).expect("open"));
    Connection::open(&newer)
        .and_then(|c| c.pragma_update(None, "user_version", 99))
        .expect("bump version");
    let err = Outbox::open(&newer).expect_err("newer");
    assert!(
        matches!(
            err,
            OutboxError::Open {
                cause: crate::durable::OpenError::NewerSchema { found: 99, .. },
                ..
            }
        ),
        "{err}"
    );
}

/// Random revisions of a few ids, out of order and repeated, with random acks:
/// at most one alert entry per id waits, it is the highest revision pushed and not
/// yet acknowledged, and seq only rises.
#[test]
fn random_pushes_and_acks_keep_one_highest_entry_per_id() {
    let (_dir, outbox) = open_temp();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let ids = ["a", "b", "c", "d"];
    let mut highest = [None::<u32>; 4];
    let mut acked = [None::<u32>; 4];
    let mut last_seq = 0;
    for _ in 0..400 {
        let i = rng.below(ids.len() as u64) as usize;
        if rng.below(4) == 0 {
            let revision = rng.below(12) as u32;
            outbox.ack_alert(ids[i], revision).expect("ack");
            acked[i] = acked[i].max(Some(revision));
        } else {
            let revision = rng.below(12) as u32;
            let pushed = outbox
                .push_alert(&alert(ids[i], revision, None))
                .expect("push");
            let expect_queued = highest[i].is_none_or(|h| revision > h);
            assert_eq!(pushed.is_some(), expect_queued);
            if let Some(seq) = pushed {
                assert!(seq > last_seq);
                last_seq = seq;
                highest[i] = Some(revision);
            }
        }
    }
    let waiting = summary(&outbox);
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<_> = waiting.iter().filter(|(_, w, _)| w == id).collect();
        let expected = highest[i].filter(|h| acked[i].is_none_or(|a| *h > a));
        assert_eq!(
            mine.len(),
            usize::from(expected.is_some()),
            "{id}: {mine:?}"
        );
        if let Some(h) = expected {
            assert_eq!(mine[0].2, Some(h));
        }
    }
}

/// A refusal never removes an entry: it is marked, listed, still sent after a
/// reconnect, and goes only with an acknowledgement or a higher revision.
#[test]
fn a_refused_entry_stays_marked_until_acknowledged() {
    let (_dir, outbox) = open_temp();
    outbox.push_alert(&alert("a", 0, None)).expect("push");
    outbox.push_alert(&alert("b", 0, None)).expect("push");
    outbox.push_snapshot(&snapshot("b", b"jpeg")).expect("push");
    assert_eq!(
        outbox
            .mark_refused("a", Some(0), 8, "id in use", 100)
            .expect("mark"),
        1
    );
    assert_eq!(
        outbox
            .mark_refused("b", None, 7, "disk full", 90)
            .expect("mark"),
        1
    );
    // A revision that is not waiting marks nothing.
    assert_eq!(
        outbox
            .mark_refused("a", Some(5), 8, "x", 110)
            .expect("mark"),
        0
    );
    outbox
        .mark_refused("a", Some(0), 8, "id in use, again", 120)
        .expect("mark");
    assert_eq!(outbox.len().expect("len"), 3);
    assert_eq!(outbox.refused_len().expect("refused"), 2);
    let refused = outbox.refused(10).expect("refused");
    assert_eq!(
        refused
            .iter()
            .map(|r| (
                r.alert_id.as_str(),
                r.revision,
                r.code,
                r.reason.as_str(),
                r.refusals
            ))
            .collect::<Vec<_>>(),
        [
            ("a", Some(0), 8, "id in use, again", 2),
            ("b", None, 7, "disk full", 1),
        ]
    );
    assert_eq!(summary(&outbox).len(), 3, "still sent after a reconnect");
    outbox.ack_alert("a", 0).expect("ack");
    outbox.ack_snapshot("b").expect("ack");
    assert_eq!(outbox.refused_len().expect("refused"), 0);
}

/// An outbox written before refusals were recorded gains their columns, keeps its
/// entries waiting, and stays at schema 1, so an older gateway can still open it.
#[test]
fn an_outbox_without_refusal_columns_gains_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("o.sqlite3");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(SCHEMA_V1).expect("schema 1");
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .expect("pragma");
        conn.pragma_update(None, "user_version", 1).expect("pragma");
        conn.execute(
            "INSERT INTO entries (kind, alert_id, revision, payload_json) \
             VALUES (0, 'a', 0, '{}')",
            [],
        )
        .expect("row");
    }
    let outbox = Outbox::open(&path).expect("migrates");
    assert_eq!(summary(&outbox), [("alert", "a".to_string(), Some(0))]);
    assert_eq!(outbox.refused_len().expect("refused"), 0);
    outbox
        .mark_refused("a", Some(0), 8, "id in use", 1)
        .expect("mark");
    drop(outbox);
    let outbox = Outbox::open(&path).expect("reopen");
    assert_eq!(outbox.refused(1).expect("refused")[0].reason, "id in use");
    let version: i64 = outbox
        .lock()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, 1);
}

/// A small deterministic RNG (xorshift64*), so the tests need no extra crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
