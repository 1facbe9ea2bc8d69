//! The GOP scheduler driven by random event sequences (cameras, alerts, GOPs starting and
//! ending, time moving forwards and backwards) against a simple model of its rules: the
//! priorities it hands out always order streams by alert, class and recency, the streams
//! it keeps and resets follow the latency budget exactly, and its counts add up.

use lookout_codecs::relay::{
    Action, CameraKind, CameraPolicy, ClassRanks, ErrorCode, GopOutcome, GopStart, Scheduler,
    SkipReason, Subscribe, SubscribeMode,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const CAMERAS: [&str; 5] = ["t1", "t2", "d1", "b1", "f1"];
const CLASSES: [CameraKind; 5] = [
    CameraKind::Tower,
    CameraKind::Tower,
    CameraKind::Drone,
    CameraKind::Bodycam,
    CameraKind::Fixed,
];

#[derive(Clone, Debug)]
enum Op {
    Start(usize),
    Close(usize, usize, bool),
    Alert(usize, bool),
    Tick(i64),
    Timeout,
    Budget(usize, u64),
    Subscribe(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5usize).prop_map(Op::Start),
        2 => (0..5usize, 0..4usize, any::<bool>()).prop_map(|(c, i, ok)| Op::Close(c, i, ok)),
        1 => (0..5usize, any::<bool>()).prop_map(|(c, a)| Op::Alert(c, a)),
        3 => (-300..1500i64).prop_map(Op::Tick),
        2 => Just(Op::Timeout),
        1 => (0..5usize, 0..2000u64).prop_map(|(c, b)| Op::Budget(c, b)),
        1 => (0..3u8).prop_map(Op::Subscribe),
    ]
}

/// What the test believes about one open GOP.
#[derive(Clone, Debug)]
struct Gop {
    priority: i32,
    superseded_at: Option<Instant>,
}

struct Model {
    budgets: [Duration; 5],
    alerting: [bool; 5],
    /// Per camera, open GOPs by sequence number.
    open: [BTreeMap<u64, Gop>; 5],
    next_seq: [u64; 5],
    opened: [u64; 5],
}

