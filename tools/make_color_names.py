"""Writes domains/shapes/color_names.json: the one-word colour names of the XKCD colour
survey (CC0, as matplotlib ships them) with their sRGB values, what the free-text reader
(domains/shapes/reading.py) maps to palette colours. Usage: python tools/make_color_names.py"""

import json
from pathlib import Path

from matplotlib.colors import XKCD_COLORS, to_rgb

table = {}
for key, value in XKCD_COLORS.items():
    name = key.split(":", 1)[1]
    if " " not in name and "/" not in name:
        table[name] = [round(c * 255) for c in to_rgb(value)]
out = Path(__file__).parents[1] / "src/fineimagen/domains/shapes/color_names.json"
out.write_text(json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n")
print(f"{len(table)} names -> {out}")
