"""The compositional shapes data: deterministic samples, a streaming dataset, folder export.

Sample `index` of a stream with seed `seed` depends only on (seed, index), so streams shard
across workers and processes without overlap and every run can be reproduced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from ...errors import InputError
from ...files import atomic_folder
from . import vocab
from .captions import caption_spans, dress, mention, object_phrase, say_relation
from .render import group_coverage, render
from .scene import MAX_GROUPS, Group, PlacedObject, Scene, sample_scene

MIN_SIDE, MAX_SIDE = 16, 4096
EXHAUSTIVE_SHARE = 0.25  # training captions that state every attribute of every object
MAX_OBJECTS = MAX_GROUPS * 4  # region prompts per sample, padded to this
# region prompts for SR training: how often a sample has none (an upscale without a
# prompt), how often its one region is the whole caption over the whole image (a plain
# prompt), how often each optional attribute of an object's own region is stated, and how
# often a stated texture is drawn otherwise in the low-res input (so the stage learns to
# follow the words over a faint wrong cue)
NO_REGIONS, WHOLE_CAPTION, STATE_ATTRIBUTE, RESTYLE_LOW = 0.15, 0.35, 0.6, 0.8
WHOLE_BOX = (0.0, 0.0, 1.0, 1.0)


@dataclass
class ShapesSample:
    image: np.ndarray  # uint8 [size, size, 3]
    caption: str
    scene: Scene  # complete: every attribute as rendered
    lowres: np.ndarray | None = None  # the same scene rendered at `low_size`, if asked
    region_prompts: list[str] | None = None  # one per object, if asked ([] for none)
    region_boxes: list[tuple[float, float, float, float]] | None = None
    # per group phrase of the caption: (start, end, group index) of `caption_spans`
    phrases: list[tuple[int, int, int]] | None = None
    placed: list[PlacedObject] | None = None  # the objects as rendered


def check_side(size: int) -> None:
    if not MIN_SIDE <= size <= MAX_SIDE:
        raise InputError(f"image size must be from {MIN_SIDE} to {MAX_SIDE} px, got {size}")


def make_sample(index: int, size: int, split: str = "train", seed: int = 0,
                low_size: int | None = None, regions: bool = False,
                whole_caption: bool = False, varied: bool = False) -> ShapesSample:
    """Sample `index` of the stream (seed, split): a random scene, its render and a caption
    that mentions a random subset of its attributes (from a bare noun to exhaustive); with
    `low_size`, also the same scene rendered at that side (super-resolution pairs); with
    `regions`, the region prompts and boxes of `object_regions` (an object's own words
    over its box, or with `whole_caption` sometimes the caption over the whole image), the
    low-res render following the objects as there restyled. `varied`: captions also in the
    training-only wordings, sentence frames and filler sentences (`captions.dress`)."""
    rng = np.random.default_rng([seed, index, 0 if split == "train" else 1])
    scene, placed = sample_scene(rng, split)
    # captions from bare nouns to every attribute: keep ~ U[0, 1] (a bare noun about 1 single
    # object in 5), and EXHAUSTIVE_SHARE of them state everything (what edits start from)
    keep = 1.0 if rng.random() < EXHAUSTIVE_SHARE else rng.uniform(0.0, 1.0)
    said = say_relation(mention(scene, rng, keep=keep), placed, rng)
    text, phrases = caption_spans(said, rng, varied)
    if varied:
        text, phrases = dress(text, phrases, rng)
    prompts = boxes = None
    low_placed = placed
    if regions:
        prompts, boxes, low_placed = object_regions(
            scene, placed, np.random.default_rng([seed, index, 2 if split == "train" else 3]),
            said, text if whole_caption else None)
    low = render(low_placed, scene.background, low_size) if low_size else None
    return ShapesSample(render(placed, scene.background, size), text, scene, low, prompts,
                        boxes, phrases, placed)


def object_regions(scene: Scene, placed: list[PlacedObject], rng: np.random.Generator,
                   said: Scene | None = None, text: str | None = None):
    """Region prompts, their boxes, and the objects for the low-res render. None at all with
    probability NO_REGIONS; given `text`, with WHOLE_CAPTION that caption (stating `said`)
    as one region over the whole image, as a plain prompt reaches the SR stages; else one per
    object as a compiled scene words them ('a red striped star at the top left', shape and
    cell always, each other attribute with probability STATE_ATTRIBUTE). A stated texture
    is drawn in the low-res render as another one with probability RESTYLE_LOW."""
    draw = rng.random()
    if draw < NO_REGIONS:
        return [], [], placed
    if text is not None and draw < NO_REGIONS + WHOLE_CAPTION:
        low = [_restyled(obj, rng) if said.groups[obj.group].texture else obj
               for obj in placed]
        return [text], [WHOLE_BOX], low
    prompts, boxes, low = [], [], []
    for obj in placed:
        g = scene.groups[obj.group]
        said = [rng.random() < STATE_ATTRIBUTE for _ in range(3)]
        prompts.append(object_phrase(Group(
            obj.shape, obj.color if said[0] else None, g.size if said[1] else None,
            vocab.position_at(obj.x, obj.y), obj.texture if said[2] else None, 1)))
        boxes.append(obj.box())
        low.append(_restyled(obj, rng) if said[2] else obj)
    return prompts, boxes, low


def _restyled(obj: PlacedObject, rng: np.random.Generator) -> PlacedObject:
    """`obj` with another texture, with probability RESTYLE_LOW."""
    if rng.random() >= RESTYLE_LOW:
        return obj
    others = [t for t in vocab.TEXTURES if t != obj.texture]
    return replace(obj, texture=others[int(rng.integers(len(others)))])


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1


class ShapesDataset(IterableDataset):
    """Endless (or `length`-long) stream of {"image": [3, H, W] float in [-1, 1], "caption"}
    (plus "lowres" [3, h, h] with `low_size`; with `regions`, "region_prompts" (MAX_OBJECTS
    strings, "" for none) and "region_boxes" [MAX_OBJECTS, 4], see `object_regions`; with
    `grounding`, "phrase_spans" [MAX_GROUPS, 2], the caption's characters that describe each
    group ((0, 0) for none), and "phrase_masks" [MAX_GROUPS, H, W], where that group shows).
    `varied`: captions in many wordings (`make_sample`).

    Rendering happens on the fly; no disk. Process `rank` of `world_size` takes the samples
    rank, rank + world_size, ... of the stream, skipping its first `start` (to resume a
    run); DataLoader workers split a process's share between them.
    """

    def __init__(self, size: int, split: str = "train", seed: int = 0,
                 length: int | None = None, rank: int = 0, world_size: int = 1,
                 start: int = 0, low_size: int | None = None, regions: bool = False,
                 whole_caption: bool = False, grounding: bool = False, varied: bool = False):
        check_side(size)
        self.varied = varied
        self.size, self.split, self.seed, self.length = size, split, seed, length
        self.rank, self.world_size, self.start, self.low_size = rank, world_size, start, low_size
        self.regions, self.whole_caption, self.grounding = regions, whole_caption, grounding

    def __iter__(self):
        for index in shard_indices(self.rank, self.world_size, self.start):
            if self.length is not None and index >= self.length:
                return
            sample = make_sample(index, self.size, self.split, self.seed, self.low_size,
                                 self.regions, self.whole_caption, self.varied)
            item = {"image": to_tensor(sample.image), "caption": sample.caption}
            if sample.lowres is not None:
                item["lowres"] = to_tensor(sample.lowres)
            if self.regions:  # padded to MAX_OBJECTS: empty prompts, empty boxes
                pad = MAX_OBJECTS - len(sample.region_prompts)
                item["region_prompts"] = sample.region_prompts + [""] * pad
                item["region_boxes"] = torch.tensor(
                    sample.region_boxes + [(0.0, 0.0, 0.0, 0.0)] * pad, dtype=torch.float32)
            if self.grounding:
                item["phrase_spans"], item["phrase_masks"] = phrase_targets(sample, self.size)
            yield item


def phrase_targets(sample: ShapesSample, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group phrase of the caption (padded to MAX_GROUPS): its character span [G, 2] and
    the visible coverage of its group [G, size, size]."""
    spans = torch.zeros(MAX_GROUPS, 2, dtype=torch.long)
    masks = torch.zeros(MAX_GROUPS, size, size)
    cover = group_coverage(sample.placed, MAX_GROUPS, size)
    for k, (start, end, group) in enumerate(sample.phrases):
        spans[k] = torch.tensor([start, end])
        masks[k] = torch.from_numpy(cover[group])
    return spans, masks


