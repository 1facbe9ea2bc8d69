//! Per-camera fan-out of [`AccessUnit`]s to any number of subscribers (the
//! relay, the detector's sampler, `lookout probe`).
//!
//! A `tokio::sync::broadcast` ring per camera: the GStreamer streaming thread
//! sends without ever blocking or waiting for a consumer; each subscriber
//! reads at its own pace, and one that falls more than the ring's capacity
//! behind loses the oldest units — counted in the camera's `dropped_units`
//! (see `health.rs`) — while the others are unaffected. The ring holds clones
//! of the same unit (reference counts), never copies of the bytes.
//!
//! The fan-out also keeps the current GOP (its keyframe and the units since),
//! so a subscriber that asks for it starts with a decodable picture at once
//! instead of waiting up to a GOP for the next keyframe: the relay after a
//! reconnect, so video is back as soon as the link is. These are the same
//! reference-counted units the ring already holds.

use lookout_core::sync::Locked;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::health::CameraHealth;
use lookout_core::unit::AccessUnit;

/// Units a subscriber may fall behind before it loses the oldest: about five
/// seconds at 25 fps, enough to ride out a scheduling hiccup, small enough to
/// bound memory (the ring releases a unit once every subscriber has read it).
pub const FANOUT_CAPACITY: usize = 128;

/// Most units of the current GOP kept for late subscribers (a 10 s GOP at
/// 30 fps); a longer GOP is not kept (its late subscribers wait for the next
/// keyframe, as without the cache).
pub const GOP_CACHE_UNITS: usize = 300;

/// The sending side, one per camera, kept across reconnects so subscriptions
/// survive them.
#[derive(Debug)]
pub struct Fanout {
    tx: broadcast::Sender<AccessUnit>,
    /// The current GOP so far, keyframe first; empty until a keyframe, and
    /// after a GOP outgrew [`GOP_CACHE_UNITS`]. Updated together with the
    /// send (one lock), so a subscription's backlog and its live units
    /// neither overlap nor leave a gap.
    gop: Mutex<Vec<AccessUnit>>,
}

impl Fanout {
    pub fn new(capacity: usize) -> Fanout {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Fanout {
            tx,
            gop: Mutex::new(Vec::new()),
        }
    }

    /// Hands a unit to every current subscriber. Never blocks on a
    /// subscriber; with none the unit is simply released.
    pub fn send(&self, unit: AccessUnit) {
        let mut gop = self.gop.locked();
        if unit.keyframe {
            gop.clear();
            gop.push(unit.clone());
        } else if !gop.is_empty() {
            if gop.len() < GOP_CACHE_UNITS {
                gop.push(unit.clone());
            } else {
                gop.clear();
            }
        }
        // No subscriber (no relay, detector or viewer yet): the unit is only cached.
        self.tx.send(unit).ok();
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    pub(crate) fn subscribe(
        &self,
        camera: Arc<str>,
        health: Arc<CameraHealth>,
        filter: Filter,
    ) -> Subscription {
        Subscription {
            camera,
            rx: self.tx.subscribe(),
            backlog: VecDeque::new(),
            health,
            filter,
            next_due_ns: None,
            dropped: 0,
        }
    }

    /// Like [`Fanout::subscribe`] with [`Filter::All`], starting with the
    /// current GOP from its keyframe (when there is one).
    pub(crate) fn subscribe_from_keyframe(
        &self,
        camera: Arc<str>,
        health: Arc<CameraHealth>,
    ) -> Subscription {
        let (rx, backlog) = {
            let gop = self.gop.locked();
            (self.tx.subscribe(), gop.iter().cloned().collect())
        };
        Subscription {
            camera,
            rx,
            backlog,
            health,
            filter: Filter::All,
            next_due_ns: None,
            dropped: 0,
        }
    }
}

/// Which units a subscriber wants. Filtering happens on the subscriber's
/// side, so one camera's ring serves every kind of consumer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Filter {
    /// Every unit (the relay).
    All,
    /// Keyframes only (the sampler in `keyframes` mode).
    Keyframes,
    /// At most this many units per second by capture time (the sampler in
    /// `N fps` mode).
    Fps(f64),
}

