//! The bundled smoke/flood model against its model card: the held-out
//! scenes the card was measured on are rendered again (the renderer is
//! deterministic per seed), run through `lookout detect` — the gateway's own
//! preprocessing, ONNX Runtime session and output decoding — and the
//! precision, recall and false-positive rate must be at least as good as the
//! card says, and the card's text must show the figures of its metrics file.
//! The measured figures must also meet the detection bar (smoke and flood
//! recall ≥ 0.9, false-positive rate on negatives ≤ 0.05): a model that
//! falls below it does not ship.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Reads a figure from the card's metrics file.
fn figure(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("models/smoke_flood.metrics.json has no number at {path:?}"))
}

#[test]
fn bundled_model_meets_its_card_on_held_out_scenes() {
    let root = root();
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("models/smoke_flood.metrics.json"))
            .expect("models/smoke_flood.metrics.json"),
    )
    .expect("metrics json");
    let card = std::fs::read_to_string(root.join("models/smoke_flood.md")).expect("model card");
    let held = &metrics["heldout"];
    // Seeds as "START..END".
    let seeds = held["seeds"].as_str().expect("heldout.seeds");
    let (start, end) = seeds
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?)))
        .expect("heldout.seeds as START..END");
    let size = held["image_size"].as_u64().unwrap_or(224) as u32;
    assert!(start < end);

    // Render the held-out stills, split across two threads.
    let dir = tempfile::tempdir().expect("tempdir");
    let mid = start + (end - start) / 2;
    std::thread::scope(|s| {
        for (i, range) in [(start..mid), (mid..end)].into_iter().enumerate() {
            let d = dir.path().join(format!("part{i}"));
            s.spawn(move || lookout_scene::write_dataset(&d, range, size).expect("render"));
        }
    });
    let mut truth: HashMap<String, String> = HashMap::new();
    let mut images: Vec<PathBuf> = Vec::new();
    for i in 0..2 {
        let part = dir.path().join(format!("part{i}"));
        let index = std::fs::read_to_string(part.join("index.jsonl")).expect("index");
        for line in index.lines() {
            let rec: Value = serde_json::from_str(line).expect("index line");
            let img = part.join(rec["image"].as_str().expect("image"));
            truth.insert(
                img.display().to_string(),
                rec["class"].as_str().expect("class").to_string(),
            );
            images.push(img);
        }
    }
    assert_eq!(images.len() as u64, end - start);

    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["detect", "--threads", "2", "--config"])
        .arg(root.join("models/smoke_flood.toml"))
        .args(&images)
        .output()
        .expect("lookout detect runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lookout detect failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);

    // Per class: true positives, predicted positives, actual positives.
    let classes = ["smoke", "flood"];
    let mut tp: HashMap<&str, usize> = HashMap::new();
    let mut predicted: HashMap<&str, usize> = HashMap::new();
    let mut actual: HashMap<&str, usize> = HashMap::new();
    let (mut negatives, mut false_pos) = (0usize, 0usize);
    let mut lines = 0;
    for line in stdout.lines() {
        lines += 1;
        let r: Value = serde_json::from_str(line).expect("detect output line");
        let image = r["image"].as_str().expect("image");
        let class = truth.get(image).expect("known image").as_str();
        let seen: Vec<&str> = r["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .filter_map(|d| d["label"].as_str())
            .filter(|l| classes.contains(l))
            .collect();
        for c in classes {
            if class == c {
                *actual.entry(c).or_default() += 1;
            }
            if seen.contains(&c) {
                *predicted.entry(c).or_default() += 1;
                if class == c {
                    *tp.entry(c).or_default() += 1;
                }
            }
        }
        if class == "none" {
            negatives += 1;
            if !seen.is_empty() {
                false_pos += 1;
            }
        }
    }
    assert_eq!(lines, images.len(), "one line per image");

    let mut failures = Vec::new();
    for c in classes {
        let recall = tp[c] as f64 / actual[c].max(1) as f64;
        let precision = tp.get(c).copied().unwrap_or(0) as f64 / predicted[c].max(1) as f64;
        let card_recall = figure(held, &[c, "recall"]);
        let card_precision = figure(held, &[c, "precision"]);
        println!(
            "{c}: precision {precision:.3} (card {card_precision:.3}), recall {recall:.3} (card {card_recall:.3}), {} images",
            actual[c]
        );
        // The card's figures are rounded to 3 decimals.
        if recall < card_recall - 0.0005 {
            failures.push(format!("{c} recall {recall:.3} < card {card_recall:.3}"));
        }
        if precision < card_precision - 0.0005 {
            failures.push(format!(
                "{c} precision {precision:.3} < card {card_precision:.3}"
            ));
        }
        if recall < 0.9 {
            failures.push(format!("{c} recall {recall:.3} is below the 0.9 bar"));
        }
        for f in [card_recall, card_precision] {
            let shown = format!("{f:.3}");
            if !card.contains(&shown) {
                failures.push(format!(
                    "the card text does not show the {c} figure {shown} from its metrics file"
                ));
            }
        }
    }
    let fpr = false_pos as f64 / negatives.max(1) as f64;
    let card_fpr = figure(held, &["false_positive_rate_on_negatives"]);
    println!("false-positive rate on {negatives} negatives: {fpr:.3} (card {card_fpr:.3})");
    if fpr > card_fpr + 0.0005 {
        failures.push(format!("FPR {fpr:.3} > card {card_fpr:.3}"));
    }
    if fpr > 0.05 {
        failures.push(format!("FPR {fpr:.3} is above the 0.05 bar"));
    }
    if !card.contains(&format!("{card_fpr:.3}")) {
        failures.push(format!(
            "the card text does not show the FPR {card_fpr:.3} from its metrics file"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
