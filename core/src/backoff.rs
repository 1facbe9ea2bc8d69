//! The one backoff: capped exponential delays with jitter, for cameras that
//! fail to connect (ingest) and for command centers that cannot be reached
//! (the relay), so a county's worth of either behind one failed switch do not
//! all hammer it in lock-step when it comes back. The caller sleeps for what
//! it returns; the random draw can be passed in, which makes it testable.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Where the delays start and where they stop growing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first delay after a success (before jitter); it doubles with
    /// each failure in a row. Cameras: `reconnect_initial_ms`; the relay:
    /// a fixed constant.
    pub initial: Duration,
    /// The longest delay (before jitter): the doubling stops here. Cameras:
    /// `reconnect_max_ms`; the relay: a fixed constant.
    pub max: Duration,
}

/// How a delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Up to this share taken off, never added: the cap stays a promise (a
    /// camera that comes back is retried within `max`).
    Below(f64),
    /// Spread this share either side.
    Around(f64),
}

/// The running state for one camera or one upstream.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    jitter: Jitter,
    /// Failures since the last success: the next delay is
    /// `initial · 2^failures`, capped.
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy, jitter: Jitter) -> Backoff {
        Backoff {
            policy,
            jitter,
            failures: 0,
        }
    }

    /// A success: the next failure starts over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn set_policy(&mut self, policy: BackoffPolicy) {
        self.policy = policy;
    }

    /// The delay before the next attempt (jittered with a fresh draw); the
    /// one after doubles, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(jitter_draw())
    }

    /// [`Backoff::next_delay`] with the draw given: `unit` in [0, 1).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let exp = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let base = self
            .policy
            .initial
            .saturating_mul(1u32 << exp)
            .min(self.policy.max);
        self.jittered(base, unit)
    }

    /// `base`, jittered with a fresh draw, without growing the next delay.
    pub fn jitter_only(&self, base: Duration) -> Duration {
        self.jittered(base, jitter_draw())
    }

    /// The cap, jittered: from now on every delay is the longest.
    pub fn max_delay(&mut self) -> Duration {
        self.failures = 20;
        self.next_delay()
    }

    fn jittered(&self, base: Duration, unit: f64) -> Duration {
        let unit = unit.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::Below(share) => base.mul_f64(1.0 - share * unit),
            Jitter::Around(share) => base.mul_f64(1.0 - share + 2.0 * share * unit),
        }
    }
}

/// A uniform draw in [0, 1) from the process's random hasher keys: no
/// dependency, and good enough to spread retries apart.
pub fn jitter_draw() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::unix_now_ns());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(4),
        }
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(policy(), Jitter::Below(0.25));
        let delays: Vec<u64> = (0..8)
            .map(|_| b.next_delay_with(0.0).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next_delay_with(0.0), Duration::from_millis(250));
    }

    #[test]
    fn jitter_below_only_shortens() {
        let mut b = Backoff::new(policy(), Jitter::Below(0.25));
        for _ in 0..10 {
            b.next_delay_with(0.0);
        }
        let d = b.next_delay_with(0.999);
        assert!(
            d <= Duration::from_secs(4) && d >= Duration::from_secs(3),
            "{d:?}"
        );
    }

    #[test]
    fn jitter_around_spreads_both_ways() {
        let mut b = Backoff::new(policy(), Jitter::Around(0.2));
        assert_eq!(b.next_delay_with(0.0), Duration::from_millis(200));
        assert_eq!(b.next_delay_with(0.5), Duration::from_millis(500));
        assert_eq!(b.next_delay_with(1.0), Duration::from_millis(1200));
    }

    #[test]
    fn max_delay_stays_at_the_cap() {
        let mut b = Backoff::new(policy(), Jitter::Below(0.25));
        assert!(b.max_delay() >= Duration::from_secs(3));
        assert!(b.next_delay_with(0.0) == Duration::from_secs(4));
    }

    #[test]
    fn draws_are_spread() {
        let draws: Vec<f64> = (0..64).map(|_| jitter_draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let distinct = draws
            .iter()
            .map(|d| (d * 16.0) as u32)
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 4, "{draws:?}");
    }
}
