"""An adversarial check of the scene evaluator: truth renders, changed so that they must fail
(or must still pass) the prompt they were drawn for, and the share the evaluator passes.

Each must-fail change breaks one attribute the prompt states and is applied only to prompts
that state it (a greyscale "a circle" is still right). Must-pass changes keep every stated
attribute: compression, blur, small shifts, size jitter within the size class, other sizes.
`fineimagen eval --adversarial` prints the table; docs/evaluation.md keeps the targets.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.color import hsv2rgb, rgb2hsv

from ..domains.shapes import vocab
from ..domains.shapes.parser import MIN_TEXTURE_SIDE, parse_image
from ..domains.shapes.render import POLYGONS, group_coverage, render
from ..domains.shapes.scene import GAP, MARGIN, PlacedObject, Scene, complete, layout
from .compbench import EvalItem, is_correct, judged

MUST_FAIL_TARGET, MUST_PASS_TARGET = 0.02, 0.97
TINT = 0.25  # the background is blended this far toward a palette colour
JPEG_QUALITY, JPEG_MIN_SIDE = 75, 64  # 4:2:0 chroma washes 5-px objects out at 32 px
BLUR_SIGMA = 0.5  # px
SCALE_JITTER = 0.08  # relative, within the size class
RERENDER_SIZES = (64, 128, 256)


@dataclass
class Truth:
    """A truth render of a prompt: its completed scene, the objects placed and the image."""

    item: EvalItem
    scene: Scene  # every attribute filled in
    placed: list[PlacedObject]
    size: int
    image: np.ndarray  # uint8 [size, size, 3]


# A change returns the changed image, or None where it does not apply to the prompt.
Change = Callable[[Truth, np.random.Generator], np.ndarray | None]


def _stated(truth: Truth, key: str) -> list[int]:
    return [i for i, g in enumerate(truth.item.scene.groups) if getattr(g, key) is not None]


def _rerender(truth: Truth, placed: list[PlacedObject], scene: Scene | None = None):
    return render(placed, (scene or truth.scene).background, truth.size)


# ----------------------------------------------------------------------------- must fail
def greyscale(truth, rng):
    if not _stated(truth, "color"):
        return None
    grey = truth.image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.rint(grey)[..., None], 3, -1).astype(np.uint8)


def _hsv_change(image: np.ndarray, hue_turn: float = 0.0, saturation: float = 1.0):
    hsv = rgb2hsv(image)
    hsv[..., 0] = (hsv[..., 0] + hue_turn) % 1
    hsv[..., 1] *= saturation
    return np.rint(hsv2rgb(hsv) * 255).astype(np.uint8)


def hue_rotated(truth, rng):
    """Hue turned by 45 to 315 degrees."""
    if not _stated(truth, "color"):
        return None
    return _hsv_change(truth.image, hue_turn=rng.uniform(45, 315) / 360)


def saturation_halved(truth, rng):
    return _hsv_change(truth.image, saturation=0.5) if _stated(truth, "color") else None


def _box_shape_coverage(obj: PlacedObject, size: int) -> np.ndarray:
    """An ellipse (a rectangle for a circle) filling the object's own bounding box."""
    if obj.shape in POLYGONS:
        lo, hi = POLYGONS[obj.shape].min(0), POLYGONS[obj.shape].max(0)
    else:
        lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    half = (hi - lo) / 2 * obj.size * size  # half-axes in pixels
    centre = (np.array([obj.x, obj.y]) + (hi + lo) / 2 * obj.size) * size
    ys, xs = np.indices((size, size)) + 0.5
    u, v = xs - centre[0], ys - centre[1]
    if obj.shape == "circle":
        qx, qy = np.abs(u) - half[0], np.abs(v) - half[1]
        d = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    else:
        d = (np.hypot(u / half[0], v / half[1]) - 1) * half.min()
    return np.clip(0.5 - d, 0, 1).astype(np.float32)


def shape_replaced(truth, rng):
    """Every object drawn as an ellipse (a circle as a rectangle) of its colour and box."""
    canvas = np.empty((truth.size, truth.size, 3), np.float32)
    canvas[:] = vocab.BACKGROUND_RGB[truth.scene.background]
    for obj in truth.placed:
        alpha = _box_shape_coverage(obj, truth.size)[..., None]
        canvas += alpha * (np.array(vocab.COLOR_RGB[obj.color], np.float32) - canvas)
    return np.rint(canvas).astype(np.uint8)


