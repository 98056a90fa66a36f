"""Scene control for OpenMoji scenes: a spec of that domain compiled to one region per object.

What the spec leaves open (count 1, a free cell, a size, the background) is drawn as the
data draws it and laid out at the emoji sizes; each region is prompted with its object's
name, its stated size and the cell of its own centre ("a small red apple at the top left"),
and the background outside the regions is kept known, as for shapes scenes. No layout sketch
is drawn: a disc of an emoji's colour would fix its look, and an emoji is more than one
colour, so sampling starts from noise.
"""

from __future__ import annotations

import numpy as np

from ...control.regions import CompiledScene, Region, box_mask, check_regions
from ..shapes import vocab
from .render import BACKGROUND_RGB
from .scene import (
    EmojiGroup,
    EmojiScene,
    complete_emoji,
    emoji_caption,
    group_words,
    parse_emoji_spec,
)
from .vocab import OPENMOJI_100


def compile_emoji_scene(spec: dict | EmojiScene, size: int, seed: int = 0,
                        prompt: str | None = None, names: tuple[str, ...] = OPENMOJI_100):
    """A `regions.CompiledScene` of an OpenMoji spec (`names`: the objects it may name)."""
    scene = spec if isinstance(spec, EmojiScene) else parse_emoji_spec(spec, names)
    filled, placed = complete_emoji(scene, np.random.default_rng([seed, 17]))
    regions = []
    for obj in placed:
        stated = scene.groups[obj.group]
        said = EmojiGroup(stated.object, 1, vocab.position_at(obj.x, obj.y), stated.size)
        regions.append(Region(group_words(said, np.random.default_rng(0)),
                              box_mask(obj.box(), size)))
    check_regions(regions)
    text = prompt or emoji_caption(scene, np.random.default_rng(0))
    counted = any((g.count or 1) > 1 for g in scene.groups)
    return CompiledScene(text, regions, filled.background, BACKGROUND_RGB[filled.background],
                         None, counted, filled, placed)
