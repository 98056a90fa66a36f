"""A deterministic evaluator for OpenMoji scenes: find the objects on the light background,
identify each by template matching against the vocabulary's glyphs, and judge a prompt's
spec in the shapes' GenEval-style categories, plus `identity`.

1. Background: the median of the border pixels, named when within BACKGROUND_RADIUS
   (CIEDE2000) of one of the domain's backgrounds and uniform (95% of the pixels clear of
   objects within BACKGROUND_SPREAD), else None (the image fails every prompt).
2. Objects: pixels farther than FOREGROUND_DE from the background, holes filled (a glyph's
   white or light-gray parts are enclosed by its outline), connected components; components
   whose boxes come within MERGE_GAP of the side are one object (glyph parts); components
   smaller than MIN_AREA of a small object's square are noise.
3. Identity: the object's box, cut from the image, against each glyph rendered into a box
   of the same size over the same background: the highest normalised cross-correlation
   over RGB names it (Lewis 1995: NCC is invariant to brightness and contrast shifts);
   below MIN_NCC it is "unknown". The box shrunk by 1..SHRINK_PX px a side is tried too,
   and the best match's box is the object's (JPEG ringing and blur grow a mask).
4. Size: the box's longer side over the image side, nearest size class of the domain.
Judging: every asked group needs its count of objects of its name (and size, cell), every
relation must hold and no object may be left over (the shapes' rule and search,
`compbench._deal`, which reads only groups' count and position and objects' x and y).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2lab

from ..shapes.judge import _deal, could_match  # the shapes' checks and search
from .colors import color_name
from .render import BACKGROUND_RGB, natural_color, stamp
from .scene import SIZE_FRACTION, EmojiScene
from .vocab import character

BACKGROUND_RADIUS = 5.0  # the two backgrounds are ~10 apart
BACKGROUND_SPREAD = 10.0
FOREGROUND_DE = 16.0
MERGE_GAP = 0.025  # of the side: parts of one glyph closer than this are one object
MIN_AREA = 0.15  # of a small object's square
MIN_NCC = 0.5
SHRINK_PX = 2  # identity also tries the box shrunk by up to this many pixels a side
UNKNOWN = "unknown"
_BACKGROUND_NAMES = tuple(BACKGROUND_RGB)
_BACKGROUNDS_LAB = rgb2lab(np.array([BACKGROUND_RGB[b] for b in _BACKGROUND_NAMES],
                                    np.float32)[None] / 255)[0]


@dataclass
class EmojiObject:
    name: str  # a vocabulary name or UNKNOWN
    score: float  # the best normalised cross-correlation
    size: str
    x: float  # box centre, fraction of the side
    y: float
    extent: float  # the box's longer side, fraction of the side
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (exclusive ends)
    color: str | None = None  # the colour its fills show (colors.color_name)


@dataclass
class ParsedEmojiScene:
    background: str | None
    objects: list[EmojiObject]


def parse_emoji_image(image: np.ndarray, names: tuple[str, ...],
                      colors: tuple[str, ...] = ()) -> ParsedEmojiScene:
    """Parse an RGB image (uint8 [H, W, 3], square) against the vocabulary `names`, each
    glyph also recoloured to each of `colors` (identity whatever an object's colour)."""
    img = np.asarray(image, np.float32)[..., :3]
    side = img.shape[0]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg_rgb = np.median(border, axis=0)
    lab = rgb2lab(np.clip(img, 0, 255) / 255)
    bg_lab = rgb2lab(bg_rgb[None, None] / 255)[0, 0]
    far = np.linalg.norm(lab - bg_lab, axis=-1) > FOREGROUND_DE
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(far, iterations=1) | far)
    labels, n = ndimage.label(mask)
    boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop)
             for s in ndimage.find_objects(labels)]
    boxes = _merge(boxes, MERGE_GAP * side)
    small = SIZE_FRACTION["small"] * side
    min_area = MIN_AREA * small * small
    objects = []
    for x0, y0, x1, y1 in boxes:
        if mask[y0:y1, x0:x1].sum() < min_area:
            continue
        name, score, (x0, y0, x1, y1) = _identify_box(img, (x0, y0, x1, y1), bg_rgb, names,
                                                      colors)
        extent = max(x1 - x0, y1 - y0) / side
        if colors and name != UNKNOWN:  # the recolouring of its glyph that fits it best
            color = closest_color(img[y0:y1, x0:x1], bg_rgb, name, colors)
        else:  # holes filled: white fills enclosed by outlines count
            inside = mask[y0:y1, x0:x1]
            color = color_name(img[y0:y1, x0:x1][inside]) if inside.any() else None
        objects.append(EmojiObject(name, score, _size_class(extent), (x0 + x1) / 2 / side,
                                   (y0 + y1) / 2 / side, extent, (x0, y0, x1, y1), color))
    clear = ~ndimage.binary_dilation(mask, iterations=2)
    return ParsedEmojiScene(_background(lab[clear]) if clear.any() else None, objects)


