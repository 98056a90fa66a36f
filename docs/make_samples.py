"""Draw README's sample grids (docs/cascade_samples.png, docs/edit_samples.png) with the
shipped model.

Usage: python docs/make_samples.py [--model DIR] [--out docs/cascade_samples.png]
           [--edits-out docs/edit_samples.png] [--edit-seed 0]
Two seeds (0, 1) per row: four prompts through the whole cascade at 128 px, then scene control.
Edits: one source (of --edit-seed) and five prompt-to-prompt edits of it, each changing one
attribute (the bench in README gives the rates over 100 pairs).
"""

from __future__ import annotations

import argparse

from PIL import Image

from fineimagen.pipeline import TextToImagePipeline

PROMPTS = ["a large blue star in the center", "two red circles at the top left",
           "a green striped square on a white background", "a yellow heart and a purple triangle"]
SCENE = {"background": "gray", "objects": [
    {"shape": "circle", "color": "red", "size": "large", "position": "top left"},
    {"shape": "square", "color": "blue", "count": 2, "position": "bottom right"}]}
EDIT_SOURCE = "a red circle at the top left"
EDITS = {"colour": ("red", "yellow"), "shape": ("circle", "star"),
         "position": ("top left", "top right"), "count": ("a red circle", "three red circles"),
         "size": ("a red circle", "a small red circle")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--out", default="docs/cascade_samples.png")
    parser.add_argument("--edits-out", default="docs/edit_samples.png")
    parser.add_argument("--edit-seed", type=int, default=0)
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    draw_edits(pipe, args.edit_seed, args.edits_out)
    rows = [pipe(p, n=2, seed=0, progress=False) for p in PROMPTS]
    rows.append(pipe("a large red circle at the top left and two blue squares at the bottom "
                     "right", n=2, seed=0, scene=SCENE, progress=False))
    side, gap = rows[0][0].width, 4
    grid = Image.new("RGB", (len(rows) * 2 * (side + gap), side), "white")
    for r, images in enumerate(rows):
        for k, image in enumerate(images):
            grid.paste(image, ((2 * r + k) * (side + gap), 0))
    grid.save(args.out)


def draw_edits(pipe, seed: int, out: str) -> None:
    images = []
    for old, new in EDITS.values():
        [source], [edited] = pipe.edit_prompt(EDIT_SOURCE, EDIT_SOURCE.replace(old, new),
                                              seed=seed, progress=False)
        images = images or [source]
        images.append(edited)
    side, gap = images[0].width, 4
    grid = Image.new("RGB", (len(images) * (side + gap), side), "white")
    for k, image in enumerate(images):
        grid.paste(image, (k * (side + gap), 0))
    grid.save(out)


if __name__ == "__main__":
    main()
