"""Edits by planning: the source and the edited prompt are read as scenes (control.plan);
the source is laid out as `generate --plan-layout` lays it out, the edit takes what it
leaves open from the source, every object that did not change keeps its box, and the
changed ones are placed around them; both are drawn with scene control from the same
noise. The edit redraws only the boxes of the objects that changed:
at the base stage every other pixel is the source's (removed objects' boxes the background)
at every step, and each stage's output is the source's outside the changed boxes (a local
blend, as in prompt-to-prompt)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from .plan import plan_scene
from .regions import CompiledScene, background_image, compile_scene


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


def planned_edit(pipe, source: str, target: str, n: int, seed: int, settings: list,
                 progress: bool, bf16: bool | None) -> tuple[dict, dict]:
    """Every stage's output (by name) of the source and of the edit, n images each drawn
    with seeds seed..seed+n-1."""
    side = pipe.stages[0].cfg.resolution
    a = compile_scene(plan_scene(source), side, seed, source)  # as generate --plan-layout
    b = compile_scene(plan_scene(target), side, seed, target, like=a)
    gone, new = changed_boxes(a, b)
    if a.background != b.background:  # a new background: everything is redrawn
        gone = new = torch.ones_like(gone)
    if not (gone.any() or new.any()):
        raise InputError("the two prompts plan the same scene: nothing to edit")
    stop = len(pipe.stages)
    drawn = pipe._controlled(source, n, seed, settings, stop, None, [], a, progress, bf16)
    base = drawn[pipe.stages[0].name]
    known = base * (1 - gone) + background_image(b.background, side).to(base) * gone
    edited = pipe._controlled(target, n, seed, settings, stop, None, [], b, progress, bf16,
                              kept=(known, 1 - new))
    changed = (gone + new).clamp(max=1).to(base)
    for name, x in edited.items():  # outside the changed boxes, the source's pixels
        m = F.interpolate(changed, size=x.shape[-2:], mode="bilinear", align_corners=False)
        edited[name] = drawn[name] * (1 - m) + x * m
    return drawn, edited
