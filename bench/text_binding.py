"""Does a text encoder bind colours to their nouns? (Why plain-prompt colour attribution is
the base stage's weak spot.)

Usage: python bench/text_binding.py [--model DIR] [--prompts 200] [--out DIR]
Prompts "a C1 S1 and a C2 S2" (distinct shapes and colours). For each shape noun, the cosine
between its token's features in the prompt and in
  - the swapped prompt "a C2 S1 and a C1 S2" (the same words; only which colour is whose
    changes): `swap`;
  - the prompt with the noun's own colour replaced by a third one: `change`.
A U-Net whose cross-attention finds the noun's token can read the noun's colour from it
only as far as 1 - swap is large; `bound share` = (1 - swap) / (1 - change) is the part of
the colour change the token shows that is its own colour, not the prompt's bag of colours.
Measured for the pipeline's text encoder (what the U-Nets read) and the aligner's text
tower (trained contrastively), where the model has one.
Writes text_binding.json and text_binding.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fineimagen.domains.shapes import vocab
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs


def prompt_triples(n: int, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """(prompt, swapped, changed, noun): `changed` gives the first noun a third colour."""
    rng = np.random.default_rng(seed)
    triples = []
    for _ in range(n):
        s1, s2 = (str(s) for s in rng.choice(vocab.SHAPES, 2, replace=False))
        c1, c2, c3 = (str(c) for c in rng.choice(vocab.COLORS, 3, replace=False))
        triples.append((two_objects(c1, s1, c2, s2), two_objects(c2, s1, c1, s2),
                        two_objects(c3, s1, c2, s2), s1))
    return triples


def two_objects(c1: str, s1: str, c2: str, s2: str) -> str:
    """'a red circle and an orange star'."""
    def article(word: str) -> str:
        return "an" if word[0] in "aeiou" else "a"

    return f"{article(c1)} {c1} {s1} and {article(c2)} {c2} {s2}"


def noun_features(encoder, prompts: list[str], noun: str) -> torch.Tensor:
    """[P, D]: the features of the first token covering `noun` in each prompt."""
    embeds, _ = encoder.encode(prompts)
    rows = []
    for k, (text, spans) in enumerate(zip(prompts, encoder.token_spans(prompts), strict=True)):
        start = text.index(f" {noun}") + 1
        j = next(j for j, (a, b) in enumerate(spans) if a <= start < b)
        rows.append(embeds[k, j].float())
    return torch.stack(rows)


@torch.no_grad()
def measure(encoder, triples) -> dict:
    swap, change = [], []
    for prompt, swapped, changed, noun in triples:
        f = noun_features(encoder, [prompt, swapped, changed], noun)
        swap.append(torch.cosine_similarity(f[0], f[1], 0).item())
        change.append(torch.cosine_similarity(f[0], f[2], 0).item())
    swap_mean, change_mean = float(np.mean(swap)), float(np.mean(change))
    return {"swap_cosine": swap_mean, "change_cosine": change_mean,
            "bound_share": (1 - swap_mean) / max(1 - change_mean, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--out", default="bench/results/text_binding")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    triples = prompt_triples(args.prompts)
    encoders = {"pipeline text encoder": pipe.text_encoder}
    if pipe.aligner is not None:
        encoders["aligner text tower"] = pipe.aligner.text_encoder
    results = {name: measure(enc.eval(), triples) for name, enc in encoders.items()}
    for name, r in results.items():
        print(f"{name}: swap cosine {r['swap_cosine']:.4f}, change cosine "
              f"{r['change_cosine']:.4f}, bound share {r['bound_share']:.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shipped",
            "prompts": len(triples), "example": triples[0][:3], "machine": describe()}
    (out / "text_binding.json").write_text(json.dumps({"meta": meta, "results": results},
                                                      indent=2) + "\n")
    plot(results, out / "text_binding.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(results)
    x = np.arange(len(names))
    for j, (key, label) in enumerate((("swap_cosine", "colours swapped"),
                                      ("change_cosine", "own colour changed"))):
        ax.bar(x + (j - 0.5) * 0.35, [1 - results[n][key] for n in names], 0.35, label=label)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("1 - cosine of the noun's token")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
