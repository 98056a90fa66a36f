"""A text-embedding store on disk: a frozen encoder's (embeds, mask) for every distinct
caption of a dataset, computed once (`fineimagen embed`) and read memory-mapped in training
(`train --text-store STORE`), so no step runs the text encoder.

Layout: `index.json` ({"format", "version", "encoder": the encoder's config, "dim",
"captions": n, "shards": {caption key: shard file}}) and `shard-NNNNN.safetensors`, each
holding `KEY` (fp16 [tokens, dim], the caption's own tokens) and `KEY.mask` per caption; KEY
is the first 32 hex digits of the caption's SHA-256. A store made with another encoder
config is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch

from ..errors import InputError

FORMAT, VERSION = "fineimagen-text-store", 1
SHARD_CAPTIONS = 4096
BATCH = 64


def caption_key(caption: str) -> str:
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()[:32]


def build_store(captions: Iterable[str], encoder, encoder_config: dict, out: str | Path,
                progress: bool = True) -> dict:
    """Encode each distinct caption once into `out` (all or nothing); returns the index.
    Captions are encoded shortest first, so a batch pads little."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from ..files import atomic_folder

    distinct = sorted(dict.fromkeys(captions), key=len)
    if not distinct:
        raise InputError("no captions to embed")
    index = {"format": FORMAT, "version": VERSION, "encoder": encoder_config,
             "dim": encoder.dim, "captions": len(distinct), "shards": {}}
    with atomic_folder(out) as tmp, torch.no_grad():
        bar = tqdm(total=len(distinct), desc="embedding", unit="caption", disable=not progress)
        for first in range(0, len(distinct), SHARD_CAPTIONS):
            name = f"shard-{first // SHARD_CAPTIONS:05d}.safetensors"
            tensors = {}
            part = distinct[first: first + SHARD_CAPTIONS]
            for start in range(0, len(part), BATCH):
                batch = part[start: start + BATCH]
                embeds, mask = encoder.encode(batch)
                for caption, e, m in zip(batch, embeds, mask, strict=True):
                    n = int(m.nonzero().max()) + 1 if m.any() else 0
                    key = caption_key(caption)
                    tensors[key] = e[:n].half().contiguous()
                    tensors[key + ".mask"] = m[:n].to(torch.uint8).contiguous()
                    index["shards"][key] = name
                bar.update(len(batch))
            save_file(tensors, str(tmp / name))
        bar.close()
        (tmp / "index.json").write_text(json.dumps(index) + "\n", encoding="utf-8")
    return index


class TextStore:
    """Reads a store as a frozen encoder would answer: `encode(prompts) -> (embeds, mask)`,
    padded to the longest prompt of the batch."""

    frozen = True

    def __init__(self, folder: str | Path, encoder_config: dict):
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise InputError(f"{folder} is not a text-embedding store (no readable "
                             "index.json; make one with `fineimagen embed`)") from None
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise InputError(f"{folder}: not a {FORMAT} v{VERSION} store")
        encoder_config = json.loads(json.dumps(encoder_config))  # tuples read as lists
        if index.get("encoder") != encoder_config:
            raise InputError(f"{folder} was embedded with another text encoder config "
                             f"({index.get('encoder')}); this run's is {encoder_config}: run "
                             "`fineimagen embed` again")
        self.index, self.dim = index, int(index["dim"])
        self._open: dict[str, object] = {}

    def _tensors(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        from safetensors import safe_open

        key = caption_key(caption)
        shard = self.index["shards"].get(key)
        if shard is None:
            raise InputError(f"caption not in the text store {self.folder}: {caption[:80]!r} "
                             "(embed the same data the run trains on)")
        if shard not in self._open:
            self._open[shard] = safe_open(str(self.folder / shard), framework="pt")
        handle = self._open[shard]
        return handle.get_tensor(key), handle.get_tensor(key + ".mask").bool()

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self._tensors(p) for p in prompts]
        length = max(1, max(e.shape[0] for e, _ in rows))
        embeds = torch.zeros(len(prompts), length, self.dim)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, (e, m) in enumerate(rows):
            embeds[i, : e.shape[0]], mask[i, : m.shape[0]] = e.float(), m
        return embeds, mask
