"""How well the aligner tells texts apart, and what it is worth to the generator.

Usage: python bench/aligner_quality.py [--model DIR] [--pairs 1000] [--prompts 200]
                                       [--images-per-prompt 4] [--rerank 4]
                                       [--stages base|all] [--retrieval-only] [--out DIR]
1. Retrieval on held-out shapes pairs (captions that state every attribute, so each caption
   has one true image): text->image and image->text top-1 among all pairs, at the aligner's
   input size and from base-size renders enlarged to it.
2. Hard negatives: the true caption against 4 single-attribute edits of it (5-way top-1),
   and per edited attribute the share of negatives scored below the true caption; and the
   true caption against the one that swaps an attribute between two groups (where it can).
3. Best-of-N: the held-out eval score of the model's images with and without `--rerank N`.
4. Agreement with the scene evaluator: Spearman rank correlation between score and
   per-image correctness on the plain images.
`--retrieval-only` measures 1 and 2 (a minute or two), to compare trained aligners.
Writes aligner_quality.json and aligner_quality.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

from fineimagen.domains.shapes.contrast import make_contrast_sample
from fineimagen.domains.shapes.parser import parse_image
from fineimagen.eval import compbench
from fineimagen.images import from_pil
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs


@torch.no_grad()
def retrieval(aligner, n: int, size: int, low_res: int | None, seed: int = 1) -> dict:
    """Top-1 retrieval among `n` held-out pairs (drawn with `seed`); with `low_res`, the
    images are drawn at that side and enlarged, as base-stage images are."""
    samples = [make_contrast_sample(i, low_res or size, 4, "heldout", seed=seed, keep=1.0)
               for i in range(n)]
    x = from_pil([Image.fromarray(s.image) for s in samples], aligner.cfg.vit.image_size)
    u = torch.cat([aligner.embed_images(x[i:i + 250]) for i in range(0, n, 250)])
    captions = [s.caption for s in samples]
    w = torch.cat([aligner.embed_texts(captions[i:i + 250]) for i in range(0, n, 250)])
    sim = u @ w.T
    target = torch.arange(n)
    hard, beaten = [], {}  # beaten: per edited attribute, true caption above that negative
    for i, s in enumerate(samples):
        negative_scores = aligner.embed_texts(s.negatives) @ u[i]
        hard.append(bool(u[i] @ w[i] > negative_scores.max()))
        for name, score in zip(s.edited, negative_scores.tolist(), strict=True):
            beaten.setdefault(name, []).append(bool(u[i] @ w[i] > score))
    # the same images and captions, each against its caption with an attribute swapped
    # between two groups (where it has two that differ in one): what a bag of words misses
    swaps = [make_contrast_sample(i, low_res or size, 4, "heldout", seed=seed, keep=1.0,
                                  swaps=1.0) for i in range(n)]
    above_swap = [bool(u[i] @ w[i] > aligner.embed_texts(t.negatives[:1])[0] @ u[i])
                  for i, t in enumerate(swaps) if t.edited[0].startswith("swap")]
    return {"image_to_text_top1": (sim.argmax(1) == target).float().mean().item(),
            "text_to_image_top1": (sim.argmax(0) == target).float().mean().item(),
            "hard_negative_top1": float(np.mean(hard)),
            "true_above_swap": float(np.mean(above_swap)), "swap_pairs": len(above_swap),
            "true_above_negative_by_attribute": {k: float(np.mean(v))
                                                 for k, v in sorted(beaten.items())}}


def generate(pipe, items, n, rerank, folder: Path, stages, batch: int = 64) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    per = max(1, batch // (n * rerank))
    start_time = time.perf_counter()
    for start in range(0, len(items), per):
        chunk = [it.prompt for it in items[start:start + per]]
        images = pipe(chunk, n=n, seed=start * n, rerank=rerank, progress=False, stages=stages)
        for j, image in enumerate(images):
            image.save(folder / f"{start + j // n:05d}_{j % n}.png")
    return time.perf_counter() - start_time


def agreement(pipe, items, folder: Path) -> dict:
    scores, correct = [], []
    for index, item in enumerate(items):
        for path in compbench.image_paths(folder, index):
            image = compbench.load_rgb(path)
            scores.append(pipe.score([Image.fromarray(image)], [item.prompt])[0])
            correct.append(compbench.is_correct(item.scene, parse_image(image), image.shape[0]))
    scores, correct = np.array(scores), np.array(correct)
    return {"spearman": float(spearmanr(scores, correct).statistic), "images": len(scores),
            "mean_score_correct": float(scores[correct].mean()) if correct.any() else None,
            "mean_score_wrong": float(scores[~correct].mean()) if (~correct).any() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--rerank", type=int, default=4)
    parser.add_argument("--stages", default="base", help="'base' (fast) or 'all'")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the held-out pairs (another seed: another 1,000)")
    parser.add_argument("--retrieval-only", action="store_true",
                        help="skip best-of-N and agreement (no images are generated)")
    parser.add_argument("--out", default="bench/results/aligner_quality")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    aligner = pipe.aligner
    if aligner is None:
        raise SystemExit("the model has no aligner")
    side, base = aligner.cfg.vit.image_size, pipe.stages[0].cfg.resolution
    results = {"retrieval": retrieval(aligner, args.pairs, side, None, args.seed),
               "retrieval_from_base_size": retrieval(aligner, args.pairs, side, base,
                                                     args.seed)}
    print(json.dumps(results, indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results["meta"] = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shipped",
                       "pairs": args.pairs, "seed": args.seed, "prompts": args.prompts,
                       "images_per_prompt": args.images_per_prompt, "rerank": args.rerank,
                       "stages": args.stages, "retrieval_only": args.retrieval_only,
                       "machine": describe()}
    if not args.retrieval_only:
        best_of_n(pipe, args, out, results)
    (out / "aligner_quality.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.rerank, out / "aligner_quality.png")


def best_of_n(pipe, args, out: Path, results: dict) -> None:
    """Sections 3 and 4: the eval score with and without `--rerank`, and the agreement."""
    items = compbench.make_evalset(args.prompts, "heldout", seed=123)
    for rerank in (1, args.rerank):
        folder = out / f"rerank_{rerank}"
        seconds = generate(pipe, items, args.images_per_prompt, rerank, folder,
                           0 if args.stages == "base" else None)
        scores = compbench.score_folder(items, folder)
        scores["seconds"] = seconds
        results[f"eval_rerank_{rerank}"] = scores
        print(f"rerank {rerank}: overall {scores['overall']:.3f} in {seconds:.0f} s")
        print(compbench.format_table(scores))
    results["agreement"] = agreement(pipe, items, out / "rerank_1")
    print(json.dumps(results["agreement"], indent=2))


def plot(results, rerank, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = "eval_rerank_1" in results
    fig, axes = plt.subplots(1, 2 if ranked else 1, figsize=(11 if ranked else 5.5, 3.6))
    a = axes[0] if ranked else axes
    names = ["image_to_text_top1", "text_to_image_top1", "hard_negative_top1"]
    for j, key in enumerate(("retrieval", "retrieval_from_base_size")):
        a.bar([i + 0.4 * j for i in range(3)], [results[key][n] for n in names], 0.4,
              label=key.replace("_", " "))
    a.set_xticks([i + 0.2 for i in range(3)], ["img->text", "text->img", "hard neg."])
    a.set_ylim(0, 1)
    a.legend(fontsize=8)
    a.set_title("held-out retrieval (top-1)")
    if not ranked:
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return
    b = axes[1]
    plain, best = results["eval_rerank_1"], results[f"eval_rerank_{rerank}"]
    cats = [c for c in compbench.CATEGORIES if c in plain["categories"]]
    for j, (name, r) in enumerate((("plain", plain), (f"rerank {rerank}", best))):
        b.bar([i + 0.4 * j for i in range(len(cats) + 1)],
              [r["categories"][c] for c in cats] + [r["overall"]], 0.4, label=name)
    b.set_xticks([i + 0.2 for i in range(len(cats) + 1)], cats + ["overall"], rotation=20,
                 fontsize=8)
    b.set_ylim(0, 1)
    b.legend(fontsize=8)
    b.set_title("held-out eval score")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
