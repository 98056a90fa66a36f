"""Shapes scene specs compiled to regions: one region per object (a count of n gives n
boxes, laid out as the training data lays objects out), a known background outside them,
and a layout sketch of coloured discs to start sampling from."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import torch

from ...control.regions import CompiledScene, Region, background_image, box_mask, check_regions
from ...errors import InputError
from . import vocab
from .captions import caption, object_phrase
from .scene import Group, PlacedObject, Scene, complete, parse_spec


def compile_scene(spec: dict | str | Scene, size: int, seed: int = 0,
                  prompt: str | None = None,
                  like: CompiledScene | None = None) -> CompiledScene:
    """One region per object: open attributes and the layout drawn with `seed` as the data
    draws them, each region prompted with its object's stated attributes and the cell of
    its own centre (a group of several spreads over neighbouring cells). With `like` (an
    edit's source, compiled), what the spec leaves open is taken from it, every group that
    comes out the same keeps its objects, and the others are placed around them."""
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
    return CompiledScene(text, regions, filled.background, vocab.BACKGROUND_RGB[filled.background],
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
    from .render import shape_sdf

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
    from .render import shade, texture_coverage

    image = background_image(vocab.BACKGROUND_RGB[background], size)[0]
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


