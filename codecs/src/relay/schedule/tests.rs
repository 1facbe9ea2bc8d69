//! Unit tests of the GOP stream scheduler: class ranks and alert boost, newest-GOP-first
//! priorities, the latency-budget reset rule (clock steps included), subscriptions and
//! per-camera statistics, all driven with made-up `Instant`s.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(class: CameraKind, budget_ms: u64) -> CameraPolicy {
    CameraPolicy {
        class,
        latency_budget: ms(budget_ms),
    }
}

fn open(s: &mut Scheduler, id: &str, seq: u64, now: Instant) -> i32 {
    match s.gop_started(id, seq, now) {
        GopStart::Open { priority } => priority,
        other => panic!("{id} GOP {seq}: {other:?}"),
    }
}

fn actions(s: &mut Scheduler) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn reset(camera: &str, gop_seq: u64, code: ErrorCode) -> Action {
    Action::Reset {
        camera: camera.into(),
        gop_seq,
        code,
    }
}

fn set(camera: &str, gop_seq: u64, priority: i32) -> Action {
    Action::SetPriority {
        camera: camera.into(),
        gop_seq,
        priority,
    }
}

/// One camera of each class, in the default order's reverse.
fn fleet() -> Scheduler {
    let mut s = Scheduler::default();
    for (id, class) in [
        ("fixed", CameraKind::Fixed),
        ("bodycam", CameraKind::Bodycam),
        ("drone", CameraKind::Drone),
        ("tower", CameraKind::Tower),
    ] {
        s.set_camera(id, policy(class, 1000));
    }
    s
}

#[test]
fn classes_rank_tower_drone_bodycam_fixed() {
    let t0 = Instant::now();
    let mut s = fleet();
    let p: Vec<i32> = ["tower", "drone", "bodycam", "fixed"]
        .iter()
        .map(|id| open(&mut s, id, 0, t0))
        .collect();
    assert!(p.windows(2).all(|w| w[0] > w[1]), "{p:?}");
    assert!(p.iter().all(|&p| (0..CONTROL_STREAM_PRIORITY).contains(&p)));
    const { assert!(ALERT_STREAM_PRIORITY > CONTROL_STREAM_PRIORITY) };
    assert!(actions(&mut s).is_empty());
}

#[test]
fn class_ranks_are_configurable() {
    let t0 = Instant::now();
    let mut s = fleet();
    let tower = open(&mut s, "tower", 0, t0);
    let fixed = open(&mut s, "fixed", 0, t0);
    assert!(tower > fixed);
    s.set_class_ranks(ClassRanks {
        tower: 0,
        drone: 1,
        bodycam: 2,
        fixed: 9,
    });
    let got = actions(&mut s);
    assert_eq!(got.len(), 2, "{got:?}");
    let tower = s.priority("tower", 0).unwrap();
    let fixed = s.priority("fixed", 0).unwrap();
    assert!(fixed > tower);
    assert!(got.contains(&set("fixed", 0, fixed)));
    assert!(got.contains(&set("tower", 0, tower)));
    // Same ranks again: nothing changes, nothing queued.
    s.set_class_ranks(s.ranks);
    assert!(actions(&mut s).is_empty());
}

#[test]
fn equal_ranks_give_equal_priorities() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(ClassRanks {
        tower: 5,
        drone: 5,
        bodycam: 5,
        fixed: 5,
    });
    s.set_camera("a", policy(CameraKind::Tower, 10));
    s.set_camera("b", policy(CameraKind::Fixed, 10));
    assert_eq!(open(&mut s, "a", 0, t0), open(&mut s, "b", 0, t0));
}

#[test]
fn an_alert_lifts_a_camera_above_every_quiet_one() {
    let t0 = Instant::now();
    let mut s = fleet();
    for id in ["tower", "drone", "bodycam", "fixed"] {
        open(&mut s, id, 0, t0);
    }
    let tower = s.priority("tower", 0).unwrap();
    let fixed_quiet = s.priority("fixed", 0).unwrap();

    s.set_alert_active("fixed", true);
    let boosted = s.priority("fixed", 0).unwrap();
    assert!(boosted > tower);
    assert_eq!(actions(&mut s), [set("fixed", 0, boosted)]);

    // Older GOPs of the alerting camera are above the quiet cameras' newest, too.
    open(&mut s, "fixed", 1, t0 + ms(500));
    assert!(s.priority("fixed", 0).unwrap() > tower);
    assert!(s.priority("fixed", 1).unwrap() > s.priority("fixed", 0).unwrap());

    // Two alerting cameras: class order again between them.
    s.set_alert_active("tower", true);
    assert!(s.priority("tower", 0).unwrap() > s.priority("fixed", 1).unwrap());
    s.set_alert_active("tower", false);
    actions(&mut s);

    s.set_alert_active("fixed", false);
    assert_eq!(s.priority("fixed", 1).unwrap(), fixed_quiet);
    assert!(s.priority("fixed", 1).unwrap() < tower);
    assert_eq!(actions(&mut s).len(), 2);

    // Unknown cameras are ignored; setting the same state again queues nothing.
    s.set_alert_active("nobody", true);
    s.set_alert_active("fixed", false);
    assert!(actions(&mut s).is_empty());
}

