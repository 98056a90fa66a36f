"""A deterministic scene parser: reads a shapes image back into objects and groups.

No learned model. The steps, each chosen to survive the blur, noise and colour shifts of
generated images:
1. background = median of the border pixels; foreground = colour distance above a threshold;
   connected components, small ones dropped as noise.
2. coverage alpha per pixel: 1 inside a component, distance / local object contrast on its
   rim (so area and centroid are sub-pixel accurate even at 32 px, and blur preserves them).
3. shape by analysis-by-synthesis: each candidate shape is rendered with the renderer's own
   geometry at the area and centroid measured, and the best match (after a light blur of
   both) wins; size class from the fitted extent.
4. colour = nearest palette hue of the interior mean (hue survives grey blending and the
   darker texture shade); texture from the interior brightness pattern, read from
   RIM_DEPTH of the side inside the edge: generated images ring darker along an object's
   edge, which a one-pixel interior reads as a pattern.
5. groups = objects of one shape and colour; position = grid cell of the group's centroid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2hsv, rgb2lab

from . import vocab
from .render import object_stamp

FOREGROUND_DISTANCE = 40.0  # RGB distance from the background that marks a foreground pixel
# A component of at least this share of the smallest object's area (the smallest shape at
# the smallest size) and at least MIN_OBJECT_PIXELS of coverage is an object, never noise:
# 2.1 px at 32, 8 at 64, 33 at 128, 132 at 256 (the floor lifts 32 px to 3)
MIN_OBJECT_FRACTION = 0.25
MIN_OBJECT_PIXELS = 3.0
# Colour: the nearest palette colour in CIELAB (CIEDE2000), compared at the object's own
# brightness (the renderer shades a colour by a factor from TEXTURE_SHADE to 1), is the
# object's colour only within COLOR_RADIUS, with at least SATURATION_SHARE of the palette
# colour's HSV saturation (scale-free, so texture shading keeps it) and its HSV hue within
# HUE_RADIUS degrees; otherwise the object has no palette colour (grey, black, white,
# washed-out or off-palette). Calibrated on colour casts of +-7 % gain and +-8 offset
# (all pass) against hue rotations of 45 degrees or more and halved saturation (all fail).
COLOR_RADIUS = 15.0
STRONGEST = 0.8  # the colour is read from the pixels this close to the strongest (_strongest)
SATURATION_SHARE = 0.7
HUE_RADIUS = 22.0
SHADE_RANGE = (0.45, 1.1)  # brightness factors of a palette colour that still name it
# Shape: the closest template's misfit (see _fit_shape) above MISFIT_BASE + MISFIT_PER_PX /
# side makes the shape "unknown" (0.24 at 32 px, 0.20 at 64, 0.18 at 128): above the 99th
# percentile of truth objects, clean, perturbed or rimmed, at 64 and 128 px (0.2 % of them
# at most lie over it), and below a 3:2 rectangle or ellipse there. At 32 px (objects 5-9 px
# across) a 3:2 rectangle is not told from a heart; a 2:1 one is.
MISFIT_BASE, MISFIT_PER_PX = 0.16, 2.5
UNKNOWN_SHAPE = "unknown"
# Background: the pixels clear of every object must lie, on average, within
# BACKGROUND_RADIUS (CIEDE2000) of white, black or gray, and 95 % of them within
# BACKGROUND_SPREAD of it; otherwise the background is not uniform (None): tinted, graded
# or noisy. A background tinted 25 % toward any palette colour is 15 or more away.
BACKGROUND_RADIUS = 10.0
BACKGROUND_SPREAD = 15.0
TEXTURE_CONTRAST = 0.2  # relative interior brightness spread above which an object is textured
MIN_TEXTURE_SIDE = 64  # below this image side textures are not readable (reported as None)
RIM_DEPTH = 1 / 64  # of the side: the edge band left out of the texture reading (2 px at 128)
MIN_TEXTURE_PIXELS = 16  # a deeper interior smaller than this falls back to one pixel deep

_PALETTE = np.array([vocab.COLOR_RGB[c] for c in vocab.COLORS], np.float64)  # [8, 3]
_PALETTE_HSV = rgb2hsv(_PALETTE[None] / 255)[0]
_BACKGROUNDS_LAB = rgb2lab(np.array([vocab.BACKGROUND_RGB[b] for b in vocab.BACKGROUNDS],
                                    np.float64)[None] / 255)[0]  # [3, 3]


@dataclass
class DetectedObject:
    shape: str  # a vocab shape or UNKNOWN_SHAPE
    color: str | None  # None: no palette colour
    size: str
    texture: str | None
    x: float  # centroid, fraction of the image side
    y: float
    extent: float  # fitted extent, fraction of the image side
    mass: float  # coverage in pixels
    misfit: float = 0.0  # the shape template's error over the mass


@dataclass
class DetectedGroup:
    shape: str
    color: str | None
    objects: list[DetectedObject] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def position(self) -> str:
        return position_of_objects(self.objects)

    @property
    def size(self) -> str | None:
        """The size class shared by every object, else None."""
        return _common([o.size for o in self.objects])

    @property
    def texture(self) -> str | None:
        return _common([o.texture for o in self.objects])

    def attributes(self) -> dict:
        return {"shape": self.shape, "color": self.color, "size": self.size,
                "position": self.position, "texture": self.texture, "count": self.count}


def position_of_objects(objects: list[DetectedObject]) -> str:
    """The grid cell of the objects' joint centroid."""
    return vocab.position_at(float(np.mean([o.x for o in objects])),
                             float(np.mean([o.y for o in objects])))


