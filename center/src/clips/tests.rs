//! The clip store's unit tests, on a store in a temporary folder: resuming (in the
//! same store and after reopening it), refused appends, SHA-256 mismatches, offers
//! replacing offers, ids that look like paths, retention by bytes and by age, stale
//! partials, the index and folder reconciled on open, and concurrent transfers.

use super::*;
use lookout_core::metrics::Metrics;
use std::sync::Arc;

const DAY_MS: u64 = 86_400_000;

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn offer(gateway: &str, alert_id: &str, data: &[u8]) -> ClipOffer {
    ClipOffer {
        gateway: gateway.to_string(),
        alert_id: alert_id.to_string(),
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        meta_json: r#"{"camera":"tower-1","duration_ms":20000}"#.to_string(),
    }
}

fn open(dir: &Path, retention: ClipRetention) -> ClipStore {
    ClipStore::open(dir.join("clips"), retention).unwrap()
}

/// Appends `data` in chunks of `chunk` bytes from 0 and completes it at `now`.
fn store_at(store: &ClipStore, o: &ClipOffer, data: &[u8], now: u64) {
    let mut at = 0;
    for part in data.chunks(64) {
        at = store.append(o, at, part).unwrap();
    }
    store.complete_at(o, now).unwrap();
}

fn failures(store: &ClipStore, reason: &str) -> u64 {
    store
        .metrics
        .failures
        .get_or_create(&vec![("reason".to_string(), reason.to_string())])
        .get()
}

/// Every file under `root`, recursively.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn a_transfer_resumes_where_the_partial_ends_also_after_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(1000, 1);
    let o = offer("gw-1", "alert-1", &data);
    {
        let store = open(tmp.path(), ClipRetention::default());
        assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(0));
        assert_eq!(store.append(&o, 0, &data[..300]).unwrap(), 300);
        assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(300));
        assert_eq!(store.stats().partials, 1);
        assert_eq!(store.stats().partial_bytes, 300);
    }
    let store = open(tmp.path(), ClipRetention::default());
    assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(300));
    assert_eq!(store.append(&o, 300, &data[300..]).unwrap(), 1000);
    store.complete(&o).unwrap();
    assert_eq!(store.have(&o).unwrap(), ClipHave::Complete);

    let found = store.find("gw-1", "alert-1").unwrap().unwrap();
    assert_eq!(found.size, 1000);
    assert_eq!(found.sha256, hex(&o.sha256));
    assert_eq!(found.meta_json, o.meta_json);
    assert_eq!(fs::read(&found.path).unwrap(), data);
    let (_, mut file) = store.open_clip("gw-1", "alert-1").unwrap().unwrap();
    let mut read = Vec::new();
    file.read_to_end(&mut read).unwrap();
    assert_eq!(read, data);

    let stats = store.stats();
    assert_eq!((stats.clips, stats.bytes, stats.partials), (1, 1000, 0));
    // Stored once: completing again changes nothing, and appending is refused.
    store.complete(&o).unwrap();
    let err = store.append(&o, 1000, b"x").unwrap_err();
    assert!(
        matches!(err, ClipStoreError::AlreadyComplete { .. }),
        "{err}"
    );
    assert_eq!(store.stats().clips, 1);
    // Another alert, or the same id of another gateway, is not there.
    assert_eq!(store.find("gw-1", "alert-2").unwrap(), None);
    assert_eq!(store.find("gw-2", "alert-1").unwrap(), None);
}

#[test]
fn an_append_not_at_the_held_length_is_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    let data = bytes(500, 2);
    let o = offer("gw-1", "a", &data);
    store.append(&o, 0, &data[..200]).unwrap();
    for wrong in [0, 150, 250] {
        let err = store.append(&o, wrong, &data[..10]).unwrap_err();
        match &err {
            ClipStoreError::Offset { offset, have, .. } => {
                assert_eq!((*offset, *have), (wrong, 200))
            }
            other => panic!("expected an offset error, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("offset {wrong}")) && text.contains("200 bytes"),
            "{text}"
        );
    }
    assert_eq!(failures(&store, "offset"), 3);
    // Nothing was written by the refused appends.
    assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(200));
}

