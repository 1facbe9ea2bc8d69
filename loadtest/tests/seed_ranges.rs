//! The training scripts under `models/` against the renderer's declared seed ranges
//! (`lookout_scene::seeds`): every `render --dataset DIR --seeds A..B` they run must
//! render seeds of the range its data set is for (training stills from training seeds,
//! validation from validation, held-out from held-out), none of them a benchmark seed.
//! The shell loop that renders the training shards (`for i in …; do … --seeds
//! $((i * N))..$(((i + 1) * N))`) is expanded as the shell would. A script that renders
//! seeds this test cannot read fails it, so a new way of choosing seeds is looked at.

use std::ops::Range;
use std::path::Path;

use lookout_scene::seeds::{Purpose, touches_benchmark, within};

/// `(dataset, seeds)` of every render a script runs.
fn renders(script: &str) -> Vec<(String, Range<u64>)> {
    let mut loop_values: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        // A shell loop (`for i in 0 1 2; do`), not a Python one.
        if let Some(rest) = line.strip_prefix("for i in ")
            && let Some((values, _)) = rest.split_once("; do")
        {
            loop_values = values
                .split_whitespace()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("loop value {v:?} in {line:?}"))
                })
                .collect();
        }
        let Some(at) = line.find("--seeds ") else {
            continue;
        };
        let rest = &line[at + 8..];
        let seeds = rest[..rest.find(" --").unwrap_or(rest.len())].trim();
        let dataset = line
            .split_once("--dataset ")
            .and_then(|(_, d)| d.split_whitespace().next())
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        if let Some((a, b)) = seeds.split_once("..")
            && let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>())
        {
            out.push((dataset, a..b));
            continue;
        }
        // $((i * N))..$(((i + 1) * N))
        let n: u64 = seeds
            .strip_prefix("$((i * ")
            .and_then(|r| r.split_once("))..$(((i + 1) * "))
            .and_then(|(n, m)| (m == format!("{n}))")).then_some(n))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the seeds of {line:?}"));
        assert!(!loop_values.is_empty(), "no loop values for {line:?}");
        for i in &loop_values {
            out.push((dataset.replace("$i", &i.to_string()), i * n..(i + 1) * n));
        }
    }
    out
}

/// What a data set's folder name says it is for.
fn purpose_of(dataset: &str) -> Purpose {
    if dataset.starts_with("train") || dataset.starts_with("bodycam") {
        Purpose::Training
    } else if dataset.starts_with("val") {
        Purpose::Validation
    } else if dataset.starts_with("heldout") {
        Purpose::Heldout
    } else {
        panic!("data set {dataset:?}: name it train*, bodycam*, val* or heldout*")
    }
}

#[test]
fn the_smoke_flood_training_script_renders_each_set_from_its_own_range() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = std::fs::read_to_string(root.join("models/train_smoke_flood.py")).expect("script");
    let found = renders(&script);
    assert!(found.len() >= 15, "{found:?}");
    for (dataset, seeds) in &found {
        assert!(
            !touches_benchmark(seeds),
            "{dataset} renders benchmark seeds {seeds:?}"
        );
        let p = purpose_of(dataset);
        assert!(
            within(seeds, p),
            "{dataset}: seeds {seeds:?} are not all {}",
            p.as_str()
        );
    }
}

#[test]
fn no_model_script_renders_a_benchmark_seed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    for entry in std::fs::read_dir(&root).expect("models/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("py") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("script");
        for (dataset, seeds) in renders(&text) {
            assert!(
                !touches_benchmark(&seeds),
                "{}: {dataset} renders benchmark seeds {seeds:?}",
                path.display()
            );
        }
        // Seed tuples such as `SEEDS_320 = (2_000_000, 2_000_060)`.
        for line in text.lines().filter(|l| l.contains("SEEDS")) {
            let numbers: Vec<u64> = line
                .split(|c: char| !c.is_ascii_digit() && c != '_')
                .filter_map(|t| t.replace('_', "").parse().ok())
                .filter(|n| *n >= 1000)
                .collect();
            if let [a, b] = numbers[..] {
                assert!(!touches_benchmark(&(a..b)), "{}: {line}", path.display());
            }
        }
    }
}

#[test]
fn a_benchmark_seed_in_a_training_range_would_be_caught() {
    let script = "for i in 0 1; do\n  $R render --dataset .lookout/data/train$i --seeds $((i * 6000))..$(((i + 1) * 6000))\ndone\n\
                  $R render --dataset .lookout/data/train-x --seeds 9001001..9001002\n";
    let found = renders(script);
    assert_eq!(
        found,
        vec![
            ("train0".to_string(), 0..6000),
            ("train1".to_string(), 6000..12000),
            ("train-x".to_string(), 9_001_001..9_001_002)
        ]
    );
    assert!(touches_benchmark(&found[2].1));
    assert!(!within(&found[2].1, Purpose::Training));
}