def _merge(boxes: list[tuple[int, int, int, int]], gap: float):
    """Union of boxes closer than `gap` (pixels), until none are."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                dx = max(b[0] - a[2], a[0] - b[2], 0)
                dy = max(b[1] - a[3], a[1] - b[3], 0)
                if max(dx, dy) < gap:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]),
                                max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(b) for b in boxes]


def _background(lab_pixels: np.ndarray) -> str | None:
    mean = lab_pixels.mean(0)
    k = int(deltaE_ciede2000(mean[None], _BACKGROUNDS_LAB).argmin())
    if deltaE_ciede2000(mean, _BACKGROUNDS_LAB[k]) > BACKGROUND_RADIUS:
        return None
    spread = np.percentile(deltaE_ciede2000(lab_pixels, _BACKGROUNDS_LAB[k][None]), 95)
    return _BACKGROUND_NAMES[k] if spread <= BACKGROUND_SPREAD else None


def _size_class(extent: float) -> str:
    return min(SIZE_FRACTION, key=lambda s: abs(SIZE_FRACTION[s] - extent))


@functools.lru_cache(maxsize=16384)
def _template(name: str, w: int, h: int, color: str | None = None) -> np.ndarray:
    """The glyph's visible part (recoloured to `color`) scaled into a w x h box:
    premultiplied RGBA [h, w, 4]."""
    rgba = stamp(character(name), max(w, h), color)
    ys, xs = np.nonzero(rgba[..., 3] > 0.05)
    crop = rgba[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    if crop.shape[:2] != (h, w):
        crop = np.asarray(Image.fromarray((crop * 255).astype(np.uint8), "RGBA").resize(
            (w, h), Image.Resampling.BILINEAR), np.float32) / 255
    return crop


def _identify_box(img, box, bg_rgb, names, colors=()):
    """`identify` over the box and the box shrunk by 1..SHRINK_PX px on every side (blur and
    JPEG ringing grow a mask): the best (name, score, box)."""
    x0, y0, x1, y1 = box
    best = None
    for k in range(SHRINK_PX + 1):
        if k and min(x1 - x0, y1 - y0) - 2 * k < 4:
            break
        shrunk = (x0 + k, y0 + k, x1 - k, y1 - k)
        name, score = identify(img[shrunk[1]:shrunk[3], shrunk[0]:shrunk[2]], bg_rgb, names,
                               colors)
        if best is None or score > best[1]:
            best = (name, score, shrunk)
    return best


def identify(patch: np.ndarray, bg_rgb: np.ndarray, names: tuple[str, ...],
             colors: tuple[str, ...] = ()) -> tuple[str, float]:
    """(name, NCC) of the best-matching glyph for an object's box (RGB 0..255), each glyph
    as drawn and recoloured to each of `colors`."""
    h, w = patch.shape[:2]
    target = patch.ravel() - patch.mean()
    norm = np.linalg.norm(target)
    if norm == 0:
        return UNKNOWN, 0.0
    best, best_score = UNKNOWN, -1.0
    bg = bg_rgb.astype(np.float32) / 255
    for name in names:
        for color in (None, *colors):
            t = _template(name, w, h, color)
            rendered = (t[..., :3] + bg * (1 - t[..., 3:])) * 255
            ref = rendered.ravel() - rendered.mean()
            score = float(target @ ref / (norm * (np.linalg.norm(ref) or 1.0)))
            if score > best_score:
                best, best_score = name, score
    return (best if best_score >= MIN_NCC else UNKNOWN), best_score


def closest_color(patch: np.ndarray, bg_rgb: np.ndarray, name: str,
                  colors: tuple[str, ...]) -> str:
    """The colour of an identified object: of its glyph as drawn (its natural colour) and
    recoloured to each of `colors`, the one nearest the patch (mean squared error)."""
    h, w = patch.shape[:2]
    bg = bg_rgb.astype(np.float32) / 255
    def error(color):
        t = _template(name, w, h, color)
        return float(np.mean(((t[..., :3] + bg * (1 - t[..., 3:])) * 255 - patch) ** 2))

    best = min((None, *colors), key=error)
    return best or natural_color(character(name))


# ----------------------------------------------------------------------------- judging
def is_correct_emoji(scene: EmojiScene, parsed: ParsedEmojiScene) -> bool:
    """Whether a parsed image obeys a spec (every group, relation; nothing left over)."""
    if not could_match(scene, parsed):
        return False
    objects = parsed.objects
    fits = [[j for j, g in enumerate(scene.groups)
             if o.name == g.object and g.size in (None, o.size) and g.color in (None, o.color)]
            for o in objects]
    return _deal(scene, objects, fits, [[] for _ in scene.groups], 0)


def identity_share(scene: EmojiScene, parsed: ParsedEmojiScene) -> float:
    """The share of the asked objects drawn as the right emoji, every copy counted: per
    asked name, min(asked, drawn) / max(asked, drawn) summed over the names, so a copy too
    many lowers it as a copy too few does ("a red apple" drawn as three apples: 1/3). A
    group with no count asks for as many as are drawn, at least one."""
    asked: dict[str, int] = {}
    for g in scene.groups:
        drawn = sum(o.name == g.object for o in parsed.objects)
        asked[g.object] = asked.get(g.object, 0) + (g.count or max(1, drawn))
    right = total = 0
    for name, want in asked.items():
        drawn = sum(o.name == name for o in parsed.objects)
        right += min(want, drawn)
        total += max(want, drawn)
    return right / total
