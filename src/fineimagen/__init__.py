"""fineimagen: Imagen-style text-to-image diffusion with fine-grained control.

Importing the package has no side effects and touches no network; the public names below
load their modules on first use.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "TextToImagePipeline": "fineimagen.pipeline",
    "CascadeConfig": "fineimagen.config",
    "StageConfig": "fineimagen.config",
    "UNetConfig": "fineimagen.config",
    "load_preset": "fineimagen.config",
    "InputError": "fineimagen.errors",
    "ShapesDataset": "fineimagen.domains.shapes.samples",
    "parse_spec": "fineimagen.domains.shapes.scene",
    "parse_image": "fineimagen.domains.shapes.parser",
    "TrainConfig": "fineimagen.train.trainer",
    "train": "fineimagen.train.trainer",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fineimagen' has no attribute {name!r}")
