"""Rendering throughput of the shapes data on one core, against a PIL supersampling baseline.

Usage: python bench/render_throughput.py [--n 2000] [--out bench/results]
Writes render_throughput.json and render_throughput.png. Scenes are drawn beforehand, so
only rendering is timed. "steady" is the rate on fresh scenes after the stamp cache was
warmed on other scenes (a long training stream); "cold" starts from an empty cache.
The baseline draws the same objects with PIL.ImageDraw at 4x and
downsamples (a common way to anti-alias); it has no textures, so it is a lower bound on
its cost. Targets (issue 2): >= 2,000 scenes/s at 32 px and >= 300 at 128 px.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from fineimagen.data import render as render_module  # noqa: E402
from fineimagen.domains.shapes import vocab  # noqa: E402
from fineimagen.domains.shapes.render import POLYGONS, render  # noqa: E402
from fineimagen.domains.shapes.scene import sample_scene  # noqa: E402
from machine import describe  # noqa: E402  (bench/ is on sys.path)

TARGETS = {32: 2000, 128: 300}


def pil_supersampled(objects, background, size, factor=4):
    big = size * factor
    image = Image.new("RGB", (big, big), vocab.BACKGROUND_RGB[background])
    draw = ImageDraw.Draw(image)
    for o in objects:
        s, cx, cy = o.size * big, o.x * big, o.y * big
        color = vocab.COLOR_RGB[o.color]
        box = [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]
        if o.shape == "circle":
            draw.ellipse(box, fill=color)
        elif o.shape == "square":
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([(cx + u * s, cy + v * s) for u, v in POLYGONS[o.shape]], fill=color)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX))


def rate(fn, scenes, size):
    start = time.perf_counter()
    for scene, placed in scenes:
        fn(placed, scene.background, size)
    return len(scenes) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    warmup = [sample_scene(rng) for _ in range(args.n)]
    scenes = [sample_scene(rng) for _ in range(args.n)]
    rows = {}
    for size in (32, 128):
        render_module._cached_stamp.cache_clear()
        cold = rate(render, warmup, size)  # fills the stamp cache
        warm = rate(render, scenes, size)  # fresh scenes
        pil = rate(pil_supersampled, scenes, size)
        rows[size] = {"fineimagen_cold": cold, "fineimagen_steady": warm,
                      "pil_4x_supersampled": pil, "target": TARGETS[size],
                      "vs_target": warm / TARGETS[size], "vs_pil": warm / pil}
        print(f"{size:4d} px: fineimagen {warm:8.0f} scenes/s steady ({cold:.0f} cold), "
              f"PIL 4x {pil:8.0f}; {warm / TARGETS[size]:.2f}x target, {warm / pil:.2f}x PIL")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": describe(), "scenes": args.n,
            "threads": 1}
    (out / "render_throughput.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                           indent=2) + "\n")
    plot(rows, out / "render_throughput.png")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.2))
    for ax, (size, row) in zip(axes, rows.items(), strict=True):
        names = ["fineimagen_steady", "fineimagen_cold", "pil_4x_supersampled"]
        ax.bar(range(3), [row[k] for k in names], color=["tab:blue", "tab:cyan", "tab:gray"])
        ax.axhline(row["target"], color="red", linestyle="--", label="target")
        ax.set_xticks(range(3), ["ours (steady)", "ours (cold)", "PIL 4x"])
        ax.set_title(f"{size} px")
        ax.set_ylabel("scenes / s (1 core)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
