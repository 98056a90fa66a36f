"""GenEval-style compositional scoring of images against scene specs.

A prompt file is JSONL, one `{"prompt": str, "scene": <scene spec>}` a line (other keys are
ignored); images are `{index:05d}_{k}.png`, the k-th sample of line `index`. Each image is
judged by the shapes domain's rule (domains/shapes/judge.py); texture-category prompts are
left out of the table below 64 px, where texture is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.prompt_file import read_prompt_file
from ..domains.shapes import vocab
from ..domains.shapes.captions import caption
from ..domains.shapes.judge import (
    ATTRIBUTION_FAULTS,
    attribution_fault,
    category_of,
    is_correct,
    is_unseen,
)
from ..domains.shapes.paraphrase import free_caption
from ..domains.shapes.parser import MIN_TEXTURE_SIDE, parse_image
from ..domains.shapes.render import render
from ..domains.shapes.scene import (
    Group,
    Relation,
    Scene,
    complete,
    heldout_group,
)
from ..errors import InputError
from ..images import open_image

CATEGORIES = ("single_object", "two_objects", "counting", "colors", "position", "size",
              "texture", "color_attribution", "relation")
BACKGROUND_SHARE = 0.25  # eval prompts that state the background


@dataclass
class EvalItem:
    prompt: str
    scene: Scene
    category: str
    unseen: bool


def read_prompts(path: str | Path) -> list[EvalItem]:
    """Read and validate a prompts JSONL with a scene a line; errors name the line."""
    return [EvalItem(prompt, scene, category_of(scene), is_unseen(scene))
            for prompt, scene in read_prompt_file(path, need_scene=True)]


def image_paths(folder: Path, index: int) -> list[Path]:
    return sorted(folder.glob(f"{index:05d}_*.png"))


def score_folder(items: list[EvalItem], folder: str | Path,
                 indices: list[int] | None = None, faults: bool = False) -> dict:
    """Parse every image of every prompt and return the score table (see `summarize`);
    `indices` are the items' line numbers in the file names (default 0, 1, ...). With
    `faults`, the table also counts how the colour-attribution images went
    ("attribution_faults", see `attribution_fault`), from the same parses."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    results = []
    counts = dict.fromkeys(ATTRIBUTION_FAULTS, 0)
    for index, item in zip(indices or range(len(items)), items, strict=True):
        paths = image_paths(folder, index)
        if not paths:
            raise InputError(f"no image for prompt line {index + 1}: expected {index:05d}_0.png")
        for path in paths:
            image = load_rgb(path)
            side = image.shape[0]
            if not judged(item, side):
                continue
            parsed = parse_image(image)
            results.append((item, is_correct(item.scene, parsed, side)))
            if faults and item.category == "color_attribution":
                counts[attribution_fault(item.scene, parsed, side)] += 1
    scores = summarize(results)
    if faults and "color_attribution" in scores["categories"]:
        scores["attribution_faults"] = counts
    return scores


def judged(item: EvalItem, side: int) -> bool:
    return item.category != "texture" or side >= MIN_TEXTURE_SIDE


def load_rgb(path: Path) -> np.ndarray:
    image = np.asarray(open_image(path, "RGB"))
    if image.shape[0] != image.shape[1]:
        raise InputError(f"image {path} is not square ({image.shape[1]}x{image.shape[0]})")
    return image


def summarize(results: list[tuple[EvalItem, bool]]) -> dict:
    """{"overall", "categories", "seen", "unseen", "n_images"}; overall = mean of categories."""
    def table(subset):
        cats = {}
        for cat in CATEGORIES:
            hits = [ok for item, ok in subset if item.category == cat]
            if hits:
                cats[cat] = float(np.mean(hits))
        overall = float(np.mean(list(cats.values()))) if cats else None
        return {"overall": overall, "categories": cats, "n_images": len(subset)}

    full = table(results)
    full["seen"] = table([r for r in results if not r[0].unseen])
    full["unseen"] = table([r for r in results if r[0].unseen])
    shared = [c for c in full["unseen"]["categories"] if c in full["seen"]["categories"]]
    if shared:  # seen against unseen on the categories both hold: novelty alone
        full["shared"] = {
            "categories": shared,
            "seen": float(np.mean([full["seen"]["categories"][c] for c in shared])),
            "unseen": float(np.mean([full["unseen"]["categories"][c] for c in shared]))}
    return full


