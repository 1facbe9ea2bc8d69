//! Per-camera fan-out of [`AccessUnit`]s to any number of subscribers (the
//! relay, the detector's sampler, `lookout probe`).
//!
//! A `tokio::sync::broadcast` ring per camera: the GStreamer streaming thread
//! sends without ever blocking or waiting for a consumer; each subscriber
//! reads at its own pace, and one that falls more than the ring's capacity
//! behind loses the oldest units — counted in the camera's `dropped_units`
//! (see `health.rs`) — while the others are unaffected. The ring holds clones
//! of the same unit (reference counts), never copies of the bytes.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::broadcast;

use super::health::CameraHealth;
use super::unit::AccessUnit;

/// Units a subscriber may fall behind before it loses the oldest: about five
/// seconds at 25 fps, enough to ride out a scheduling hiccup, small enough to
/// bound memory (the ring releases a unit once every subscriber has read it).
pub const FANOUT_CAPACITY: usize = 128;

/// The sending side, one per camera, kept across reconnects so subscriptions
/// survive them.
#[derive(Debug)]
pub struct Fanout {
    tx: broadcast::Sender<AccessUnit>,
}

impl Fanout {
    pub fn new(capacity: usize) -> Fanout {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Fanout { tx }
    }

    /// Hands a unit to every current subscriber. Never blocks; with no
    /// subscriber the unit is simply released.
    pub fn send(&self, unit: AccessUnit) {
        let _ = self.tx.send(unit);
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
            health,
            filter,
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
    use crate::ingest::unit::{Codec, CodecParams, TimestampSource};
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
