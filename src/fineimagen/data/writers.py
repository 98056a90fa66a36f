"""Writing image-text samples in the formats users already have: a Hugging Face ImageFolder
(`images/NAME.png` + `metadata.jsonl` with `file_name`, `text` and extra keys such as
`scene`) or WebDataset tar shards (`{key}.png`, `{key}.txt`, `{key}.json`). All or nothing:
the folder appears only when every sample is written."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..files import atomic_folder

FORMATS = ("imagefolder", "webdataset")
SHARD_SIZE = 1000  # samples per WebDataset shard


def write_samples(out: str | Path, samples: Iterable[tuple[np.ndarray, str, dict]],
                  fmt: str, card: str | None = None) -> Path:
    """Write (image uint8 [H, W, 3], caption, extra metadata) triples to `out` in `fmt`;
    `card` (markdown) becomes README.md beside them."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    with atomic_folder(out) as tmp:
        (_imagefolder if fmt == "imagefolder" else _webdataset)(tmp, samples)
        if card:
            (tmp / "README.md").write_text(card, encoding="utf-8")
    return Path(out)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _imagefolder(folder: Path, samples) -> None:
    (folder / "images").mkdir()
    with (folder / "metadata.jsonl").open("w", encoding="utf-8") as meta:
        for index, (image, caption, extra) in enumerate(samples):
            name = f"images/{index:06d}.png"
            (folder / name).write_bytes(_png(image))
            meta.write(json.dumps({"file_name": name, "text": caption, **extra}) + "\n")


def _webdataset(folder: Path, samples) -> None:
    import webdataset as wds

    pattern = str(folder / "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=SHARD_SIZE, verbose=0) as sink:
        for index, (image, caption, extra) in enumerate(samples):
            sink.write({"__key__": f"{index:06d}", "png": _png(image), "txt": caption,
                        "json": json.dumps(extra).encode()})
