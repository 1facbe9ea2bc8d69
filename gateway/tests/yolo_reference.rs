//! The gateway's YOLO path against Ultralytics itself: `lookout detect` runs
//! the third-party-style YOLOv8 fixture (`models/fixtures/yolo/`, exported
//! to ONNX by Ultralytics, see `models/make_yolo_fixture.py`) on its test
//! stills, and every detection must match Ultralytics' own prediction on the
//! same ONNX file (`reference.json`): same label, score within 0.01, box IoU
//! at least 0.9, one to one. Only a detection whose score is within 0.01 of
//! the threshold may go unmatched on either side.
//!
//! The stills are 320x320 (no resize), 320x192 (letterbox padding only) and
//! 640x384 (exact 2x downscale), so resize kernels cannot differ beyond
//! rounding.
//!
//! ONNX Runtime is found by the binary itself, as in production (see
//! `gateway/src/detect/runtime.rs`: LOOKOUT_ONNXRUNTIME, ORT_DYLIB_PATH, then
//! `.lookout/onnxruntime/` from `cargo xtask setup`, then system folders).
//! There is no skip: without the library `lookout detect` fails and so does
//! this test, with the binary's message saying where it looked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SCORE_TOLERANCE: f64 = 0.01;
const MIN_IOU: f64 = 0.9;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/yolo")
}

#[derive(Debug, Clone)]
struct Det {
    label: String,
    score: f64,
    /// `[x, y, w, h]` in image pixels.
    bbox: [f64; 4],
}

impl std::fmt::Display for Det {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [x, y, w, h] = self.bbox;
        write!(
            f,
            "{} {:.4} at [{x:.1}, {y:.1}, {w:.1}, {h:.1}]",
            self.label, self.score
        )
    }
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what}: expected a number, got {v}"))
}

fn detections(v: &Value, what: &str) -> Vec<Det> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: `detections` is not an array: {v}"))
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let what = format!("{what} detection {i}");
            let label = d["label"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no label: {d}"))
                .to_string();
            let b = d["bbox"]
                .as_array()
                .filter(|b| b.len() == 4)
                .unwrap_or_else(|| panic!("{what}: bbox is not [x, y, w, h]: {d}"));
            Det {
                label,
                score: number(&d["score"], &what),
                bbox: [
                    number(&b[0], &what),
                    number(&b[1], &what),
                    number(&b[2], &what),
                    number(&b[3], &what),
                ],
            }
        })
        .collect()
}

