//! Reconnect pacing for one camera: the one backoff (`lookout_core::backoff`)
//! with the jitter only taking time off, so a camera that comes back is
//! retried within `reconnect_max_ms`; `camera.rs` sleeps for what it returns.

pub use lookout_core::backoff::{Backoff, BackoffPolicy, Jitter};

/// A camera's backoff under `policy` (`[gateway]` `reconnect_initial_ms` and
/// `reconnect_max_ms`): up to a quarter of each delay taken off at random.
pub fn for_camera(policy: BackoffPolicy) -> Backoff {
    Backoff::new(policy, Jitter::Below(0.25))
}
