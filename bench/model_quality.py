"""Compositional quality of a model on a held-out eval set, for one or more guidance scales.

Usage: python bench/model_quality.py [--model DIR] [--prompts P.jsonl | --n-prompts 400]
                                     [--style grammar|free] [--plan-layout] [--revise-prompt]
                                     [--categories color_attribution] [--images-per-prompt 4]
                                     [--guidance 3,5,7] [--stages base] [--out DIR]
Generates `{index:05d}_{k}.png` for each guidance scale with the shipped sampler settings,
scores them with the scene evaluator, and writes model_quality.json and model_quality.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from charts import grouped_bars  # bench/ is on sys.path when a bench script runs
from fineimagen.eval import compbench
from fineimagen.pipeline import TextToImagePipeline
from machine import describe


def generate(pipe, items, n, guidance, folder: Path, batch: int = 64, seed: int = 0,
             stages: str | None = None, plan_layout: bool = False, revise_prompt: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    per = max(1, batch // n)
    start_time = time.perf_counter()
    for start in range(0, len(items), per):
        chunk = [it.prompt for it in items[start:start + per]]
        images = pipe(chunk, n=n, seed=seed + start * n, guidance=guidance, progress=False,
                      stages=stages, plan_layout=plan_layout, revise_prompt=revise_prompt)
        for j, image in enumerate(images):
            image.save(folder / f"{start + j // n:05d}_{j % n}.png")
    return time.perf_counter() - start_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--prompts", help="eval JSONL (default: a new held-out set)")
    parser.add_argument("--n-prompts", type=int, default=400)
    parser.add_argument("--style", choices=("grammar", "free"), default="grammar",
                        help="the eval set's wording (free: a phrase bank never trained on)")
    parser.add_argument("--categories", help="comma-separated: keep only these categories' "
                        "prompts (seeds follow the kept list)")
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--plan-layout", action="store_true",
                        help="read each prompt's scene and draw it with scene control")
    parser.add_argument("--revise-prompt", action="store_true",
                        help="draw each prompt as the planner read it, in the grammar's words")
    parser.add_argument("--guidance", default="5")
    parser.add_argument("--stages", help="last stage to run, by name or index (e.g. base: "
                        "the base stage's own images; default: all)")
    parser.add_argument("--out", default="bench/results/model_quality")
    args = parser.parse_args()
    items = compbench.read_prompts(args.prompts) if args.prompts else \
        compbench.make_evalset(args.n_prompts, "heldout", seed=123, style=args.style)
    if args.categories:
        wanted = args.categories.split(",")
        unknown = sorted(set(wanted) - set(compbench.CATEGORIES))
        if unknown:
            parser.error(f"unknown categories {unknown} (choose from "
                         f"{', '.join(compbench.CATEGORIES)})")
        items = [it for it in items if it.category in wanted]
    pipe = TextToImagePipeline.from_pretrained(args.model)
    out = Path(args.out)
    results = {}
    for g in (float(v) for v in args.guidance.split(",")):
        folder = out / f"guidance_{g:g}"
        seconds = generate(pipe, items, args.images_per_prompt, g, folder, stages=args.stages,
                           plan_layout=args.plan_layout, revise_prompt=args.revise_prompt)
        scores = compbench.score_folder(items, folder, faults=True)
        scores["seconds"] = seconds
        results[f"{g:g}"] = scores
        print(f"guidance {g:g}: overall {scores['overall']:.3f} "
              f"({len(items) * args.images_per_prompt / seconds:.1f} img/s)")
        print(compbench.format_table(scores))
        if "attribution_faults" in scores:
            print("colour attribution:", ", ".join(
                f"{k} {v}" for k, v in scores["attribution_faults"].items()))
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shipped default",
            "prompts": len(items), "categories": args.categories, "stages": args.stages,
            "style": args.style, "plan_layout": args.plan_layout,
            "revise_prompt": args.revise_prompt,
            "images_per_prompt": args.images_per_prompt,
            "model_defaults": vars(pipe.check_options()[0]), "machine": describe()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_quality.json").write_text(json.dumps({"meta": meta, "results": results},
                                                       indent=2) + "\n")
    plot(results, out / "model_quality.png")


def plot(results, path, label=lambda key, scores: f"guidance {key}"):
    """Grouped bars: share correct per category and overall, one bar group per result."""
    cats = [c for c in compbench.CATEGORIES if any(c in r["categories"]
                                                   for r in results.values())]
    grouped_bars({label(key, r): [r["categories"].get(c, 0) for c in cats] + [r["overall"]]
                  for key, r in results.items()}, [*cats, "overall"], path)


if __name__ == "__main__":
    main()