#[test]
fn newest_gop_of_a_camera_first() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    s.set_camera("tower", policy(CameraKind::Tower, 60_000));
    let p0 = open(&mut s, "tower", 0, t0);
    let p1 = open(&mut s, "tower", 1, t0 + ms(1));
    assert_eq!(p0, p1, "each newest GOP gets the same top level");
    assert_eq!(actions(&mut s), [set("tower", 0, p0 - 1)]);
    for seq in 2..8 {
        open(&mut s, "tower", seq, t0 + ms(seq));
    }
    let p: Vec<i32> = (0..8)
        .map(|seq| s.priority("tower", seq).unwrap())
        .collect();
    // Newest, second, third, then everything older on one level.
    assert_eq!(p[7], p1);
    assert_eq!(&p[4..], [p1 - 3, p1 - 2, p1 - 1, p1]);
    assert!(p[..4].iter().all(|&x| x == p1 - 3));
    actions(&mut s);

    // The newest is delivered: the others move up one level each.
    s.gop_closed("tower", 7, GopOutcome::Delivered);
    assert_eq!(s.priority("tower", 6), Some(p1));
    assert_eq!(s.priority("tower", 5), Some(p1 - 1));
    assert_eq!(s.priority("tower", 4), Some(p1 - 2));
    assert_eq!(s.priority("tower", 3), Some(p1 - 3));
    assert_eq!(actions(&mut s).len(), 3, "levels 0..3 unchanged for GOP 3");
}

#[test]
fn superseded_gop_is_reset_when_its_lag_reaches_the_budget() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    s.set_camera("tower", policy(CameraKind::Tower, 800));
    open(&mut s, "tower", 0, t0);
    assert_eq!(s.poll_timeout(), None, "the newest GOP has no deadline");
    // Long after its start, the only GOP is still never reset: it is live.
    s.handle_timeout(t0 + ms(60_000));
    assert_eq!(s.open_gops("tower"), [0]);

    let t1 = t0 + ms(60_000);
    open(&mut s, "tower", 1, t1);
    actions(&mut s);
    assert_eq!(s.poll_timeout(), Some(t1 + ms(800)));
    s.handle_timeout(t1 + ms(799));
    assert!(actions(&mut s).is_empty());
    s.handle_timeout(t1 + ms(800));
    assert_eq!(
        actions(&mut s),
        [
            reset("tower", 0, ErrorCode::GOP_EXPIRED),
            // GOP 1 was already at the top level: no change.
        ]
    );
    assert_eq!(s.open_gops("tower"), [1]);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(
        s.stats("tower"),
        Some(GopStats {
            sent: 0,
            reset: 1,
            skipped: 0
        })
    );
    // The I/O layer reports the reset stream's end later: not counted again.
    s.gop_closed("tower", 0, GopOutcome::Stopped(ErrorCode::GOP_EXPIRED));
    assert_eq!(s.stats("tower").unwrap().reset, 1);
}

#[test]
fn delivered_in_time_is_sent_not_reset() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    s.set_camera("drone", policy(CameraKind::Drone, 500));
    open(&mut s, "drone", 10, t0);
    open(&mut s, "drone", 11, t0 + ms(2000));
    s.gop_closed("drone", 10, GopOutcome::Delivered);
    s.handle_timeout(t0 + ms(10_000));
    s.gop_closed("drone", 11, GopOutcome::Delivered);
    s.gop_closed("drone", 11, GopOutcome::Delivered);
    s.gop_closed("drone", 99, GopOutcome::Delivered);
    s.gop_closed("nobody", 0, GopOutcome::Delivered);
    assert!(
        !actions(&mut s)
            .iter()
            .any(|a| matches!(a, Action::Reset { .. }))
    );
    assert_eq!(
        s.stats("drone"),
        Some(GopStats {
            sent: 2,
            reset: 0,
            skipped: 0
        })
    );
}

