"""Long prompts: the same scenes asked for plainly and after ~300 words of filler text.

Usage: python bench/long_prompts.py [--model DIR] [--stages base] [--n-prompts 72]
                                    [--images-per-prompt 2] [--filler-words 300]
                                    [--revise-prompt] [--out DIR]
The prompts are the held-out eval set's first N (grammar-style); each is drawn as it is and
with a neutral filler (no shape, colour or place words) before it, from the same seeds, and
both folders are judged by the strict evaluator (--revise-prompt: each drawn as the planner
read it). Writes long_prompts.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fineimagen.eval import compbench
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs
from model_quality import generate  # bench/ is on sys.path when a bench script runs

FILLER = ("The afternoon was quiet and the light was soft. Somebody had left the window "
          "open, so the curtains moved a little in the breeze. Nothing else happened for a "
          "long while. ")


def filler(words: int) -> str:
    text = ""
    while len(text.split()) < words:
        text += FILLER
    return " ".join(text.split()[:words]) + " "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a built-in name or a folder (default: shapes)")
    parser.add_argument("--stages", help="last stage to run (default: all)")
    parser.add_argument("--n-prompts", type=int, default=72)
    parser.add_argument("--images-per-prompt", type=int, default=2)
    parser.add_argument("--filler-words", type=int, default=300)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--revise-prompt", action="store_true",
                        help="draw each prompt as the planner read it, in the grammar's words")
    parser.add_argument("--out", default="bench/results/long_prompts")
    args = parser.parse_args()
    items = compbench.make_evalset(args.n_prompts, "heldout", seed=123)
    pipe = TextToImagePipeline.from_pretrained(args.model)
    out = Path(args.out)
    results = {}
    for name, prefix in (("short", ""), ("after filler", filler(args.filler_words))):
        asked = [compbench.EvalItem(prefix + it.prompt, it.scene, it.category, it.unseen)
                 for it in items]
        folder = out / name.replace(" ", "_")
        seconds = generate(pipe, asked, args.images_per_prompt, args.guidance, folder,
                           stages=args.stages, revise_prompt=args.revise_prompt)
        results[name] = {**compbench.score_folder(asked, folder), "seconds": seconds}
        print(f"{name}: overall {results[name]['overall']:.3f} ({seconds:.0f} s)")
    ratio = results["after filler"]["overall"] / results["short"]["overall"]
    print(f"after {args.filler_words} words of filler: {ratio:.2f} of the short prompts' score")
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shapes",
            "stages": args.stages, "prompts": len(items),
            "images_per_prompt": args.images_per_prompt, "filler_words": args.filler_words,
            "revise_prompt": args.revise_prompt,
            "machine": describe()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_prompts.json").write_text(json.dumps(
        {"meta": meta, "ratio": ratio, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
