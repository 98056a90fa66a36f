"""Region prompts and scene specs.

A region is a prompt with a mask on the canvas: by name (`"top left: two red circles"`,
the 3x3 cells of the shapes data and the four halves), by box (x0, y0, x1, y1 as fractions
of the side, y downwards) or by a mask image. Regions steer the base stage through
`guidance.Composition` (each region's prompt guides inside its mask). A scene spec (the
JSON format of the data and eval) compiles to one region per object (a count of n gives n
boxes, laid out as the training data lays objects out) and a known background outside them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from . import grid

MAX_REGIONS = 16
HALVES = {"left half": (0.0, 0.0, 0.5, 1.0), "right half": (0.5, 0.0, 1.0, 1.0),
          "top half": (0.0, 0.0, 1.0, 0.5), "bottom half": (0.0, 0.5, 1.0, 1.0)}


@dataclass
class Region:
    prompt: str
    mask: torch.Tensor  # [1, 1, S, S] in [0, 1] at the base resolution


def named_box(name: str) -> tuple[float, float, float, float]:
    """The box of a named region: a cell of the 3x3 grid or a half."""
    key = " ".join(name.lower().replace("-", " ").split())
    key = {"centre": "center", "middle": "center", "upper left": "top left",
           "upper right": "top right", "lower left": "bottom left",
           "lower right": "bottom right"}.get(key, key)
    if key in HALVES:
        return HALVES[key]
    if key in grid.POSITIONS:
        row, col = grid.cell_of(key)
        return (col / 3, row / 3, (col + 1) / 3, (row + 1) / 3)
    names = ", ".join([*grid.POSITIONS, *HALVES])
    raise InputError(f"unknown region {name!r} (choose from {names})")


def check_box(box) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"a box is four numbers x0,y0,x1,y1, got {box!r}") from None
    if not all(0 <= v <= 1 for v in (x0, y0, x1, y1)):
        raise InputError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is outside [0, 1]")
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is empty (needs x0 < x1, y0 < y1)")
    return x0, y0, x1, y1


def box_mask(box, size: int) -> torch.Tensor:
    """[1, 1, size, size]: each pixel's covered fraction by the box (soft at the edges)."""
    return box_masks(torch.tensor([check_box(box)]), size)[None]


def box_masks(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """[N, 4] boxes (x0, y0, x1, y1) -> [N, size, size] covered fractions; an empty box
    (x1 <= x0 or y1 <= y0) covers nothing."""
    edges = torch.arange(size + 1, dtype=torch.float32, device=boxes.device) / size
    lo, hi = edges[:-1], edges[1:]
    x0, y0, x1, y1 = (boxes[:, i, None].float() for i in range(4))
    cover_x = (torch.minimum(hi, x1) - torch.maximum(lo, x0)).clamp(min=0) * size
    cover_y = (torch.minimum(hi, y1) - torch.maximum(lo, y0)).clamp(min=0) * size
    return cover_y[:, :, None] * cover_x[:, None, :]


def image_mask(image: Image.Image, size: int, allowed: tuple[int, ...]) -> torch.Tensor:
    """A mask image (white = inside) at one of the `allowed` sides, as [1, 1, size, size]."""
    if image.width != image.height or image.width not in allowed:
        sides = " or ".join(f"{s}x{s}" for s in allowed)
        raise InputError(f"mask is {image.width}x{image.height}; it must be {sides}")
    gray = image.convert("L").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(gray, np.float32) / 255)[None, None]


def parse_region(text: str, size: int) -> Region:
    """'top left: two red circles' -> a Region on the named cell."""
    name, sep, prompt = text.partition(":")
    if not sep or not prompt.strip():
        raise InputError(f"region {text!r}: expected 'NAME: PROMPT', e.g. 'top left: a star'")
    return Region(prompt.strip(), box_mask(named_box(name), size))


def check_regions(regions: list[Region]) -> None:
    if len(regions) > MAX_REGIONS:
        raise InputError(f"{len(regions)} regions; at most {MAX_REGIONS}")
    for r in regions:
        if not isinstance(r, Region):
            raise InputError(f"a region must be a Region (parse_region('top left: a star', "
                             f"size) makes one), got {type(r).__name__}")
        if not r.prompt.strip():
            raise InputError("a region's prompt is empty")


# ----------------------------------------------------------------------------- scenes
@dataclass
class CompiledScene:
    prompt: str  # the whole scene in words (the global prompt)
    regions: list[Region]  # one per object
    background: str  # the domain's background name, known outside the regions
    background_rgb: tuple[int, int, int]  # its colour
    # [1, 3, S, S] in [-1, 1]: background and a colour blob per object; None: start from noise
    sketch: torch.Tensor | None
    counted: bool  # some group states a count above one
    filled: object  # the domain's scene with every open attribute drawn (as laid out)
    placed: list  # its objects as laid out (domains.shapes.scene.PlacedObject), one a region


def background_image(rgb: tuple[int, int, int], size: int) -> torch.Tensor:
    """[1, 3, size, size] in [-1, 1]: a flat canvas of one colour (0-255 RGB)."""
    rgb = torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1
    return rgb.view(1, 3, 1, 1).expand(1, 3, size, size).clone()