#[test]
fn stopped_by_the_center_counts_as_reset() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    s.set_camera("c", policy(CameraKind::Fixed, 500));
    open(&mut s, "c", 0, t0);
    s.gop_closed("c", 0, GopOutcome::Stopped(ErrorCode::UNWANTED));
    assert_eq!(s.stats("c").unwrap().reset, 1);
    assert!(s.open_gops("c").is_empty());
}

#[test]
fn zero_budget_resets_at_once_when_superseded() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    s.set_camera("c", policy(CameraKind::Bodycam, 0));
    let p = open(&mut s, "c", 0, t0);
    s.handle_timeout(t0 + ms(5000));
    assert_eq!(s.open_gops("c"), [0], "the live GOP stays");
    assert_eq!(open(&mut s, "c", 1, t0 + ms(5000)), p);
    assert_eq!(actions(&mut s), [reset("c", 0, ErrorCode::GOP_EXPIRED)]);
    assert_eq!(s.open_gops("c"), [1]);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn time_going_backwards_resets_nothing() {
    let t0 = Instant::now() + ms(100_000);
    let mut s = Scheduler::default();
    s.set_camera("c", policy(CameraKind::Tower, 1000));
    open(&mut s, "c", 0, t0);
    // The next GOP reports an earlier time than the first.
    let back = t0 - ms(50_000);
    open(&mut s, "c", 1, back);
    actions(&mut s);
    s.handle_timeout(t0 - ms(90_000));
    s.handle_timeout(back);
    s.handle_timeout(back + ms(999));
    assert!(actions(&mut s).is_empty());
    assert_eq!(s.open_gops("c"), [0, 1]);
    // Time moves on from there: the budget counts from the supersede time recorded.
    s.handle_timeout(back + ms(1000));
    assert_eq!(actions(&mut s), [reset("c", 0, ErrorCode::GOP_EXPIRED)]);

    // A supersede recorded at a later time than a check: age zero, kept.
    open(&mut s, "c", 2, t0 + ms(10_000));
    s.handle_timeout(t0);
    assert!(
        !actions(&mut s)
            .iter()
            .any(|a| matches!(a, Action::Reset { .. }))
    );
    assert_eq!(s.open_gops("c"), [1, 2]);
}

#[test]
fn endless_budget_never_resets_and_has_no_deadline() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    s.set_camera("c", policy(CameraKind::Tower, 0));
    s.set_camera(
        "c",
        CameraPolicy {
            class: CameraKind::Tower,
            latency_budget: Duration::MAX,
        },
    );
    open(&mut s, "c", 0, t0);
    open(&mut s, "c", 1, t0 + ms(1));
    assert_eq!(s.poll_timeout(), None, "deadline beyond what Instant holds");
    s.handle_timeout(t0 + ms(1_000_000_000));
    assert_eq!(s.open_gops("c"), [0, 1]);
}

#[test]
fn budgets_are_per_camera() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    s.set_camera("fast", policy(CameraKind::Tower, 200));
    s.set_camera("slow", policy(CameraKind::Fixed, 3000));
    for id in ["fast", "slow"] {
        open(&mut s, id, 0, t0);
        open(&mut s, id, 1, t0 + ms(1000));
    }
    actions(&mut s);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(1200)));
    s.handle_timeout(t0 + ms(1200));
    assert_eq!(actions(&mut s), [reset("fast", 0, ErrorCode::GOP_EXPIRED)]);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(4000)));
    s.handle_timeout(t0 + ms(4000));
    assert_eq!(actions(&mut s), [reset("slow", 0, ErrorCode::GOP_EXPIRED)]);
}

#[test]
fn subscriptions_choose_cameras_at_gop_boundaries() {
    let t0 = Instant::now();
    let mut s = fleet();
    open(&mut s, "tower", 0, t0);
    s.subscribe(&Subscribe {
        mode: SubscribeMode::List,
        cameras: vec!["drone".into(), "not-yet-configured".into()],
    });
    assert!(s.wants("drone") && !s.wants("tower") && s.wants("not-yet-configured"));
    // The tower's open GOP finishes; its next one is skipped.
    assert_eq!(s.open_gops("tower"), [0]);
    assert_eq!(
        s.gop_started("tower", 1, t0 + ms(100)),
        GopStart::Skip(SkipReason::NotSubscribed)
    );
    assert_eq!(s.stats("tower").unwrap().skipped, 1);
    open(&mut s, "drone", 0, t0);

    s.subscribe(&Subscribe {
        mode: SubscribeMode::AlertingOnly,
        cameras: vec!["drone".into()],
    });
    assert!(!s.wants("fixed") && s.wants("drone"));
    s.set_alert_active("fixed", true);
    assert!(s.wants("fixed"));
    open(&mut s, "fixed", 0, t0);
    s.set_alert_active("fixed", false);
    assert!(!s.wants("fixed"));

    s.subscribe(&Subscribe {
        mode: SubscribeMode::All,
        cameras: Vec::new(),
    });
    assert!(s.wants("tower") && s.wants("anything"));
}