/// One consumer's view of one camera.
#[derive(Debug)]
pub struct Subscription {
    camera: Arc<str>,
    rx: broadcast::Receiver<AccessUnit>,
    /// Units of the GOP in progress when it subscribed, handed out first.
    backlog: VecDeque<AccessUnit>,
    /// Where this subscriber's losses are added up for the API and metrics.
    health: Arc<CameraHealth>,
    filter: Filter,
    /// When an `Fps` filter lets the next unit through (capture time).
    next_due_ns: Option<u64>,
    /// Units this subscriber lost by lagging.
    dropped: u64,
}

/// What [`Subscription::try_recv`] found.
#[derive(Debug)]
pub enum TryRecv {
    Unit(AccessUnit),
    Empty,
    /// The camera was removed from the configuration.
    Closed,
}

impl Subscription {
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// Units this subscriber lost because it fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// The next unit that passes the filter, or `None` once the camera has
    /// been removed. Lagging skips to the oldest unit still held and counts
    /// what was lost.
    pub async fn recv(&mut self) -> Option<AccessUnit> {
        if let Some(unit) = self.backlog.pop_front() {
            return Some(unit);
        }
        loop {
            match self.rx.recv().await {
                Ok(unit) => {
                    if self.passes(&unit) {
                        return Some(unit);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => self.count_lag(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Like [`Subscription::recv`] without waiting.
    pub fn try_recv(&mut self) -> TryRecv {
        if let Some(unit) = self.backlog.pop_front() {
            return TryRecv::Unit(unit);
        }
        loop {
            match self.rx.try_recv() {
                Ok(unit) => {
                    if self.passes(&unit) {
                        return TryRecv::Unit(unit);
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.count_lag(n),
                Err(broadcast::error::TryRecvError::Empty) => return TryRecv::Empty,
                Err(broadcast::error::TryRecvError::Closed) => return TryRecv::Closed,
            }
        }
    }

    fn count_lag(&mut self, n: u64) {
        self.dropped += n;
        self.health.dropped_units.fetch_add(n, Relaxed);
    }

    fn passes(&mut self, unit: &AccessUnit) -> bool {
        match self.filter {
            Filter::All => true,
            Filter::Keyframes => unit.keyframe,
            Filter::Fps(fps) => {
                let interval = (1e9 / fps.max(1e-3)) as u64;
                let t = unit.capture_unix_ns;
                let next = match self.next_due_ns {
                    None => t + interval,
                    // A tenth of the interval early is on time, so jitter
                    // does not halve the rate. Keep to the schedule (no
                    // drift) unless a gap left it behind.
                    Some(due) if t + interval / 10 >= due => {
                        let n = due + interval;
                        if n <= t { t + interval } else { n }
                    }
                    // The clock stepped back: start over.
                    Some(due) if t + 2 * interval < due => t + interval,
                    Some(_) => return false,
                };
                self.next_due_ns = Some(next);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Codec, CodecParams, TimestampSource};
    use bytes::Bytes;

    fn unit(seq: u64, keyframe: bool, params: &Arc<CodecParams>, data: &Bytes) -> AccessUnit {
        AccessUnit {
            camera: Arc::from("cam"),
            seq,
            session: 1,
            keyframe,
            params: params.clone(),
            data: data.clone(),
            pts: None,
            received_unix_ns: seq * 40_000_000,
            capture_unix_ns: seq * 40_000_000,
            capture_source: TimestampSource::Arrival,
        }
    }

    #[test]
    fn slow_subscriber_loses_oldest_and_others_do_not() {
        let health = Arc::new(CameraHealth::default());
        let fanout = Fanout::new(8);
        let mut slow = fanout.subscribe("cam".into(), health.clone(), Filter::All);
        let mut fast = fanout.subscribe("cam".into(), health.clone(), Filter::All);
        let params = Arc::new(CodecParams::unknown(Codec::H264));
        let data = Bytes::from_static(b"\0\0\0\x01\x65");
        for seq in 1..=20 {
            fanout.send(unit(seq, seq % 5 == 1, &params, &data));
            let TryRecv::Unit(u) = fast.try_recv() else {
                panic!("fast subscriber missed {seq}");
            };
            assert_eq!(u.seq, seq);
            // Same bytes, not a copy.
            assert_eq!(u.data.as_ptr(), data.as_ptr());
        }
        let TryRecv::Unit(first) = slow.try_recv() else {
            panic!("slow subscriber got nothing");
        };
        assert_eq!(first.seq, 13, "the oldest 12 were dropped");
        assert_eq!(slow.dropped(), 12);
        assert_eq!(health.dropped_units.load(Relaxed), 12);
        assert_eq!(fast.dropped(), 0);
    }

    #[test]
    fn a_late_subscriber_starts_at_the_current_keyframe_without_gap_or_repeat() {
        let health = Arc::new(CameraHealth::default());
        let fanout = Fanout::new(64);
        let params = Arc::new(CodecParams::unknown(Codec::H264));
        let data = Bytes::from_static(b"x");
        let mut early = fanout.subscribe_from_keyframe("cam".into(), health.clone());
        assert!(matches!(early.try_recv(), TryRecv::Empty), "nothing yet");
        // Delta units before any keyframe are not kept.
        fanout.send(unit(0, false, &params, &data));
        for seq in 1..8 {
            fanout.send(unit(seq, seq % 5 == 1, &params, &data));
        }
        // Keyframes at 1 and 6: a new subscriber gets 6, 7, then live units.
        let mut late = fanout.subscribe_from_keyframe("cam".into(), health.clone());
        fanout.send(unit(8, false, &params, &data));
        let mut got = Vec::new();
        while let TryRecv::Unit(u) = late.try_recv() {
            got.push((u.seq, u.keyframe));
        }
        assert_eq!(got, [(6, true), (7, false), (8, false)]);
        let mut all = Vec::new();
        while let TryRecv::Unit(u) = early.try_recv() {
            all.push(u.seq);
        }
        assert_eq!(all, (0..=8).collect::<Vec<_>>());
        // A GOP longer than the cache is dropped from it, not kept growing.
        fanout.send(unit(100, true, &params, &data));
        for seq in 101..(101 + GOP_CACHE_UNITS as u64) {
            fanout.send(unit(seq, false, &params, &data));
        }
        let mut very_late = fanout.subscribe_from_keyframe("cam".into(), health);
        assert!(matches!(very_late.try_recv(), TryRecv::Empty));
    }

    #[test]
    fn filters_keyframes_and_rate() {
        let health = Arc::new(CameraHealth::default());
        let fanout = Fanout::new(64);
        let mut keys = fanout.subscribe("cam".into(), health.clone(), Filter::Keyframes);
        let mut two_fps = fanout.subscribe("cam".into(), health.clone(), Filter::Fps(2.0));
        let params = Arc::new(CodecParams::unknown(Codec::H264));
        let data = Bytes::from_static(b"x");
        // 50 units at 25 fps = 2 s, keyframe every 25.
        for seq in 0..50 {
            fanout.send(unit(seq, seq % 25 == 0, &params, &data));
        }
        let mut n_keys = 0;
        while let TryRecv::Unit(u) = keys.try_recv() {
            assert!(u.keyframe);
            n_keys += 1;
        }
        assert_eq!(n_keys, 2);
        let mut n_rate = 0;
        while let TryRecv::Unit(_) = two_fps.try_recv() {
            n_rate += 1;
        }
        // Captures at 0 … 1.96 s; due at 0, 0.5, 1, 1.5 and 2 s (1.96 is
        // within a tenth of an interval of 2).
        assert_eq!(n_rate, 5, "2 s at 2 fps");
    }

    #[test]
    fn closed_when_the_camera_goes() {
        let health = Arc::new(CameraHealth::default());
        let fanout = Fanout::new(4);
        let mut s = fanout.subscribe("cam".into(), health, Filter::All);
        drop(fanout);
        assert!(matches!(s.try_recv(), TryRecv::Closed));
    }
}