#[test]
fn an_append_past_the_offered_size_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    let data = bytes(100, 3);
    let o = offer("gw-1", "a", &data);
    store.append(&o, 0, &data[..90]).unwrap();
    let err = store.append(&o, 90, &[0u8; 11]).unwrap_err();
    assert!(
        matches!(err, ClipStoreError::PastEnd { size: 100, .. }),
        "{err}"
    );
    assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(90));
    let err = store.complete(&o).unwrap_err();
    assert!(
        matches!(
            err,
            ClipStoreError::Incomplete {
                have: 90,
                size: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(failures(&store, "past_end"), 1);
    assert_eq!(failures(&store, "incomplete"), 1);
}

#[test]
fn a_sha256_mismatch_discards_the_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    let data = bytes(400, 4);
    let o = offer("gw-1", "a", &data);
    let mut corrupt = data.clone();
    corrupt[123] ^= 0xff;
    store.append(&o, 0, &corrupt).unwrap();
    let err = store.complete(&o).unwrap_err();
    match &err {
        ClipStoreError::Sha256 { expected, got, .. } => {
            assert_eq!(expected, &hex(&o.sha256));
            assert_eq!(got, &hex(&Sha256::digest(&corrupt)));
        }
        other => panic!("expected a SHA-256 error, got {other}"),
    }
    assert!(err.to_string().contains("discarded"), "{err}");
    assert_eq!(failures(&store, "sha256"), 1);
    assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(0));
    assert_eq!(store.stats().partials, 0);
    assert_eq!(store.find("gw-1", "a").unwrap(), None);
    // Sent again, right this time, it is stored.
    store_at(&store, &o, &data, 1);
    assert_eq!(store.have(&o).unwrap(), ClipHave::Complete);
}

#[test]
fn another_offer_for_the_key_discards_the_partial_and_replaces_the_clip_when_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    let first = bytes(300, 5);
    let second = bytes(500, 6);
    let o1 = offer("gw-1", "a", &first);
    let o2 = offer("gw-1", "a", &second);

    // A partial of the first offer is dropped when the second is asked about.
    store.append(&o1, 0, &first[..100]).unwrap();
    assert_eq!(store.have(&o2).unwrap(), ClipHave::Partial(0));
    assert_eq!(store.stats().partials, 0);
    assert_eq!(store.have(&o1).unwrap(), ClipHave::Partial(0));

    // A stored clip stays served until the new offer completes, then is replaced.
    store_at(&store, &o1, &first, 1);
    assert_eq!(store.have(&o2).unwrap(), ClipHave::Partial(0));
    store.append(&o2, 0, &second[..200]).unwrap();
    assert_eq!(store.find("gw-1", "a").unwrap().unwrap().size, 300);
    assert_eq!(store.have(&o1).unwrap(), ClipHave::Complete);
    assert_eq!(store.have(&o2).unwrap(), ClipHave::Partial(0));
    store_at(&store, &o2, &second, 2);
    let found = store.find("gw-1", "a").unwrap().unwrap();
    assert_eq!((found.size, found.sha256.clone()), (500, hex(&o2.sha256)));
    assert_eq!(fs::read(&found.path).unwrap(), second);
    assert_eq!(store.have(&o1).unwrap(), ClipHave::Partial(0));
    let stats = store.stats();
    assert_eq!((stats.clips, stats.bytes), (1, 500));
}

#[test]
fn path_hostile_ids_stay_inside_the_clips_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let root = tmp.path().join("store");
    let store = open(&root, ClipRetention::default());
    let clips_dir = root.join("clips");
    let keys = [
        ("gw-1", "../x"),
        ("gw-1", "a/b"),
        ("gw-1", ".."),
        ("gw-1", "/etc/passwd"),
        ("../../outside", "../outside/evil"),
        ("a", "b\nc"),
        ("a\nb", "c"),
    ];
    for (i, (gateway, id)) in keys.iter().enumerate() {
        let data = bytes(50 + i, i as u8);
        let o = offer(gateway, id, &data);
        assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(0));
        store_at(&store, &o, &data, 1);
        let found = store.find(gateway, id).unwrap().unwrap();
        assert_eq!(found.path.parent(), Some(clips_dir.as_path()));
        assert_eq!(fs::read(&found.path).unwrap(), data, "{gateway:?} {id:?}");
    }
    assert_eq!(store.stats().clips, keys.len() as u64);
    assert!(files_under(&outside).is_empty());
    for f in files_under(tmp.path()) {
        assert!(
            f.starts_with(&clips_dir),
            "{} outside the store",
            f.display()
        );
    }
}

