"""Quality of an OpenMoji model on its held-out eval set, arm by arm (the OpenMoji issue's targets).

Usage: python bench/openmoji_quality.py [--model openmoji|DIR] [--n-prompts 400]
           [--images-per-prompt 4] [--arms base,cascade,scene,paraphrase,rerank,fid,retrieval]
           [--out bench/results/openmoji_quality]
Arms, each scored by the strict OpenMoji evaluator (identity: asked objects drawn as the right
emoji; the shapes' category table with seen / unseen combinations):
- base: the canonical eval set (seed 123), the base stage's own images;
- cascade: the same prompts through every stage (identity at the last stage's size);
- scene: the same prompts drawn with scene control (their specs), base stage;
- paraphrase: prompts naming objects by held-out aliases, beside the same scenes worded with
  the canonical names (`paraphrase_canonical`), base stage;
- rerank: the single-object prompts with `rerank` 4, beside base's single-object identity;
- fid: in-domain FID (aligner features) of base's images against truth renders of the same
  prompts, beside the FD of a second set of truth renders (the floor);
- retrieval: the aligner alone, image -> name top-1 among the vocabulary on held-out renders
  (each object alone, 4 placements drawn with the eval seed), texts "a NAME".
Writes openmoji_quality.json and openmoji_quality.png under --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from charts import grouped_bars, write_results  # bench/ is on sys.path when a bench script runs
from fineimagen.domains.openmoji.scene import emoji_caption
from fineimagen.domains.openmoji.vocab import vocabulary
from fineimagen.eval import emoji_bench
from fineimagen.pipeline import TextToImagePipeline
from machine import describe

ARMS = ("base", "cascade", "scene", "paraphrase", "rerank", "fid", "retrieval")
SEED = 123


def draw(pipe, items, n: int, stages: str | None, scene: bool = False, rerank: int = 1,
         batch: int = 64) -> tuple[list[list[np.ndarray]], float]:
    """`n` images per item (image k of item i has seed i * n + k) and the seconds taken."""
    start = time.perf_counter()
    images = []
    per = 1 if scene or rerank > 1 else max(1, batch // n)
    for first in range(0, len(items), per):
        chunk = items[first:first + per]
        options = {"scene": chunk[0].scene.to_spec()} if scene else {}
        out = pipe([it.prompt for it in chunk], n=n, seed=first * n, stages=stages,
                   rerank=rerank, progress=False, **options)
        images += [[np.asarray(im) for im in out[j * n:(j + 1) * n]] for j in range(len(chunk))]
    return images, time.perf_counter() - start


def canonical_twins(items, seed: int):
    """The paraphrase items' scenes worded with the canonical names."""
    from dataclasses import replace

    return [replace(it, prompt=emoji_caption(it.scene, np.random.default_rng([seed, i, 1])))
            for i, it in enumerate(items)]


def name_retrieval(aligner, names: tuple[str, ...], renders: int = 4) -> dict:
    """Image -> name top-1 of the aligner among `names`: each object rendered alone
    `renders` times (eval seed), scored against "a NAME" for every name."""
    import torch

    from fineimagen.domains.openmoji.scene import EmojiGroup, EmojiScene, object_words
    from fineimagen.images import from_pil

    size = aligner.cfg.vit.image_size
    items = [emoji_bench.EmojiEvalItem("", EmojiScene((EmojiGroup(m, 1),)), "single_object",
                                       False) for m in names]
    images = [Image.fromarray(emoji_bench.truth_image(it, size, SEED, k)[0])
              for it in items for k in range(renders)]
    with torch.no_grad():
        texts = aligner.embed_texts([object_words(m, 1) for m in names])
        pictures = torch.cat([aligner.embed_images(from_pil(images[i:i + 256], size))
                              for i in range(0, len(images), 256)])
    best = (pictures @ texts.T).argmax(1).numpy()
    truth = np.repeat(np.arange(len(names)), renders)
    return {"top1": float((best == truth).mean()), "names": len(names), "renders": renders,
            "chance": 1 / len(names)}