def shard_indices(rank: int, world_size: int, start: int):
    """The stream indices of process `rank` (rank, rank + world_size, ...) after its first
    `start`, split between the DataLoader workers of the calling process."""
    info = get_worker_info()
    workers, worker = (info.num_workers, info.id) if info else (1, 0)
    j = start + (worker - start) % workers  # this worker's first share index
    while True:
        yield rank + j * world_size
        j += workers


def write_folder(out: str | Path, n: int, size: int, split: str = "train", seed: int = 0,
                 progress: bool = True) -> Path:
    """Write `n` samples as NAME.png + NAME.txt and a scenes.jsonl; all or nothing."""
    if n <= 0:
        raise InputError(f"--n must be positive, got {n}")
    check_side(size)
    with atomic_folder(out) as tmp:
        _write_samples(tmp, n, size, split, seed, progress)
    return Path(out)


def _write_samples(folder: Path, n: int, size: int, split: str, seed: int, progress: bool):
    from tqdm import tqdm

    with (folder / "scenes.jsonl").open("w", encoding="utf-8") as scenes:
        for index in tqdm(range(n), desc="rendering", disable=not progress, unit="scene"):
            sample = make_sample(index, size, split, seed)
            name = f"{index:06d}"
            Image.fromarray(sample.image).save(folder / f"{name}.png")
            (folder / f"{name}.txt").write_text(sample.caption + "\n", encoding="utf-8")
            record = {"name": name, "caption": sample.caption, "scene": sample.scene.to_spec()}
            scenes.write(json.dumps(record) + "\n")