def format_table(scores: dict) -> str:
    """The score table as aligned text: one row per category, columns all / seen / unseen."""
    def cell(t, cat):
        value = t["overall"] if cat == "overall" else t["categories"].get(cat)
        return "   -  " if value is None else f"{value:6.3f}"

    lines = [f"{'category':<18} {'all':>6} {'seen':>6} {'unseen':>6}"]
    for cat in (*CATEGORIES, "overall"):
        if cat != "overall" and cat not in scores["categories"]:
            continue
        row = [cell(scores, cat), cell(scores["seen"], cat), cell(scores["unseen"], cat)]
        lines.append(f"{cat:<18} " + " ".join(row))
    lines.append(f"images: {scores['n_images']} (seen {scores['seen']['n_images']}, "
                 f"unseen {scores['unseen']['n_images']})")
    if "shared" in scores:
        shared = scores["shared"]
        lines.append(f"seen {shared['seen']:.3f} / unseen {shared['unseen']:.3f} on the "
                     f"categories both hold ({', '.join(shared['categories'])})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- eval sets
STYLES = ("grammar", "free")


def make_evalset(n: int, split: str, seed: int = 0, style: str = "grammar") -> list[EvalItem]:
    """A balanced prompt set: categories in turn; with split `heldout` every other prompt of
    a category that can hold one uses a held-out combination. Style `grammar` words each
    scene as training captions do; `free` in the second phrase bank (domains/shapes/paraphrase.py),
    for the same scenes as `grammar` with the same seed."""
    if split not in ("train", "heldout"):
        raise InputError(f"unknown split {split!r} (choose from train, heldout)")
    if style not in STYLES:
        raise InputError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        want_unseen = split == "heldout" and (i // len(CATEGORIES)) % 2 == 1
        scene = _eval_scene(category, want_unseen, rng)
        if rng.random() < BACKGROUND_SHARE:
            scene = replace(scene, background=str(rng.choice(vocab.BACKGROUNDS)))
        prompt = caption(scene, rng)
        if style == "free":
            prompt = free_caption(scene, np.random.default_rng([seed, i, 1]))
        items.append(EvalItem(prompt, scene, category, is_unseen(scene)))
    return items


def _eval_scene(category: str, unseen: bool, rng: np.random.Generator) -> Scene:
    for _ in range(1000):
        scene = _draw(category, unseen, rng)
        if category_of(scene) == category and is_unseen(scene) == (unseen and _can_hold(category)):
            return scene
    raise AssertionError(f"no eval scene for {category}")  # the draws below always succeed


def _can_hold(category: str) -> bool:
    """Categories with held-out combinations; their seen and unseen prompts have the same
    number of groups and objects (so the gap measures novelty alone)."""
    return category in ("colors", "position", "texture", "color_attribution", "relation")


def _draw(category: str, unseen: bool, rng: np.random.Generator) -> Scene:
    shapes = [str(s) for s in rng.permutation(vocab.SHAPES)]
    colors = [str(c) for c in rng.permutation(vocab.COLORS)]
    g = heldout_group(rng) if unseen and _can_hold(category) else None
    if category == "single_object":
        return Scene((Group(shapes[0], count=1),))
    if category == "two_objects":
        return Scene((Group(shapes[0], count=1), Group(shapes[1], count=1)))
    if category == "counting":
        return Scene((Group(shapes[0], count=int(rng.integers(2, 5))),))
    if category == "colors":
        return Scene((Group(g.shape, color=g.color, count=1) if g and g.color
                      else Group(shapes[0], color=colors[0], count=1),))
    if category == "position":  # counts 2-4 and small or medium, as the held-out ones
        if g and g.position:
            return Scene((Group(g.shape, position=g.position, count=g.count, size=g.size),))
        return Scene((Group(shapes[0], position=str(rng.choice(vocab.POSITIONS)),
                            count=int(rng.integers(2, 5)),
                            size=str(rng.choice(("small", "medium")))),))
    if category == "size":
        return Scene((Group(shapes[0], size=str(rng.choice(vocab.SIZES)), count=1),))
    if category == "texture":
        return Scene((Group(g.shape, texture=g.texture, count=1) if g and g.texture
                      else Group(shapes[0], texture=str(rng.choice(vocab.TEXTURES)), count=1),))
    first = Group(g.shape, color=g.color, count=1) if g and g.color else \
        Group(shapes[0], color=colors[0], count=1)
    other = next(s for s in shapes if s != first.shape)
    second_color = next(c for c in colors if c != first.color)
    pair = (first, Group(other, color=second_color, count=1))
    if category == "relation":  # no cells stated
        return Scene(pair, relations=(Relation(0, str(rng.choice(vocab.RELATIONS)), 1),))
    return Scene(pair)


def truth_renders(items: list[EvalItem], size: int, samples: int = 1, seed: int = 0):
    """Yield (index, k, item, image): `samples` ground-truth renders of every spec, open
    attributes drawn at random (deterministic per seed, index, k)."""
    for index, item in enumerate(items):
        for k in range(samples):
            rng = np.random.default_rng([seed, index, k])
            scene, placed = complete(item.scene, rng)
            yield index, k, item, render(placed, scene.background, size)


def render_truth(items: list[EvalItem], size: int, samples: int = 1, seed: int = 0,
                 save_to: Path | None = None) -> dict:
    """Score ground-truth renders of every spec; optionally save them in the
    `{index:05d}_{k}.png` layout."""
    results = []
    for index, k, item, image in truth_renders(items, size, samples, seed):
        if save_to is not None:
            Image.fromarray(image).save(Path(save_to) / f"{index:05d}_{k}.png")
        if judged(item, size):
            results.append((item, is_correct(item.scene, parse_image(image), size)))
    return summarize(results)
