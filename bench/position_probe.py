"""Position probe: does a base put one object where its prompt says, cell by cell?

Usage: python bench/position_probe.py --models A,B,... [--seeds 8] [--out DIR]
For each of the 9 cells, "a red circle <the cell's first grammar phrase>" is drawn at the base
resolution with `--seeds` seeds; the strict evaluator's object centroids give the share of
images with exactly one object in the asked cell, and the mean distance (fractions of the
side) from each object to the cell's centre. Chance for the share is 1/9 of the images with
one object. Writes position_probe.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from charts import write_results  # bench/ is on sys.path when a bench script runs
from fineimagen.domains.shapes import captions, vocab
from fineimagen.domains.shapes.parser import parse_image
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs


def probe(pipe: TextToImagePipeline, seeds: int) -> dict:
    """{"in_cell": share, "distance": mean, "cells": {cell: share}} over the 9 cells."""
    cells, distances = {}, []
    for cell in vocab.POSITIONS:
        row, col = vocab.cell_of(cell)
        centre = np.array([(col + 0.5) / 3, (row + 0.5) / 3])
        images = pipe(f"a red circle {captions.POSITION_PHRASES[cell][0]}", n=seeds, seed=0,
                      stages="base", progress=False)
        hits = 0
        for image in images:
            objects = parse_image(np.asarray(image)).objects
            distances += [float(np.linalg.norm(np.array([o.x, o.y]) - centre))
                          for o in objects]
            hits += len(objects) == 1 and vocab.position_at(objects[0].x, objects[0].y) == cell
        cells[cell] = hits / seeds
    return {"in_cell": float(np.mean(list(cells.values()))),
            "distance": float(np.mean(distances)) if distances else None, "cells": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated built-in names or "
                        "folders")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", default="bench/results/position_probe")
    args = parser.parse_args()
    results = {}
    for model in args.models.split(","):
        results[model] = probe(TextToImagePipeline.from_pretrained(model), args.seeds)
        print(f"{model}: in cell {results[model]['in_cell']:.3f}, "
              f"distance {results[model]['distance']}")
    meta = {"date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "machine": describe()}
    write_results({"meta": meta, "results": results}, args.out, "position_probe")


if __name__ == "__main__":
    main()
