#!/usr/bin/env python3
"""Makes the third-party YOLOv8 test fixture in models/fixtures/yolo/: a tiny
YOLOv8 detector trained with Ultralytics, exported to ONNX the way an
integrator would export their own model, a handful of test stills, and
Ultralytics' own predictions on them (reference.json). The gateway's
`output = "yolo"` path is tested against that reference
(gateway/tests/yolo_reference.rs).

It is a test fixture, not a useful detector: a YOLOv8 at an eighth of the
nano width (910k parameters), trained for 35 epochs on 1,080 synthetic stills
(about 40 minutes on two CPU cores; validation mAP50 0.66). Made with
ultralytics 8.4.190, torch 2.15.0, onnx 1.23.2, onnxslim 0.1.98, onnxruntime
1.31.1. Runs by hand, offline, not in CI:

    python3 -m venv .lookout/yolo-venv
    .lookout/yolo-venv/bin/pip install ultralytics==8.4.190 onnx onnxslim \\
        .lookout/wheels/onnxruntime-1.31.1-*.whl   # or onnxruntime==1.31.1
    cargo build --release -p lookout-loadtest
    target/release/lookout-loadtest render --dataset .lookout/data/train --seeds 0..6000 --size 224
    .lookout/yolo-venv/bin/python models/make_yolo_fixture.py all \\
        --train .lookout/data/train --work .lookout/yolo-fixture

Stages (`all` runs them in order; each can be run alone):

  dataset    converts --count stills of the renderer's labelled set (per-image
             `objects: [{class, bbox: [x, y, w, h]}]`) to the YOLO layout
  train      builds the model from a YAML (YOLOv8 layers, depth 0.33, width
             0.125; nc 2: smoke, flood) and trains it (seed 0, deterministic)
  export     ONNX, imgsz 320, opset 17, static batch 1, simplified: input
             images [1, 3, 320, 320], output [1, 6, 2100]
  images     renders held-out stills (seeds never in training) at 320 and 640,
             crops some to 320x192 and 640x384, and keeps those on which the
             model detects something, with no box scoring within 0.01 of the
             threshold, every detection at least 0.03 above it, no same-class
             pair of boxes with an IoU within 0.01 of the NMS IoU, and (for
             the 2x downscale) the gateway's float resize within 0.005 of
             Ultralytics' scores; both classes, stills with several
             detections first
  reference  Ultralytics' predictor on the exported ONNX
             (imgsz 320, conf 0.25, iou 0.7) -> reference.json
  verify     reruns the ONNX with onnxruntime and a hand-written numpy port of
             the gateway's letterbox, decoding and class-aware NMS
             (gateway/src/detect/{preprocess,postprocess}.rs) and checks it
             matches reference.json within the integration test's tolerance

Image sizes are chosen so that no implementation-specific resize enters: 320x320
goes in as is, 320x192 only gets letterbox padding (64 rows of 114 above and
below), 640x384 is an exact 2x downscale (bilinear = mean of 2x2 pixels) plus
the same padding. OpenCV rounds the downscaled pixels to 8 bits where the
gateway keeps floats; on this small model that moves a score by up to about
0.01 (2 of 27 rendered 640x384 stills went past 0.01), hence the 0.005 check.

Ultralytics is kept offline: YOLO_OFFLINE=1, settings in the work folder
(sync off), model from YAML (no weights), plots=False (no font download),
amp=False, and the export's requirements (onnx, onnxslim, onnxruntime)
installed beforehand. Training on CPU is seeded (seed=0, deterministic=True);
bit-identical weights across machines or torch versions are not promised, the
committed model.onnx and reference.json are the fixture.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "models" / "fixtures" / "yolo"
LABELS = ["smoke", "flood"]
IMGSZ = 320
CONF = 0.25
IOU = 0.7
SEED = 0
# Held-out seeds for the test stills (training uses 0..6000).
SEEDS_320 = (2_000_000, 2_000_060)
SEEDS_640 = (3_000_000, 3_000_060)
# Test stills: how many of each size.
WANT = {(320, 320): 3, (320, 192): 2, (640, 384): 2}
# A still is kept only if no box's best class score lies within NEAR of the
# threshold (so a tiny numeric difference cannot add or drop a detection) and
# every detection scores at least MARGIN above it.
NEAR = 0.01
MARGIN = 0.03
# ... and no two same-class boxes above it overlap with an IoU this close to
# the NMS IoU.
NMS_NEAR = 0.01

MODEL_YAML = """\
# YOLOv8 detection layers at an eighth of the nano width (nano: 0.25).
nc: 2
depth_multiple: 0.33
width_multiple: 0.125
max_channels: 1024
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 3, C2f, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 9], 1, Concat, [1]]
  - [-1, 3, C2f, [1024]]
  - [[15, 18, 21], 1, Detect, [nc]]
