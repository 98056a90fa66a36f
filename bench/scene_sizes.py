"""Size fidelity of scene control: how large each shape is drawn at each stated size.

Usage: python bench/scene_sizes.py [--model DIR] [--scenes 20] [--stages all] [--out DIR]
Scenes of the *training* split (never the held-out eval set): one group of one shape with
every attribute stated, count 1-3, drawn with scene control. Each detected object is matched
to the nearest placed one; per (shape, size) the mean ratio of the parsed extent to the
placed extent, and how often the parsed size class is the stated one.
Writes scene_sizes.json and scene_sizes.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fineimagen.domains import compile_scene
from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.captions import caption
from fineimagen.domains.shapes.parser import parse_image
from fineimagen.domains.shapes.scene import Group, Scene
from fineimagen.errors import InputError
from fineimagen.eval.compbench import is_unseen
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs


def training_scene(shape: str, size: str, rng: np.random.Generator) -> Scene | None:
    """One fully stated group of the training split, or None where the combination is held
    out."""
    group = Group(shape, str(rng.choice(vocab.COLORS)), size, str(rng.choice(vocab.POSITIONS)),
                  str(rng.choice(vocab.TEXTURES)), int(rng.integers(1, 4)))
    scene = Scene((group,), str(rng.choice(vocab.BACKGROUNDS)))
    return None if is_unseen(scene) else scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--scenes", type=int, default=20, help="per (shape, size)")
    parser.add_argument("--stages", default="all", help="'base' or 'all'")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", default="bench/results/scene_sizes")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    stages = None if args.stages == "all" else 0
    side = pipe.stages[0].cfg.resolution
    rng = np.random.default_rng(args.seed)
    rows = {}
    start = time.perf_counter()
    for shape in vocab.SHAPES:
        for size in vocab.SIZES:
            ratios, right = [], []
            k = 0
            while len(right) < args.scenes:
                scene = training_scene(shape, size, rng)
                if scene is None:
                    continue
                seed = args.seed + 1000 * len(rows) + k
                spec = scene.to_spec()
                prompt = caption(scene, np.random.default_rng(seed))
                try:
                    placed = compile_scene(spec, side, seed, prompt).placed
                except InputError:  # no room for the count at that place
                    continue
                k += 1
                [image] = pipe(prompt, scene=spec, seed=seed, progress=False, stages=stages)
                found = parse_image(np.asarray(image)).objects
                for obj in found:
                    near = min(placed, key=lambda p: (p.x - obj.x) ** 2 + (p.y - obj.y) ** 2)
                    if abs(near.x - obj.x) + abs(near.y - obj.y) < near.size:
                        ratios.append(obj.extent / near.size)
                right.append(bool(found) and all(o.size == size for o in found))
            rows[f"{shape}/{size}"] = {"extent_ratio": float(np.mean(ratios)),
                                       "extent_ratio_sd": float(np.std(ratios)),
                                       "objects": len(ratios),
                                       "size_read_right": float(np.mean(right))}
            print(shape, size, rows[f"{shape}/{size}"])
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shipped",
            "scenes_per_cell": args.scenes, "stages": args.stages, "seed": args.seed,
            "seconds": time.perf_counter() - start, "machine": describe()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scene_sizes.json").write_text(json.dumps({"meta": meta, "cells": rows},
                                                     indent=2) + "\n")
    plot(rows, out / "scene_sizes.png")


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.bar(range(len(names)), [rows[k]["extent_ratio"] for k in names],
           yerr=[rows[k]["extent_ratio_sd"] for k in names], color="tab:blue")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0.8, 1.2)
    ax.set_ylabel("parsed / placed extent")
    ax.set_title("scene control: drawn size against stated size (training-split scenes)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
