"""The compositional shapes data: deterministic samples, a streaming dataset, folder export.

Sample `index` of a stream with seed `seed` depends only on (seed, index), so streams shard
across workers and processes without overlap and every run can be reproduced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import InputError
from ..files import atomic_folder
from .captions import caption, mention
from .render import render
from .scene import Scene, sample_scene

MIN_SIDE, MAX_SIDE = 16, 4096
EXHAUSTIVE_SHARE = 0.25  # training captions that state every attribute of every object


@dataclass
class ShapesSample:
    image: np.ndarray  # uint8 [size, size, 3]
    caption: str
    scene: Scene  # complete: every attribute as rendered
    lowres: np.ndarray | None = None  # the same scene rendered at `low_size`, if asked


def check_side(size: int) -> None:
    if not MIN_SIDE <= size <= MAX_SIDE:
        raise InputError(f"image size must be from {MIN_SIDE} to {MAX_SIDE} px, got {size}")


def make_sample(index: int, size: int, split: str = "train", seed: int = 0,
                low_size: int | None = None) -> ShapesSample:
    """Sample `index` of the stream (seed, split): a random scene, its render and a caption
    that mentions a random subset of its attributes (from a bare noun to exhaustive); with
    `low_size`, also the same scene rendered at that side (super-resolution pairs)."""
    rng = np.random.default_rng([seed, index, 0 if split == "train" else 1])
    scene, placed = sample_scene(rng, split)
    # captions from bare nouns to every attribute: keep ~ U[0, 1] (a bare noun about 1 single
    # object in 5), and EXHAUSTIVE_SHARE of them state everything (what edits start from)
    keep = 1.0 if rng.random() < EXHAUSTIVE_SHARE else rng.uniform(0.0, 1.0)
    said = mention(scene, rng, keep=keep)
    low = render(placed, scene.background, low_size) if low_size else None
    return ShapesSample(render(placed, scene.background, size), caption(said, rng), scene, low)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1


class ShapesDataset(IterableDataset):
    """Endless (or `length`-long) stream of {"image": [3, H, W] float in [-1, 1], "caption"}
    (plus "lowres" [3, h, h] with `low_size`).

    Rendering happens on the fly; no disk. Process `rank` of `world_size` takes the samples
    rank, rank + world_size, ... of the stream, skipping its first `start` (to resume a
    run); DataLoader workers split a process's share between them.
    """

    def __init__(self, size: int, split: str = "train", seed: int = 0,
                 length: int | None = None, rank: int = 0, world_size: int = 1,
                 start: int = 0, low_size: int | None = None):
        check_side(size)
        self.size, self.split, self.seed, self.length = size, split, seed, length
        self.rank, self.world_size, self.start, self.low_size = rank, world_size, start, low_size

    def __iter__(self):
        for index in shard_indices(self.rank, self.world_size, self.start):
            if self.length is not None and index >= self.length:
                return
            sample = make_sample(index, self.size, self.split, self.seed, self.low_size)
            item = {"image": to_tensor(sample.image), "caption": sample.caption}
            if sample.lowres is not None:
                item["lowres"] = to_tensor(sample.lowres)
            yield item


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