#[test]
fn invalid_offers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let retention = ClipRetention {
        max_age_days: 90,
        max_bytes: 1000,
    };
    let store = open(tmp.path(), retention);
    let good = offer("gw-1", "a", &bytes(10, 0));
    let long_id = "x".repeat(MAX_ID_LEN + 1);
    let cases: Vec<(ClipOffer, &str)> = vec![
        (
            ClipOffer {
                gateway: String::new(),
                ..good.clone()
            },
            "gateway id",
        ),
        (
            ClipOffer {
                alert_id: long_id,
                ..good.clone()
            },
            "alert id",
        ),
        (
            ClipOffer {
                size: 0,
                ..good.clone()
            },
            "size 0",
        ),
        (
            ClipOffer {
                size: 1001,
                ..good.clone()
            },
            "clip_max_bytes",
        ),
        (
            ClipOffer {
                meta_json: "[1, 2]".into(),
                ..good.clone()
            },
            "JSON object",
        ),
        (
            ClipOffer {
                meta_json: "{".into(),
                ..good.clone()
            },
            "not JSON",
        ),
        (
            ClipOffer {
                meta_json: format!(r#"{{"x":"{}"}}"#, "y".repeat(MAX_META_JSON)),
                ..good.clone()
            },
            "at most 4096",
        ),
    ];
    for (o, says) in &cases {
        let err = store.have(o).unwrap_err();
        assert!(matches!(err, ClipStoreError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains(says), "{err} should say {says}");
        assert!(store.append(o, 0, b"x").is_err());
    }
    assert_eq!(failures(&store, "invalid"), 2 * cases.len() as u64);
    // An empty metadata string means none, shown as `{}`.
    let data = bytes(10, 0);
    let o = ClipOffer {
        meta_json: String::new(),
        ..offer("gw-1", "a", &data)
    };
    store_at(&store, &o, &data, 1);
    assert_eq!(store.find("gw-1", "a").unwrap().unwrap().meta_json, "{}");
}

#[test]
fn retention_by_bytes_evicts_the_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let retention = ClipRetention {
        max_age_days: 90,
        max_bytes: 1000,
    };
    let store = open(tmp.path(), retention);
    let t0 = 1_700_000_000_000;
    // Stored out of id order, so "oldest" cannot be confused with "first id".
    for (id, at) in [("c", t0), ("a", t0 + 10), ("b", t0 + 20)] {
        let data = bytes(400, id.as_bytes()[0]);
        store_at(&store, &offer("gw-1", id, &data), &data, at);
    }
    // 1200 bytes over 1000: the oldest, "c", went.
    assert_eq!(store.find("gw-1", "c").unwrap(), None);
    assert!(store.find("gw-1", "a").unwrap().is_some());
    assert!(store.find("gw-1", "b").unwrap().is_some());
    let stats = store.stats();
    assert_eq!((stats.clips, stats.bytes, stats.evicted), (2, 800, 1));
    assert_eq!(
        files_under(&tmp.path().join("clips"))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
            .count(),
        2
    );
    // A bigger one pushes out both older ones.
    let data = bytes(900, 9);
    store_at(&store, &offer("gw-2", "d", &data), &data, t0 + 30);
    assert_eq!(store.find("gw-1", "a").unwrap(), None);
    assert_eq!(store.find("gw-1", "b").unwrap(), None);
    assert!(store.find("gw-2", "d").unwrap().is_some());
    assert_eq!(store.stats().evicted, 3);
}

#[test]
fn retention_by_age_evicts_clips_older_than_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let retention = ClipRetention {
        max_age_days: 2,
        max_bytes: 1 << 20,
    };
    let store = open(tmp.path(), retention);
    let t0 = 1_700_000_000_000;
    let old = bytes(100, 1);
    let newer = bytes(100, 2);
    store_at(&store, &offer("gw-1", "old", &old), &old, t0);
    store_at(&store, &offer("gw-1", "newer", &newer), &newer, t0 + DAY_MS);
    store.sweep_at(t0 + 2 * DAY_MS, SystemTime::now()).unwrap();
    assert_eq!(store.stats().clips, 2, "exactly at the limit is kept");
    store
        .sweep_at(t0 + 2 * DAY_MS + 1, SystemTime::now())
        .unwrap();
    assert_eq!(store.find("gw-1", "old").unwrap(), None);
    assert!(store.find("gw-1", "newer").unwrap().is_some());
    assert_eq!(store.stats().evicted, 1);
    store
        .sweep_at(t0 + 3 * DAY_MS + 1, SystemTime::now())
        .unwrap();
    assert_eq!(store.stats().clips, 0);
    assert_eq!(store.stats().evicted, 2);
}

#[test]
fn partials_untouched_for_a_week_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    let stale = offer("gw-1", "stale", &bytes(100, 1));
    let fresh = offer("gw-1", "fresh", &bytes(100, 2));
    store.append(&stale, 0, &[1; 10]).unwrap();
    store.append(&fresh, 0, &[2; 10]).unwrap();
    let now = SystemTime::now();
    let name = clip_name("gw-1", "stale");
    let path = store.partial_path(&name, &stale);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(now - PARTIAL_MAX_IDLE - Duration::from_secs(60))
        .unwrap();
    store.sweep_at(lookout_core::clock::unix_ms(), now).unwrap();
    assert!(!path.exists());
    assert_eq!(store.have(&stale).unwrap(), ClipHave::Partial(0));
    assert_eq!(store.have(&fresh).unwrap(), ClipHave::Partial(10));
}

