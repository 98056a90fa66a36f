"""The OpenMoji eval set, its scoring, the evaluator's self-test and adversarial check.

Eval set (`fineimagen dataset evalset --domain openmoji`): prompts in the categories
single_object, two_objects, counting, position, size and relation, a quarter stating the
background; `unseen` items give their first group a held-out object x cell x count
combination; the `paraphrase` style names objects by their held-out aliases. Scores use the
shapes' table (`compbench.summarize`) plus `identity`, the share of asked objects drawn as
the right emoji.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..domains.openmoji.parser import identity_share, is_correct_emoji, parse_emoji_image
from ..domains.openmoji.render import render_emoji, stamp
from ..domains.openmoji.scene import (
    BACKGROUNDS,
    EmojiGroup,
    EmojiScene,
    alias_heldout,
    characters,
    complete_emoji,
    emoji_caption,
    emoji_category,
    is_heldout,
    other_names,
)
from ..domains.openmoji.vocab import character
from ..domains.shapes import vocab
from ..domains.shapes.scene import Relation
from ..errors import InputError
from .compbench import summarize

# must-pass JPEG: 4:2:0 chroma subsampling at 64 px washes a 13-px glyph's colours out, so
# the check keeps full chroma
JPEG_QUALITY = 85
CATEGORIES = ("single_object", "two_objects", "counting", "position", "size", "relation")
STYLES = ("canonical", "paraphrase")


@dataclass
class EmojiEvalItem:
    prompt: str
    scene: EmojiScene
    category: str
    unseen: bool


def make_emoji_evalset(n: int, names: tuple[str, ...], split: str = "heldout", seed: int = 0,
                       style: str = "canonical") -> list[EmojiEvalItem]:
    """`n` prompts, cycling through CATEGORIES; with split `heldout` every other item of the
    categories that state count and cell uses a held-out combination."""
    if style not in STYLES:
        raise InputError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    if style == "paraphrase":  # only objects whose aliases training never saw
        names = tuple(m for m in names if alias_heldout(m) and other_names(m)) or names
    rng = np.random.default_rng([seed, 7])
    items = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        unseen = (split == "heldout" and category in ("counting", "position")
                  and i // len(CATEGORIES) % 2 == 1)
        scene = _draw(category, unseen, names, rng)
        if rng.random() < 0.25:
            scene = replace(scene, background=str(rng.choice(BACKGROUNDS)))
        prompt = emoji_caption(scene, np.random.default_rng([seed, i, 1]), style)
        items.append(EmojiEvalItem(prompt, scene, category, unseen))
    return items


def _draw(category: str, unseen: bool, names, rng) -> EmojiScene:
    for _ in range(1000):
        a, b = (str(names[int(k)]) for k in rng.choice(len(names), 2, replace=False))
        count = int(rng.integers(2, 5))
        cell = str(rng.choice(vocab.POSITIONS))
        if category == "single_object":
            groups = (EmojiGroup(a, 1),)
        elif category == "two_objects":
            groups = (EmojiGroup(a, 1), EmojiGroup(b, 1))
        elif category == "counting":
            groups = (EmojiGroup(a, count, cell if unseen else None),)
        elif category == "position":
            groups = (EmojiGroup(a, count if unseen else 1, cell),)
        elif category == "size":
            groups = (EmojiGroup(a, 1, None, str(rng.choice(vocab.SIZES))),)
        else:
            scene = EmojiScene((EmojiGroup(a, 1), EmojiGroup(b, 1)),
                               relations=(Relation(0, str(rng.choice(vocab.RELATIONS)), 1),))
            return scene
        g = groups[0]
        held = g.position is not None and g.count is not None and is_heldout(
            g.object, g.position, g.count)
        if held == unseen:
            return EmojiScene(groups)
    raise AssertionError("no eval scene drawn")


def truth_image(item: EmojiEvalItem, size: int, seed: int = 0, k: int = 0):
    full, placed = complete_emoji(item.scene, np.random.default_rng([seed, k]))
    return render_emoji(placed, full.background, size, characters(full)), full, placed


def score_images(items: list[EmojiEvalItem], images: list[list[np.ndarray]],
                 names: tuple[str, ...]) -> dict:
    """The score table of images per item, with `identity` (mean over images)."""
    results, identity = [], []
    for item, group in zip(items, images, strict=True):
        for image in group:
            parsed = parse_emoji_image(image, names)
            results.append((_as_shapes_item(item), is_correct_emoji(item.scene, parsed)))
            identity.append(identity_share(item.scene, parsed))
    scores = summarize(results)
    scores["identity"] = float(np.mean(identity)) if identity else None
    return scores


def emoji_fid(aligner, items: list[EmojiEvalItem], images: list[list[np.ndarray]],
              seed: int = 0) -> dict:
    """In-domain FID of generated images (per item) against as many truth renders of the
    same prompts at the same side (eval.fid), and the mean aligner scores of both."""
    from .fid import fid_against

    generated = [image for group in images for image in group]
    if not generated:
        raise InputError("the Fréchet distance needs generated images")
    prompts = [item.prompt for item, group in zip(items, images, strict=True) for _ in group]
    side = generated[0].shape[0]
    real = [truth_image(item, side, seed + 1, k)[0]
            for item, group in zip(items, images, strict=True) for k in range(len(group))]
    return fid_against(aligner, generated, prompts, real, prompts)


def _as_shapes_item(item: EmojiEvalItem):
    from .compbench import EvalItem

    return EvalItem(item.prompt, item.scene, item.category, item.unseen)


def load_folder_images(folder: str | Path, n_items: int) -> list[list[np.ndarray]]:
    """The images NNNNN_K.png of each prompt line, as generate writes them."""
    from .compbench import image_paths, load_rgb

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    out = []
    for index in range(n_items):
        paths = image_paths(folder, index)
        if not paths:
            raise InputError(f"no image for prompt line {index + 1}: expected {index:05d}_0.png")
        out.append([load_rgb(p) for p in paths])
    return out


# ----------------------------------------------------------------------------- self-test
def selftest(names: tuple[str, ...], size: int, scenes: int = 200, seed: int = 0) -> dict:
    """Identity of every object of `names` alone at each size class (truth renders), and
    whole-scene correctness of random training scenes, at `size` px."""
    from ..domains.openmoji.scene import make_emoji_sample

    identity = {}
    rng = np.random.default_rng(seed)
    for size_class in vocab.SIZES:
        hits = []
        for name in names:
            scene = EmojiScene((EmojiGroup(name, 1, None, size_class),))
            full, placed = complete_emoji(scene, rng)
            parsed = parse_emoji_image(render_emoji(placed, full.background, size,
                                                    characters(full)), names)
            hits.append(len(parsed.objects) == 1 and parsed.objects[0].name == name)
        identity[size_class] = float(np.mean(hits))
    whole = []
    for i in range(scenes):
        sample = make_emoji_sample(i, size, names, "train", seed + 1)
        whole.append(is_correct_emoji(sample.scene,
                                      parse_emoji_image(sample.image, names)))
    return {"size": size, "identity": identity, "scene": float(np.mean(whole)),
            "objects": len(names), "scenes": scenes}


# ----------------------------------------------------------------------------- adversarial
def _similar_colour(name: str, names: tuple[str, ...]) -> str:
    """The vocabulary object whose glyph's mean colour is nearest to `name`'s."""
    def mean(n):
        rgba = stamp(character(n), 32)
        return rgba[..., :3].sum((0, 1)) / max(rgba[..., 3].sum(), 1e-6)

    own = mean(name)
    return min((m for m in names if m != name), key=lambda m: float(((mean(m) - own) ** 2).sum()))


def _jpeg(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def adversarial(items: list[EmojiEvalItem], names: tuple[str, ...], size: int,
                seed: int = 0) -> dict:
    """The share of changed truth renders the evaluator passes: must-fail changes (object
    replaced by the vocabulary's nearest in mean colour, one object removed, a group moved
    to another cell, background tinted) and must-pass ones (JPEG 85 without chroma
    subsampling, a 1-px shift). The first row is the unchanged truths themselves (must
    pass): the changes are made only to truths that pass, so a truth that fails is counted
    there, never dropped unseen."""
    changes: dict[str, list[bool]] = {k: [] for k in (
        "unchanged", "replaced by a similar colour", "one object removed", "group moved",
        "background tinted", "jpeg", "shifted 1 px")}
    for k, item in enumerate(items):
        image, full, placed = truth_image(item, size, seed, k)
        scene = item.scene

        def passes(img, scene=scene):
            return is_correct_emoji(scene, parse_emoji_image(img, names))

        changes["unchanged"].append(passes(image))
        if not changes["unchanged"][-1]:
            continue  # a change to a failing truth would tell nothing
        other = _similar_colour(full.groups[0].object, names)
        swapped = [replace(o, shape=other) if o.group == 0 else o for o in placed]
        chars = {**characters(full), other: character(other)}
        changes["replaced by a similar colour"].append(
            passes(render_emoji(swapped, full.background, size, chars)))
        if len(placed) > 1 or scene.groups[0].count:
            fewer = placed[1:]
            changes["one object removed"].append(
                passes(render_emoji(fewer, full.background, size, characters(full))))
        if scene.groups[0].position is not None:
            shift = 1 / 3 if full.groups[0].position.split()[-1] != "right" else -1 / 3
            moved = [replace(o, x=o.x + shift) if o.group == 0 else o for o in placed]
            changes["group moved"].append(
                passes(render_emoji(moved, full.background, size, characters(full))))
        if scene.background is not None:  # a change must break what the prompt states
            tinted = np.clip(image.astype(np.float32) * 0.85 + np.array([255, 140, 0]) * 0.15,
                             0, 255).astype(np.uint8)  # everything 15% toward orange
            changes["background tinted"].append(passes(tinted))
        changes["jpeg"].append(passes(_jpeg(image)))
        changes["shifted 1 px"].append(passes(np.roll(image, 1, axis=1)))
    return {k: {"passed": float(np.mean(v)) if v else None, "n": len(v),
                "must": "pass" if k in ("unchanged", "jpeg", "shifted 1 px") else "fail"}
            for k, v in changes.items()}


def read_emoji_prompts(path: str | Path, names: tuple[str, ...]) -> list[EmojiEvalItem]:
    """A prompts JSONL of this domain ({"prompt", "scene"} a line); errors name the line."""
    import json

    from ..domains.openmoji.scene import parse_emoji_spec

    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            scene = parse_emoji_spec(record["scene"], names)
            prompt = str(record["prompt"])
        except (json.JSONDecodeError, KeyError, TypeError, InputError) as err:
            raise InputError(f"{path} line {number}: {err}") from None
        unseen = any(g.position and g.count and is_heldout(g.object, g.position, g.count)
                     for g in scene.groups)
        category = record.get("category")
        if category not in CATEGORIES:
            category = emoji_category(scene)
        items.append(EmojiEvalItem(prompt, scene, category, unseen))
    if not items:
        raise InputError(f"{path} holds no prompts")
    return items
