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
mod tests;
