"""The OpenMoji domain behind the Domain interface: artist-drawn emoji in the grid cells."""

from __future__ import annotations

import numpy as np

from ...control.regions import CompiledScene
from ...errors import InputError
from ..base import Domain
from .colors import GENEVAL_COLORS
from .parser import is_correct_emoji, parse_emoji_image
from .reading import read_prompt
from .regions import compile_emoji_scene
from .render import render_emoji
from .scene import (
    EmojiScene,
    characters,
    complete_emoji,
    emoji_caption,
    emoji_category,
    parse_emoji_spec,
)
from .vocab import vocabulary


class OpenMojiDomain(Domain):
    """Scenes of OpenMoji glyphs named from one vocabulary: `openmoji` is `openmoji-100`;
    `openmoji-coco` is GenEval's classes, whose glyphs are also recoloured and judged
    whatever their colour."""

    scene_type = EmojiScene

    def __init__(self, vocab: str = "openmoji-100"):
        self.vocab = vocab
        self.name = "openmoji" if vocab == "openmoji-100" else vocab
        self.names = vocabulary(vocab)
        self.subject_nouns = self.names
        self.colors = GENEVAL_COLORS if vocab == "openmoji-coco" else ()

    def parse_spec(self, spec: dict) -> EmojiScene:
        return parse_emoji_spec(spec, self.names, self.name)

    def caption(self, scene: EmojiScene, rng: np.random.Generator) -> str:
        return emoji_caption(scene, rng)

    def compile_scene(self, scene: EmojiScene, size: int, seed: int = 0,
                      prompt: str | None = None, like: CompiledScene | None = None
                      ) -> CompiledScene:
        if like is not None:
            raise InputError("edits by planning read shapes scenes only, not OpenMoji ones")
        return compile_emoji_scene(scene, size, seed, prompt, self.names)

    def render(self, scene: EmojiScene, size: int, rng: np.random.Generator) -> np.ndarray:
        filled, placed = complete_emoji(scene, rng)
        return render_emoji(placed, filled.background, size, characters(filled))

    def judge(self, scene: EmojiScene, image: np.ndarray) -> bool:
        return is_correct_emoji(scene, parse_emoji_image(image, self.names, self.colors))

    def category(self, scene: EmojiScene) -> str:
        return emoji_category(scene)

    def read(self, prompt: str) -> EmojiScene:
        return read_prompt(prompt, self.names, self.name)