"""


def offline(work: Path):
    """Keeps Ultralytics from reaching the network; call before importing it."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(work / "ultralytics-settings")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from ultralytics import settings

    settings.update({"sync": False, "datasets_dir": str(work), "weights_dir": str(work / "weights"),
                     "runs_dir": str(work / "runs")})


def dataset(args):
    """Renderer stills -> YOLO layout (images/{train,val}, labels/{train,val})."""
    src = Path(args.train).resolve()
    out = Path(args.work) / "data"
    if out.exists():
        shutil.rmtree(out)
    recs = [json.loads(l) for l in (src / "index.jsonl").read_text().splitlines() if l.strip()]
    rng = random.Random(SEED)
    rng.shuffle(recs)
    # Mostly stills with something to find, some negatives.
    pos = [r for r in recs if r["objects"]]
    neg = [r for r in recs if not r["objects"]]
    n_neg = args.count // 8
    chosen = pos[: args.count - n_neg] + neg[:n_neg]
    rng.shuffle(chosen)
    n_val = max(args.count // 10, 1)
    split = {"val": chosen[:n_val], "train": chosen[n_val:]}
    from PIL import Image

    for name, part in split.items():
        (out / "images" / name).mkdir(parents=True)
        (out / "labels" / name).mkdir(parents=True)
        for r in part:
            img = src / r["image"]
            w, h = Image.open(img).size
            (out / "images" / name / r["image"]).symlink_to(img)
            lines = []
            for o in r["objects"]:
                x, y, bw, bh = o["bbox"]
                x0, y0 = max(x, 0), max(y, 0)
                x1, y1 = min(x + bw, w), min(y + bh, h)
                if x1 <= x0 or y1 <= y0:
                    continue
                c = LABELS.index(o["class"])
                lines.append(f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                             f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
            (out / "labels" / name / (Path(r["image"]).stem + ".txt")).write_text("\n".join(lines) + "\n" if lines else "")
    (out / "data.yaml").write_text(
        f"path: {out}\ntrain: images/train\nval: images/val\nnames:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(LABELS))
    )
    print(f"dataset: {len(split['train'])} train, {len(split['val'])} val stills in {out}")


def train(args):
    work = Path(args.work).resolve()
    offline(work)
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(args.threads)
    cfg = work / "yolov8-fixture.yaml"
    cfg.write_text(MODEL_YAML)
    model = YOLO(str(cfg), task="detect")
    t = time.time()
    model.train(
        data=str(work / "data" / "data.yaml"),
        imgsz=IMGSZ,
        epochs=args.epochs,
        batch=args.batch,
        device="cpu",
        workers=args.workers,
        seed=SEED,
        deterministic=True,
        amp=False,
        plots=False,
        pretrained=False,
        project=str(work / "runs"),
        name="train",
        exist_ok=True,
        cache=False,
        close_mosaic=max(args.epochs // 4, 1),
        patience=0,
        verbose=False,
    )
    print(f"train: {args.epochs} epochs in {time.time() - t:.0f} s")


def export(args):
    work = Path(args.work).resolve()
    offline(work)
    from ultralytics import YOLO

    best = work / "runs" / "train" / "weights" / "best.pt"
    model = YOLO(str(best), task="detect")
    path = model.export(format="onnx", imgsz=IMGSZ, opset=17, dynamic=False, batch=1, simplify=True,
                        nms=False, device="cpu")
    FIXTURE.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, FIXTURE / "model.onnx")
    import onnx

    m = onnx.load(str(FIXTURE / "model.onnx"))
    shape = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]
    print(f"export: {FIXTURE / 'model.onnx'} ({(FIXTURE / 'model.onnx').stat().st_size} bytes), "
          f"input {m.graph.input[0].name} {shape(m.graph.input[0])}, "
          f"output {m.graph.output[0].name} {shape(m.graph.output[0])}, metadata "
          f"{ {p.key: p.value for p in m.metadata_props if p.key in ('names', 'imgsz')} }")


def ultralytics_predict(model, path):
    """Ultralytics' own predictor on one image: [{label, score, bbox}]."""
    r = model.predict(str(path), imgsz=IMGSZ, conf=CONF, iou=IOU, device="cpu", verbose=False)[0]
    dets = []
    for xyxy, score, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
        x0, y0, x1, y1 = xyxy
        dets.append({"label": LABELS[int(cls)], "score": round(score, 6),
                     "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]})
    return dets


def images(args):
    work = Path(args.work).resolve()
    offline(work)
    import numpy as np
    from PIL import Image
    from ultralytics import YOLO

    renderer = Path(args.renderer)
    cand = work / "candidates"
    if cand.exists():
        shutil.rmtree(cand)
    for side, (a, b) in ((320, SEEDS_320), (640, SEEDS_640)):
        subprocess.run([str(renderer), "render", "--dataset", str(cand / str(side)), "--seeds", f"{a}..{b}",
                        "--size", str(side)], check=True)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(FIXTURE / "model.onnx"), providers=["CPUExecutionProvider"])
    model = YOLO(str(FIXTURE / "model.onnx"), task="detect")
    out_dir = FIXTURE / "images"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    # Candidates per target size: (rendered side, crop height).
    plans = {(320, 320): (320, 320), (320, 192): (320, 192), (640, 384): (640, 384)}
    kept = []
    for (w, h), (side, ch) in plans.items():
        recs = [json.loads(l) for l in (cand / str(side) / "index.jsonl").read_text().splitlines() if l.strip()]
        eligible = []
        for r in recs:
            if not r["objects"]:
                continue
            img = np.asarray(Image.open(cand / str(side) / r["image"]).convert("RGB"))
            # Crop a band of ch rows centred on the object.
            x, y, bw, bh = r["objects"][0]["bbox"]
            top = int(min(max(y + bh / 2 - ch / 2, 0), side - ch))
            crop = np.ascontiguousarray(img[top : top + ch])
            tmp = cand / f"{r['seed']}_{w}x{h}.png"
            Image.fromarray(crop).save(tmp)
            dets = ultralytics_predict(model, tmp)
            raw = run_onnx(sess, letterbox_gateway(crop))
            best = raw[4:].max(0)
            # No box scores within NEAR of the threshold, every detection is
            # clearly above it, and no NMS decision hangs on a hair.
            if not dets or (np.abs(best - CONF) < NEAR).any() or min(d["score"] for d in dets) < CONF + MARGIN:
                continue
            if nms_close_call(raw):
                continue
            # The gateway keeps resized pixels as floats where OpenCV rounds
            # them to 8 bits: on the 2x downscale that moves this small
            # model's scores by up to about 0.01, so keep only stills where
            # the numpy port of the gateway agrees within half the test's
            # tolerance.
            prepared = letterbox_gateway(crop)
            port = decode_gateway(raw, prepared[1], prepared[2])
            if compare(dets, port, score_tol=0.005, min_iou=0.95)[0]:
                print(f"images: {r['seed']} at {w}x{h}: the gateway's float resize moves a score by more than "
                      f"0.005, skipped")
                continue
            eligible.append((r, tmp, dets))
        # Stills with several detections first, then both classes in turn.
        eligible.sort(key=lambda e: -min(len(e[2]), 3))
        per_class = {c: 0 for c in LABELS}
        got = 0
        for r, tmp, dets in eligible:
            cls = r["objects"][0]["class"]
            if got >= WANT[(w, h)] or per_class[cls] >= (WANT[(w, h)] + 1) // 2:
                continue
            per_class[cls] += 1
            got += 1
            name = f"{cls}_{r['scene']}_{w}x{h}_{r['seed']}.png"
            shutil.copyfile(tmp, out_dir / name)
            kept.append(name)
            labels = sorted({d["label"] for d in dets})
            print(f"images: {name}: {len(dets)} detections ({', '.join(labels)})")
        if got < WANT[(w, h)]:
            print(f"images: only {got} of {WANT[(w, h)]} stills at {w}x{h}", file=sys.stderr)
    if shutil.which("optipng"):  # lossless, only smaller files
        for name in kept:
            subprocess.run(["optipng", "-quiet", "-o2", str(out_dir / name)], check=False)


def nms_close_call(out):
    """True if two same-class boxes above the threshold overlap with an IoU
    within NMS_NEAR of the NMS IoU (a tiny shift could keep or drop one)."""
    import numpy as np

    cls, score = out[4:].argmax(0), out[4:].max(0)
    idx = np.nonzero(score > CONF)[0]
    cx, cy, w, h = out[:4, idx]
    b = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    for i in range(len(idx)):
        for j in range(i + 1, len(idx)):
            if cls[idx[i]] != cls[idx[j]]:
                continue
            iw = max(min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]), 0)
            ih = max(min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]), 0)
            inter = iw * ih
            union = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            if union > 0 and abs(inter / union - IOU) < NMS_NEAR:
                return True
    return False


