"""Box regions: does a red star land in a box drawn on the canvas, with and without words?

Usage: python bench/box_regions.py [--model DIR] [--seeds 8] [--out DIR]
One box per corner cell of the 3x3 grid, a region prompt in it, and four ways of asking:
the box's prompt with or without its cell's words ("a red star" / "... at the top right"),
under a global prompt that names only the background or that names the star too, the last
also with layout guidance 1.0. An image passes when the strict evaluator finds exactly one
object, a red star, whose centre lies in the box. Writes box_regions.json and a bar chart.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from charts import grouped_bars, write_results  # bench/ is on sys.path when a bench script runs
from fineimagen.control.regions import Region, box_mask, named_box
from fineimagen.domains.shapes.parser import parse_image
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs

CELLS = ("top left", "top right", "bottom left", "bottom right")
# arm -> (global prompt, region prompt with {cell} for the cell's words, layout guidance)
ARMS = {
    "box only": ("a white background", "a red star", 0.0),
    "box + cell words": ("a white background", "a red star at the {cell}", 0.0),
    "star in global prompt": ("a red star", "a red star", 0.0),
    "star in global + layout guidance": ("a red star", "a red star", 1.0),
}


def star_in_box(image, box: tuple[float, float, float, float]) -> bool:
    """Exactly one object, a red star, centred inside `box` (fractions of the side)."""
    objects = parse_image(image).objects
    if len(objects) != 1:
        return False
    star = objects[0]
    x0, y0, x1, y1 = box
    return (star.shape, star.color) == ("star", "red") and x0 <= star.x <= x1 and \
        y0 <= star.y <= y1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a built-in name or a folder (default: shapes)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per cell and arm")
    parser.add_argument("--out", default="bench/results/box_regions")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    side = pipe.stages[0].cfg.resolution
    results, start = {}, time.perf_counter()
    for arm, (global_prompt, region_prompt, layout) in ARMS.items():
        passed = {}
        for cell in CELLS:
            box = named_box(cell)
            region = Region(region_prompt.format(cell=cell), box_mask(box, side))
            images = pipe(global_prompt, n=args.seeds, regions=[region],
                          layout_guidance=layout, progress=False)
            passed[cell] = sum(star_in_box(np.asarray(im), box) for im in images) / args.seeds
        results[arm] = {"passed": sum(passed.values()) / len(CELLS), "cells": passed}
        print(f"{arm}: {results[arm]['passed']:.3f}")
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shapes",
            "seeds": args.seeds, "cells": list(CELLS),
            "seconds": round(time.perf_counter() - start, 1), "machine": describe()}
    out = write_results({"meta": meta, "results": results}, args.out, "box_regions")
    grouped_bars({arm: [r["cells"][c] for c in CELLS] for arm, r in results.items()},
                 list(CELLS), out / "box_regions.png")


if __name__ == "__main__":
    main()
