"""Draw the OpenMoji model card's sample grid (docs/models/openmoji_samples.png) and README's
row of it (docs/openmoji_row.png).

Usage: python docs/make_openmoji_samples.py [--model openmoji|DIR] [--out docs/models]
Eight prompts (single objects, counts, positions, a relation, scene control) x seeds 0-3
through the whole cascade, each row's prompt written under it; a last row of training scenes
(openmoji-100, 256 px) to compare with. README shows the first four prompts at seed 0.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from fineimagen.domains.openmoji.scene import make_emoji_sample
from fineimagen.domains.openmoji.vocab import OPENMOJI_100
from fineimagen.pipeline import TextToImagePipeline

PROMPTS = ["a red apple", "a cat", "a rocket at the top right", "two bananas",
           "three snails at the bottom left", "a large sunflower in the center",
           "a guitar to the left of a hot pepper"]
SCENE = {"domain": "openmoji", "background": "pale blue", "objects": [
    {"object": "red apple", "count": 2, "position": "top left"},
    {"object": "rocket", "size": "large", "position": "bottom right"}]}
SEEDS = 4
SIDE, LABEL_W = 256, 180


def labelled_row(label: str, images: list[Image.Image]) -> Image.Image:
    row = Image.new("RGB", (LABEL_W + len(images) * (SIDE + 4), SIDE + 4), "white")
    ImageDraw.Draw(row).multiline_text((4, 8), "\n".join(textwrap.wrap(label, 24)),
                                       fill="black")
    for k, image in enumerate(images):
        row.paste(image.resize((SIDE, SIDE), Image.Resampling.BICUBIC),
                  (LABEL_W + k * (SIDE + 4), 2))
    return row


def stack(rows: list[Image.Image]) -> Image.Image:
    grid = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="openmoji")
    parser.add_argument("--out", default="docs/models")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    rows = [labelled_row(p, pipe(p, n=SEEDS, seed=0, progress=False)) for p in PROMPTS]
    said = "two red apples at the top left and a large rocket at the bottom right"
    rows.append(labelled_row(f"scene control: {said}",
                             pipe(said, n=SEEDS, seed=0, scene=SCENE, progress=False)))
    training = [make_emoji_sample(i, SIDE, OPENMOJI_100) for i in range(SEEDS)]
    rows.append(labelled_row("training scenes (openmoji-100)",
                             [Image.fromarray(s.image) for s in training]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stack(rows).save(out / "openmoji_samples.png")
    readme_row = [pipe(p, n=1, seed=0, progress=False)[0] for p in PROMPTS[:4]]
    labelled_row(" / ".join(PROMPTS[:4]), readme_row).save(out.parent / "openmoji_row.png")


if __name__ == "__main__":
    main()