def reference(args):
    work = Path(args.work).resolve()
    offline(work)
    import ultralytics
    from PIL import Image
    from ultralytics import YOLO

    model = YOLO(str(FIXTURE / "model.onnx"), task="detect")
    entries = []
    for p in sorted((FIXTURE / "images").glob("*.png")):
        w, h = Image.open(p).size
        dets = ultralytics_predict(model, p)
        entries.append({"image": f"images/{p.name}", "width": w, "height": h, "detections": dets})
        print(f"reference: {p.name} {w}x{h}: {len(dets)} detections")
    ref = {
        "about": "Ultralytics' own predictions with model.onnx; made by models/make_yolo_fixture.py",
        "ultralytics": ultralytics.__version__,
        "imgsz": IMGSZ,
        "conf": CONF,
        "iou": IOU,
        "labels": LABELS,
        "bbox": "[x, y, w, h] in image pixels, x, y the top-left corner",
        "images": entries,
    }
    (FIXTURE / "reference.json").write_text(json.dumps(ref, indent=2) + "\n")


# --- A numpy port of the gateway's detect path, for `verify` and `images`. ---


def letterbox_gateway(img):
    """gateway/src/detect/preprocess.rs `fill` with letterbox: bilinear at
    pixel centres straight into a 1x3x320x320 float tensor, pad 114, /255."""
    import numpy as np

    fh, fw = img.shape[:2]
    s = min(IMGSZ / fw, IMGSZ / fh)
    nw, nh = np.floor(fw * s + 0.5), np.floor(fh * s + 0.5)
    pad_x, pad_y = np.floor((IMGSZ - nw) / 2), np.floor((IMGSZ - nh) / 2)
    src = img.astype(np.float32)
    ys = (np.arange(IMGSZ) + 0.5 - pad_y) / s - 0.5
    xs = (np.arange(IMGSZ) + 0.5 - pad_x) / s - 0.5
    in_y = (ys > -1) & (ys < fh)
    in_x = (xs > -1) & (xs < fw)
    y0 = np.clip(np.floor(ys), 0, fh - 1).astype(int)
    x0 = np.clip(np.floor(xs), 0, fw - 1).astype(int)
    y1, x1 = np.minimum(y0 + 1, fh - 1), np.minimum(x0 + 1, fw - 1)
    wy = np.clip(ys - np.floor(ys), 0, 1)[:, None, None]
    wx = np.clip(xs - np.floor(xs), 0, 1)[None, :, None]
    top = src[y0][:, x0] + (src[y0][:, x1] - src[y0][:, x0]) * wx
    bot = src[y1][:, x0] + (src[y1][:, x1] - src[y1][:, x0]) * wx
    px = top + (bot - top) * wy
    px[~(in_y[:, None] & in_x[None, :])] = 114.0
    tensor = (px / 255.0).transpose(2, 0, 1)[None].astype(np.float32)
    return tensor, (s, pad_x, pad_y), (fw, fh)


