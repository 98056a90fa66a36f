"""Draw README's sample grid (docs/cascade_samples.png) with the shipped model.

Usage: python docs/make_samples.py [--model DIR] [--out docs/cascade_samples.png]
Two seeds (0, 1) per row: four prompts through the whole cascade at 128 px, then scene control.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--out", default="docs/cascade_samples.png")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    rows = [pipe(p, n=2, seed=0, progress=False) for p in PROMPTS]
    rows.append(pipe("a large red circle at the top left and two blue squares at the bottom "
                     "right", n=2, seed=0, scene=SCENE, progress=False))
    side, gap = rows[0][0].width, 4
    grid = Image.new("RGB", (len(rows) * 2 * (side + gap), side), "white")
    for r, images in enumerate(rows):
        for k, image in enumerate(images):
            grid.paste(image, ((2 * r + k) * (side + gap), 0))
    grid.save(args.out)


if __name__ == "__main__":
    main()
