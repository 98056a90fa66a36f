"""Training data in the formats users already have, detected from what `--data PATH` holds:

- `shapes`: the built-in scenes, rendered on the fly (domains/shapes/samples.py);
- a folder of `NAME.png|jpg` + `NAME.txt` (data/folders.py);
- a Hugging Face ImageFolder: images plus `metadata.jsonl` with `file_name` and `text`
  (other keys, e.g. `scene`, are kept in the metadata and ignored by training);
- WebDataset tar shards (`{key}.png|jpg` + `{key}.txt`, optional `{key}.json`): a `.tar`
  file, a folder of them, or a glob or brace pattern (`shards/shard-{000000..000009}.tar`),
  streamed through the `webdataset` package;
- a Hugging Face `datasets` dataset saved with `save_to_disk`, or a folder of `.parquet`
  files (image and text columns, names set by `--image-column` and `--text-column`).

Map-style formats (folders, ImageFolder, datasets) shuffle with a seeded permutation per
epoch, each process taking every world-th index, and resume exactly where a run stopped.
Shards go round-robin to processes and then to data workers, so each sample is read once per
pass; each rank streams its shards endlessly (training ends by steps, so no rank waits for
another at an epoch's end) and shuffles within a buffer. A resumed run over shards restarts
its pass at the shard where the checkpoint's sample count falls (shard granularity: the
samples read from a shard before the stop are read again).
"""

from __future__ import annotations

import glob
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SHUFFLE_BUFFER = 256


def square_tensor(im: Image.Image, size: int) -> torch.Tensor:
    """Centre-crop to a square, resize to `size` (bicubic): float [3, size, size] in [-1, 1]."""
    im = im.convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side))
    if side != size:
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1


def detect(path: str) -> str:
    """The format of `--data PATH`: shapes, folder, imagefolder, webdataset or hf."""
    if path == "shapes":
        return "shapes"
    p = Path(path)
    if p.suffix == ".tar" or any(c in path for c in "*?{"):
        return "webdataset"
    if not p.is_dir():
        raise InputError(f"--data {path}: not 'shapes', a folder, a .tar shard or a shard "
                         "pattern")
    if (p / "metadata.jsonl").is_file():
        return "imagefolder"
    if (p / "dataset_info.json").is_file() or (p / "state.json").is_file() \
            or any(p.glob("*.parquet")):
        return "hf"
    if any(p.glob("*.tar")):
        return "webdataset"
    if any(q.suffix.lower() in IMAGE_SUFFIXES and q.with_suffix(".txt").is_file()
           for q in p.iterdir()):
        return "folder"
    raise InputError(f"--data {path}: found none of NAME.png + NAME.txt, metadata.jsonl "
                     "(ImageFolder), *.tar (WebDataset), *.parquet or a saved datasets folder")