def _common(values: list):
    return values[0] if len(set(values)) == 1 else None


@dataclass
class ParsedScene:
    background: str | None  # None: not a uniform white, black or gray
    objects: list[DetectedObject]
    groups: list[DetectedGroup]


def parse_image(image: np.ndarray) -> ParsedScene:
    """Parse an RGB image (uint8 or float in 0..255, [H, W, 3], square) into a scene."""
    img = np.asarray(image, np.float32)[..., :3]
    side = img.shape[0]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, 0)
    dist = np.linalg.norm(img - bg, axis=-1)
    mask = dist > FOREGROUND_DISTANCE
    clear = ~ndimage.binary_dilation(mask, iterations=2)
    background = _background(img[clear] if clear.sum() >= side else border)
    labels, n = ndimage.label(mask)
    if n == 0:
        return ParsedScene(background, [], [])
    alpha = _coverage(dist, mask, clear)
    # attach the one-pixel rim just outside each component to it (partial coverage lives there)
    rim = ndimage.grey_dilation(labels, footprint=_CROSS)
    owner = np.where(labels > 0, labels, rim)
    min_mass = min_object_mass(side)
    objects = []
    for k, box in enumerate(ndimage.find_objects(owner), start=1):
        if box is None:
            continue
        a = np.where(owner[box] == k, alpha[box], 0.0)
        if a.sum() < min_mass:
            continue
        objects.append(_describe(img[box], a, labels[box] == k, box, side, bg))
    return ParsedScene(background, objects, group_objects(objects))


def group_objects(objects: list[DetectedObject]) -> list[DetectedGroup]:
    """Objects of one shape and colour form a group."""
    groups: dict[tuple[str, str], DetectedGroup] = {}
    for obj in objects:
        groups.setdefault((obj.shape, obj.color), DetectedGroup(obj.shape, obj.color))
        groups[(obj.shape, obj.color)].objects.append(obj)
    return list(groups.values())


def min_object_mass(side: int) -> float:
    """The least coverage (pixels) of a component that counts as an object."""
    return max(MIN_OBJECT_PIXELS, MIN_OBJECT_FRACTION * _smallest_object_mass(side))


def _background(pixels: np.ndarray) -> str | None:
    """The background's name if the pixels clear of objects are uniformly one of the three
    background colours, else None."""
    lab = rgb2lab(np.clip(pixels, 0, 255)[None] / 255)[0]  # [n, 3]
    mean = lab.mean(0)
    named = _BACKGROUNDS_LAB
    k = int(deltaE_ciede2000(mean[None], named).argmin())
    if deltaE_ciede2000(mean, named[k]) > BACKGROUND_RADIUS:
        return None
    spread = np.percentile(deltaE_ciede2000(lab, named[k][None]), 95)
    return vocab.BACKGROUNDS[k] if spread <= BACKGROUND_SPREAD else None


_CROSS = ndimage.generate_binary_structure(2, 1)


