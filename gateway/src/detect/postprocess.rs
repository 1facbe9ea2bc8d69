//! From a model's raw output to detections in frame coordinates, for the
//! three kinds of model an integrator can bring: classification (one score
//! per label), YOLOv8/YOLO11 detection (`[N, 4+C, boxes]`, decoded and
//! filtered with class-aware NMS the way Ultralytics does), and segmentation
//! (a per-pixel class map turned into area fraction and bounding box).

use super::preprocess::Placement;

pub use lookout_core::alert::Detection;

/// Scores per label for one frame; every label at or above `threshold` is a
/// detection, best first.
pub fn classification(
    scores: &[f32],
    labels: &[String],
    softmax: bool,
    threshold: f32,
) -> Vec<Detection> {
    let probs: Vec<f32> = if softmax {
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        exps.iter()
            .map(|e| e / sum.max(f32::MIN_POSITIVE))
            .collect()
    } else {
        scores.to_vec()
    };
    let mut out: Vec<Detection> = probs
        .iter()
        .zip(labels)
        .filter(|(p, _)| **p >= threshold)
        .map(|(p, l)| Detection {
            label: l.clone(),
            score: *p,
            bbox: None,
            area: None,
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Ultralytics' defaults for prediction.
pub const YOLO_IOU: f32 = 0.7;
pub const YOLO_MAX_DETECTIONS: usize = 300;

/// Decodes one frame's YOLOv8/YOLO11 output, `[4 + C, boxes]` row-major
/// (cx, cy, w, h in input pixels, then one score per class, no objectness).
pub fn yolo(
    output: &[f32],
    labels: &[String],
    boxes: usize,
    threshold: f32,
    placement: &Placement,
    frame: (u32, u32),
) -> Vec<Detection> {
    let classes = labels.len();
    if output.len() < (4 + classes) * boxes {
        return Vec::new();
    }
    let at = |row: usize, i: usize| output[row * boxes + i];
    // Candidates: best class per box above the threshold.
    let mut cands: Vec<(usize, f32, [f32; 4])> = Vec::new();
    for i in 0..boxes {
        let (mut best, mut best_score) = (0, f32::NEG_INFINITY);
        for c in 0..classes {
            let s = at(4 + c, i);
            if s > best_score {
                best = c;
                best_score = s;
            }
        }
        if best_score > threshold {
            let (cx, cy, w, h) = (at(0, i), at(1, i), at(2, i), at(3, i));
            cands.push((
                best,
                best_score,
                [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            ));
        }
    }
    cands.sort_by(|a, b| b.1.total_cmp(&a.1));
    // Class-aware NMS: a box only suppresses boxes of its own class.
    let mut kept: Vec<(usize, f32, [f32; 4])> = Vec::new();
    for c in cands {
        if kept.len() >= YOLO_MAX_DETECTIONS {
            break;
        }
        if kept
            .iter()
            .all(|k| k.0 != c.0 || iou(&k.2, &c.2) <= YOLO_IOU)
        {
            kept.push(c);
        }
    }
    let (fw, fh) = (frame.0 as f32, frame.1 as f32);
    kept.into_iter()
        .map(|(c, score, b)| {
            let [x, y, w, h] = placement.to_frame([b[0], b[1], b[2] - b[0], b[3] - b[1]]);
            // Clip to the frame, as Ultralytics does.
            let (x0, y0) = (x.clamp(0.0, fw), y.clamp(0.0, fh));
            let (x1, y1) = ((x + w).clamp(0.0, fw), (y + h).clamp(0.0, fh));
            Detection {
                label: labels[c].clone(),
                score,
                bbox: Some([x0, y0, x1 - x0, y1 - y0]),
                area: None,
            }
        })
        .collect()
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// A segmentation output for one frame: per-class scores `[C, H, W]` (the
/// class is the arg-max) or class ids `[H, W]`.
pub enum SegMap<'a> {
    Scores { data: &'a [f32], classes: usize },
    Ids { data: &'a [f32] },
}

/// Area fraction and bounding box of each label's region; labels covering
/// at least `min_area` of the frame are detections. The score is the mean
/// class probability inside the region (1.0 for id maps).
pub fn segmentation(
    map: SegMap<'_>,
    labels: &[String],
    size: (usize, usize),
    min_area: f32,
    placement: &Placement,
) -> Vec<Detection> {
    let (mw, mh) = size;
    let n = mw * mh;
    let classes = labels.len();
    let mut count = vec![0usize; classes];
    let mut score_sum = vec![0f32; classes];
    let mut bounds = vec![[usize::MAX, usize::MAX, 0usize, 0usize]; classes];
    for i in 0..n {
        let (c, s) = match &map {
            SegMap::Scores { data, classes: k } => {
                let mut best = (0, f32::NEG_INFINITY);
                for c in 0..*k {
                    let v = data.get(c * n + i).copied().unwrap_or(f32::NEG_INFINITY);
                    if v > best.1 {
                        best = (c, v);
                    }
                }
                best
            }
            SegMap::Ids { data } => (data.get(i).copied().unwrap_or(0.0).max(0.0) as usize, 1.0),
        };
        if c >= classes {
            continue;
        }
        count[c] += 1;
        score_sum[c] += s;
        let (x, y) = (i % mw, i / mw);
        let b = &mut bounds[c];
        b[0] = b[0].min(x);
        b[1] = b[1].min(y);
        b[2] = b[2].max(x);
        b[3] = b[3].max(y);
    }
    let mut out = Vec::new();
    for c in 0..classes {
        let area = count[c] as f32 / n.max(1) as f32;
        if count[c] == 0 || area < min_area {
            continue;
        }
        let b = bounds[c];
        let bbox = placement.to_frame([
            b[0] as f32,
            b[1] as f32,
            (b[2] - b[0] + 1) as f32,
            (b[3] - b[1] + 1) as f32,
        ]);
        out.push(Detection {
            label: labels[c].clone(),
            score: score_sum[c] / count[c] as f32,
            bbox: Some(bbox),
            area: Some(area),
        });
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const IDENTITY: Placement = Placement {
        scale_x: 1.0,
        scale_y: 1.0,
        pad_x: 0.0,
        pad_y: 0.0,
    };

    #[test]
    fn classification_softmax_and_threshold() {
        let l = labels(&["none", "smoke", "flood"]);
        let d = classification(&[0.0, 3.0, 0.0], &l, true, 0.5);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].label, "smoke");
        assert!((d[0].score - 0.9094).abs() < 1e-3);
        let d = classification(&[0.2, 0.3, 0.5], &l, false, 0.25);
        assert_eq!(
            d.iter().map(|d| d.label.as_str()).collect::<Vec<_>>(),
            ["flood", "smoke"]
        );
    }

    #[test]
    fn yolo_decodes_and_suppresses_per_class() {
        let l = labels(&["a", "b"]);
        // 3 boxes: two overlapping "a" boxes and one "b" box on top of them.
        let boxes = 3;
        #[rustfmt::skip]
        let out = [
            50.0, 52.0, 50.0,   // cx
            50.0, 50.0, 50.0,   // cy
            20.0, 20.0, 20.0,   // w
            20.0, 20.0, 20.0,   // h
            0.9, 0.8, 0.1,      // score a
            0.1, 0.1, 0.7,      // score b
        ];
        let d = yolo(&out, &l, boxes, 0.25, &IDENTITY, (100, 100));
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!((d[0].label.as_str(), d[1].label.as_str()), ("a", "b"));
        assert_eq!(d[0].bbox, Some([40.0, 40.0, 20.0, 20.0]));
    }

    #[test]
    fn yolo_maps_and_clips_to_frame() {
        let l = labels(&["a"]);
        let out = [10.0, 60.0, 40.0, 20.0, 0.9];
        let p = Placement {
            scale_x: 0.5,
            scale_y: 0.5,
            pad_x: 0.0,
            pad_y: 25.0,
        };
        let d = yolo(&out, &l, 1, 0.25, &p, (200, 100));
        // cx=10,w=40 → x from -10: clipped at 0.
        assert_eq!(d[0].bbox, Some([0.0, 50.0, 60.0, 40.0]));
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn segmentation_area_and_box() {
        let l = labels(&["background", "water"]);
        // 4x4 map, water in the bottom-right 2x2.
        let mut ids = vec![0.0f32; 16];
        for (x, y) in [(2, 2), (3, 2), (2, 3), (3, 3)] {
            ids[y * 4 + x] = 1.0;
        }
        let d = segmentation(SegMap::Ids { data: &ids }, &l, (4, 4), 0.1, &IDENTITY);
        let water = d.iter().find(|d| d.label == "water").expect("water");
        assert_eq!(water.area, Some(0.25));
        assert_eq!(water.bbox, Some([2.0, 2.0, 2.0, 2.0]));
    }
}
