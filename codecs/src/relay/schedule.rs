//! Which video goes first, and which is given up, on a congested link: the gateway's
//! relay asks the [`Scheduler`] for the QUIC priority of each GOP stream it opens and
//! applies the [`Action`]s it queues (re-prioritise a stream, reset a stale one). No I/O
//! and no clock of its own: the caller passes `Instant`s, so the rules are tested with
//! made-up times, backwards jumps included.
//!
//! Priorities (quinn's `SendStream::set_priority`: higher is sent first):
//! - the alert stream, [`ALERT_STREAM_PRIORITY`], above everything; the control stream,
//!   [`CONTROL_STREAM_PRIORITY`], next;
//! - GOP streams of cameras with an active alert above every other GOP stream;
//! - then by the camera's class rank ([`ClassRanks`]: tower > drone > bodycam > fixed by
//!   default);
//! - within one camera, the newest GOP first (four levels: newest, second, third, older).
//!
//! A video stream is [`VideoPriority::new`]`(alerting, rank, depth)`, always in
//! `0..2048`, so only a few distinct levels exist (quinn pays for many).
//!
//! Reset rule: a GOP stream that a newer GOP of its camera has superseded, and that is
//! still open (its data not all delivered) when [`CameraPolicy::latency_budget`] has
//! passed since it was superseded, is reset with [`ErrorCode::GOP_EXPIRED`]. The time of
//! superseding is when its last frame was produced, so this is the lag of its newest data;
//! the newest GOP of a camera is never reset by this rule. With a zero budget a GOP is
//! reset the moment it is superseded. When time goes backwards, ages count as zero: no
//! GOP is reset because of a clock step.

use super::{CameraKind, ErrorCode, Subscribe, SubscribeMode};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// QUIC priority of the alert stream: above every other stream.
pub const ALERT_STREAM_PRIORITY: i32 = i32::MAX;

/// QUIC priority of the control stream: above video, below alerts.
pub const CONTROL_STREAM_PRIORITY: i32 = i32::MAX - 1;

/// Levels of recency within one camera: newest, second, third, older.
const RECENCY_LEVELS: i32 = 4;

/// Added to a camera's rank while it has an active alert: above every rank (0–255).
const ALERT_BOOST: i32 = 256;

/// How a GOP stream's priority is made; [`VideoPriority::value`] is what quinn gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoPriority(i32);

impl VideoPriority {
    /// The priority of a GOP of a camera with class rank `rank`, an active alert or not,
    /// with `depth` newer GOPs of the same camera still open (0 for the newest).
    pub fn new(alerting: bool, rank: u8, depth: usize) -> VideoPriority {
        let tier = i32::from(rank) + if alerting { ALERT_BOOST } else { 0 };
        let depth = i32::try_from(depth)
            .unwrap_or(i32::MAX)
            .min(RECENCY_LEVELS - 1);
        VideoPriority(tier * RECENCY_LEVELS + (RECENCY_LEVELS - 1 - depth))
    }

    /// The value for `SendStream::set_priority`.
    pub fn value(self) -> i32 {
        self.0
    }
}

/// The rank of each camera class: higher is sent first. Configurable per gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClassRanks {
    /// Fire-watch towers; default 3.
    pub tower: u8,
    /// Drones; default 2.
    pub drone: u8,
    /// Body cameras; default 1.
    pub bodycam: u8,
    /// Fixed partner cameras; default 0.
    pub fixed: u8,
}

impl Default for ClassRanks {
    fn default() -> ClassRanks {
        ClassRanks {
            tower: 3,
            drone: 2,
            bodycam: 1,
            fixed: 0,
        }
    }
}

impl ClassRanks {
    /// The rank of `class`.
    pub fn rank(&self, class: CameraKind) -> u8 {
        match class {
            CameraKind::Tower => self.tower,
            CameraKind::Drone => self.drone,
            CameraKind::Bodycam => self.bodycam,
            CameraKind::Fixed => self.fixed,
        }
    }
}

