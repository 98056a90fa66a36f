"""The pipeline folder format, Hugging Face style; no pickle is ever loaded from it:

    model_index.json            {"format": "fineimagen-pipeline", "format_version": 1,
                                 "text_encoder": "text_encoder", "stages": ["base", ...],
                                 "domain": "shapes"}
    text_encoder/config.json    TextEncoderConfig (+ model.safetensors when trained jointly)
    base/config.json            StageConfig (U-Net, diffusion, default sampling settings)
    base/model.safetensors      the U-Net's (EMA) weights
    sr/ ...                     further stages in cascade order (super-resolution)
    aligner/                    optional: AlignerConfig + weights (`"aligner": "aligner"`)

Built-in models live in the package (`shapes`, `openmoji`); `model_path` finds either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .cascade import Stage
from .config import CascadeConfig, StageConfig, TextEncoderConfig
from .diffusion.denoiser import Denoiser
from .domains import DEFAULT_DOMAIN, domain_names
from .errors import InputError
from .files import atomic_folder, check_inside, check_links, check_size, load_weights, read_json
from .models.alignment import Aligner
from .models.sr import RegressionSR
from .models.text_encoders import TextEncoder, build_text_encoder
from .models.unet import EfficientUNet

FORMAT = "fineimagen-pipeline"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"

def default_model_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("default_model")))


# built-in models by name: the package folder each lives in (a release ships those it has)
BUILTIN_MODELS = {"shapes": "default_model", "openmoji": "openmoji_model"}


def model_path(name_or_path: str | Path | None) -> Path:
    """The folder of `--model NAME|DIR`: a folder that exists wins, then a built-in name;
    None is the default (`shapes`)."""
    if name_or_path is None:
        return default_model_path()
    path = Path(name_or_path)
    if path.is_dir() or str(name_or_path) not in BUILTIN_MODELS:
        return path
    folder = Path(str(resources.files(__package__).joinpath(BUILTIN_MODELS[str(name_or_path)])))
    if not (folder / "model_index.json").is_file():
        raise InputError(f"the built-in model {name_or_path!r} is not in this release "
                         f"(built in: {', '.join(builtin_names())})")
    return folder


def model_domain(name_or_path: str | Path | None) -> str:
    """The domain a model folder draws, read from its index alone (no weights loaded):
    what a scene spec that names no domain is read as."""
    root = model_path(name_or_path)
    index = read_json(root / "model_index.json", "model_index.json") if root.is_dir() else {}
    return index_domain(index, root)


def builtin_names() -> list[str]:
    return [name for name, folder in BUILTIN_MODELS.items() if (Path(str(
        resources.files(__package__).joinpath(folder))) / "model_index.json").is_file()]


def save_stage_folder(out: Path, cascade: CascadeConfig, stage: StageConfig,
                      unet_weights: dict, text_weights: dict | None) -> Path:
    """Write a one-stage pipeline folder from raw weights (used by the trainer)."""
    return write_folder(out, cascade.text_encoder, text_weights, [(stage, unet_weights)],
                         domain=cascade.domain)


def write_folder(out: Path, text_cfg: TextEncoderConfig, text_weights: dict | None,
                  stages: list[tuple[StageConfig, dict]], aligner: Aligner | None = None,
                  domain: str = DEFAULT_DOMAIN) -> Path:
    from safetensors.torch import save_file

    from .models.alignment import save_aligner_folder

    out = Path(out)
    with atomic_folder(out, replace=True) as tmp:
        index = {"format": FORMAT, "format_version": FORMAT_VERSION,
                 "text_encoder": "text_encoder", "stages": [s.name for s, _ in stages],
                 "domain": domain}
        if aligner is not None:
            index["aligner"] = "aligner"
            save_aligner_folder(tmp / "aligner", aligner.cfg, aligner.trained_state())
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "text_encoder").mkdir()
        (tmp / "text_encoder/config.json").write_text(json.dumps(text_cfg.to_dict(), indent=2))
        if text_weights is not None:
            save_file(_contiguous(text_weights), str(tmp / "text_encoder" / WEIGHTS))
        for stage, weights in stages:
            (tmp / stage.name).mkdir()
            (tmp / stage.name / "config.json").write_text(json.dumps(stage.to_dict(), indent=2))
            save_file(_contiguous(weights, torch.float16), str(tmp / stage.name / WEIGHTS))
    return out


def index_domain(index: dict, root: Path) -> str:
    """The domain a model_index.json names (shapes where it names none: older folders)."""
    name = index.get("domain", DEFAULT_DOMAIN)
    if not isinstance(name, str) or name not in domain_names():
        raise InputError(f"{root}: model_index.json names domain {name!r}; known: "
                         f"{', '.join(domain_names())}")
    return name


def _contiguous(weights: dict, dtype: torch.dtype | None = None) -> dict:
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
            .detach().cpu().contiguous() for k, v in weights.items()}


@dataclass
class FolderParts:
    """A pipeline folder's components, loaded."""

    text_encoder: TextEncoder
    text_config: TextEncoderConfig
    stages: list[Stage]
    aligner: Aligner | None
    domain: str


