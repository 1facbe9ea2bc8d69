//! The frames waiting for one detector: bounded, oldest dropped first.
//!
//! Cameras' decoders push from GStreamer threads and never wait; the
//! detector's thread takes batches. When the detector falls behind, the
//! oldest waiting frame is the one dropped (and counted): a fresh frame is
//! worth more than a stale one, and the wait never grows past `limit`
//! frames.

use lookout_core::sync::Locked;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<(T, Instant)>,
    closed: bool,
}

pub struct DropOldest<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    limit: usize,
}

impl<T> DropOldest<T> {
    pub fn new(limit: usize) -> Self {
        DropOldest {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(limit.max(1)),
                closed: false,
            }),
            ready: Condvar::new(),
            limit: limit.max(1),
        }
    }

    /// Adds an item; returns the one dropped to make room, if any. After
    /// [`DropOldest::close`] the item itself is returned.
    pub fn push(&self, item: T) -> Option<T> {
        let mut s = self.state.locked();
        if s.closed {
            return Some(item);
        }
        let dropped = if s.items.len() >= self.limit {
            s.items.pop_front().map(|(t, _)| t)
        } else {
            None
        };
        s.items.push_back((item, Instant::now()));
        drop(s);
        self.ready.notify_one();
        dropped
    }

    pub fn len(&self) -> usize {
        self.state.locked().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for at least one item, then up to `wait` more for the batch to
    /// fill to `max`; returns the items with the time each was queued.
    /// `None` once closed and drained.
    pub fn pop_batch(&self, max: usize, wait: Duration) -> Option<Vec<(T, Instant)>> {
        let max = max.max(1);
        let mut s = self.state.locked();
        while s.items.is_empty() {
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).ok()?;
        }
        let deadline = Instant::now() + wait;
        while s.items.len() < max && !s.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let (next, _) = self.ready.wait_timeout(s, deadline - now).ok()?;
            s = next;
        }
        let n = s.items.len().min(max);
        Some(s.items.drain(..n).collect())
    }

    /// Wakes the consumer; what is queued is still handed out, then
    /// `pop_batch` returns `None`.
    pub fn close(&self) {
        {
            let mut s = self.state.locked();
            s.closed = true;
        }
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn full_queue_drops_the_oldest() {
        let q = DropOldest::new(3);
        for i in 0..3 {
            assert_eq!(q.push(i), None);
        }
        assert_eq!(q.push(3), Some(0));
        assert_eq!(q.push(4), Some(1));
        let got: Vec<i32> = q
            .pop_batch(10, Duration::ZERO)
            .expect("items")
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(got, vec![2, 3, 4]);
    }

    #[test]
    fn batches_are_capped_and_close_drains() {
        let q = DropOldest::new(10);
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.pop_batch(2, Duration::ZERO).map(|b| b.len()), Some(2));
        q.close();
        assert_eq!(q.push(9), Some(9));
        assert_eq!(q.pop_batch(8, Duration::ZERO).map(|b| b.len()), Some(3));
        assert!(q.pop_batch(8, Duration::ZERO).is_none());
    }

    #[test]
    fn a_waiting_consumer_wakes_for_a_producer() {
        let q = Arc::new(DropOldest::new(4));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop_batch(1, Duration::ZERO));
        std::thread::sleep(Duration::from_millis(20));
        q.push(7);
        let got = t.join().expect("thread").expect("batch");
        assert_eq!(got[0].0, 7);
    }
}
