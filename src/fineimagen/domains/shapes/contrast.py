"""Image-caption pairs with hard negatives for contrastive training of the aligner.

A hard negative is the caption of the same scene with one *mentioned* attribute of one group
changed ("red circle on the left" -> "red circle on the right"); it is phrased with the
same random choices as the true caption, so only that attribute's words differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset

from . import vocab
from .captions import caption, mention
from .render import render
from .samples import check_side, shard_indices, to_tensor
from .scene import Scene, sample_scene

EDITABLE = ("shape", "color", "size", "position", "texture", "count")


@dataclass
class ContrastSample:
    image: np.ndarray  # uint8 [size, size, 3]
    caption: str
    negatives: list[str]  # captions of the same scene with one attribute changed each
    scene: Scene  # complete
    edited: list[str]  # the attribute each negative changed (one of EDITABLE)
    enlarged: bool = False  # drawn at the low resolution and enlarged


def edit_one(said: Scene, rng: np.random.Generator, editable: tuple[str, ...] = EDITABLE,
             weights: dict[str, float] | None = None) -> tuple[Scene, str]:
    """`said` with one attribute that it sets (of `editable`) changed to another value of
    the vocabulary, and that attribute's name. Each (group, attribute) it sets is equally
    likely, or in proportion to `weights[attribute]` (default 1) where given."""
    choices = [(i, name) for i, g in enumerate(said.groups) for name in editable
               if getattr(g, name) is not None]
    if weights:
        p = np.array([weights.get(name, 1.0) for _, name in choices])
        i, name = choices[int(rng.choice(len(choices), p=p / p.sum()))]
    else:
        i, name = choices[int(rng.integers(len(choices)))]
    group = said.groups[i]
    old = getattr(group, name)
    taken = {getattr(g, name) for g in said.groups} if name == "position" else {old}
    values = [v for v in vocab.VOCAB[name] if v not in taken] or \
        [v for v in vocab.VOCAB[name] if v != old]
    new = values[int(rng.integers(len(values)))]
    groups = list(said.groups)
    groups[i] = replace(group, **{name: new})
    return replace(said, groups=tuple(groups)), name


SWAPPABLE = ("color", "texture", "size")


def swap_two(said: Scene, rng: np.random.Generator,
             swappable: tuple[str, ...] = SWAPPABLE) -> tuple[Scene, str] | None:
    """`said` with the values of one attribute exchanged between two groups that both state
    it differently ("a red circle and a blue square" -> "a blue circle and a red square"),
    and "swap " + its name; None where no two groups can swap anything."""
    groups = said.groups

    def differ(i: int, j: int, name: str) -> bool:
        a, b = getattr(groups[i], name), getattr(groups[j], name)
        return a is not None and b is not None and a != b

    choices = [(i, j, name) for name in swappable for i in range(len(groups))
               for j in range(i + 1, len(groups)) if differ(i, j, name)]
    if not choices:
        return None
    i, j, name = choices[int(rng.integers(len(choices)))]
    swapped = list(groups)
    swapped[i] = replace(groups[i], **{name: getattr(groups[j], name)})
    swapped[j] = replace(groups[j], **{name: getattr(groups[i], name)})
    return replace(said, groups=tuple(swapped)), f"swap {name}"


def make_contrast_sample(index: int, size: int, negatives: int = 4, split: str = "train",
                         seed: int = 0, low_res: int | None = None,
                         keep: float | None = None, swaps: float = 0.0,
                         weights: dict[str, float] | None = None) -> ContrastSample:
    """Sample `index` of the stream: a render, its caption and `negatives` hard negatives.

    With `low_res`, half the renders are drawn at that side and enlarged (bilinear) to
    `size`, so the aligner also scores the base stage's small images fairly; their hard
    negatives never change the texture, which a small render shows only faintly. `keep` is
    the share of attributes the caption mentions (default: drawn from U(0.5, 1)). With chance
    `swaps`, the first negative swaps an attribute between two groups (`swap_two`) where the
    caption states one for both: a bag of words cannot tell it from the truth. `weights`
    makes some attributes' edits likelier (`edit_one`).
    """
    rng = np.random.default_rng([seed, index, 0 if split == "train" else 1, 7])
    scene, placed = sample_scene(rng, split)
    share = rng.uniform(0.5, 1.0)
    said = mention(scene, rng, keep=share if keep is None else keep)
    phrasing = int(rng.integers(2**31))
    text = caption(said, np.random.default_rng(phrasing))
    enlarged = bool(low_res) and rng.random() < 0.5
    editable = tuple(a for a in EDITABLE if a != "texture") if enlarged else EDITABLE
    wrong, edited = [], []
    swappable = tuple(a for a in SWAPPABLE if a != "texture") if enlarged else SWAPPABLE
    swapped = swap_two(said, rng, swappable) if swaps > 0 and rng.random() < swaps else None
    if swapped is not None:
        other = caption(swapped[0], np.random.default_rng(phrasing))
        if other != text:
            wrong.append(other)
            edited.append(swapped[1])
    for attempt in range(20 * negatives):  # an edit can read the same as the truth; redraw
        if len(wrong) == negatives:
            break
        # weights that favour an attribute with few distinct edits yield to uniform draws
        scene_edit, name = edit_one(said, rng, editable,
                                    weights if attempt < 10 * negatives else None)
        other = caption(scene_edit, np.random.default_rng(phrasing))
        if other != text and other not in wrong:
            wrong.append(other)
            edited.append(name)
    assert len(wrong) == negatives  # shape and count alone give seven distinct edits
    if enlarged:
        image = Image.fromarray(render(placed, scene.background, low_res))
        image = np.asarray(image.resize((size, size), Image.BILINEAR))
    else:
        image = render(placed, scene.background, size)
    return ContrastSample(image, text, wrong, scene, edited, enlarged)


def scene_textures(scene: Scene) -> torch.Tensor:
    """Multi-hot [len(vocab.TEXTURES)]: the textures of the scene's groups."""
    found = torch.zeros(len(vocab.TEXTURES))
    for group in scene.groups:
        found[vocab.TEXTURES.index(group.texture)] = 1.0
    return found


class ContrastDataset(IterableDataset):
    """Endless stream of {"image": [3, H, W] in [-1, 1], "caption", "negatives": [K],
    "textures": multi-hot [T] of the scene's textures, "texture_shown": 0.0 for renders
    drawn small and enlarged (texture shown faintly at best), else 1.0},
    sharded like `ShapesDataset` (rank, world_size, resume offset, workers)."""

    def __init__(self, size: int, negatives: int = 4, split: str = "train", seed: int = 0,
                 rank: int = 0, world_size: int = 1, start: int = 0,
                 low_res: int | None = None, swaps: float = 0.0,
                 weights: dict[str, float] | None = None):
        check_side(size)
        self.size, self.negatives, self.split, self.seed = size, negatives, split, seed
        self.rank, self.world_size, self.start, self.low_res = rank, world_size, start, low_res
        self.swaps, self.weights = swaps, weights

    def __iter__(self):
        for index in shard_indices(self.rank, self.world_size, self.start):
            s = make_contrast_sample(index, self.size, self.negatives, self.split, self.seed,
                                     self.low_res, swaps=self.swaps, weights=self.weights)
            yield {"image": to_tensor(s.image.copy()), "caption": s.caption,
                   "negatives": s.negatives, "textures": scene_textures(s.scene),
                   "texture_shown": float(not s.enlarged)}
