"""How far apart the aligner puts images and captions that differ in one attribute, and
what its pooled image features tell about an object's texture.

Usage: python bench/aligner_attributes.py [--aligner DIR ...] [--pairs 100] [--out DIR]
1. Separation: one large object on white, changed in one attribute (texture, shape or
   colour; same place), and its caption "a large C T S in the center" changed alike. The
   mean cosine of the two image embeddings, and of the two text embeddings, per attribute:
   the nearer to 1, the less the shared space shows that attribute.
2. Texture probe: a linear classifier (L-BFGS, weight decay 1e-3) on the ViT's pooled
   features of single-group training renders (one or more objects of one texture), fitted
   on half, scored on the other half, overall and per object size (chance 0.25).
Each `--aligner` (an aligner folder; default the shipped one) is measured side by side.
Writes aligner_attributes.json and aligner_attributes.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.captions import object_phrase
from fineimagen.domains.shapes.contrast import make_contrast_sample
from fineimagen.domains.shapes.render import render
from fineimagen.domains.shapes.samples import to_tensor
from fineimagen.domains.shapes.scene import Group, PlacedObject
from fineimagen.models.alignment import Aligner
from machine import describe  # bench/ is on sys.path when a bench script runs

ATTRIBUTES = {"texture": vocab.TEXTURES, "shape": vocab.SHAPES, "color": vocab.COLORS}


def to_images(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([to_tensor(a) for a in arrays])


@torch.no_grad()
def separation(aligner: Aligner, pairs: int, seed: int = 0) -> dict:
    """Mean image and text cosine of pairs that differ in one attribute, per attribute."""
    rng = np.random.default_rng(seed)
    found = {}
    for name, values in ATTRIBUTES.items():
        images, texts = [], []
        for _ in range(pairs):
            g = {k: str(rng.choice(v)) for k, v in ATTRIBUTES.items()}
            other = {**g, name: str(rng.choice([v for v in values if v != g[name]]))}
            x, y = rng.uniform(0.3, 0.7, 2)
            for h in (g, other):
                obj = PlacedObject(0, h["shape"], h["color"], h["texture"], x, y,
                                   vocab.SIZE_FRACTION["large"])
                images.append(render([obj], "white", aligner.cfg.vit.image_size))
                texts.append(object_phrase(Group(size="large", position="center", **h)))
        u = aligner.embed_images(to_images(images))
        w = aligner.embed_texts(texts)
        found[name] = {"image_cos": float((u[0::2] * u[1::2]).sum(-1).mean()),
                       "text_cos": float((w[0::2] * w[1::2]).sum(-1).mean())}
    return found


def texture_renders(n: int, size: int, seed: int = 5
                    ) -> tuple[list[np.ndarray], list[int], list[str]]:
    """n single-group training renders, their texture indices and object sizes."""
    images, labels, sizes = [], [], []
    index = 0
    while len(labels) < n:
        s = make_contrast_sample(index, size, 1, "train", seed=seed, keep=1.0)
        index += 1
        if len(s.scene.groups) == 1:
            images.append(s.image)
            labels.append(vocab.TEXTURES.index(s.scene.groups[0].texture))
            sizes.append(s.scene.groups[0].size)
    return images, labels, sizes


@torch.no_grad()
def pooled(aligner: Aligner, images: list[np.ndarray]) -> torch.Tensor:
    return torch.cat([aligner.image_features(to_images(images[i:i + 200]))
                      for i in range(0, len(images), 200)])


def texture_probe(features: torch.Tensor, labels: list[int], sizes: list[str]) -> dict:
    """Held-out accuracy of a linear texture classifier on standardised features."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-6)
    y = torch.tensor(labels)
    half = len(y) // 2
    weight = torch.zeros(x.shape[1], len(vocab.TEXTURES), requires_grad=True)
    bias = torch.zeros(len(vocab.TEXTURES), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x[:half] @ weight + bias, y[:half]) + 1e-3 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        right = ((x[half:] @ weight + bias).argmax(1) == y[half:]).numpy()
    held_sizes = np.array(sizes[half:])
    return {"accuracy": float(right.mean()),
            "by_size": {z: float(right[held_sizes == z].mean()) for z in vocab.SIZES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aligner", action="append",
                        help="aligner folder (repeatable; default: the shipped one)")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--probe-images", type=int, default=1600)
    parser.add_argument("--out", default="bench/results/aligner_attributes")
    args = parser.parse_args()
    shipped = Path(__file__).resolve().parents[1] / "src/fineimagen/default_model/aligner"
    folders = args.aligner or [str(shipped)]
    results, renders = {}, {}  # renders per image size, shared by the aligners
    for folder in folders:
        torch.manual_seed(0)
        aligner = Aligner.from_folder(folder)
        side = aligner.cfg.vit.image_size
        if side not in renders:
            renders[side] = texture_renders(args.probe_images, side)
        images, labels, sizes = renders[side]
        results[folder] = {"separation": separation(aligner, args.pairs),
                           "texture_probe": texture_probe(pooled(aligner, images), labels,
                                                          sizes)}
        print(folder, json.dumps(results[folder], indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"aligners": results,
               "meta": {"date": time.strftime("%Y-%m-%d"), "pairs": args.pairs,
                        "probe_images": args.probe_images, "machine": describe()}}
    (out / "aligner_attributes.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, out / "aligner_attributes.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(results)
    keys = [(n, side) for n in ATTRIBUTES for side in ("image_cos", "text_cos")]
    for j, (folder, r) in enumerate(results.items()):
        label = Path(folder).parent.name or folder
        a.bar([i + j * width for i in range(len(keys))],
              [1 - r["separation"][n][side] for n, side in keys], width, label=label)
        probe = r["texture_probe"]
        b.bar([i + j * width for i in range(4)],
              [probe["accuracy"]] + [probe["by_size"][z] for z in vocab.SIZES], width,
              label=label)
    a.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))],
                 [f"{n}\n{side[:-4]}" for n, side in keys], fontsize=8)
    a.set_title("1 - cosine when one attribute changes")
    a.legend(fontsize=8)
    b.axhline(0.25, color="gray", lw=0.8, ls="--")
    b.set_xticks([i + 0.4 - width / 2 for i in range(4)], ["all", *vocab.SIZES])
    b.set_ylim(0, 1)
    b.set_title("linear texture probe on pooled ViT features")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
