"""Image-text folders: `NAME.png|jpg` beside `NAME.txt` (its caption)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageTextFolder(Dataset):
    """Pairs of an image and its caption, centre-cropped to a square and resized to `size`.

    No flips: left and right carry meaning in captions.
    """

    def __init__(self, root: str | Path, size: int):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"data folder not found: {root}")
        self.items = sorted((p, p.with_suffix(".txt")) for p in root.iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES
                            and p.with_suffix(".txt").is_file())
        if not self.items:
            raise InputError(f"no image with a caption (NAME.png + NAME.txt) in {root}")
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        image_path, text_path = self.items[index]
        with Image.open(image_path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side))
            if side != self.size:
                im = im.resize((self.size, self.size), Image.Resampling.BICUBIC)
            array = np.asarray(im, dtype=np.float32)
        image = torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1
        return {"image": image, "caption": text_path.read_text(encoding="utf-8").strip()}
