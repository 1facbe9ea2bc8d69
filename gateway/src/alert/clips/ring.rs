//! One camera's pre-roll: its latest whole GOPs, enough to start a clip
//! `pre_s` before any frame it has seen, bounded in bytes. It holds clones
//! of the access units the fan-out hands out — the same `Bytes`, never a
//! copy — and lets a clip being recorded follow the camera from exactly
//! where its backlog ends (taken under one lock: no gap, no repeat).

use lookout_core::sync::Locked;
use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::mpsc;

use lookout_core::unit::AccessUnit;

/// One GOP: a keyframe and the units after it.
#[derive(Debug)]
struct Gop {
    units: Vec<AccessUnit>,
    bytes: usize,
}

impl Gop {
    fn start_ns(&self) -> u64 {
        self.units.first().map_or(0, |u| u.capture_unix_ns)
    }
}

#[derive(Debug, Default)]
struct State {
    gops: VecDeque<Gop>,
    bytes: usize,
    /// Clips being recorded: each gets every unit from its backlog on.
    followers: Vec<mpsc::UnboundedSender<AccessUnit>>,
}

/// A camera's pre-roll ring.
#[derive(Debug)]
pub struct Ring {
    pre_ns: u64,
    max_bytes: usize,
    state: Mutex<State>,
}

impl Ring {
    pub fn new(pre_s: u32, max_bytes: u64) -> Ring {
        Ring {
            pre_ns: u64::from(pre_s) * 1_000_000_000,
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            state: Mutex::new(State::default()),
        }
    }

    /// Takes the camera's next unit: hands it to every clip following, then
    /// keeps it, dropping the oldest GOPs no clip needs any more.
    pub fn push(&self, unit: AccessUnit) {
        let mut s = self.state.locked();
        s.followers.retain(|f| f.send(unit.clone()).is_ok());
        let len = unit.data.len();
        let newest = unit.capture_unix_ns;
        if unit.keyframe {
            s.gops.push_back(Gop {
                units: vec![unit],
                bytes: len,
            });
        } else if let Some(gop) = s.gops.back_mut() {
            gop.units.push(unit);
            gop.bytes += len;
        } else {
            // Before the first keyframe: nothing a clip could start with.
            return;
        }
        s.bytes += len;
        // The oldest GOP goes once the next one alone starts early enough,
        // or while the ring holds too much (the newest GOP always stays).
        let horizon = newest.saturating_sub(self.pre_ns);
        while s.gops.len() > 1 && (s.gops[1].start_ns() <= horizon || s.bytes > self.max_bytes) {
            if let Some(old) = s.gops.pop_front() {
                s.bytes -= old.bytes;
            }
        }
    }

    /// A clip of frames from `from_ns` on: the units held from the last
    /// keyframe at or before `from_ns` (else the oldest held), and a
    /// channel with every unit after them.
    pub fn follow(&self, from_ns: u64) -> (Vec<AccessUnit>, mpsc::UnboundedReceiver<AccessUnit>) {
        let mut s = self.state.locked();
        let first = s
            .gops
            .iter()
            .rposition(|g| g.start_ns() <= from_ns)
            .unwrap_or(0);
        let backlog = s
            .gops
            .iter()
            .skip(first)
            .flat_map(|g| g.units.iter().cloned())
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        s.followers.push(tx);
        (backlog, rx)
    }

    /// Bytes of video held (units shared with the fan-out).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.state.locked().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use lookout_core::unit::{Codec, CodecParams, TimestampSource};
    use std::sync::Arc;

    /// Unit `seq` at 10 fps, a keyframe every 10 (1 s GOPs), 100 bytes.
    fn unit(seq: u64, data: &Bytes) -> AccessUnit {
        AccessUnit {
            camera: Arc::from("cam"),
            seq,
            session: 1,
            keyframe: seq.is_multiple_of(10),
            params: Arc::new(CodecParams::unknown(Codec::H264)),
            data: data.clone(),
            pts: None,
            received_unix_ns: seq * 100_000_000,
            capture_unix_ns: seq * 100_000_000,
            capture_source: TimestampSource::Sei,
        }
    }

    #[test]
    fn keeps_whole_gops_back_to_the_pre_roll_and_shares_the_bytes() {
        let data = Bytes::from(vec![0u8; 100]);
        let ring = Ring::new(3, 1 << 20);
        // 3 units before the first keyframe are useless, then 0.3 … 9.9 s.
        for seq in 7..100 {
            ring.push(unit(seq, &data));
        }
        // Newest 9.9 s: the horizon 6.9 s needs the GOP from 6.0 s.
        let (backlog, _) = ring.follow(6_900_000_000);
        assert_eq!(
            backlog.first().map(|u| (u.seq, u.keyframe)),
            Some((60, true))
        );
        assert_eq!(backlog.last().map(|u| u.seq), Some(99));
        assert_eq!(ring.bytes(), 40 * 100);
        assert_eq!(
            backlog[0].data.as_ptr(),
            data.as_ptr(),
            "shared, not copied"
        );
        // A start before everything held begins at the oldest GOP.
        let (backlog, _) = ring.follow(0);
        assert_eq!(backlog[0].seq, 60);
    }

    #[test]
    fn a_follower_gets_every_later_unit_without_gap_or_repeat() {
        let data = Bytes::from_static(b"x");
        let ring = Ring::new(2, 1 << 20);
        for seq in 0..25 {
            ring.push(unit(seq, &data));
        }
        let (backlog, mut rx) = ring.follow(2_000_000_000);
        for seq in 25..40 {
            ring.push(unit(seq, &data));
        }
        let mut seqs: Vec<u64> = backlog.iter().map(|u| u.seq).collect();
        while let Ok(u) = rx.try_recv() {
            seqs.push(u.seq);
        }
        assert_eq!(seqs, (20..40).collect::<Vec<_>>());
        // A follower that went away is dropped, not kept failing.
        drop(rx);
        ring.push(unit(40, &data));
        assert!(ring.state.locked().followers.is_empty());
    }

    #[test]
    fn the_byte_bound_drops_whole_old_gops_but_keeps_the_newest() {
        let data = Bytes::from(vec![0u8; 1000]);
        // 10 s wanted, 15 kB allowed: one and a half GOPs of 10 kB.
        let ring = Ring::new(10, 15_000);
        for seq in 0..50 {
            ring.push(unit(seq, &data));
        }
        let (backlog, _) = ring.follow(0);
        assert_eq!(backlog[0].seq, 40, "only the newest GOP fits");
        assert!(ring.bytes() <= 15_000);
    }
}
