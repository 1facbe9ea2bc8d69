//! The ledger file's life: what survives a reopen, the in-place migration of a version 1
//! file, a failed store that leaves nothing of its batch, corrupt and foreign files, and
//! a randomised model check of revisions, re-sends and snapshots across a reopen.

use super::*;
use crate::ledger::schema::{APPLICATION_ID, SCHEMA_V1};

#[test]
fn ledger_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite3");
    {
        let ledger = Ledger::open(&path).expect("open");
        ledger
            .store(
                "gw-1",
                &[
                    Incoming::Alert(with_jpeg(alert("a", 3), b"jpeg")),
                    snapshot("z", b"early"),
                ],
                7,
            )
            .expect("store");
        ledger.acknowledge("gw-1", "a", "op", None, 8).expect("ack");
    }
    let ledger = Ledger::open(&path).expect("reopen");
    assert_eq!(ledger.path(), path);
    // The de-duplication state survived: a re-send is a duplicate.
    let stored = ledger
        .store(
            "gw-1",
            &[
                Incoming::Alert(alert("a", 3)),
                Incoming::Alert(alert("z", 0)),
            ],
            9,
        )
        .expect("store");
    assert_eq!(
        stored,
        vec![
            outcome("a", 3, StoreOutcome::Duplicate),
            outcome("z", 0, StoreOutcome::Inserted),
        ]
    );
    let a = get(&ledger, "a");
    assert_eq!((a.revision, a.deliveries, a.has_snapshot), (3, 2, true));
    assert_eq!(a.acked_by.as_deref(), Some("op"));
    assert!(get(&ledger, "z").has_snapshot);
}

/// A ledger written before alert ids were per gateway (schema 1) opens as version 2
/// with every record, snapshot and acknowledgement kept, each record forwarded
/// upward under the id it always had; then a second gateway may use the same id.
#[test]
fn a_version_1_ledger_is_migrated_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite3");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(SCHEMA_V1).expect("schema 1");
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .expect("pragma");
        conn.pragma_update(None, "user_version", 1).expect("pragma");
        conn.execute(
            "INSERT INTO alerts (id, gateway, revision, camera, label, severity, state, \
             payload, received_unix_ms, updated_unix_ms, deliveries, acked_by, \
             acked_unix_ms, ack_note) \
             VALUES ('a', 'gw-1', 2, 'cam-1', 'smoke', 'critical', 'active', ?1, 10, 20, 3, \
             'op', 15, 'sent')",
            [payload("a", 2, "cam-1", "smoke", "active")],
        )
        .expect("row");
        conn.execute(
            "INSERT INTO alerts (id, gateway, revision, payload, received_unix_ms, \
             updated_unix_ms, deliveries) VALUES ('b', 'gw-2', 0, '{}', 30, 30, 1)",
            [],
        )
        .expect("row");
        conn.execute(
            "INSERT INTO snapshots VALUES ('a', 'gw-1', 11, x'ffd8'), \
             ('early', 'gw-2', 12, x'ffd9')",
            [],
        )
        .expect("row");
    }
    let ledger = Ledger::open(&path).expect("migrates");
    let version: i64 = ledger
        .lock()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("version");
    assert_eq!(version, 3);
    let a = get(&ledger, "a");
    assert_eq!(
        (
            a.gateway.as_str(),
            a.upward_id.as_str(),
            a.revision,
            a.deliveries,
            a.acked_by.as_deref(),
            a.ack_note.as_deref(),
            a.has_snapshot,
        ),
        ("gw-1", "a", 2, 3, Some("op"), Some("sent"), true)
    );
    assert_eq!(get_of(&ledger, "gw-2", "b").upward_id, "b");
    let order: Vec<String> = ledger
        .alerts(&LedgerQuery::default())
        .expect("alerts")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(order, ["b", "a"]);
    // The migrated record still tells a re-send from a reused id.
    let stored = ledger
        .store(
            "gw-1",
            &[
                Incoming::Alert(alert("a", 2)),
                Incoming::Alert(Alert {
                    payload_json: "{}".into(),
                    ..alert("a", 2)
                }),
            ],
            40,
        )
        .expect("store");
    assert_eq!(stored[0], outcome("a", 2, StoreOutcome::Duplicate));
    assert!(matches!(
        stored[1],
        Stored::Alert {
            outcome: StoreOutcome::Conflict { .. },
            ..
        }
    ));
    // A snapshot that waited for its alert still attaches, to its gateway's.
    ledger
        .store("gw-2", &[Incoming::Alert(alert("early", 0))], 41)
        .expect("store");
    assert_eq!(
        ledger
            .snapshot("gw-2", "early")
            .expect("snapshot")
            .as_deref(),
        Some(&[0xff, 0xd9][..])
    );
    // And another gateway may now use id "a".
    ledger
        .store("gw-3", &[Incoming::Alert(alert("a", 0))], 42)
        .expect("store");
    assert_eq!(get_of(&ledger, "gw-3", "a").upward_id, "gw-3/a");
    drop(ledger);
    // Opening again migrates nothing twice.
    let ledger = Ledger::open(&path).expect("reopen");
    assert_eq!(ledger.count().expect("count"), 4);
}

