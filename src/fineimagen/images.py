"""Images in and out: reading images users give (upscale, edit, eval; any mode Pillow reads,
checked before it is decoded, each fault one clear InputError), and PIL images to and from
the networks' tensors ([B, 3, H, W] in [-1, 1])."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError

MAX_SIDE = 4096  # larger inputs are refused before decoding (Pillow's bomb limit also holds)


def open_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """The image at `path` in `mode` ("RGB" or "L"): 16-bit and float images are scaled to
    8 bits, palette, CMYK and alpha modes converted (alpha dropped)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if max(im.size) > MAX_SIDE:
                    raise InputError(f"image {path} is {im.width}x{im.height}: larger than "
                                     f"{MAX_SIDE} px a side")
                if min(im.size) < 1:
                    raise InputError(f"image {path} is empty")
                im.load()
                return _to_8bit(im).convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(f"image {path} refused: {err}") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise InputError(f"not an image, or unreadable: {path} ({err})") from None


def _to_8bit(im: Image.Image) -> Image.Image:
    """Modes with more than 8 bits a channel (I;16, I, F) scaled to 8-bit grey; NaN reads
    as 0."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        array = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if im.mode == "F":  # floats: 0..1, else 0..their maximum
            top = 1.0 if array.max() <= 1 else float(array.max())
        else:
            top = 65535.0 if im.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255, 0, 255).round().astype(np.uint8))
    return im


def from_pil(images: list[Image.Image], size: int,
             resample: Image.Resampling = Image.BILINEAR) -> torch.Tensor:
    """RGB PIL images -> [B, 3, size, size] in [-1, 1] (resized with antialias)."""
    arrays = []
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise InputError(f"image {i} is not a PIL image ({type(image).__name__})")
        if image.mode != "RGB":
            raise InputError(f"image {i} is not RGB (mode {image.mode})")
        if image.size != (size, size):
            image = image.resize((size, size), resample)
        arrays.append(np.asarray(image))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] -> PIL images."""
    array = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]


def save_png(image: Image.Image, path: str | Path) -> None:
    """Write a PNG whole: to a temporary name beside it, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