fn camera_index(id: &str) -> usize {
    CAMERAS.iter().position(|c| *c == id).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn scheduler_follows_its_rules(ops in proptest::collection::vec(op(), 1..120)) {
        let base = Instant::now() + Duration::from_secs(3600);
        let mut now = base;
        let mut s = Scheduler::default();
        let mut m = Model {
            budgets: [Duration::from_millis(500); 5],
            alerting: [false; 5],
            open: Default::default(),
            next_seq: [0; 5],
            opened: [0; 5],
        };
        for (i, id) in CAMERAS.iter().enumerate() {
            s.set_camera(id, CameraPolicy { class: CLASSES[i], latency_budget: m.budgets[i] });
        }
        let mut mode = SubscribeMode::All;

        for op in ops {
            match op {
                Op::Start(c) => {
                    let seq = m.next_seq[c];
                    m.next_seq[c] += 1;
                    for gop in m.open[c].values_mut() {
                        gop.superseded_at.get_or_insert(now);
                    }
                    // Subscriptions here name no cameras: only the mode decides.
                    let wanted = mode == SubscribeMode::All
                        || (mode == SubscribeMode::AlertingOnly && m.alerting[c]);
                    match s.gop_started(CAMERAS[c], seq, now) {
                        GopStart::Open { priority } => {
                            prop_assert!(wanted);
                            m.open[c].insert(seq, Gop { priority, superseded_at: None });
                            m.opened[c] += 1;
                        }
                        GopStart::Skip(reason) => {
                            prop_assert_eq!(reason, SkipReason::NotSubscribed);
                            prop_assert!(!wanted);
                        }
                    }
                }
                Op::Close(c, i, delivered) => {
                    if let Some(&seq) = m.open[c].keys().nth(i) {
                        m.open[c].remove(&seq);
                        let outcome = if delivered {
                            GopOutcome::Delivered
                        } else {
                            GopOutcome::Stopped(ErrorCode::UNWANTED)
                        };
                        s.gop_closed(CAMERAS[c], seq, outcome);
                    }
                }
                Op::Alert(c, active) => {
                    m.alerting[c] = active;
                    s.set_alert_active(CAMERAS[c], active);
                }
                Op::Tick(ms) => {
                    now = if ms >= 0 {
                        now + Duration::from_millis(ms as u64)
                    } else {
                        now - Duration::from_millis(ms.unsigned_abs())
                    };
                }
                Op::Timeout => s.handle_timeout(now),
                Op::Budget(c, ms) => {
                    m.budgets[c] = Duration::from_millis(ms);
                    s.set_camera(CAMERAS[c], CameraPolicy { class: CLASSES[c], latency_budget: m.budgets[c] });
                }
                Op::Subscribe(which) => {
                    mode = [SubscribeMode::All, SubscribeMode::List, SubscribeMode::AlertingOnly][usize::from(which)];
                    s.subscribe(&Subscribe { mode, cameras: Vec::new() });
                }
            }

            // Apply the queued actions to the model; resets must be due.
            // Which cameras' deadlines this event checks: gop_started checks its camera's.
            let checked: Vec<usize> = match op {
                Op::Start(c) => vec![c],
                Op::Timeout => (0..5).collect(),
                _ => Vec::new(),
            };
            while let Some(action) = s.poll_action() {
                match action {
                    Action::SetPriority { camera, gop_seq, priority } => {
                        let c = camera_index(&camera);
                        let gop = m.open[c].get_mut(&gop_seq);
                        prop_assert!(gop.is_some(), "priority for a closed GOP");
                        if let Some(gop) = gop {
                            prop_assert_ne!(gop.priority, priority, "no-op SetPriority");
                            gop.priority = priority;
                        }
                    }
                    Action::Reset { camera, gop_seq, code } => {
                        prop_assert_eq!(code, ErrorCode::GOP_EXPIRED);
                        let c = camera_index(&camera);
                        prop_assert!(checked.contains(&c));
                        let gop = m.open[c].remove(&gop_seq).expect("reset of an open GOP");
                        let at = gop.superseded_at.expect("only superseded GOPs are reset");
                        prop_assert!(now.saturating_duration_since(at) >= m.budgets[c]);
                    }
                }
            }

            // The model and the scheduler agree on every open stream and its priority.
            for (c, id) in CAMERAS.iter().enumerate() {
                let open: Vec<u64> = m.open[c].keys().copied().collect();
                prop_assert_eq!(s.open_gops(id), open.clone());
                for (seq, gop) in &m.open[c] {
                    prop_assert_eq!(s.priority(id, *seq), Some(gop.priority));
                }
                // The GOP the camera is producing now is never superseded (an open GOP
                // with a skipped successor is); after a check nothing due is left.
                for (seq, gop) in &m.open[c] {
                    prop_assert_eq!(gop.superseded_at.is_none(), *seq + 1 == m.next_seq[c]);
                }
                if checked.contains(&c) {
                    for gop in m.open[c].values() {
                        if let Some(at) = gop.superseded_at {
                            prop_assert!(now.saturating_duration_since(at) < m.budgets[c]);
                        }
                    }
                }
                let stats = s.stats(id).unwrap();
                prop_assert_eq!(stats.sent + stats.reset + open.len() as u64, m.opened[c]);
            }

            // Priorities order streams by (alert, class rank, recency level).
            let ranks = ClassRanks::default();
            let mut keyed = Vec::new();
            for (c, class) in CLASSES.iter().enumerate() {
                let n = m.open[c].len();
                for (i, gop) in m.open[c].values().enumerate() {
                    let level = 3 - (n - 1 - i).min(3);
                    keyed.push(((m.alerting[c], ranks.rank(*class), level), gop.priority));
                }
            }
            for (a, pa) in &keyed {
                for (b, pb) in &keyed {
                    prop_assert_eq!(a.cmp(b), pa.cmp(pb));
                }
            }

            // The deadline is the earliest supersede time plus budget.
            let due = (0..5)
                .flat_map(|c| {
                    let budget = m.budgets[c];
                    m.open[c].values().filter_map(move |g| g.superseded_at.map(|t| t + budget))
                })
                .min();
            prop_assert_eq!(s.poll_timeout(), due);
        }

        let totals: HashMap<&str, _> = s.all_stats().collect();
        prop_assert_eq!(totals.len(), CAMERAS.len());
    }
}