#[test]
fn opening_reconciles_the_index_with_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let kept = bytes(100, 1);
    let lost = bytes(100, 2);
    let (lost_path, kept_path) = {
        let store = open(tmp.path(), ClipRetention::default());
        // Stored now: reopening applies retention, and these must survive it.
        let now = lookout_core::clock::unix_ms();
        store_at(&store, &offer("gw-1", "kept", &kept), &kept, now);
        store_at(&store, &offer("gw-1", "lost", &lost), &lost, now);
        (
            store.find("gw-1", "lost").unwrap().unwrap().path,
            store.find("gw-1", "kept").unwrap().unwrap().path,
        )
    };
    fs::remove_file(&lost_path).unwrap();
    // As if a crash came between the rename and the index.
    let orphan = kept_path.with_file_name(format!("{}.mp4", "ab".repeat(32)));
    fs::write(&orphan, b"orphan").unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    assert!(!orphan.exists());
    assert_eq!(store.find("gw-1", "lost").unwrap(), None);
    assert!(store.find("gw-1", "kept").unwrap().is_some());
    let stats = store.stats();
    assert_eq!((stats.clips, stats.bytes), (1, 100));
    let lost_offer = offer("gw-1", "lost", &lost);
    assert_eq!(store.have(&lost_offer).unwrap(), ClipHave::Partial(0));
}

#[test]
fn a_clip_whose_file_vanished_is_not_claimed_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    let data = bytes(100, 7);
    let o = offer("gw-1", "a", &data);
    store_at(&store, &o, &data, 1);
    fs::remove_file(store.find("gw-1", "a").unwrap().unwrap().path).unwrap();
    assert!(store.open_clip("gw-1", "a").unwrap().is_none());
    assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(0));
    assert_eq!(store.stats().clips, 0);
}

#[test]
fn clip_names_are_unambiguous() {
    assert_ne!(clip_name("a", "b\nc"), clip_name("a\nb", "c"));
    assert_ne!(clip_name("ab", "c"), clip_name("a", "bc"));
    assert_eq!(clip_name("gw", "x"), clip_name("gw", "x"));
    assert_eq!(clip_name("gw", "x").len(), 64);
}

#[test]
fn concurrent_transfers_of_different_clips_all_arrive_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(open(tmp.path(), ClipRetention::default()));
    let workers: Vec<_> = (0..4u8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let data = bytes(5000 + usize::from(i) * 7, i);
                let o = offer("gw-1", &format!("alert-{i}"), &data);
                let mut at = 0;
                for part in data.chunks(97) {
                    assert_eq!(store.have(&o).unwrap(), ClipHave::Partial(at));
                    at = store.append(&o, at, part).unwrap();
                }
                store.complete(&o).unwrap();
                data
            })
        })
        .collect();
    for (i, w) in workers.into_iter().enumerate() {
        let data = w.join().unwrap();
        let found = store.find("gw-1", &format!("alert-{i}")).unwrap().unwrap();
        assert_eq!(fs::read(found.path).unwrap(), data);
    }
    assert_eq!(store.stats().clips, 4);
}

#[test]
fn the_same_clip_from_two_threads_is_stored_once_and_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(open(tmp.path(), ClipRetention::default()));
    let data = Arc::new(bytes(4000, 3));
    // Two senders race to deliver one clip; each resumes from what `have` says and
    // tolerates the other's progress. Taking turns per clip keeps the file whole.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let data = data.clone();
            std::thread::spawn(move || {
                let o = offer("gw-1", "same", &data);
                loop {
                    let at = match store.have(&o).unwrap() {
                        ClipHave::Complete => return,
                        ClipHave::Partial(n) => n,
                    };
                    let end = (at as usize + 101).min(data.len());
                    match store.append(&o, at, &data[at as usize..end]) {
                        Ok(n) if n == o.size => match store.complete(&o) {
                            Ok(()) | Err(ClipStoreError::Incomplete { .. }) => {}
                            Err(e) => panic!("{e}"),
                        },
                        Ok(_)
                        | Err(ClipStoreError::Offset { .. })
                        | Err(ClipStoreError::AlreadyComplete { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let found = store.find("gw-1", "same").unwrap().unwrap();
    assert_eq!(fs::read(found.path).unwrap(), *data);
    assert_eq!(store.stats().clips, 1);
}

#[test]
fn the_series_are_exported_under_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), ClipRetention::default());
    let metrics = Metrics::new("test", "none", "none");
    store.register(&metrics);
    let data = bytes(321, 1);
    let o = offer("gw-1", "a", &data);
    store_at(&store, &o, &data, lookout_core::clock::unix_ms());
    assert!(store.append(&o, 0, b"x").is_err());
    let text = metrics.encode();
    for line in [
        "lookout_center_clips_stored 1",
        "lookout_center_clip_bytes 321",
        "lookout_center_clips_evicted_total 0",
        "lookout_center_clip_failures_total{reason=\"already_complete\"} 1",
        "lookout_center_clip_failures_total{reason=\"sha256\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
}
