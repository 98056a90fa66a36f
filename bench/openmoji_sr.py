"""Where the OpenMoji cascade loses identity: the SR stage against bicubic, on true and on
generated 64 px inputs, judged at 256 px by the strict OpenMoji evaluator.

Usage: python bench/openmoji_sr.py [--model openmoji|DIR] [--n-prompts 60]
           [--compare-sr NAME=DIR ...] [--out bench/results/openmoji_sr]
The first --n-prompts of the eval set (seed 123), one image each: truth renders at 64 px
(enlarged by the SR stage and by bicubic; PSNR against the 256 px truth of the same
layout), and the base stage's own images (seed 0) enlarged both ways. Each --compare-sr
model's SR stage enlarges the same inputs, side by side (rows `sr:NAME`).
Writes openmoji_sr.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from charts import write_results  # bench/ is on sys.path when a bench script runs
from fineimagen.domains.openmoji.vocab import vocabulary
from fineimagen.eval import emoji_bench
from fineimagen.pipeline import TextToImagePipeline
from machine import describe

SEED = 123


def upscaled(pipe, images, prompts, batch=16) -> list[np.ndarray]:
    out = []
    for i in range(0, len(images), batch):
        out += pipe.upscale(images[i:i + batch], prompts[i:i + batch], seed=i, progress=False)
    return [np.asarray(im) for im in out]


def enlarged(pipe, images, prompts, others) -> dict[str, list[np.ndarray]]:
    ways = {"input_64": [np.asarray(im) for im in images],
            "bicubic": [np.asarray(im.resize((256, 256), Image.BICUBIC)) for im in images],
            "sr": upscaled(pipe, images, prompts)}
    for name, other in others.items():
        ways[f"sr:{name}"] = upscaled(other, images, prompts)
    return ways


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="openmoji")
    parser.add_argument("--n-prompts", type=int, default=60)
    parser.add_argument("--compare-sr", nargs="*", default=[], metavar="NAME=DIR",
                        help="other models whose SR stage enlarges the same inputs")
    parser.add_argument("--out", default="bench/results/openmoji_sr")
    args = parser.parse_args()
    if not all("=" in pair for pair in args.compare_sr):
        parser.error("--compare-sr takes NAME=DIR pairs")
    others = {name: TextToImagePipeline.from_pretrained(folder)
              for name, folder in (pair.split("=", 1) for pair in args.compare_sr)}
    names = vocabulary("openmoji-100")
    items = emoji_bench.make_emoji_evalset(args.n_prompts, names, seed=SEED)
    prompts = [it.prompt for it in items]
    pipe = TextToImagePipeline.from_pretrained(args.model)
    truth_64 = [Image.fromarray(emoji_bench.truth_image(it, 64, SEED)[0]) for it in items]
    truth_256 = [emoji_bench.truth_image(it, 256, SEED)[0] for it in items]
    generated = pipe(prompts, n=1, seed=0, stages="base", progress=False)
    results = {}
    for source, inputs in (("truth", truth_64), ("generated", generated)):
        for way, images in enlarged(pipe, inputs, prompts, others).items():
            scores = emoji_bench.score_images(items, [[im] for im in images], names)
            row = {"identity": scores["identity"], "overall": scores["overall"]}
            if source == "truth" and way != "input_64":
                row["psnr"] = float(np.mean([peak_signal_noise_ratio(t, im, data_range=255)
                                             for t, im in zip(truth_256, images, strict=True)]))
            results[f"{source}/{way}"] = row
            psnr = f"  PSNR {row['psnr']:.1f}" if "psnr" in row else ""
            print(f"{source:<10} {way:<14} identity {row['identity']:.3f}  "
                  f"overall {row['overall']:.3f}{psnr}")
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model,
            "compare_sr": args.compare_sr, "prompts": len(items),
            "seed": SEED, "machine": describe()}
    write_results({"meta": meta, "results": results}, args.out, "openmoji_sr")


if __name__ == "__main__":
    main()
