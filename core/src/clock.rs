//! The one wall clock: Unix time as alert records, capture stamps and the
//! wire carry it. A clock set before 1970 reads as 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    unix_now_ns() / 1_000_000
}
