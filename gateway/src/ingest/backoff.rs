//! Reconnect pacing for one camera: capped exponential backoff with jitter,
//! so a county's worth of cameras behind one failed switch do not all hammer
//! it in lock-step when it comes back. Pure (the caller supplies the random
//! bits), unit-tested here; `camera.rs` sleeps for what it returns.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Backoff limits, from `[gateway]` `reconnect_initial_ms` and
/// `reconnect_max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

/// Share of each delay that is randomised (taken off, never added, so the
/// cap stays a promise: a camera that comes back is retried within `max`).
const JITTER: f64 = 0.25;

/// The running state for one camera.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Failures since the camera was last live.
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// The camera delivered units again: the next failure starts over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn set_policy(&mut self, policy: BackoffPolicy) {
        self.policy = policy;
    }

    /// The delay before the next attempt; `unit` in [0, 1) is the jitter's
    /// random draw.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let exp = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let base = self
            .policy
            .initial
            .saturating_mul(1u32 << exp)
            .min(self.policy.max);
        base.mul_f64(1.0 - JITTER * unit.clamp(0.0, 1.0))
    }
}

/// A uniform draw in [0, 1) from the process's random hasher keys: no
/// dependency, and good enough to spread reconnects apart.
pub fn jitter_draw() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(super::health::unix_now_ns());
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
        let mut b = Backoff::new(policy());
        let delays: Vec<u64> = (0..8)
            .map(|_| b.next_delay(0.0).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(250));
    }

    #[test]
    fn jitter_only_shortens() {
        let mut b = Backoff::new(policy());
        for _ in 0..10 {
            b.next_delay(0.0);
        }
        let d = b.next_delay(0.999);
        assert!(
            d <= Duration::from_secs(4) && d >= Duration::from_secs(3),
            "{d:?}"
        );
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
