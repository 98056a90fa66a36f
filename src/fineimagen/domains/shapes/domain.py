"""The shapes domain behind the Domain interface."""

from __future__ import annotations

import numpy as np

from ...control.regions import CompiledScene
from ..base import Domain
from . import judge, regions
from .captions import SHAPE_WORDS, caption
from .parser import parse_image
from .plan import plan_with_report
from .render import render
from .scene import Scene, complete, parse_spec


class ShapesDomain(Domain):
    """Coloured, sized, textured shapes on a plain background (domains/shapes/)."""

    name = "shapes"
    scene_type = Scene
    subject_nouns = tuple(sorted({w for words in SHAPE_WORDS.values() for w in words}))

    def parse_spec(self, spec: dict) -> Scene:
        return parse_spec(spec)

    def caption(self, scene: Scene, rng: np.random.Generator) -> str:
        return caption(scene, rng)

    def compile_scene(self, scene: Scene, size: int, seed: int = 0, prompt: str | None = None,
                      like: CompiledScene | None = None) -> CompiledScene:
        return regions.compile_scene(scene, size, seed, prompt, like)

    def render(self, scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
        filled, placed = complete(scene, rng)
        return render(placed, filled.background, size)

    def judge(self, scene: Scene, image: np.ndarray) -> bool:
        return judge.is_correct(scene, parse_image(image), image.shape[0])

    def category(self, scene: Scene) -> str:
        return judge.category_of(scene)

    def read(self, prompt: str) -> Scene:
        """The planner's reading: the grammar, else ordinary language through reading.py
        (words it cannot place are left unread)."""
        return plan_with_report(prompt)[0]
