"""Which image tower can learn texture at all: each is taught texture directly.

Usage: python bench/texture_probe.py [--towers cnn,vit,vit_conv_stem] [--steps 300] [--out DIR]
Each tower, from scratch, with a linear head: cross-entropy on the texture of single-group
64 px training renders (one or more objects of one texture, any shape, colour, size and
background), AdamW 5e-4, batches of 64 drawn from 6,000 renders; accuracy on 600 held-out
renders (chance 0.25), side by side with the same data and seed.
- `cnn`: four 3x3 convolutions (the last three of stride 2, GroupNorm, GELU), mean pooled;
  the baseline that shows texture is learnable from these renders.
- `vit`: the shipped aligner's ViT (one linear map per 8 px patch).
- `vit_conv_stem`: the same ViT with `conv_stem` (3x3 convolutions in place of the patch map).
- `vit_conv_stem_mean`: that ViT pooling the mean of its patch tokens (`pool="mean"`).
- `conv_stem`: that stem alone, its output mean pooled (the ViT without its Transformer).
Writes texture_probe.json and texture_probe.png (training loss against step per tower).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aligner_attributes import texture_renders, to_images  # bench/ is on sys.path
from fineimagen.config import AlignerConfig
from fineimagen.domains.shapes import vocab
from fineimagen.models.vit import ConvStem, ViT
from fineimagen.precision import native_bf16
from machine import describe

TOWERS = ("cnn", "vit", "vit_conv_stem", "vit_conv_stem_mean", "conv_stem")

SHIPPED = Path(__file__).resolve().parents[1] / "src/fineimagen/default_model/aligner"


def renders(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n single-group 64 px training renders [n, 3, 64, 64] and their texture indices [n]."""
    images, labels, _ = texture_renders(n, 64, seed)
    return to_images(images), torch.tensor(labels)


class SmallCNN(nn.Module):
    def __init__(self, width: int = 192):
        super().__init__()
        chans, layers = [3, 32, 64, 128, width], []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=1 if i == 0 else 2,
                                 padding=1), nn.GroupNorm(8, chans[i + 1]), nn.GELU()]
        self.layers, self.width = nn.Sequential(*layers), width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images).mean((2, 3))


def tower(name: str) -> tuple[nn.Module, int]:
    vit = AlignerConfig.from_dict(json.loads((SHIPPED / "config.json").read_text()),
                                  "aligner").vit
    if name == "cnn":
        return SmallCNN(), 192
    if name in ("vit", "vit_conv_stem", "vit_conv_stem_mean"):
        return ViT(replace(vit, conv_stem=name != "vit", pool="mean" if
                           name.endswith("mean") else "cls")), vit.width
    if name == "conv_stem":
        return nn.Sequential(ConvStem(vit.patch, vit.width), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten()), vit.width
    raise SystemExit(f"unknown tower {name!r} (choose from {', '.join(TOWERS)})")


def teach(name: str, data, held_out, steps: int, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    encoder, width = tower(name)
    model = nn.Sequential(encoder, nn.Linear(width, len(vocab.TEXTURES)))
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 5e-4, weight_decay=0.05)
    bf16 = native_bf16("cpu")
    images, labels = data
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        pick = torch.randint(0, len(images), (batch,))
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            logits = model(images[pick].contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits.float(), labels[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        right = (model(held_out[0]).argmax(1) == held_out[1]).float().mean().item()
    print(f"{name}: held-out texture accuracy {right:.3f}, {seconds:.0f} s", flush=True)
    return {"accuracy": right, "seconds": seconds, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towers", default="cnn,vit,vit_conv_stem")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/texture_probe")
    args = parser.parse_args()
    data, held_out = renders(6000, seed=1), renders(600, seed=2)
    results = {name: teach(name, data, held_out, args.steps, args.batch, args.seed)
               for name in args.towers.split(",")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"towers": {k: {"accuracy": v["accuracy"], "seconds": v["seconds"],
                              "final_loss": float(np.mean(v["losses"][-20:]))}
                          for k, v in results.items()},
               "settings": {"steps": args.steps, "batch": args.batch, "seed": args.seed,
                            "train_renders": 6000, "held_out_renders": 600,
                            "machine": describe()}}
    (out / "texture_probe.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(results, out / "texture_probe.png")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, r in results.items():
        smooth = np.convolve(r["losses"], np.ones(10) / 10, mode="valid")
        ax.plot(smooth, label=f"{name} (held-out {r['accuracy']:.2f})")
    ax.axhline(np.log(len(vocab.TEXTURES)), color="gray", ls=":", label="chance")
    ax.set(xlabel="step", ylabel="texture cross-entropy", title="Taught texture directly")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
