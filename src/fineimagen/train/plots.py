"""A loss-curve PNG drawn with Pillow alone (no plotting library in the core)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT, PAD = 640, 360, 48


def plot_loss(metrics_csv: Path, out_png: Path) -> None:
    """Training loss against step (log scale), raw in grey and smoothed in blue."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 2:
        return
    steps = np.array([float(r["step"]) for r in rows])
    loss = np.log10(np.maximum([float(r["loss"]) for r in rows], 1e-8))
    window = max(1, len(loss) // 20)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    lo, hi = loss.min(), loss.max() + 1e-9

    def xy(s, v):
        x = PAD + (s - steps[0]) / max(steps[-1] - steps[0], 1) * (WIDTH - 2 * PAD)
        return x, HEIGHT - PAD - (v - lo) / (hi - lo) * (HEIGHT - 2 * PAD)

    draw.rectangle([PAD, PAD, WIDTH - PAD, HEIGHT - PAD], outline="black")
    draw.line([xy(s, v) for s, v in zip(steps, loss, strict=True)], fill=(190, 190, 190))
    draw.line([xy(s, v) for s, v in zip(steps[window - 1:], smooth, strict=True)],
              fill=(30, 90, 200), width=2)
    draw.text((PAD, 12), "training loss (log10) vs step", fill="black")
    draw.text((PAD, HEIGHT - PAD + 8), f"{steps[0]:.0f}", fill="black")
    draw.text((WIDTH - PAD - 40, HEIGHT - PAD + 8), f"{steps[-1]:.0f}", fill="black")
    draw.text((4, PAD), f"{10 ** hi:.3g}", fill="black")
    draw.text((4, HEIGHT - PAD - 12), f"{10 ** lo:.3g}", fill="black")
    image.save(out_png)