#[test]
fn skipped_gop_still_supersedes_the_open_one() {
    let t0 = Instant::now();
    let mut s = fleet();
    open(&mut s, "tower", 0, t0);
    s.subscribe(&Subscribe {
        mode: SubscribeMode::List,
        cameras: Vec::new(),
    });
    s.gop_started("tower", 1, t0 + ms(2000));
    assert_eq!(s.poll_timeout(), Some(t0 + ms(3000)));
    s.handle_timeout(t0 + ms(3000));
    assert_eq!(actions(&mut s), [reset("tower", 0, ErrorCode::GOP_EXPIRED)]);
}

#[test]
fn removed_camera_streams_are_superseded() {
    let t0 = Instant::now();
    let mut s = fleet();
    open(&mut s, "drone", 4, t0);
    open(&mut s, "drone", 5, t0 + ms(10));
    s.gop_closed("drone", 4, GopOutcome::Delivered);
    actions(&mut s);
    assert_eq!(
        s.remove_camera("drone"),
        Some(GopStats {
            sent: 1,
            reset: 1,
            skipped: 0
        })
    );
    assert_eq!(actions(&mut s), [reset("drone", 5, ErrorCode::SUPERSEDED)]);
    assert_eq!(s.remove_camera("drone"), None);
    assert_eq!(
        s.gop_started("drone", 6, t0),
        GopStart::Skip(SkipReason::UnknownCamera)
    );
    assert_eq!(s.stats("drone"), None);
    // Added again, it starts from scratch (sequence numbers included).
    s.set_camera("drone", policy(CameraKind::Drone, 1000));
    open(&mut s, "drone", 0, t0);
}

#[test]
fn gop_numbers_going_backwards_are_refused() {
    let t0 = Instant::now();
    let mut s = fleet();
    open(&mut s, "tower", 5, t0);
    s.gop_closed("tower", 5, GopOutcome::Delivered);
    for seq in [5, 4, 0] {
        assert_eq!(
            s.gop_started("tower", seq, t0),
            GopStart::Skip(SkipReason::OutOfOrder)
        );
    }
    assert_eq!(s.stats("tower").unwrap().skipped, 0);
    open(&mut s, "tower", 7, t0);
}

#[test]
fn policy_change_reprioritises() {
    let t0 = Instant::now();
    let mut s = fleet();
    let before = open(&mut s, "fixed", 0, t0);
    s.set_camera("fixed", policy(CameraKind::Tower, 1000));
    let after = s.priority("fixed", 0).unwrap();
    assert!(after > before);
    assert_eq!(actions(&mut s), [set("fixed", 0, after)]);
}

#[test]
fn many_cameras_keep_the_order_rules() {
    let t0 = Instant::now();
    let mut s = Scheduler::default();
    let classes = CameraKind::ALL;
    for n in 0..400u64 {
        let id = format!("cam-{n}");
        s.set_camera(&id, policy(classes[n as usize % 4], 100 + n));
        for seq in 0..(n % 5) + 1 {
            open(&mut s, &id, seq, t0 + ms(seq * 50));
        }
        if n % 7 == 0 {
            s.set_alert_active(&id, true);
        }
    }
    // Every open GOP: a key that must order like its priority.
    let mut all = Vec::new();
    for n in 0..400u64 {
        let id = format!("cam-{n}");
        let gops = s.open_gops(&id);
        let alerting = n % 7 == 0;
        let rank = ClassRanks::default().rank(classes[n as usize % 4]);
        for (i, seq) in gops.iter().enumerate() {
            let depth = (gops.len() - 1 - i).min(3);
            let priority = s.priority(&id, *seq).unwrap();
            all.push(((alerting, rank, 3 - depth), priority));
        }
    }
    for (a, pa) in &all {
        for (b, pb) in &all {
            assert_eq!(a.cmp(b), pa.cmp(pb), "{a:?} {pa} vs {b:?} {pb}");
        }
    }
    // Late enough, only each camera's newest GOP is left, and nothing is due.
    s.handle_timeout(t0 + ms(10_000));
    for n in 0..400u64 {
        assert_eq!(s.open_gops(&format!("cam-{n}")), [n % 5]);
    }
    assert_eq!(s.poll_timeout(), None);
    let resets: u64 = s.all_stats().map(|(_, st)| st.reset).sum();
    assert_eq!(resets, (0..400u64).map(|n| n % 5).sum::<u64>());
}
