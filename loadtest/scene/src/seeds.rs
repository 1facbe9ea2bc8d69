//! Which seeds are for what: the one place the seed ranges of the renderer's stills and
//! clips are declared, so no figure is measured on scenes a model was trained or chosen
//! on.
//!
//! A seed fixes a scene (kind, lighting, terrain, confusers) and its event (ignition
//! point, onset), whether it is rendered as a training still (`dataset`) or as a clip the
//! camera fleet serves (`lookout-loadtest fleet`): the same seed is the same scene. So
//! the ranges are disjoint, the fleet draws only from [`BENCHMARK`], `render --dataset`
//! refuses benchmark seeds, and a test (`loadtest/tests/seed_ranges.rs`) reads the
//! training scripts under `models/` and fails if any of them renders a seed outside the
//! range its data set is for.
//!
//! - [`TRAINING`]: stills models are fitted on.
//! - [`HELDOUT`]: stills a model is evaluated on once, at the end (the model card's
//!   figures); never used to choose anything.
//! - [`VALIDATION`]: stills used to choose (epochs, weight averages, thresholds).
//! - [`BENCHMARK`]: the fleet's scenes and events, for the load and detection
//!   benchmarks; never rendered as stills, never a tuning set.

use std::ops::Range;

use crate::SceneKind;

/// Stills models are fitted on: general stills, then body-camera stills.
pub const TRAINING: [Range<u64>; 2] = [0..1_000_000, 3_000_000..4_000_000];
/// Stills for the final, once-only evaluation.
pub const HELDOUT: Range<u64> = 1_000_000..2_000_000;
/// Stills for choosing: checkpoints, averages, operating points.
pub const VALIDATION: Range<u64> = 2_000_000..3_000_000;
/// The camera fleet's scenes and scripted events.
pub const BENCHMARK: Range<u64> = 9_000_000..10_000_000;

/// What a seed range is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Training,
    Heldout,
    Validation,
    Benchmark,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Training => "training",
            Purpose::Heldout => "held-out evaluation",
            Purpose::Validation => "validation",
            Purpose::Benchmark => "benchmark",
        }
    }
}

/// Every declared range with its purpose.
pub fn ranges() -> Vec<(Purpose, Range<u64>)> {
    let mut all: Vec<(Purpose, Range<u64>)> = TRAINING
        .iter()
        .map(|r| (Purpose::Training, r.clone()))
        .collect();
    all.push((Purpose::Heldout, HELDOUT));
    all.push((Purpose::Validation, VALIDATION));
    all.push((Purpose::Benchmark, BENCHMARK));
    all
}

/// The purpose of a seed, `None` for a seed in no declared range.
pub fn purpose(seed: u64) -> Option<Purpose> {
    ranges()
        .into_iter()
        .find(|(_, r)| r.contains(&seed))
        .map(|(p, _)| p)
}

/// Whether every seed of `seeds` is in ranges of `purpose`.
pub fn within(seeds: &Range<u64>, purpose: Purpose) -> bool {
    seeds.is_empty()
        || ranges()
            .into_iter()
            .any(|(p, r)| p == purpose && r.start <= seeds.start && seeds.end <= r.end)
}

/// Whether any seed of `seeds` is a benchmark seed.
pub fn touches_benchmark(seeds: &Range<u64>) -> bool {
    seeds.start < BENCHMARK.end && BENCHMARK.start < seeds.end
}

/// The scene (and event) seed of the fleet's cameras of one kind. Chosen once, before
/// any run of the current model on them, and never changed to suit a model.
pub fn fleet_scene(kind: SceneKind) -> u64 {
    BENCHMARK.start
        + match kind {
            SceneKind::Tower => 1001,
            SceneKind::Drone => 2002,
            SceneKind::Bodycam => 3003,
            SceneKind::Fixed => 4004,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_do_not_overlap() {
        let all = ranges();
        for (i, (p, a)) in all.iter().enumerate() {
            assert!(!a.is_empty(), "{p:?}");
            for (q, b) in &all[i + 1..] {
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "{} {a:?} overlaps {} {b:?}",
                    p.as_str(),
                    q.as_str()
                );
            }
        }
    }

    #[test]
    fn the_fleet_draws_only_benchmark_scenes() {
        for kind in SceneKind::ALL {
            assert_eq!(
                purpose(fleet_scene(kind)),
                Some(Purpose::Benchmark),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn ranges_are_classified() {
        assert!(within(&(0..66_000), Purpose::Training));
        assert!(within(&(3_100_000..3_104_000), Purpose::Training));
        assert!(!within(&(999_000..1_001_000), Purpose::Training));
        assert!(touches_benchmark(&(8_999_999..9_000_001)));
        assert!(!touches_benchmark(&(0..9_000_000)));
        assert_eq!(purpose(5_000_000), None);
    }
}
