"""GenEval's ten colours on OpenMoji glyphs: a glyph recoloured to any of them, and the
colour an object shows, named in CIELAB.

A glyph is black outlines around coloured fills. Recolouring keeps the outlines (dark,
achromatic pixels) and moves every fill to the asked colour's hue and chroma, keeping the
fills' shading as lightness differences around the colour's own lightness. An object's
colour is the anchor nearest (CIEDE2000) to most of its fill pixels; a glyph's natural
colour is that of its unchanged fills.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

GENEVAL_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown",
                  "black", "white")
# sRGB anchors: what each colour name is drawn as, and what a pixel is named by
COLOR_RGB = {
    "red": (215, 35, 35), "orange": (245, 135, 20), "yellow": (250, 215, 40),
    "green": (55, 165, 60), "blue": (40, 95, 215), "purple": (135, 60, 180),
    "pink": (245, 135, 185), "brown": (125, 75, 35), "black": (45, 45, 45),
    "white": (250, 250, 250),
}
OUTLINE_L, OUTLINE_CHROMA = 22.0, 12.0  # darker and greyer than this: a glyph's outline
DARK_L, DARK_SHARE = 40.0, 0.6  # an object whose dark share exceeds this is black
SHADING = 0.5  # a fill's lightness difference from the median fill, kept at this share


@functools.cache
def _anchors_lab() -> np.ndarray:
    rgb = np.array([COLOR_RGB[c] for c in GENEVAL_COLORS], np.float64) / 255
    return rgb2lab(rgb[None])[0]


def outline_mask(lab: np.ndarray) -> np.ndarray:
    """Pixels (Lab [..., 3]) that are outline: dark and achromatic."""
    return (lab[..., 0] < OUTLINE_L) & (np.hypot(lab[..., 1], lab[..., 2]) < OUTLINE_CHROMA)


def recolor(rgba: np.ndarray, color: str) -> np.ndarray:
    """A glyph (float RGBA [H, W, 4] in [0, 1], alpha premultiplied) with its fills in
    `color` (one of GENEVAL_COLORS); outlines and alpha kept."""
    alpha = rgba[..., 3:]
    seen = alpha[..., 0] > 0.05
    rgb = np.where(seen[..., None], rgba[..., :3] / np.maximum(alpha, 1e-6), 0.0)
    lab = rgb2lab(np.clip(rgb, 0, 1))
    fills = seen & ~outline_mask(lab)
    if not fills.any():
        return rgba.copy()
    target = _anchors_lab()[GENEVAL_COLORS.index(color)]
    reference = np.median(lab[fills][:, 0])
    out = lab.copy()
    out[fills, 0] = np.clip(target[0] + SHADING * (lab[fills, 0] - reference), 0, 100)
    out[fills, 1:] = target[1:]
    with warnings.catch_warnings():  # colours outside sRGB are clipped, as intended
        warnings.simplefilter("ignore", UserWarning)
        new_rgb = np.where(fills[..., None], lab2rgb(out), rgb)
    return np.concatenate([new_rgb * alpha, alpha], axis=-1).astype(np.float32)


def color_name(pixels: np.ndarray) -> str | None:
    """The colour (of GENEVAL_COLORS) most of an object's fill pixels (sRGB uint8 or float
    0..255, [n, 3]) are nearest to; black when dark pixels (outline or fill) are more than
    DARK_SHARE of them; None when there are none."""
    lab = rgb2lab(np.clip(np.asarray(pixels, np.float64), 0, 255)[None] / 255)[0]
    if not len(lab):
        return None
    dark = (lab[:, 0] < DARK_L) & (np.hypot(lab[:, 1], lab[:, 2]) < OUTLINE_CHROMA)
    if dark.mean() > DARK_SHARE:
        return "black"
    keep = ~dark
    lab = lab[keep]
    distance = deltaE_ciede2000(lab[:, None, :], _anchors_lab()[None, :, :])  # [n, 10]
    votes = np.bincount(distance.argmin(1), minlength=len(GENEVAL_COLORS))
    return GENEVAL_COLORS[int(votes.argmax())]