def background_tinted(truth, rng):
    """The background blended TINT of the way toward a palette colour."""
    cover = group_coverage(truth.placed, len(truth.scene.groups), truth.size).sum(0)
    tint = np.array(vocab.COLOR_RGB[str(rng.choice(vocab.COLORS))], np.float32)
    img = truth.image.astype(np.float32)
    img += (1 - np.clip(cover, 0, 1))[..., None] * TINT * (tint - img)
    return np.rint(img).astype(np.uint8)


def extra_object(truth, rng):
    """One more small object: a copy of a stated group's shape, in a stated colour if any."""
    stated = truth.item.scene.groups
    colors = [g.color for g in stated if g.color]
    group = stated[int(rng.integers(len(stated)))]
    color = colors[int(rng.integers(len(colors)))] if colors else str(rng.choice(vocab.COLORS))
    side = vocab.SIZE_FRACTION["small"]
    for _ in range(500):
        x, y = rng.uniform(side / 2 + MARGIN, 1 - side / 2 - MARGIN, 2)
        extra = PlacedObject(len(stated), group.shape, color, "solid", float(x), float(y), side)
        reach = [(extra.size + o.size) / 2 + GAP / 2 for o in truth.placed]
        if all(abs(extra.x - o.x) >= r or abs(extra.y - o.y) >= r
               for o, r in zip(truth.placed, reach, strict=True)):
            return _rerender(truth, [*truth.placed, extra])
    return None


def _relaid(truth: Truth, rng, change: Callable[[int, object], object]) -> np.ndarray | None:
    """The completed scene with each group changed by `change(index, group)`, laid out
    anew (no relation enforced)."""
    groups = tuple(change(i, g) for i, g in enumerate(truth.scene.groups))
    scene = replace(truth.scene, groups=groups, relations=())
    for _ in range(50):
        placed = layout(scene, rng)
        if placed is not None:
            return _rerender(truth, placed, scene)
    return None


def group_moved(truth, rng):
    """One group with a stated cell moved to a cell at least two cells (Manhattan) away."""
    stated = _stated(truth, "position")
    if not stated:
        return None
    moved = stated[int(rng.integers(len(stated)))]
    row, col = vocab.cell_of(truth.scene.groups[moved].position)
    taken = {g.position for g in truth.scene.groups}
    far = [p for p in vocab.POSITIONS if p not in taken
           and abs(vocab.cell_of(p)[0] - row) + abs(vocab.cell_of(p)[1] - col) >= 2]
    target = far[int(rng.integers(len(far)))]
    return _relaid(truth, rng, lambda i, g: replace(g, position=target) if i == moved else g)


def size_swapped(truth, rng):
    """Stated small groups drawn large and stated large ones small."""
    swap = {"small": "large", "large": "small"}
    if not any(g.size in swap for g in truth.item.scene.groups):
        return None
    return _relaid(truth, rng, lambda i, g: replace(g, size=swap.get(g.size, g.size))
                   if truth.item.scene.groups[i].size else g)


def texture_removed(truth, rng):
    """Stated textures drawn solid (judged from MIN_TEXTURE_SIDE px)."""
    textured = {i for i in _stated(truth, "texture")
                if truth.item.scene.groups[i].texture != "solid"}
    if not textured or truth.size < MIN_TEXTURE_SIDE:
        return None
    return _rerender(truth, [replace(o, texture="solid") if o.group in textured else o
                             for o in truth.placed])


def relation_swapped(truth, rng):
    """The two related groups' places swapped."""
    if not truth.item.scene.relations:
        return None
    r = truth.item.scene.relations[0]
    cells = {r.subject: truth.scene.groups[r.object].position,
             r.object: truth.scene.groups[r.subject].position}
    return _relaid(truth, rng, lambda i, g: replace(g, position=cells.get(i, g.position)))


# ----------------------------------------------------------------------------- must pass
def jpeg(truth, rng):
    if truth.size < JPEG_MIN_SIDE:
        return None
    buffer = io.BytesIO()
    Image.fromarray(truth.image).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return np.asarray(Image.open(buffer).convert("RGB"))


def blurred(truth, rng):
    img = ndimage.gaussian_filter(truth.image.astype(np.float32), (BLUR_SIGMA,) * 2 + (0,))
    return np.rint(img).astype(np.uint8)


