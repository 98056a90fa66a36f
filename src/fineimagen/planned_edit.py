"""Edits by planning: the source and the edited prompt are read as scenes (domains.shapes.plan);
the source is laid out as `generate --plan-layout` lays it out, the edit takes what it
leaves open from the source, every object that did not change keeps its box, and the
changed ones are placed around them; both are drawn with scene control from the same
noise. The edit redraws only the boxes of the objects that changed (an object that only
moved, or was added to a group, is the source's object copied to its new box): at the base
stage every other pixel is the source's (removed objects' boxes the background)
at every step, and each stage's output is the source's outside the changed boxes (a local
blend, as in prompt-to-prompt)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .control.regions import CompiledScene, background_image
from .domains import get_domain
from .errors import InputError


def changed_boxes(a: CompiledScene, b: CompiledScene) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks [1, 1, S, S] of a's objects that b does not hold (same phrase in the same box),
    and of b's objects that a does not hold."""
    def holds(scene, region):
        return any(r.prompt == region.prompt and torch.equal(r.mask, region.mask)
                   for r in scene.regions)

    def union(masks):
        if not masks:
            return torch.zeros_like(a.regions[0].mask)
        return torch.stack(masks).sum(0).clamp(max=1)

    return (union([r.mask for r in a.regions if not holds(b, r)]),
            union([r.mask for r in b.regions if not holds(a, r)]))


def copied_objects(a: CompiledScene, b: CompiledScene,
                   image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Objects of b whose group keeps its look (shape, colour, texture, size) but changes its
    count or place, drawn as copies of that group's objects in `image` (a's drawing at any
    stage, [B, 3, S, S]) moved to their new boxes by whole pixels: (pixels premultiplied by
    alpha, alpha [1, 1, S, S]), to go over an image x as x * (1 - alpha) + pixels. A moved
    or added object so looks like the one the source drew, its texture included (which the
    SR stage reads from faint low-res cues)."""
    side = image.shape[-1]
    pixels, alpha = torch.zeros_like(image), torch.zeros_like(image[:1, :1])
    if len(a.filled.groups) != len(b.filled.groups):
        return pixels, alpha
    for i, (was, now) in enumerate(zip(a.filled.groups, b.filled.groups, strict=True)):
        if _look(was) != _look(now) or was == now:
            continue
        sources = [(o, F.interpolate(r.mask.to(image), size=image.shape[-2:], mode="bilinear",
                                     align_corners=False))
                   for o, r in zip(a.placed, a.regions, strict=True) if o.group == i]
        targets = [o for o in b.placed if o.group == i]
        for k, target in enumerate(targets):
            origin, mask = sources[k % len(sources)]
            dy, dx = (round((t - o) * side) for t, o in ((target.y, origin.y),
                                                         (target.x, origin.x)))
            moved = _shift(mask, dy, dx)  # composited "over" what is copied already
            pixels = pixels * (1 - moved) + _shift(image, dy, dx) * moved
            alpha = alpha * (1 - moved) + moved
    return pixels, alpha


def _look(group) -> tuple:
    return group.shape, group.color, group.texture, group.size


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x [..., S, S] moved down by dy and right by dx pixels, zeros where nothing moves in."""
    out = torch.zeros_like(x)
    s = x.shape[-1]
    out[..., max(dy, 0):s + min(dy, 0), max(dx, 0):s + min(dx, 0)] = \
        x[..., max(-dy, 0):s + min(-dy, 0), max(-dx, 0):s + min(-dx, 0)]
    return out


def planned_edit(pipe, source: str, target: str, n: int, seed: int, settings: list,
                 progress: bool, bf16: bool | None) -> tuple[dict, dict]:
    """Every stage's output (by name) of the source and of the edit, n images each drawn
    with seeds seed..seed+n-1."""
    side = pipe.stages[0].cfg.resolution
    domain = get_domain(pipe.domain)
    a = domain.compile_scene(domain.read(source), side, seed, source)  # as --plan-layout
    b = domain.compile_scene(domain.read(target), side, seed, target, like=a)
    gone, new = changed_boxes(a, b)
    if a.background != b.background:  # a new background: everything is redrawn
        gone = new = torch.ones_like(gone)
    if not (gone.any() or new.any()):
        raise InputError("the two prompts plan the same scene: nothing to edit")
    stop = len(pipe.stages)
    drawn = pipe._controlled(source, n, seed, settings, stop, None, [], a, progress, bf16)
    base = drawn[pipe.stages[0].name]
    known = base * (1 - gone) + background_image(b.background_rgb, side).to(base) * gone
    # moved or added objects of an unchanged look, copied from the source at every stage
    copied = {name: copied_objects(a, b, x) for name, x in drawn.items()}
    copies, alpha = copied[pipe.stages[0].name]
    known = known * (1 - alpha) + copies
    edited = pipe._controlled(target, n, seed, settings, stop, None, [], b, progress, bf16,
                              kept=(known, torch.maximum(1 - new.to(base), alpha)))
    changed = (gone + new).clamp(max=1).to(base)
    for name, x in edited.items():  # outside the changed boxes, the source's pixels
        m = F.interpolate(changed, size=x.shape[-2:], mode="bilinear", align_corners=False)
        copies, alpha = copied[name]
        edited[name] = (drawn[name] * (1 - m) + x * m) * (1 - alpha) + copies
    return drawn, edited
