"""What fineimagen knows of one kind of scene: a domain.

A domain turns a scene spec (the JSON of prompt files, `--scene` and the server) into its
scene object, writes a caption of a scene, compiles a scene into regions for scene control,
renders a scene's ground truth, and judges an image against a scene exactly. Everything
that is written once for every domain (prompt files, scene control, the pipeline, the
evaluation harness, the CLI) calls these methods; a new domain is a subclass registered in
`domains/__init__.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..control.regions import CompiledScene
from ..errors import InputError


class Domain(ABC):
    """One domain's scenes. `name` is what a spec's `"domain"` key and a model folder's
    `model_index.json` say; `scene_type` the class of its parsed scenes."""

    name: str
    scene_type: type
    subject_nouns: tuple[str, ...]  # the nouns that name objects (attend-and-excite's subjects)

    @abstractmethod
    def parse_spec(self, spec: dict):
        """The scene of a spec dict; InputError naming the first bad field."""

    @abstractmethod
    def caption(self, scene, rng: np.random.Generator) -> str:
        """A prompt stating exactly what the scene states."""

    @abstractmethod
    def compile_scene(self, scene, size: int, seed: int = 0, prompt: str | None = None,
                      like: CompiledScene | None = None) -> CompiledScene:
        """One region per object, open attributes drawn with `seed` (`like`: an edit's
        compiled source, whose layout the result keeps where it can)."""

    @abstractmethod
    def render(self, scene, size: int, rng: np.random.Generator) -> np.ndarray:
        """A ground-truth image (uint8 [size, size, 3]), open attributes drawn from `rng`."""

    @abstractmethod
    def judge(self, scene, image: np.ndarray) -> bool:
        """Whether an image (uint8 [H, W, 3]) shows the scene: the exact evaluator."""

    @abstractmethod
    def category(self, scene) -> str:
        """The evaluation category of a scene (GenEval's tags where they apply)."""

    def read(self, prompt: str):
        """The scene a free-text prompt states (the reader); domains without one refuse."""
        raise InputError(f"the {self.name} domain has no reader of free prompts; "
                         "give a scene spec instead")