def _coverage(dist: np.ndarray, mask: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Per-pixel object coverage: 1 in the interior, distance / local contrast on the rim."""
    interior = ndimage.binary_erosion(mask, _CROSS)
    local = ndimage.grey_dilation(np.where(interior, dist, 0), size=3)
    floor = np.median(dist[clear]) if clear.any() else 0.0  # noise level of the background
    contrast = np.where(local > 0, local, np.percentile(dist[mask], 90))
    alpha = np.clip((dist - floor) / np.maximum(contrast - floor, 1e-3), 0, 1)
    return np.where(interior, 1.0, alpha)


@lru_cache(maxsize=64)
def _smallest_object_mass(side: int) -> float:
    extent = vocab.SIZE_FRACTION["small"] * (1 - vocab.SIZE_JITTER) * side
    return min(_unit_moments(s)[0] for s in vocab.SHAPES) * extent**2


@cache
def _unit_moments(shape: str) -> tuple[float, float, float]:
    """Area of a shape with extent 1 and its centroid's offset from the box centre."""
    n = 256
    _, _, alpha, _ = object_stamp(shape, "solid", n, 0.0, 0.0)
    ys, xs = np.indices(alpha.shape)
    reach = (alpha.shape[0] - 1) // 2
    area = alpha.sum()
    cx = ((xs - reach + 0.5) * alpha).sum() / area / n
    cy = ((ys - reach + 0.5) * alpha).sum() / area / n
    return area / n**2, cx, cy


def _describe(img, alpha, core_mask, box, side, bg) -> DetectedObject:
    mass = alpha.sum()
    ys, xs = np.indices(alpha.shape)
    cy = (ys * alpha).sum() / mass + 0.5 + box[0].start  # centroid in image pixels
    cx = (xs * alpha).sum() / mass + 0.5 + box[1].start
    shape, extent, misfit = _fit_shape(alpha, mass, cx - box[1].start, cy - box[0].start)
    interior = ndimage.binary_erosion(core_mask, _CROSS) & (alpha >= 1)
    if interior.sum() < 4:
        interior = core_mask
    pixels = _strongest(img[interior], bg)
    texture = _texture(img, _texture_interior(core_mask, alpha, side, interior)) \
        if side >= MIN_TEXTURE_SIDE else None
    if misfit > MISFIT_BASE + MISFIT_PER_PX / side:
        shape = UNKNOWN_SHAPE
    return DetectedObject(
        shape=shape,
        color=_color(pixels),
        size=_size_class(extent / side),
        texture=texture,
        x=cx / side,
        y=cy / side,
        extent=extent / side,
        mass=float(mass),
        misfit=misfit,
    )


def _strongest(pixels: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """The pixels that differ most from the background (at least STRONGEST of the largest
    difference): the least mixed with it where blur or a small size wash an object out."""
    dist = np.linalg.norm(pixels - bg, axis=-1)
    return pixels[dist >= STRONGEST * dist.max()]


def _texture_interior(core_mask, alpha, side, interior):
    """The pixels at least RIM_DEPTH * side inside the edge (`interior`, one pixel deep,
    where the object is too small for that)."""
    depth = max(1, round(side * RIM_DEPTH))
    if depth == 1:
        return interior
    deep = ndimage.binary_erosion(core_mask, _CROSS, iterations=depth) & (alpha >= 1)
    return deep if deep.sum() >= MIN_TEXTURE_PIXELS else interior


def _fit_shape(alpha, mass, cx, cy) -> tuple[str, float, float]:
    """Render every shape with the measured area and centroid; the closest one wins.
    Returns (shape, extent, misfit): misfit is the closest template's error over the
    object's mass (0 for a perfect fit)."""
    best, best_err, best_extent = "circle", np.inf, 0.0
    target = ndimage.gaussian_filter(alpha, 0.7)
    for shape in vocab.SHAPES:
        area, ox, oy = _unit_moments(shape)
        extent = float(np.sqrt(mass / area))
        template = _template(shape, extent, cx - ox * extent, cy - oy * extent, alpha.shape)
        err = np.abs(ndimage.gaussian_filter(template, 0.7) - target).sum()
        if err < best_err:
            best, best_err, best_extent = shape, err, extent
    return best, best_extent, float(best_err / mass)


def _template(shape, extent, cx, cy, out_shape) -> np.ndarray:
    x0, y0, a, _ = object_stamp(shape, "solid", extent, cx, cy)
    out = np.zeros(out_shape, np.float32)
    h, w = a.shape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + h, out_shape[0]), min(x0 + w, out_shape[1])
    if ya < yb and xa < xb:
        out[ya:yb, xa:xb] = a[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return out


def _size_class(extent: float) -> str:
    s, m, lg = (vocab.SIZE_FRACTION[k] for k in vocab.SIZES)
    if extent < np.sqrt(s * m):
        return "small"
    return "medium" if extent < np.sqrt(m * lg) else "large"


def _color(pixels: np.ndarray) -> str | None:
    """The palette colour of an object's interior pixels, or None (see COLOR_RADIUS)."""
    mean = np.clip(pixels.mean(0), 0, 255)
    shade = np.clip(mean.max() / _PALETTE.max(1), *SHADE_RANGE)  # [8]
    rendered = _PALETTE * shade[:, None]  # each palette colour at the object's brightness
    distance = deltaE_ciede2000(rgb2lab(mean[None] / 255), rgb2lab(rendered / 255))  # [8]
    k = int(distance.argmin())
    hue, saturation, _ = rgb2hsv(mean[None, None] / 255)[0, 0]
    hue_off = abs((hue - _PALETTE_HSV[k, 0] + 0.5) % 1 - 0.5) * 360
    if (distance[k] > COLOR_RADIUS or saturation < SATURATION_SHARE * _PALETTE_HSV[k, 1]
            or hue_off > HUE_RADIUS):
        return None
    return vocab.COLORS[k]


def _texture(img, interior) -> str:
    """solid / striped (horizontal) / dotted / checkered from the interior brightness."""
    value = img.max(-1)
    v = value[interior]
    lo, hi = np.percentile(v, 5), np.percentile(v, 95)
    if hi - lo < TEXTURE_CONTRAST * hi:
        return "solid"
    dark = (value < (lo + hi) / 2) & interior
    fraction = dark.sum() / interior.sum()
    rows = interior.sum(1) > 0
    row_fraction = dark.sum(1)[rows] / interior.sum(1)[rows]
    weights = interior.sum(1)[rows]
    within_rows = np.average(row_fraction * (1 - row_fraction), weights=weights)
    total = max(fraction * (1 - fraction), 1e-6)
    if within_rows / total < 0.5:
        return "striped"
    return "dotted" if fraction < 0.34 else "checkered"
