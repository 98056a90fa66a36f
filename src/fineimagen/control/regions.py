"""Region prompts and scene specs.

A region is a prompt with a mask on the canvas: by name (`"top left: two red circles"`,
the 3x3 cells of the shapes data and the four halves), by box (x0, y0, x1, y1 as fractions
of the side, y downwards) or by a mask image. Regions steer the base stage through
`guidance.Composition` (each region's prompt guides inside its mask). A scene spec (the
JSON format of the data and eval) compiles to one region per object (a count of n gives n
boxes, laid out as the training data lays objects out) and a known background outside them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from ..domains.openmoji.scene import EmojiScene, is_emoji_spec
from ..domains.shapes import vocab
from ..domains.shapes.captions import object_phrase
from ..domains.shapes.scene import Group, PlacedObject, Scene, complete, parse_spec
from ..errors import InputError

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
    if key in vocab.POSITIONS:
        row, col = vocab.cell_of(key)
        return (col / 3, row / 3, (col + 1) / 3, (row + 1) / 3)
    names = ", ".join([*vocab.POSITIONS, *HALVES])
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
    background: str  # vocab background name, known outside the regions
    # [1, 3, S, S] in [-1, 1]: background and a colour blob per object; None: start from noise
    sketch: torch.Tensor | None
    counted: bool  # some group states a count above one
    filled: Scene | EmojiScene  # the spec with every open attribute drawn (as laid out)
    placed: list[PlacedObject]  # its objects as laid out, one per region


def compile_scene(spec: dict | str | Scene, size: int, seed: int = 0,
                  prompt: str | None = None,
                  like: CompiledScene | None = None) -> CompiledScene:
    """One region per object: open attributes and the layout drawn with `seed` as the data
    draws them, each region prompted with its object's stated attributes and the cell of
    its own centre (a group of several spreads over neighbouring cells). With `like` (an
    edit's source, compiled), what the spec leaves open is taken from it, every group that
    comes out the same keeps its objects, and the others are placed around them. An OpenMoji
    spec (`"domain": "openmoji"`) compiles by domains.openmoji.regions (no `like`)."""
    from ..domains.shapes.captions import caption

    if isinstance(spec, EmojiScene) or is_emoji_spec(spec):
        if like is not None:
            raise InputError("edits by planning read shapes scenes only, not OpenMoji ones")
        from ..domains.openmoji.regions import compile_emoji_scene

        return compile_emoji_scene(spec, size, seed, prompt)

    scene = spec if isinstance(spec, Scene) else parse_spec(spec)
    rng = np.random.default_rng([seed, 17])
    if like is None:
        filled, placed = complete(scene, rng)
    else:
        filled, placed = _complete_like(scene, like, rng)
    regions = []
    for obj in placed:
        stated = scene.groups[obj.group]
        said = Group(stated.shape, stated.color, stated.size, vocab.position_at(obj.x, obj.y),
                     stated.texture, 1)
        regions.append(Region(object_phrase(said), box_mask(obj.box(), size)))
    check_regions(regions)
    text = prompt or caption(scene, np.random.default_rng(0))
    sized = [scene.groups[obj.group].size is not None for obj in placed]
    textured = [scene.groups[obj.group].texture is not None for obj in placed]
    counted = scene.has_count()
    return CompiledScene(text, regions, filled.background,
                         sketch(filled.background, placed, sized, size, textured), counted,
                         filled, placed)


def _complete_like(scene: Scene, like: CompiledScene, rng: np.random.Generator):
    """`scene` completed and laid out as an edit of `like`, keeping what it can: first the
    unchanged groups' boxes and what the spec leaves open, then the boxes with the changed
    groups' open attributes drawn anew, then the looks alone, then the background alone."""
    spec_filled = fill_from(scene, like.filled)
    fixed = kept_objects(spec_filled, like)
    open_changed = replace(spec_filled, groups=tuple(
        g if i in fixed else stated
        for i, (g, stated) in enumerate(zip(spec_filled.groups, scene.groups, strict=True))))
    tries = [(spec_filled, fixed), (open_changed, fixed), (spec_filled, None),
             (open_changed, None), (replace(scene, background=spec_filled.background), None),
             (scene, None)]
    for i, (candidate, kept) in enumerate(tries):
        try:
            return complete(candidate, rng, per_group=True, fixed=kept)
        except InputError:
            if i == len(tries) - 1:
                raise


def kept_objects(scene: Scene, like: CompiledScene) -> dict[int, list[PlacedObject]]:
    """The objects of `like` that the groups of `scene` keep: where both have as many
    groups, every group of the same count, size and position keeps its boxes, with its own
    shape, colour and texture."""
    kept = {}
    if len(scene.groups) != len(like.filled.groups):
        return kept
    for i, (g, old) in enumerate(zip(scene.groups, like.filled.groups, strict=True)):
        if (g.count, g.size, g.position) == (old.count, old.size, old.position):
            kept[i] = [replace(o, shape=g.shape, color=g.color, texture=g.texture)
                       for o in like.placed if o.group == i]
    return kept


def fill_from(scene: Scene, like: Scene) -> Scene:
    """`scene` with what it leaves open taken from `like`: group by group where the two have
    as many groups (but no cell that another group states), and the background."""
    stated = {g.position for g in scene.groups if g.position}

    def fill(g: Group, other: Group) -> Group:
        if other.position in stated:  # taken by a group that states it: left open
            other = replace(other, position=None)
        return replace(other, **g.fields())

    groups = scene.groups
    if len(groups) == len(like.groups):
        groups = tuple(fill(g, other) for g, other in zip(groups, like.groups, strict=True))
    return replace(scene, groups=groups, background=scene.background or like.background)


@functools.cache
def fill_share(shape: str) -> float:
    """The share of its extent's square that a rendered shape covers (circle pi/4)."""
    from ..domains.shapes.render import shape_sdf

    grid = (np.arange(200) + 0.5) / 200 - 0.5  # unit-box coordinates
    u, v = np.meshgrid(grid, grid)
    return float((shape_sdf(shape, u, v) < 0).mean())


def sketch(background: str, placed, sized: list[bool], size: int,
           textured: list[bool] | None = None) -> torch.Tensor:
    """A layout sketch to start sampling from (SDEdit from strokes): the background colour
    and, per object, a soft disc of its colour: of its shape's area where its size was stated
    (the model draws a shape about the body it is given, so a square needs a wider disc than
    a star of the same extent), else over 80% of its extent (small discs keep the objects of
    a group apart); where its texture was stated, the disc carries that pattern as the data
    draws it (a solid disc made the model draw solid objects). Position, size, count, colour
    and stated textures are drawn; the shape is left to the model."""
    from ..domains.shapes.render import shade, texture_coverage

    image = background_image(background, size)[0]
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres
    xs, ys = grid[None, :], grid[:, None]
    textured = textured or [False] * len(placed)
    for obj, exact, patterned in zip(placed, sized, textured, strict=True):
        # the disc's area pi r^2 equals the shape's: fill share x extent^2
        radius = obj.size * (math.sqrt(fill_share(obj.shape) / math.pi) if exact else 0.4)
        inside = (radius - torch.hypot(xs - obj.x, ys - obj.y)) * size + 0.5
        alpha = inside.clamp(0, 1)
        rgb = torch.tensor(vocab.COLOR_RGB[obj.color], dtype=torch.float32)[:, None, None]
        if patterned:  # the renderer's dark shade, in the object's own unit-box coordinates
            u = ((xs - obj.x) / obj.size).expand(size, size).numpy()
            v = ((ys - obj.y) / obj.size).expand(size, size).numpy()
            dark = torch.from_numpy(texture_coverage(obj.texture, u, v, obj.size * size))
            rgb = shade(rgb, dark.float())
        image = image * (1 - alpha) + (rgb / 127.5 - 1) * alpha
    return image[None]


def background_image(name: str, size: int) -> torch.Tensor:
    """[1, 3, size, size] in [-1, 1]: a flat canvas of a background colour of the shapes or
    of the OpenMoji scenes."""
    from ..domains.openmoji.render import BACKGROUND_RGB as EMOJI_BACKGROUND_RGB

    rgb = vocab.BACKGROUND_RGB.get(name) or EMOJI_BACKGROUND_RGB[name]
    rgb = torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1
    return rgb.view(1, 3, 1, 1).expand(1, 3, size, size).clone()