/// What the scheduler needs to know about one camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CameraPolicy {
    /// Its priority class (the configured `priority`, else its kind).
    pub class: CameraKind,
    /// How far behind a superseded GOP may fall before it is reset.
    pub latency_budget: Duration,
}

/// The answer to [`Scheduler::gop_started`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GopStart {
    /// Open a stream for the GOP with this priority.
    Open {
        /// The value for `SendStream::set_priority`.
        priority: i32,
    },
    /// Do not send this GOP.
    Skip(SkipReason),
}

/// Why a GOP is not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The camera was never added with [`Scheduler::set_camera`] (not counted).
    UnknownCamera,
    /// The center's subscription does not include the camera now (counted as skipped).
    NotSubscribed,
    /// `gop_seq` is not above the last one started for the camera: a caller bug (not
    /// counted).
    OutOfOrder,
}

/// How a GOP stream ended, as the caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GopOutcome {
    /// Finished and every byte acknowledged by the center (quinn's `stopped()` resolved
    /// without a code).
    Delivered,
    /// The center stopped it (`STOP_SENDING` with this code), or the connection ended.
    Stopped(ErrorCode),
}

/// Something the caller must do to a GOP stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `set_priority(priority)` on the stream of GOP `gop_seq` of `camera`.
    SetPriority {
        /// The camera's id.
        camera: Arc<str>,
        /// The GOP.
        gop_seq: u64,
        /// The new priority.
        priority: i32,
    },
    /// `reset(code)` on the stream of GOP `gop_seq` of `camera` and forget it; the
    /// scheduler already has.
    Reset {
        /// The camera's id.
        camera: Arc<str>,
        /// The GOP.
        gop_seq: u64,
        /// [`ErrorCode::GOP_EXPIRED`] or [`ErrorCode::SUPERSEDED`].
        code: ErrorCode,
    },
}

/// Per-camera GOP counts since the camera was added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GopStats {
    /// GOP streams delivered whole.
    pub sent: u64,
    /// GOP streams reset by the gateway or stopped by the center.
    pub reset: u64,
    /// GOPs never sent because the center did not subscribe to the camera.
    pub skipped: u64,
}

/// One GOP stream in flight.
#[derive(Clone, Debug)]
struct OpenGop {
    seq: u64,
    /// When a newer GOP of the camera started: from then on this one only falls behind.
    superseded_at: Option<Instant>,
    /// The priority last handed to the caller.
    priority: i32,
}

#[derive(Clone, Debug)]
struct Camera {
    id: Arc<str>,
    policy: CameraPolicy,
    alerting: bool,
    /// Open GOP streams, oldest (lowest `seq`) first.
    open: Vec<OpenGop>,
    /// The last `gop_seq` started, to refuse numbers going backwards.
    last_started: Option<u64>,
    stats: GopStats,
}

/// The center's current wishes, as set by `Subscribe` (all cameras until the first).
#[derive(Clone, Debug)]
struct Subscription {
    mode: SubscribeMode,
    cameras: HashSet<String>,
}

/// Decides GOP stream priorities and resets for one relay connection. Create one per
/// connection (open streams die with it), feed it camera, alert and subscription
/// changes and stream events, and drain [`poll_action`](Self::poll_action) after each
/// call; call [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Clone, Debug)]
pub struct Scheduler {
    ranks: ClassRanks,
    cameras: HashMap<Arc<str>, Camera>,
    subscription: Subscription,
    actions: VecDeque<Action>,
}

impl Default for Scheduler {
    fn default() -> Scheduler {
        Scheduler::new(ClassRanks::default())
    }
}

impl Scheduler {
    /// A scheduler with no cameras, subscribed to all of them.
    pub fn new(ranks: ClassRanks) -> Scheduler {
        Scheduler {
            ranks,
            cameras: HashMap::new(),
            subscription: Subscription {
                mode: SubscribeMode::All,
                cameras: HashSet::new(),
            },
            actions: VecDeque::new(),
        }
    }

    /// Changes the class ranks; open streams are re-prioritised.
    pub fn set_class_ranks(&mut self, ranks: ClassRanks) {
        self.ranks = ranks;
        let ids: Vec<Arc<str>> = self.cameras.keys().cloned().collect();
        for id in ids {
            self.reprioritise(&id);
        }
    }