def scored(items, images, names, seconds) -> dict:
    scores = emoji_bench.score_images(items, images, names)
    scores["seconds"] = seconds
    scores["size"] = int(images[0][0].shape[0])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="openmoji", help="a built-in name or a folder")
    parser.add_argument("--vocab", default="openmoji-100")
    parser.add_argument("--n-prompts", type=int, default=400)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--out", default="bench/results/openmoji_quality")
    args = parser.parse_args()
    arms = args.arms.split(",")
    if unknown := sorted(set(arms) - set(ARMS)):
        parser.error(f"unknown arms {unknown} (choose from {', '.join(ARMS)})")
    names = vocabulary(args.vocab)
    pipe = TextToImagePipeline.from_pretrained(args.model)
    if pipe.aligner is None and {"rerank", "fid", "retrieval"} & set(arms):
        parser.error("the rerank, fid and retrieval arms need a model with an aligner")
    n = args.images_per_prompt
    items = emoji_bench.make_emoji_evalset(args.n_prompts, names, seed=SEED)
    results: dict = {}
    base_images = None

    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model, "vocab": args.vocab,
            "prompts": len(items), "images_per_prompt": n, "seed": SEED,
            "model_defaults": vars(pipe.check_options()[0]), "machine": describe()}

    def report(arm, scores):  # written after every arm: a long run keeps what it measured
        results[arm] = scores
        write_results({"meta": meta, "results": results}, args.out, "openmoji_quality")
        print(f"{arm:<22} identity {scores['identity']:.3f}  overall {scores['overall']:.3f}  "
              f"({scores['n_images']} images of {scores['size']} px, {scores['seconds']:.0f} s)")

    if {"base", "fid", "rerank"} & set(arms):
        base_images, seconds = draw(pipe, items, n, "base")
        report("base", scored(items, base_images, names, seconds))
    if "cascade" in arms:
        images, seconds = draw(pipe, items, n, None)
        report("cascade", scored(items, images, names, seconds))
    if "scene" in arms:
        images, seconds = draw(pipe, items, n, "base", scene=True)
        report("scene", scored(items, images, names, seconds))
    if "paraphrase" in arms:
        said = emoji_bench.make_emoji_evalset(args.n_prompts, names, seed=SEED,
                                              style="paraphrase")
        for arm, arm_items in (("paraphrase", said),
                               ("paraphrase_canonical", canonical_twins(said, SEED))):
            images, seconds = draw(pipe, arm_items, n, "base")
            report(arm, scored(arm_items, images, names, seconds))
    if "rerank" in arms:
        single = [i for i, it in enumerate(items) if it.category == "single_object"]
        chosen = [items[i] for i in single]
        images, seconds = draw(pipe, chosen, n, "base", rerank=4)
        report("rerank", scored(chosen, images, names, seconds))
        results["rerank"]["without"] = emoji_bench.score_images(
            chosen, [base_images[i] for i in single], names)["identity"]
    if "fid" in arms:
        results["fid"] = emoji_bench.emoji_fid(pipe.aligner, items, base_images)
        truth = [[emoji_bench.truth_image(it, base_images[0][0].shape[0], SEED, k)[0]
                  for k in range(n)] for it in items]
        results["fid_floor"] = emoji_bench.emoji_fid(pipe.aligner, items, truth)
        print(f"in-domain FID {results['fid']['fid']:.2f}, floor (truth against truth) "
              f"{results['fid_floor']['fid']:.2f}")
    if "retrieval" in arms:
        results["retrieval"] = name_retrieval(pipe.aligner, names)
        print(f"aligner image -> name top-1 {results['retrieval']['top1']:.3f} among "
              f"{len(names)} names")
    out = write_results({"meta": meta, "results": results}, args.out, "openmoji_quality")
    plot({k: v for k, v in results.items() if "categories" in v}, out / "openmoji_quality.png")


def plot(results: dict, path: Path) -> None:
    """Grouped bars: identity, each category and overall, one bar per arm."""
    cats = [c for c in emoji_bench.CATEGORIES if any(c in r["categories"]
                                                     for r in results.values())]
    grouped_bars({arm: [r["identity"], *(r["categories"].get(c, 0) for c in cats),
                        r["overall"]] for arm, r in results.items()},
                 ["identity", *cats, "overall"], path)


if __name__ == "__main__":
    main()
