"""The sample grid of the OpenMoji dataset card: 8 training scenes of openmoji-100 at 128 px
with their captions. Usage: python bench/openmoji_card.py [--out docs/datasets]"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

from fineimagen.domains.openmoji.scene import make_emoji_sample
from fineimagen.domains.openmoji.vocab import OPENMOJI_100

SIDE, TEXT_H, COLUMNS = 128, 56, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/datasets")
    args = parser.parse_args()
    samples = [make_emoji_sample(i, SIDE, OPENMOJI_100) for i in range(8)]
    rows = (len(samples) + COLUMNS - 1) // COLUMNS
    grid = Image.new("RGB", (COLUMNS * (SIDE + 8), rows * (SIDE + TEXT_H)), "white")
    draw = ImageDraw.Draw(grid)
    for k, s in enumerate(samples):
        x, y = (k % COLUMNS) * (SIDE + 8), (k // COLUMNS) * (SIDE + TEXT_H)
        grid.paste(Image.fromarray(s.image), (x, y))
        draw.multiline_text((x, y + SIDE + 2), "\n".join(textwrap.wrap(s.caption, 24)[:4]),
                            fill="black")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid.save(out / "openmoji_samples.png")


if __name__ == "__main__":
    main()