class ImageFolderMetadata(Dataset):
    """A Hugging Face ImageFolder: `metadata.jsonl` lines {"file_name", "text", ...}."""

    def __init__(self, root: str | Path, size: int):
        self.root, self.size = Path(root), size
        self.rows = []
        lines = (self.root / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                name, text = str(row["file_name"]), str(row["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{self.root / 'metadata.jsonl'} line {number}: expected a "
                                 "JSON object with 'file_name' and 'text'") from None
            image = (self.root / name).resolve()
            if not image.is_relative_to(self.root.resolve()) or not image.is_file():
                raise InputError(f"{self.root / 'metadata.jsonl'} line {number}: no image "
                                 f"{name!r} inside {self.root}")
            self.rows.append((image, text))
        if not self.rows:
            raise InputError(f"{self.root / 'metadata.jsonl'} lists no image")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        path, text = self.rows[index]
        with Image.open(path) as im:
            return {"image": square_tensor(im, self.size), "caption": text}


class HFDataset(Dataset):
    """A `datasets` dataset (saved to disk, or parquet files) with image and text columns."""

    def __init__(self, root: str | Path, size: int, image_column: str = "image",
                 text_column: str = "text"):
        self.data, self.size = load_hf_dataset(root, (image_column, text_column)), size
        self.image_column, self.text_column = image_column, text_column

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        row = self.data[int(index)]
        image = row[self.image_column]
        if isinstance(image, dict):  # an undecoded image: {"bytes", "path"}
            image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else \
                Image.open(image["path"])
        return {"image": square_tensor(image, self.size), "caption": str(row[self.text_column])}


def load_hf_dataset(root: str | Path, columns: tuple[str, ...]):
    """A `datasets` dataset saved to disk (its train split) or a folder of parquet files,
    which must hold `columns`."""
    try:
        import datasets
    except ImportError:
        raise InputError("a Hugging Face dataset needs the data extra: pip install "
                         "'fineimagen[data]'") from None
    root = Path(root)
    if any(root.glob("*.parquet")):
        data = datasets.load_dataset("parquet", data_files=sorted(
            str(p) for p in root.glob("*.parquet")), split="train")
    else:
        data = datasets.load_from_disk(str(root))
        if isinstance(data, datasets.DatasetDict):
            data = data["train"] if "train" in data else next(iter(data.values()))
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise InputError(f"dataset {root} has no column {missing[0]!r} (columns: "
                         f"{', '.join(data.column_names)}; set --image-column / "
                         "--text-column)")
    return data


class ResumableSampler(Sampler):
    """A seeded permutation per epoch; process `rank` takes every `world`-th index, its share
    cut to whole batches (so every rank makes as many steps an epoch); starts `start`
    samples into this process's stream (resume)."""

    def __init__(self, n: int, rank: int, world: int, seed: int, batch: int, start: int = 0):
        self.per_rank = n // world // batch * batch
        if self.per_rank == 0:
            raise InputError(f"{n} samples do not make one batch of {batch} for each of "
                             f"{world} processes")
        self.n, self.rank, self.world, self.seed = n, rank, world, seed
        self.epoch, self.offset = divmod(start, self.per_rank)

    def __len__(self) -> int:
        return self.per_rank - self.offset

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(
            self.seed * 100003 + self.epoch))[: self.per_rank * self.world]
        yield from order[self.rank::self.world][self.offset:].tolist()

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop at each pass: passes after the first start at 0."""
        if epoch > 0:
            self.epoch, self.offset = self.epoch + 1, 0


def shard_urls(path: str) -> list[str]:
    """The shard files of a .tar path, a folder of them, or a glob/brace pattern."""
    import braceexpand

    p = Path(path)
    if p.is_dir():
        urls = sorted(str(q) for q in p.glob("*.tar"))
    else:
        urls = sorted({f for pattern in braceexpand.braceexpand(path)
                       for f in (glob.glob(pattern) or ([pattern] if Path(pattern).is_file()
                                                        else []))})
    if not urls:
        raise InputError(f"--data {path}: no WebDataset shard (*.tar) found")
    return urls


class ShardStream(IterableDataset):
    """WebDataset shards streamed endlessly; shard i goes to process i % world, then to that
    process's worker; samples shuffled in a SHUFFLE_BUFFER. `start` (samples this process
    has read) skips whole shards at resume."""

    def __init__(self, path: str, size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 start: int = 0):
        self.urls = shard_urls(path)
        if len(self.urls) < world:
            raise InputError(f"{len(self.urls)} shards cannot be shared by {world} processes "
                             "(write more, smaller shards)")
        self.size, self.rank, self.world, self.seed = size, rank, world, seed
        self.mine = self.urls[rank::world]
        self.start = start

    def _my_shards(self) -> list[str]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        if len(self.mine) < workers:
            raise InputError(f"process {self.rank} has {len(self.mine)} shards for "
                             f"{workers} data workers: use fewer --workers or more shards")
        return self.mine[worker::workers]

    def samples(self, urls: list[str]):
        """One pass over `urls`: {"image", "caption", "key"} per sample, in shard order."""
        import webdataset as wds

        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            image_key = next((k for k in ("png", "jpg", "jpeg") if k in sample), None)
            if image_key is None or "txt" not in sample:
                raise InputError(f"shard sample {sample.get('__key__')!r} lacks an image "
                                 "(.png/.jpg) or a caption (.txt)")
            with Image.open(io.BytesIO(sample[image_key])) as im:
                image = square_tensor(im, self.size)
            yield {"image": image, "caption": sample["txt"].decode("utf-8").strip(),
                   "key": sample["__key__"]}

    def _first_shard(self, shards: list[str], workers: int) -> int:
        """The shard a resumed worker starts at: past the whole shards its share of the
        samples read before the stop fills (each pass read from the first shard on)."""
        counts = [_count(url) for url in shards]
        done = (self.start // workers) % max(1, sum(counts))
        first = 0
        while first < len(counts) and done >= counts[first]:
            done -= counts[first]
            first += 1
        return first % len(shards)

    def __iter__(self):
        shards = self._my_shards()
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, info.id if info else 0, self.start])
        first = self._first_shard(shards, info.num_workers if info else 1) if self.start else 0
        buffer: list = []
        while True:
            order = shards[first:] + shards[:first]
            first = 0
            for item in self.samples(order):
                if len(buffer) < SHUFFLE_BUFFER:
                    buffer.append(item)
                    continue
                k = int(rng.integers(len(buffer)))
                buffer[k], item = item, buffer[k]
                yield {"image": item["image"], "caption": item["caption"]}
            rng.shuffle(buffer)
            for item in buffer:
                yield {"image": item["image"], "caption": item["caption"]}
            buffer = []


def _count(url: str) -> int:
    """Samples in a shard: distinct keys with a caption."""
    import tarfile

    with tarfile.open(url) as tar:
        return len({m.name.rsplit(".", 1)[0] for m in tar.getmembers()
                    if m.name.endswith(".txt")})


def dataset_captions(path: str, text_column: str = "text") -> list[str]:
    """Every caption of a finite dataset, in order (what `fineimagen embed` encodes)."""
    kind = detect(path)
    if kind == "shapes":
        raise InputError("shapes captions are drawn fresh every step: a text store needs a "
                         "finite dataset (write one with `fineimagen dataset shapes`)")
    if kind == "folder":
        from .folders import ImageTextFolder

        return [t.read_text(encoding="utf-8").strip()
                for _, t in ImageTextFolder(path, 16).items]
    if kind == "imagefolder":
        return [text for _, text in ImageFolderMetadata(path, 16).rows]
    if kind == "hf":
        return [str(t) for t in load_hf_dataset(path, (text_column,))[text_column]]
    import webdataset as wds

    return [s["txt"].decode("utf-8").strip() for s in wds.WebDataset(
        shard_urls(path), shardshuffle=False, empty_check=False)]
