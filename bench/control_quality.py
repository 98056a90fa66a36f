"""What control buys on the held-out eval set: plain prompts against each control method.

Usage: python bench/control_quality.py [--model DIR] [--n-prompts 140] [--images-per-prompt 4]
                                       [--stages base|all] [--out DIR] [--rescore]
Methods: `plain` (the caption), `compose` (one AND clause per object group), `excite` (the
caption with attend-and-excite on its shape nouns), `scene` (the prompt's scene spec compiled
to one region per object on a known background), `planned` (the scene read off the prompt's
words by domains.shapes.plan, then as `scene`), `scene_layout` (scene plus layout guidance at
--layout-step). Scores per
category with the scene evaluator, and seconds per image (the cost of each method).
`--counted-only` draws only the prompts whose scene has a count (to tune count settings).
`--rescore` judges the images already in --out again (after a change to the parser), keeping
the seconds measured when they were drawn.
Writes control_quality.json and control_quality.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fineimagen.control.attention_guidance import LAYOUT_STEP
from fineimagen.domains.shapes.captions import object_phrase
from fineimagen.domains.shapes.scene import Group
from fineimagen.eval import compbench
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs
from model_quality import plot  # bench/ is on sys.path when a bench script runs


def clauses(item) -> str:
    """'a red circle AND a blue square': one clause per group, its stated attributes."""
    parts = []
    for g in item.scene.groups:
        one = Group(g.shape, g.color, g.size, g.position, g.texture, 1)
        phrase = object_phrase(one)
        if g.count and g.count > 1:
            phrase = f"{g.count} " + phrase[2:] + "s"
        parts.append(phrase)
    return " AND ".join(parts)


def run(pipe, items, method, n, stages, folder: Path, layout_step: float) -> float:
    """Draw `items` ([(eval-set index, item)]) with `method`; seconds per image."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for index, item in items:
        kwargs = {}
        prompt = item.prompt
        if method in ("scene", "scene_layout"):
            kwargs["scene"] = item.scene.to_spec()
        elif method == "planned":
            kwargs["plan_layout"] = True
        if method == "scene_layout":
            kwargs["layout_guidance"] = layout_step
        elif method == "excite":
            kwargs["excite"] = True
        elif method == "compose":
            prompt = clauses(item)
        images = pipe(prompt, n=n, seed=index * n, progress=False, stages=stages, **kwargs)
        for k, image in enumerate(images):
            image.save(folder / f"{index:05d}_{k}.png")
    return (time.perf_counter() - start) / (len(items) * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--n-prompts", type=int, default=140)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--stages", default="base", help="'base' or 'all'")
    parser.add_argument("--methods", default="plain,compose,excite,scene,scene_layout")
    parser.add_argument("--layout-step", type=float, default=LAYOUT_STEP,
                        help="scene_layout: the layout-guidance step size")
    parser.add_argument("--sketch-strength", type=float, default=None,
                        help="scene control: share of the schedule run from the sketch "
                             "(default: the pipeline's)")
    parser.add_argument("--count-sketch-strength", type=float, default=None,
                        help="the same for scenes with a count (default: the pipeline's)")
    parser.add_argument("--count-layout", type=float, default=None,
                        help="scene control: layout-guidance step for scenes with a count "
                             "(default: the pipeline's; 0 turns it off)")
    parser.add_argument("--eval-seed", type=int, default=123,
                        help="held-out eval set to draw (tune on another than you report)")
    parser.add_argument("--counted-only", action="store_true",
                        help="only the prompts whose scene has a group of several objects")
    parser.add_argument("--out", default="bench/results/control_quality")
    parser.add_argument("--rescore", action="store_true",
                        help="judge the images in --out again; draw nothing")
    args = parser.parse_args()
    out = Path(args.out)
    if args.rescore:
        return rescore(out)
    pipe = TextToImagePipeline.from_pretrained(args.model)
    if args.sketch_strength is not None:
        pipe.scene_sketch_strength = args.sketch_strength
    if args.count_sketch_strength is not None:
        pipe.scene_count_sketch_strength = args.count_sketch_strength
    if args.count_layout is not None:
        pipe.scene_count_layout = args.count_layout
    stages = None if args.stages == "all" else 0
    items = chosen(args.n_prompts, args.eval_seed, args.counted_only)
    results = {}
    for method in args.methods.split(","):
        seconds = run(pipe, items, method, args.images_per_prompt, stages, out / method,
                      args.layout_step)
        scores = score(items, out / method)
        scores["seconds_per_image"] = seconds
        results[method] = scores
        print(f"{method}: overall {scores['overall']:.3f}, {seconds:.2f} s/image")
        print(compbench.format_table(scores))
    plain = results.get("plain")
    if plain:
        for r in results.values():
            r["slowdown_vs_plain"] = r["seconds_per_image"] / plain["seconds_per_image"]
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shipped",
            "prompts": len(items), "images_per_prompt": args.images_per_prompt,
            "stages": args.stages, "sketch_strength": pipe.scene_sketch_strength,
            "count_sketch_strength": pipe.scene_count_sketch_strength,
            "eval_seed": args.eval_seed, "counted_only": args.counted_only,
            "layout_step": args.layout_step, "count_layout": pipe.scene_count_layout,
            "machine": describe()}
    write(out, meta, results)


def rescore(out: Path) -> None:
    """Judge the stored images of an earlier run again; its timings stay."""
    saved = json.loads((out / "control_quality.json").read_text())
    meta, results = saved["meta"], saved["results"]
    items = chosen(meta["prompts"], meta.get("eval_seed", 123), meta.get("counted_only", False))
    for method, old in results.items():
        scores = score(items, out / method)
        timing = {k: old[k] for k in ("seconds_per_image", "slowdown_vs_plain") if k in old}
        results[method] = {**scores, **timing}
        print(f"{method}: overall {old['overall']:.3f} -> {scores['overall']:.3f}")
        print(compbench.format_table(scores))
    meta["rescored"] = time.strftime("%Y-%m-%d")
    write(out, meta, results)


def chosen(n_prompts: int, eval_seed: int, counted_only: bool) -> list:
    """[(index, item)] of the held-out eval set; with `counted_only`, the scenes with a
    count above one (each keeps its index, so its seeds and file names)."""
    items = enumerate(compbench.make_evalset(n_prompts, "heldout", seed=eval_seed))
    return [(i, it) for i, it in items
            if not counted_only or it.scene.has_count()]


def score(items: list, folder: Path) -> dict:
    """The score table of the images of `items` ([(index, item)]) in `folder`."""
    return compbench.score_folder([it for _, it in items], folder, [i for i, _ in items])


def write(out: Path, meta: dict, results: dict) -> None:
    (out / "control_quality.json").write_text(json.dumps({"meta": meta, "results": results},
                                                         indent=2) + "\n")
    plot(results, out / "control_quality.png",
         label=lambda name, r: f"{name} ({r['seconds_per_image']:.2f} s/img)")


if __name__ == "__main__":
    main()
