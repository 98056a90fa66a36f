"""Anti-aliased rendering of shapes scenes at any size.

Each shape is a signed distance function (SDF) in a unit box [-0.5, 0.5]^2 (y down) whose
bounding box spans the object's extent; coverage is `clip(0.5 - d, 0, 1)` with d in pixels,
which gives one pixel of anti-aliasing at every resolution. Textures are a second coverage
map (the darker shade) in the object's own coordinates, three pattern periods per object.
Object stamps are cached, so rendering small images costs a few array operations per object.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import vocab
from .scene import PlacedObject

PERIODS = 3  # texture periods across one object
DOT_RADIUS = 0.27  # dot radius in periods
QUANTUM = 4  # object centres and sizes are snapped to 1/QUANTUM pixel (stamp cache key)
CACHE_MAX_SIDE = 96  # stamps larger than this (pixels) are not cached


def _heart_polygon(n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return _fit_unit_box(np.stack([x, y], 1))


def _star_polygon(inner: float = 0.42) -> np.ndarray:
    angle = -np.pi / 2 + np.arange(10) * np.pi / 5
    radius = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    return _fit_unit_box(np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1))


def _fit_unit_box(points: np.ndarray) -> np.ndarray:
    """Scale uniformly so the larger side is 1, centre the bounding box at the origin."""
    lo, hi = points.min(0), points.max(0)
    return (points - (lo + hi) / 2) / (hi - lo).max()


POLYGONS = {
    "triangle": np.array([[0.0, -0.5], [0.5, 0.5], [-0.5, 0.5]]),
    "star": _star_polygon(),
    "heart": _heart_polygon(),
}


def _polygon_sdf(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Exact signed distance to a closed polygon (negative inside), even-odd rule."""
    dist2 = np.full(px.shape, np.inf)
    inside = np.zeros(px.shape, bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, 0), strict=True):
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        dist2 = np.minimum(dist2, (wx - t * ex) ** 2 + (wy - t * ey) ** 2)
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (py - ay) * ex / ey
        inside ^= crosses & (px < x_cross)
    return np.where(inside, -1.0, 1.0) * np.sqrt(dist2)


def shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance in unit-box coordinates (object extent = 1)."""
    if shape == "circle":
        return np.hypot(u, v) - 0.5
    if shape == "square":
        qx, qy = np.abs(u) - 0.5, np.abs(v) - 0.5
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0)
    return _polygon_sdf(u, v, POLYGONS[shape])


def texture_coverage(texture: str, u: np.ndarray, v: np.ndarray, side_px: float) -> np.ndarray:
    """Coverage of the dark shade in [0, 1]; one pattern cell is centred on the object."""
    if texture == "solid":
        return np.zeros_like(u)
    period_px = side_px / PERIODS
    su, sv = u * PERIODS + 0.5, v * PERIODS + 0.5  # pattern coordinates, in periods
    tu, tv = np.abs(su % 1 - 0.5), np.abs(sv % 1 - 0.5)  # distance to the cell centre line
    if texture == "striped":
        return np.clip(0.5 + (0.25 - tv) * period_px, 0, 1)
    if texture == "checkered":
        a = np.clip(0.5 + (0.25 - tu) * period_px, 0, 1)
        b = np.clip(0.5 + (0.25 - tv) * period_px, 0, 1)
        return a * b + (1 - a) * (1 - b)
    return np.clip(0.5 + (DOT_RADIUS - np.hypot(tu, tv)) * period_px, 0, 1)  # dotted


def object_stamp(
    shape: str, texture: str, side_px: float, cx: float, cy: float
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Coverage of an object centred at pixel coordinates (cx, cy) with extent `side_px`.

    Returns (x0, y0, alpha, dark): the top-left pixel of the stamp, the object's coverage
    and the dark-shade coverage, both [h, w] float32.
    """
    q = QUANTUM
    side_q, cx_q, cy_q = round(side_px * q), round(cx * q), round(cy * q)
    x0, fx = divmod(cx_q, q)
    y0, fy = divmod(cy_q, q)
    if side_q <= CACHE_MAX_SIDE * q:
        ox, oy, alpha, dark = _cached_stamp(shape, texture, side_q, fx, fy)
    else:
        ox, oy, alpha, dark = _stamp(shape, texture, side_q, fx, fy)
    return x0 + ox, y0 + oy, alpha, dark


def _stamp(shape, texture, side_q, fx, fy):
    q = QUANTUM
    side, cx, cy = side_q / q, fx / q, fy / q  # centre within pixel (0, 0)
    reach = int(np.ceil(side / 2 + 1.5))
    offsets = np.arange(-reach, reach + 1)
    pu = (offsets + 0.5 - cx) / side  # pixel centres in unit-box coordinates
    pv = (offsets + 0.5 - cy) / side
    u, v = np.meshgrid(pu, pv)
    alpha = np.clip(0.5 - shape_sdf(shape, u, v) * side, 0, 1).astype(np.float32)
    dark = texture_coverage(texture, u, v, side).astype(np.float32)
    return -reach, -reach, alpha, dark


_cached_stamp = lru_cache(maxsize=8192)(_stamp)


def shade(light, dark):
    """An object's colour where the texture's dark shade covers `dark` of a pixel (arrays or
    tensors that broadcast)."""
    return light * (1 - dark * (1 - vocab.TEXTURE_SHADE))


def render(objects: list[PlacedObject], background: str, size: int) -> np.ndarray:
    """Render placed objects on a background: uint8 [size, size, 3]."""
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = vocab.BACKGROUND_RGB[background]
    for obj in objects:
        light = np.array(vocab.COLOR_RGB[obj.color], np.float32)
        where, alpha, dark = placed_stamp(obj, size)
        color = shade(light, dark[..., None])
        region = canvas[where]
        region += alpha[..., None] * (color - region)
    return np.rint(canvas).astype(np.uint8)


def placed_stamp(obj: PlacedObject, size: int
                 ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The object's stamp on a canvas of `size`: the (rows, columns) it covers and its
    coverage and dark-shade coverage there, cut to the canvas."""
    x0, y0, alpha, dark = object_stamp(
        obj.shape, obj.texture, obj.size * size, obj.x * size, obj.y * size
    )
    h, w = alpha.shape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + h, size), min(x0 + w, size)
    cut = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
    return (slice(ya, yb), slice(xa, xb)), alpha[cut], dark[cut]


def group_coverage(objects: list[PlacedObject], groups: int, size: int) -> np.ndarray:
    """The visible coverage of each group's objects, float32 [groups, size, size] in [0, 1]:
    objects drawn later cover earlier ones, as in `render`."""
    cover = np.zeros((groups, size, size), np.float32)
    for obj in objects:
        (rows, cols), alpha, _ = placed_stamp(obj, size)
        cover[:, rows, cols] *= 1 - alpha
        cover[obj.group, rows, cols] += alpha
    return cover