/// IoU of two `[x, y, w, h]` boxes.
fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let ih = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// One-to-one matching, best IoU first among the pairs within tolerance;
/// returns the problems found for one image.
fn compare(image: &str, reference: &[Det], gateway: &[Det], threshold: f64) -> Vec<String> {
    let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
    for (i, r) in reference.iter().enumerate() {
        for (j, g) in gateway.iter().enumerate() {
            let o = iou(&r.bbox, &g.bbox);
            if r.label == g.label && (r.score - g.score).abs() <= SCORE_TOLERANCE && o >= MIN_IOU {
                pairs.push((o, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut ref_used = vec![false; reference.len()];
    let mut gw_used = vec![false; gateway.len()];
    for (_, i, j) in pairs {
        if !ref_used[i] && !gw_used[j] {
            ref_used[i] = true;
            gw_used[j] = true;
        }
    }
    let near_threshold = |d: &Det| (d.score - threshold).abs() <= SCORE_TOLERANCE;
    let closest = |d: &Det, others: &[Det]| -> String {
        others
            .iter()
            .filter(|o| o.label == d.label)
            .max_by(|a, b| iou(&d.bbox, &a.bbox).total_cmp(&iou(&d.bbox, &b.bbox)))
            .map(|o| format!("closest {o}, IoU {:.3}", iou(&d.bbox, &o.bbox)))
            .unwrap_or_else(|| format!("none labelled {}", d.label))
    };
    let mut problems = Vec::new();
    for (r, _) in reference
        .iter()
        .zip(&ref_used)
        .filter(|(r, u)| !**u && !near_threshold(r))
    {
        problems.push(format!(
            "{image}: Ultralytics' detection {r} has no gateway match ({})",
            closest(r, gateway)
        ));
    }
    for (g, _) in gateway
        .iter()
        .zip(&gw_used)
        .filter(|(g, u)| !**u && !near_threshold(g))
    {
        problems.push(format!(
            "{image}: gateway detection {g} is not in Ultralytics' reference ({})",
            closest(g, reference)
        ));
    }
    problems
}

#[test]
fn yolo_detections_match_ultralytics() {
    let dir = fixture_dir();
    let text = std::fs::read_to_string(dir.join("reference.json"))
        .unwrap_or_else(|e| panic!("{}/reference.json: {e}", dir.display()));
    let reference: Value = serde_json::from_str(&text).expect("reference.json is JSON");
    let threshold = number(&reference["conf"], "reference.json conf");
    let images = reference["images"]
        .as_array()
        .expect("reference.json has images");
    assert!(images.len() >= 4, "expected the fixture's test stills");
    let names: Vec<&str> = images
        .iter()
        .map(|e| e["image"].as_str().expect("image path"))
        .collect();

    // One run over every still, paths relative to the fixture folder, as an
    // integrator would call it.
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .current_dir(&dir)
        .args(["detect", "--config", "detector.toml", "--detector", "yolo"])
        .args(&names)
        .output()
        .expect("lookout runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lookout detect failed ({}); is ONNX Runtime set up (`cargo xtask setup`)?\nstderr:\n{stderr}\nstdout:\n{stdout}",
        out.status
    );

    let mut seen: HashMap<String, Value> = HashMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {line}"));
        let image = v["image"]
            .as_str()
            .unwrap_or_else(|| panic!("output line without image: {line}"))
            .to_string();
        assert!(
            seen.insert(image.clone(), v).is_none(),
            "{image}: reported twice"
        );
    }

    let mut problems = Vec::new();
    let mut matched = 0;
    let (mut worst_score, mut worst_iou) = (0.0_f64, 1.0_f64);
    for entry in images {
        let image = entry["image"].as_str().expect("image path");
        let Some(got) = seen.get(image) else {
            problems.push(format!("{image}: no output line\nstdout:\n{stdout}"));
            continue;
        };
        for key in ["width", "height"] {
            if got[key] != entry[key] {
                problems.push(format!(
                    "{image}: {key} {} (reference {})",
                    got[key], entry[key]
                ));
            }
        }
        if got["detector"] != "yolo" {
            problems.push(format!(
                "{image}: detector {} (expected \"yolo\")",
                got["detector"]
            ));
        }
        let want = detections(&entry["detections"], &format!("reference {image}"));
        let have = detections(&got["detections"], &format!("gateway {image}"));
        assert!(
            !want.is_empty(),
            "{image}: the reference has no detection to check"
        );
        let p = compare(image, &want, &have, threshold);
        if p.is_empty() {
            matched += want.len();
            for r in &want {
                let best = have
                    .iter()
                    .filter(|g| g.label == r.label)
                    .max_by(|a, b| iou(&r.bbox, &a.bbox).total_cmp(&iou(&r.bbox, &b.bbox)));
                if let Some(g) = best {
                    worst_score = worst_score.max((r.score - g.score).abs());
                    worst_iou = worst_iou.min(iou(&r.bbox, &g.bbox));
                }
            }
        }
        problems.extend(p);
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) against Ultralytics' reference:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(matched > 0);
    println!(
        "{matched} of Ultralytics' detections on {} stills matched: largest score difference \
         {worst_score:.4} (allowed {SCORE_TOLERANCE}), smallest box IoU {worst_iou:.4} (required {MIN_IOU})",
        images.len()
    );
}

#[test]
fn matching_rejects_extra_and_shifted_boxes() {
    let d = |label: &str, score: f64, bbox: [f64; 4]| Det {
        label: label.to_string(),
        score,
        bbox,
    };
    let reference = [d("smoke", 0.8, [10.0, 10.0, 100.0, 100.0])];
    // Same box, small score difference: fine.
    assert!(
        compare(
            "a",
            &reference,
            &[d("smoke", 0.795, [10.5, 10.0, 100.0, 100.0])],
            0.25
        )
        .is_empty()
    );
    // A duplicate cannot match the same reference detection twice.
    let dup = [
        d("smoke", 0.8, [10.0, 10.0, 100.0, 100.0]),
        d("smoke", 0.79, [11.0, 10.0, 100.0, 100.0]),
    ];
    let p = compare("a", &reference, &dup, 0.25);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("gateway detection smoke 0.79"), "{p:?}");
    // Wrong label, shifted box, score off: each is a problem naming the image.
    for g in [
        d("flood", 0.8, [10.0, 10.0, 100.0, 100.0]),
        d("smoke", 0.8, [20.0, 10.0, 100.0, 100.0]),
        d("smoke", 0.7, [10.0, 10.0, 100.0, 100.0]),
    ] {
        let p = compare("b.png", &reference, &[g], 0.25);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|m| m.starts_with("b.png: ")), "{p:?}");
    }
    // Near the threshold either side may miss it.
    assert!(compare("c", &[d("flood", 0.255, [0.0, 0.0, 5.0, 5.0])], &[], 0.25).is_empty());
}