/// A storage failure fails the whole batch, so the center acknowledges none of it.
#[test]
fn a_failed_store_stores_nothing_of_the_batch() {
    let (dir, ledger) = open_temp();
    // Another connection makes every new alert fail, as a full disk would.
    let other = Connection::open(dir.path().join("center/ledger.sqlite3")).expect("open");
    other
        .execute_batch(
            "CREATE TRIGGER full BEFORE INSERT ON alerts \
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .expect("trigger");
    let err = ledger
        .store(
            "gw-1",
            &[snapshot("a", b"jpeg"), Incoming::Alert(alert("a", 0))],
            1,
        )
        .expect_err("the disk is full");
    assert!(
        err.to_string()
            .contains("storing alert a revision 0 from gateway gw-1"),
        "{err}"
    );
    other.execute_batch("DROP TRIGGER full").expect("drop");
    assert_eq!(ledger.count().expect("count"), 0);
    assert_eq!(ledger.snapshot("gw-1", "a").expect("snapshot"), None);
    let stored: i64 = ledger
        .lock()
        .query_row("SELECT count(*) FROM snapshots", [], |row| row.get(0))
        .expect("count");
    assert_eq!(stored, 0, "the snapshot before the failure was rolled back");
}

#[test]
fn corrupt_or_foreign_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.sqlite3");
    std::fs::write(&path, vec![0xa5u8; 4096]).expect("write");
    let message = Ledger::open(&path).expect_err("garbage").to_string();
    assert!(message.starts_with("ledger "), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");

    // A gateway outbox is not a ledger.
    let outbox = dir.path().join("outbox.sqlite3");
    drop(lookout_core::relay::outbox::Outbox::open(&outbox).expect("outbox"));
    let err = Ledger::open(&outbox).expect_err("foreign");
    assert!(
        matches!(
            err,
            LedgerError::Open {
                cause: lookout_core::durable::OpenError::Foreign { .. },
                ..
            }
        ),
        "{err}"
    );
}

/// Random interleavings of revisions, re-sends and snapshots of several ids, in
/// random batches, across a reopen: one record per id, at its highest revision, and
/// every delivery counted.
#[test]
fn random_interleavings_keep_the_highest_revision_once_per_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    for seed in [1u64, 0x5eed, 0xdead_beef, 42] {
        let path = dir.path().join(format!("ledger-{seed}.sqlite3"));
        let mut rng = XorShift(seed);
        let ids: Vec<String> = (0..6).map(|i| format!("0189-{seed}-{i}")).collect();
        let mut max = vec![None::<u32>; ids.len()];
        let mut deliveries = vec![0u64; ids.len()];
        let mut ledger = Ledger::open(&path).expect("open");
        for round in 0..60 {
            if round == 30 {
                drop(ledger);
                ledger = Ledger::open(&path).expect("reopen");
            }
            let mut batch = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..rng.below(8) {
                let i = rng.below(ids.len() as u64) as usize;
                if rng.below(5) == 0 {
                    batch.push(snapshot(&ids[i], b"jpeg"));
                    continue;
                }
                let revision = rng.below(10) as u32;
                let want = match max[i] {
                    None => StoreOutcome::Inserted,
                    Some(m) if revision > m => StoreOutcome::Updated,
                    Some(_) => StoreOutcome::Duplicate,
                };
                max[i] = max[i].max(Some(revision));
                deliveries[i] += 1;
                batch.push(Incoming::Alert(alert(&ids[i], revision)));
                expected.push(outcome(&ids[i], revision, want));
            }
            let stored = ledger.store("gw-1", &batch, round).expect("store");
            let alerts: Vec<Stored> = stored
                .into_iter()
                .filter(|s| matches!(s, Stored::Alert { .. }))
                .collect();
            assert_eq!(alerts, expected, "seed {seed} round {round}");
        }
        let listed = ledger
            .alerts(&LedgerQuery {
                limit: Some(MAX_LIMIT),
                ..Default::default()
            })
            .expect("alerts");
        let seen = max.iter().filter(|m| m.is_some()).count();
        assert_eq!(listed.len(), seen, "seed {seed}");
        assert_eq!(ledger.count().expect("count"), seen as u64);
        for (i, id) in ids.iter().enumerate() {
            let records: Vec<_> = listed.iter().filter(|a| &a.id == id).collect();
            match max[i] {
                None => assert!(records.is_empty()),
                Some(m) => {
                    assert_eq!(records.len(), 1, "seed {seed} id {id}");
                    assert_eq!(records[0].revision, m, "seed {seed} id {id}");
                    assert_eq!(records[0].deliveries, deliveries[i], "seed {seed} id {id}");
                    assert_eq!(records[0].alert["updates"], m, "seed {seed} id {id}");
                }
            }
        }
    }
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