    /// Adds a camera or changes its policy; its open streams are re-prioritised (a new
    /// budget applies from the next [`handle_timeout`](Self::handle_timeout)).
    pub fn set_camera(&mut self, id: &str, policy: CameraPolicy) {
        match self.cameras.get_mut(id) {
            Some(camera) => camera.policy = policy,
            None => {
                let id: Arc<str> = Arc::from(id);
                self.cameras.insert(
                    id.clone(),
                    Camera {
                        id,
                        policy,
                        alerting: false,
                        open: Vec::new(),
                        last_started: None,
                        stats: GopStats::default(),
                    },
                );
            }
        }
        self.reprioritise(id);
    }

    /// Removes a camera: its open streams are reset with [`ErrorCode::SUPERSEDED`].
    /// Returns its final counts, resets included, or `None` if it was not there.
    pub fn remove_camera(&mut self, id: &str) -> Option<GopStats> {
        let mut camera = self.cameras.remove(id)?;
        for gop in camera.open.drain(..) {
            camera.stats.reset += 1;
            self.actions.push_back(Action::Reset {
                camera: camera.id.clone(),
                gop_seq: gop.seq,
                code: ErrorCode::SUPERSEDED,
            });
        }
        Some(camera.stats)
    }

    /// Marks a camera as having an active alert or not; its open streams are
    /// re-prioritised. Unknown cameras are ignored.
    pub fn set_alert_active(&mut self, id: &str, active: bool) {
        if let Some(camera) = self.cameras.get_mut(id) {
            camera.alerting = active;
            self.reprioritise(id);
        }
    }

    /// Applies the center's `Subscribe`: from each camera's next GOP on, only the
    /// cameras it names are sent. Open streams are left to finish.
    pub fn subscribe(&mut self, subscribe: &Subscribe) {
        self.subscription = Subscription {
            mode: subscribe.mode,
            cameras: subscribe.cameras.iter().cloned().collect(),
        };
    }

    /// Whether the center wants the video of camera `id` now.
    pub fn wants(&self, id: &str) -> bool {
        match self.subscription.mode {
            SubscribeMode::All => true,
            SubscribeMode::List => self.subscription.cameras.contains(id),
            SubscribeMode::AlertingOnly => {
                self.subscription.cameras.contains(id)
                    || self.cameras.get(id).is_some_and(|c| c.alerting)
            }
        }
    }

    /// A new GOP of camera `id` begins (its keyframe arrived at `now`): whether to open a
    /// stream and with which priority. Older open GOPs of the camera are superseded from
    /// `now` on (with a zero budget they are reset at once) and re-prioritised.
    pub fn gop_started(&mut self, id: &str, gop_seq: u64, now: Instant) -> GopStart {
        let wanted = self.wants(id);
        let Some(camera) = self.cameras.get_mut(id) else {
            return GopStart::Skip(SkipReason::UnknownCamera);
        };
        if camera.last_started.is_some_and(|last| gop_seq <= last) {
            return GopStart::Skip(SkipReason::OutOfOrder);
        }
        camera.last_started = Some(gop_seq);
        // Whether or not this GOP is sent, the camera has moved on from the older ones.
        for older in &mut camera.open {
            older.superseded_at.get_or_insert(now);
        }
        if wanted {
            camera.open.push(OpenGop {
                seq: gop_seq,
                superseded_at: None,
                priority: 0,
            });
        } else {
            camera.stats.skipped += 1;
        }
        let id: Arc<str> = camera.id.clone();
        self.expire(&id, now);
        self.reprioritise_except(&id, Some(gop_seq));
        if !wanted {
            return GopStart::Skip(SkipReason::NotSubscribed);
        }
        // The newest GOP is never expired: it is open, with the priority just computed.
        GopStart::Open {
            priority: self.priority(&id, gop_seq).unwrap_or_default(),
        }
    }