def shifted(truth, rng):
    """Shifted by 1-2 px along each axis (one of them may stay), background filled in."""
    dy, dx = rng.integers(-2, 3, 2)
    if dx == dy == 0:
        dx = 1
    out = np.empty_like(truth.image)
    out[:] = vocab.BACKGROUND_RGB[truth.scene.background]
    h = truth.size
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):h + min(dx, 0)] = \
        truth.image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):h - max(dx, 0)]
    return out


def scale_jittered(truth, rng):
    """Every object's extent scaled by up to SCALE_JITTER (each stays in its size class)."""
    return _rerender(truth, [replace(o, size=o.size * rng.uniform(1 - SCALE_JITTER,
                                                                  1 + SCALE_JITTER))
                             for o in truth.placed])


MUST_FAIL: dict[str, Change] = {
    "greyscale": greyscale, "hue rotated >= 45 deg": hue_rotated,
    "saturation halved": saturation_halved, "shape -> ellipse / rectangle": shape_replaced,
    "background tinted": background_tinted, "one extra object": extra_object,
    "group moved >= 2 cells": group_moved, "small <-> large": size_swapped,
    "texture removed": texture_removed, "relation places swapped": relation_swapped,
}
MUST_PASS: dict[str, Change] = {
    f"JPEG q{JPEG_QUALITY}": jpeg, f"blur sigma {BLUR_SIGMA} px": blurred,
    "shift 1-2 px": shifted, f"scale +-{SCALE_JITTER:.0%}": scale_jittered,
}


def truths(items: list[EvalItem], size: int, seed: int = 0):
    """One truth render per prompt (open attributes drawn per seed and index)."""
    for index, item in enumerate(items):
        scene, placed = complete(item.scene, np.random.default_rng([seed, index]))
        yield Truth(item, scene, placed, size, render(placed, scene.background, size))


def run(items: list[EvalItem], sizes: list[int], seed: int = 0) -> dict:
    """{size: {change: {"kind", "applied", "passed", "target"}}}, plus the re-render rows
    ("re-rendered at S px", from the first size's layouts) under "any"."""
    table: dict = {}
    for size in sizes:
        rows = table[str(size)] = {}
        counts = {name: [0, 0] for name in (*MUST_FAIL, *MUST_PASS)}
        for index, truth in enumerate(truths(items, size, seed)):
            if not judged(truth.item, size):
                continue
            for k, (name, change) in enumerate([*MUST_FAIL.items(), *MUST_PASS.items()]):
                image = change(truth, np.random.default_rng([seed, index, k]))
                if image is None:
                    continue
                counts[name][0] += 1
                counts[name][1] += is_correct(truth.item.scene, parse_image(image), size)
        for name, (applied, passed) in counts.items():
            must_fail = name in MUST_FAIL
            rows[name] = {"kind": "must fail" if must_fail else "must pass", "applied": applied,
                          "passed": passed / applied if applied else None,
                          "target": MUST_FAIL_TARGET if must_fail else MUST_PASS_TARGET}
    table["any"] = {f"re-rendered at {s} px": _rerendered(items, s, seed)
                    for s in RERENDER_SIZES}
    return table


def _rerendered(items, size: int, seed: int) -> dict:
    passed = [is_correct(t.item.scene, parse_image(t.image), size)
              for t in truths(items, size, seed) if judged(t.item, size)]
    return {"kind": "must pass", "applied": len(passed), "passed": float(np.mean(passed)),
            "target": MUST_PASS_TARGET}


def format_table(table: dict) -> str:
    """One line per change and size: kind, prompts it applied to, share passed, target met."""
    lines = [f"{'size':>5}  {'change':<30} {'kind':<10} {'applied':>7} {'passed':>7}  target"]
    for size, rows in table.items():
        for name, row in rows.items():
            if row["passed"] is None:
                lines.append(f"{size:>5}  {name:<30} {row['kind']:<10} {0:>7}      -")
                continue
            ok = row["passed"] <= row["target"] if row["kind"] == "must fail" \
                else row["passed"] >= row["target"]
            sign = "<=" if row["kind"] == "must fail" else ">="
            lines.append(f"{size:>5}  {name:<30} {row['kind']:<10} {row['applied']:>7} "
                         f"{row['passed']:7.3f}  {sign} {row['target']:.2f} "
                         f"{'met' if ok else 'MISSED'}")
    return "\n".join(lines)

