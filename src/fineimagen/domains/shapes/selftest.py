"""Validation of the scene parser against ground truth, on clean and perturbed renders.

Perturbations imitate generated images: a slight blur, a colour cast, pixel noise and a few
small blobs; "rimmed" renders also have the darker band that generated objects show along
their edges. Agreement is counted per (group, attribute) after matching each true group to
the detected group that agrees with it most.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np
from scipy import ndimage

from . import vocab
from .parser import MIN_TEXTURE_SIDE, DetectedGroup, parse_image
from .render import render
from .scene import sample_scene


def perturb(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (sigma 0.3-0.8 px), colour cast (gain +-7%, offset +-8), noise (sigma 2-6) and
    1-3 small blobs of random colour, as uint8."""
    img = image.astype(np.float32)
    img = ndimage.gaussian_filter(img, (rng.uniform(0.3, 0.8),) * 2 + (0,))
    img = img * rng.uniform(0.93, 1.07, 3) + rng.uniform(-8, 8, 3)
    img += rng.normal(0, rng.uniform(2, 6), img.shape)
    side = img.shape[0]
    ys, xs = np.indices(img.shape[:2]) + 0.5
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0, side, 2)
        radius = rng.uniform(0.5, 1.0) * side / 64
        blob = np.clip(radius - np.hypot(xs - cx, ys - cy) + 0.5, 0, 1)[..., None]
        img += blob * (rng.uniform(0, 255, 3) - img)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def darken_rims(image: np.ndarray, background: str, rng: np.random.Generator) -> np.ndarray:
    """A clean render with each object's outer band (1-2 px per 128 px of side) darkened by a
    factor 0.7-0.9, as generated images ring along edges; uint8."""
    img = image.astype(np.float32)
    objects = (img != np.array(vocab.BACKGROUND_RGB[background], np.float32)).any(-1)
    width = max(1, round(rng.integers(1, 3) * img.shape[0] / 128))
    band = objects & ~ndimage.binary_erosion(objects, iterations=width)
    img[band] *= rng.uniform(0.7, 0.9)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def truth_groups(scene) -> list[dict]:
    return [g.fields() for g in scene.groups]


def match_groups(
    truth: list[dict], detected: list[DetectedGroup], keys: tuple[str, ...]
) -> list[dict | None]:
    """For each true group, the detected group's attributes that agree with it most (or None)."""
    found = [d.attributes() for d in detected]
    slots: list[dict | None] = found + [None] * len(truth)
    best, best_score = [None] * len(truth), -1
    for chosen in permutations(range(len(slots)), len(truth)):
        pairs = [(t, slots[c]) for t, c in zip(truth, chosen, strict=True)]
        score = sum(d is not None and d[k] == t[k] for t, d in pairs for k in keys if k in t)
        if score > best_score:
            best, best_score = [d for _, d in pairs], score
    return best


@dataclass
class Agreement:
    per_attribute: dict[str, float]
    all_attributes: float
    scene_exact: float
    n: int


def agreement(size: int, n: int, seed: int = 0, perturbed: bool = False,
              rimmed: bool = False) -> Agreement:
    """Parse `n` random renders (both splits) at `size` px and compare with their truth;
    `rimmed` darkens the objects' edges before any perturbation."""
    keys = tuple(k for k in vocab.ATTRIBUTES if k != "texture" or size >= MIN_TEXTURE_SIDE)
    hits = dict.fromkeys(keys, 0)
    total, exact = 0, 0
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene, placed = sample_scene(rng, "heldout" if i % 4 == 3 else "train")
        image = render(placed, scene.background, size)
        if rimmed:
            image = darken_rims(image, scene.background, rng)
        if perturbed:
            image = perturb(image, rng)
        parsed = parse_image(image)
        truth = truth_groups(scene)
        matched = match_groups(truth, parsed.groups, keys)
        right = [d is not None and d[k] == t[k] for t, d in zip(truth, matched, strict=True)
                 for k in keys]
        for t, d in zip(truth, matched, strict=True):
            for k in keys:
                hits[k] += d is not None and d[k] == t[k]
        total += len(truth)
        exact += all(right) and len(parsed.groups) == len(truth)
    per = {k: hits[k] / total for k in keys}
    return Agreement(per, float(np.mean(list(per.values()))), exact / n, n)


def format_agreement(rows: dict[str, Agreement]) -> str:
    """One line per (size, condition): agreement per attribute, all attributes, exact scenes."""
    keys = vocab.ATTRIBUTES
    head = f"{'renders':<16}" + "".join(f"{k:>9}" for k in keys) + f"{'all':>8}{'scenes':>8}"
    lines = [head]
    for name, row in rows.items():
        cells = "".join(f"{row.per_attribute[k]:9.4f}" if k in row.per_attribute else f"{'-':>9}"
                        for k in keys)
        lines.append(f"{name:<16}{cells}{row.all_attributes:8.4f}{row.scene_exact:8.3f}")
    lines.append(f"({rows and next(iter(rows.values())).n} scenes a row; 'all' = mean agreement "
                 "over attributes, 'scenes' = share parsed exactly; texture from 64 px)")
    return "\n".join(lines)