def run_onnx(sess, prepared):
    tensor = prepared[0]
    return sess.run(None, {sess.get_inputs()[0].name: tensor})[0][0]


def decode_gateway(out, placement, frame):
    """gateway/src/detect/postprocess.rs `yolo`: best class per box above the
    threshold, class-aware NMS (IoU 0.7, at most 300), map back, clip."""
    import numpy as np

    s, pad_x, pad_y = placement
    fw, fh = frame
    scores = out[4:]
    best = scores.argmax(0)
    best_score = scores.max(0)
    idx = np.nonzero(best_score > CONF)[0]
    idx = idx[np.argsort(-best_score[idx], kind="stable")]
    cx, cy, w, h = out[0], out[1], out[2], out[3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)

    def iou(a, b):
        iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
        ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return 0 if union <= 0 else inter / union

    kept = []
    for i in idx:
        if len(kept) >= 300:
            break
        if all(best[k] != best[i] or iou(boxes[k], boxes[i]) <= IOU for k in kept):
            kept.append(i)
    dets = []
    for i in kept:
        x0, y0, x1, y1 = boxes[i]
        x0, x1 = (x0 - pad_x) / s, (x1 - pad_x) / s
        y0, y1 = (y0 - pad_y) / s, (y1 - pad_y) / s
        x0, x1 = np.clip([x0, x1], 0, fw)
        y0, y1 = np.clip([y0, y1], 0, fh)
        dets.append({"label": LABELS[best[i]], "score": float(best_score[i]),
                     "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    return dets


def box_iou_xywh(a, b):
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(min(ax1, bx1) - max(a[0], b[0]), 0)
    ih = max(min(ay1, by1) - max(a[1], b[1]), 0)
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0.0 if union <= 0 else inter / union


def compare(reference, got, score_tol=0.01, min_iou=0.9):
    """The integration test's rule: one-to-one matches with the same label,
    |score diff| <= score_tol and IoU >= min_iou, best IoU first; a detection
    within score_tol of the threshold may stay unmatched. Returns the
    unmatched detections (side, detection) and the worst matched score
    difference and IoU."""
    pairs = []
    for i, r in enumerate(reference):
        for j, g in enumerate(got):
            o = box_iou_xywh(r["bbox"], g["bbox"])
            ds = abs(r["score"] - g["score"])
            if r["label"] == g["label"] and ds <= score_tol and o >= min_iou:
                pairs.append((o, ds, i, j))
    pairs.sort(key=lambda p: -p[0])
    used_r, used_g = set(), set()
    worst_score, worst_iou = 0.0, 1.0
    for o, ds, i, j in pairs:
        if i not in used_r and j not in used_g:
            used_r.add(i)
            used_g.add(j)
            worst_score, worst_iou = max(worst_score, ds), min(worst_iou, o)
    unmatched = [("reference", d) for i, d in enumerate(reference) if i not in used_r] + [
        ("numpy", d) for j, d in enumerate(got) if j not in used_g]
    unmatched = [(side, d) for side, d in unmatched if abs(d["score"] - CONF) > score_tol]
    return unmatched, worst_score, worst_iou


def verify(args):
    """The integration test's check, with the numpy port in place of the gateway."""
    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    ref = json.loads((FIXTURE / "reference.json").read_text())
    sess = ort.InferenceSession(str(FIXTURE / "model.onnx"), providers=["CPUExecutionProvider"])
    print(f"verify: onnxruntime {ort.__version__}, output {sess.get_outputs()[0].shape}")
    failures = 0
    worst_score, worst_iou = 0.0, 1.0
    for entry in ref["images"]:
        img = np.asarray(Image.open(FIXTURE / entry["image"]).convert("RGB"))
        prepared = letterbox_gateway(img)
        got = decode_gateway(run_onnx(sess, prepared), prepared[1], prepared[2])
        unmatched, img_score, img_iou = compare(entry["detections"], got)
        for side, d in unmatched:
            failures += 1
            print(f"verify: {entry['image']}: {side} detection {d} has no match in the other", file=sys.stderr)
        worst_score, worst_iou = max(worst_score, img_score), min(worst_iou, img_iou)
        print(f"verify: {entry['image']}: reference {len(entry['detections'])}, numpy {len(got)}, "
              f"worst |score diff| {img_score:.1e}, worst IoU {img_iou:.4f}")
    print(f"verify: worst |score diff| {worst_score:.2e}, worst IoU {worst_iou:.4f}, failures {failures}")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=["dataset", "train", "export", "images", "reference", "verify", "all"])
    ap.add_argument("--train", default=str(REPO / ".lookout" / "data" / "train"),
                    help="the renderer's labelled stills (index.jsonl)")
    ap.add_argument("--work", default=str(REPO / ".lookout" / "yolo-fixture"), help="scratch folder")
    ap.add_argument("--renderer", default=str(REPO / "target" / "release" / "lookout-loadtest"))
    ap.add_argument("--count", type=int, default=1200, help="stills used for training and validation")
    ap.add_argument("--epochs", type=int, default=35)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    stages = {"dataset": dataset, "train": train, "export": export, "images": images,
              "reference": reference, "verify": verify}
    order = list(stages) if args.stage == "all" else [args.stage]
    for s in order:
        rc = stages[s](args)
        if rc:
            sys.exit(rc)


if __name__ == "__main__":
    main()