    /// A GOP stream ended (delivered, or stopped by the center). Streams the scheduler
    /// reset itself, and unknown ones, are ignored, so late reports do not count twice.
    pub fn gop_closed(&mut self, id: &str, gop_seq: u64, outcome: GopOutcome) {
        let Some(camera) = self.cameras.get_mut(id) else {
            return;
        };
        let Ok(at) = camera.open.binary_search_by_key(&gop_seq, |g| g.seq) else {
            return;
        };
        camera.open.remove(at);
        match outcome {
            GopOutcome::Delivered => camera.stats.sent += 1,
            GopOutcome::Stopped(_) => camera.stats.reset += 1,
        }
        self.reprioritise(id);
    }

    /// Resets every GOP stream that has fallen behind its camera's budget at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<Arc<str>> = self
            .cameras
            .values()
            .filter(|c| c.open.iter().any(|g| g.superseded_at.is_some()))
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            if self.expire(&id, now) {
                self.reprioritise(&id);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work: the earliest moment a
    /// superseded GOP reaches its budget, or `None` if none is open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.cameras
            .values()
            .flat_map(|c| {
                c.open
                    .iter()
                    .filter_map(|g| g.superseded_at?.checked_add(c.policy.latency_budget))
            })
            .min()
    }

    /// The next thing to do to a stream, in the order decided.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The current priority of GOP `gop_seq` of camera `id`, if its stream is open.
    pub fn priority(&self, id: &str, gop_seq: u64) -> Option<i32> {
        let camera = self.cameras.get(id)?;
        let at = camera.open.binary_search_by_key(&gop_seq, |g| g.seq).ok()?;
        camera.open.get(at).map(|g| g.priority)
    }

    /// The open GOP streams of camera `id`, oldest first.
    pub fn open_gops(&self, id: &str) -> Vec<u64> {
        self.cameras
            .get(id)
            .map(|c| c.open.iter().map(|g| g.seq).collect())
            .unwrap_or_default()
    }

    /// Camera `id`'s counts.
    pub fn stats(&self, id: &str) -> Option<GopStats> {
        self.cameras.get(id).map(|c| c.stats)
    }

    /// Every camera's counts, in no particular order.
    pub fn all_stats(&self) -> impl Iterator<Item = (&str, GopStats)> {
        self.cameras.values().map(|c| (&*c.id, c.stats))
    }

    /// Resets camera `id`'s superseded GOPs whose lag has reached the budget; true if any.
    fn expire(&mut self, id: &str, now: Instant) -> bool {
        let Some(camera) = self.cameras.get_mut(id) else {
            return false;
        };
        let budget = camera.policy.latency_budget;
        let before = camera.open.len();
        let actions = &mut self.actions;
        let camera_id = &camera.id;
        let stats = &mut camera.stats;
        camera.open.retain(|gop| {
            let expired = gop
                .superseded_at
                .is_some_and(|t| now.saturating_duration_since(t) >= budget);
            if expired {
                stats.reset += 1;
                actions.push_back(Action::Reset {
                    camera: camera_id.clone(),
                    gop_seq: gop.seq,
                    code: ErrorCode::GOP_EXPIRED,
                });
            }
            !expired
        });
        camera.open.len() != before
    }

    fn reprioritise(&mut self, id: &str) {
        self.reprioritise_except(id, None);
    }

    /// Recomputes camera `id`'s stream priorities and queues a `SetPriority` for each one
    /// that changed, except for `fresh` (the caller gets that one directly).
    fn reprioritise_except(&mut self, id: &str, fresh: Option<u64>) {
        let Some(camera) = self.cameras.get_mut(id) else {
            return;
        };
        let rank = self.ranks.rank(camera.policy.class);
        let count = camera.open.len();
        for (index, gop) in camera.open.iter_mut().enumerate() {
            let priority = VideoPriority::new(camera.alerting, rank, count - 1 - index).value();
            let changed = gop.priority != priority;
            gop.priority = priority;
            if changed && Some(gop.seq) != fresh {
                self.actions.push_back(Action::SetPriority {
                    camera: camera.id.clone(),
                    gop_seq: gop.seq,
                    priority,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