def is_exported(root: Path) -> bool:
    """Whether a folder holds exported graphs (export.py) rather than PyTorch weights."""
    from .export import FORMAT as EXPORT_FORMAT

    index = root / "model_index.json"
    return index.is_file() and read_json(index, "model_index.json").get("format") == \
        EXPORT_FORMAT


def read_folder(root: Path, dtype: torch.dtype | None = None) -> FolderParts:
    """Every component of a pipeline folder, checked before anything is built: the index,
    each component's folder inside the root, sizes before allocation, no pickle."""
    if not root.is_dir():
        raise InputError(f"model folder not found: {root}")
    check_links(root)
    index = read_json(root / "model_index.json", "model_index.json")
    if index.get("format") != FORMAT or not isinstance(index.get("stages"), list):
        raise InputError(f"{root}: model_index.json is not a fineimagen pipeline index")
    if index.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{root}: format version {index['format_version']} is newer than "
                         f"this fineimagen reads ({FORMAT_VERSION}); upgrade fineimagen")
    names = [index.get("text_encoder", "text_encoder"), *index["stages"]] + \
        ([index["aligner"]] if index.get("aligner") else [])
    for name in names:
        if not isinstance(name, str):
            raise InputError(f"{root}: model_index.json names a component {name!r}")
        check_inside(root, root / name, "model_index.json")
    text_dir = root / index.get("text_encoder", "text_encoder")
    text_cfg = TextEncoderConfig.from_dict(
        read_json(text_dir / "config.json", "text_encoder/config.json"), "text_encoder")
    if text_cfg.kind == "trainable":
        check_size(lambda: build_text_encoder(text_cfg), "text_encoder")
    text_encoder = build_text_encoder(text_cfg, dtype or torch.float32)
    if not text_encoder.frozen:
        load_weights(text_encoder, text_dir / WEIGHTS, "text_encoder")
    stages = [load_stage(root, name) for name in index["stages"]]
    if not stages:
        raise InputError(f"{root}: the pipeline has no stages")
    aligner = Aligner.from_folder(root / index["aligner"]) if index.get("aligner") else None
    return FolderParts(text_encoder.eval(), text_cfg, stages, aligner,
                       index_domain(index, root))


def load_stage(root: Path, name: str) -> Stage:
    cfg = StageConfig.from_dict(read_json(root / name / "config.json", f"{name}/config.json"),
                                name)
    check_size((lambda: RegressionSR(cfg.regression)) if cfg.kind == "regression"
               else (lambda: EfficientUNet(cfg.unet)), name)
    if cfg.kind == "regression":
        model = RegressionSR(cfg.regression)
        load_weights(model, root / name / WEIGHTS, name)
    else:
        model = Denoiser(EfficientUNet(cfg.unet), cfg.diffusion)
        load_weights(model.unet, root / name / WEIGHTS, name)
    model.to(memory_format=torch.channels_last)  # the CPU fast path
    return Stage(cfg, model.eval())
