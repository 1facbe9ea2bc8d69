//! The relay's congestion control: BBR with its window held near the path's
//! bandwidth-delay product.
//!
//! Stream priorities (PROTOCOL.md §7) decide what the gateway sends next,
//! but not what already waits in the bottleneck's buffer (a cellular or
//! satellite modem, a microwave radio): an alert sent behind that buffer
//! waits for all of it. Loss-based Cubic fills such buffers to the brim;
//! BBR keeps up to about one extra BDP queued (its window is twice the
//! BDP). [`LowQueue`] lets BBR run, and once the path shows a standing
//! queue (smoothed RTT 15 ms above its minimum) caps the window at the
//! highest delivery rate seen recently × (1.25 × the minimum RTT + an ACK
//! delay allowance) until the queue is gone (under 5 ms): at most about a
//! quarter of a round trip plus 10 ms of data then waits ahead of an alert.
//! Without a queue there is no cap, so BBR probes and grows freely, and on
//! short paths (loopback, a LAN) delayed ACKs never starve the window.
//! Samples taken while the sender had nothing to send (app-limited) never
//! lower the estimate, so an idle or lightly used link is not capped.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{BbrConfig, Controller, ControllerFactory};
use quinn_proto::RttEstimator;

/// Window headroom over the measured BDP.
const GAIN: f64 = 1.25;
/// Room for ACKs a receiver holds back: data they cover is in flight but
/// not queued.
const ACK_ALLOWANCE: Duration = Duration::from_millis(10);
/// Smoothed RTT this far above the minimum means a standing queue: cap.
const QUEUE_ON: Duration = Duration::from_millis(15);
/// And this close to it means the queue is gone: stop capping.
const QUEUE_OFF: Duration = Duration::from_millis(5);
/// How long the highest delivery rate is remembered.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Shortest interval a delivery rate is measured over.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Never below this many full-size packets.
const MIN_PACKETS: u64 = 4;

/// Builds [`LowQueue`] controllers for quinn's `TransportConfig`.
#[derive(Debug, Default)]
pub struct LowQueueConfig {
    bbr: Arc<BbrConfig>,
}

impl ControllerFactory for LowQueueConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(LowQueue {
            inner: self.bbr.clone().build(now, current_mtu),
            mtu: u64::from(current_mtu),
            interval_start: None,
            interval_bytes: 0,
            interval_limited: false,
            rates: VecDeque::new(),
            min_rtt: None,
            capping: false,
        })
    }
}

/// BBR with a window capped near the measured bandwidth-delay product.
pub struct LowQueue {
    inner: Box<dyn Controller>,
    mtu: u64,
    /// The delivery-rate interval in progress: when it started, bytes
    /// acknowledged in it, and whether any of it was app-limited.
    interval_start: Option<Instant>,
    interval_bytes: u64,
    interval_limited: bool,
    /// (when, bytes per second) of intervals that were not app-limited,
    /// kept as a decreasing sequence so the front is the window's maximum.
    rates: VecDeque<(Instant, f64)>,
    min_rtt: Option<Duration>,
    /// A standing queue was seen and has not drained yet.
    capping: bool,
}

impl LowQueue {
    fn cap(&self) -> Option<u64> {
        let (_, rate) = self.rates.front()?;
        let rtt = self.min_rtt?;
        let span = rtt.as_secs_f64() * GAIN + ACK_ALLOWANCE.as_secs_f64();
        Some(((rate * span) as u64).max(MIN_PACKETS * self.mtu))
    }

    fn record(&mut self, now: Instant, rate: f64) {
        while self
            .rates
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.rates.pop_front();
        }
        while self.rates.back().is_some_and(|(_, r)| *r <= rate) {
            self.rates.pop_back();
        }
        self.rates.push_back((now, rate));
    }
}

impl Controller for LowQueue {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
        let min = rtt.min();
        if !min.is_zero() {
            self.min_rtt = Some(min);
            let queued = rtt.get().saturating_sub(min);
            if queued > QUEUE_ON {
                self.capping = true;
            } else if queued < QUEUE_OFF {
                self.capping = false;
            }
        }
        let start = *self.interval_start.get_or_insert(now);
        self.interval_bytes += bytes;
        self.interval_limited |= app_limited;
        let span = now.duration_since(start);
        let long_enough = span >= MIN_INTERVAL.max(self.min_rtt.unwrap_or(MIN_INTERVAL));
        if long_enough {
            if !self.interval_limited {
                let rate = self.interval_bytes as f64 / span.as_secs_f64();
                self.record(now, rate);
            }
            self.interval_start = Some(now);
            self.interval_bytes = 0;
            self.interval_limited = false;
        }
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
        if is_persistent_congestion {
            // The path changed or collapsed: measure it afresh.
            self.rates.clear();
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.mtu = u64::from(new_mtu);
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        let w = self.inner.window();
        match self.cap() {
            Some(cap) if self.capping => w.min(cap),
            _ => w,
        }
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(LowQueue {
            inner: self.inner.clone_box(),
            mtu: self.mtu,
            interval_start: self.interval_start,
            interval_bytes: self.interval_bytes,
            interval_limited: self.interval_limited,
            rates: self.rates.clone(),
            min_rtt: self.min_rtt,
            capping: self.capping,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> LowQueue {
        LowQueue {
            inner: Arc::new(BbrConfig::default()).build(Instant::now(), 1200),
            mtu: 1200,
            interval_start: None,
            interval_bytes: 0,
            interval_limited: false,
            rates: VecDeque::new(),
            min_rtt: Some(Duration::from_millis(40)),
            capping: true,
        }
    }

    #[test]
    fn no_cap_until_a_rate_was_measured_unlimited() {
        let c = controller();
        assert_eq!(c.cap(), None);
        assert_eq!(c.window(), c.inner.window());
    }

    #[test]
    fn cap_is_a_quarter_above_the_bdp_of_the_best_recent_rate_plus_ack_delay() {
        let mut c = controller();
        let t0 = Instant::now();
        // 2 Mbit/s = 250 kB/s; BDP at 40 ms = 10 kB; 10 ms of ACK delay 2.5 kB.
        c.record(t0, 250_000.0);
        c.record(t0 + Duration::from_millis(50), 100_000.0);
        assert_eq!(c.cap(), Some(15_000));
        assert_eq!(c.window(), c.inner.window().min(15_000));
        // The higher rate ages out after the window; the lower one stays.
        c.record(t0 + RATE_WINDOW + Duration::from_millis(1), 120_000.0);
        assert_eq!(c.cap(), Some(7_200));
        // No standing queue: no cap.
        c.capping = false;
        assert_eq!(c.window(), c.inner.window());
    }

    #[test]
    fn cap_never_goes_below_a_few_packets() {
        let mut c = controller();
        c.record(Instant::now(), 1_000.0);
        assert_eq!(c.cap(), Some(MIN_PACKETS * 1200));
    }
}
