#!/usr/bin/env python3
"""Trains lookout's smoke/flood classifier on the scene renderer's stills and
exports it to ONNX. Runs by hand, not in CI:

    python3 -m venv .lookout/train && .lookout/train/bin/pip install torch onnx numpy pillow
    target/release/lookout-loadtest render --dataset .lookout/data/train --seeds 0..6000 --size 224
    target/release/lookout-loadtest render --dataset .lookout/data/heldout --seeds 1000000..1001500 --size 224
    .lookout/train/bin/python models/train_smoke_flood.py \
        --train .lookout/data/train --heldout .lookout/data/heldout --out models/smoke_flood.onnx

Input: 1x3x224x224 float32, RGB, pixel / 255 (no mean/std), the frame
stretched to 224x224. Output: logits for [none, smoke, flood] (softmax in the
gateway). Held-out seeds never appear in training.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

LABELS = ["none", "smoke", "flood"]


def load(folder):
    xs, ys = [], []
    with open(os.path.join(folder, "index.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            img = Image.open(os.path.join(folder, rec["image"])).convert("RGB")
            xs.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
            ys.append(LABELS.index(rec["class"]))
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


def block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmokeFlood(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            block(3, 16), block(16, 32), block(32, 64), block(64, 96), block(96, 128)
        )
        self.head = nn.Linear(128, len(LABELS))

    def forward(self, x):
        x = self.features(x)
        x = torch.mean(x, dim=(2, 3))
        return self.head(x)


def evaluate(model, xs, ys):
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(xs), 256):
            preds.append(model(xs[i : i + 256].float() / 255.0).argmax(1))
    p = torch.cat(preds)
    out = {}
    for c, name in enumerate(LABELS[1:], start=1):
        tp = int(((p == c) & (ys == c)).sum())
        fp = int(((p == c) & (ys != c)).sum())
        fn = int(((p != c) & (ys == c)).sum())
        out[name] = {
            "precision": tp / max(tp + fp, 1),
            "recall": tp / max(tp + fn, 1),
        }
    neg = ys == 0
    out["false_positive_rate_on_negatives"] = float(((p != 0) & neg).sum()) / max(int(neg.sum()), 1)
    out["accuracy"] = float((p == ys).float().mean())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    xs, ys = load(args.train)
    hx, hy = load(args.heldout)
    model = SmokeFlood()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = args.epochs * ((len(xs) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xs))
        t0, total = time.time(), 0.0
        for i in range(0, len(xs), 64):
            idx = perm[i : i + 64]
            x = xs[idx].float() / 255.0
            if torch.rand(1).item() < 0.5:
                x = torch.flip(x, dims=[3])
            # Brightness/contrast jitter so dusk and haze do not decide the class.
            x = (x * (0.8 + 0.4 * torch.rand(len(x), 1, 1, 1)) + 0.1 * (torch.rand(len(x), 1, 1, 1) - 0.5)).clamp(0, 1)
            loss = loss_fn(model(x), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(xs):.4f} ({time.time() - t0:.0f} s)", flush=True)
    metrics = evaluate(model, hx, hy)
    print(json.dumps(metrics, indent=2))
    model.eval()
    torch.onnx.export(
        model,
        torch.zeros(1, 3, 224, 224),
        args.out,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    with open(os.path.splitext(args.out)[0] + ".metrics.json", "w") as f:
        json.dump({"heldout": metrics, "train_images": len(xs), "heldout_images": len(hx)}, f, indent=2)


if __name__ == "__main__":
    main()
