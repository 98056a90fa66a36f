"""TextToImagePipeline: the object the CLI, the UI and Python users call.

A pipeline folder is Hugging Face style, and no pickle is ever loaded from it:

    model_index.json            {"format": "fineimagen-pipeline", "format_version": 1,
                                 "text_encoder": "text_encoder", "stages": ["base", ...]}
    text_encoder/config.json    TextEncoderConfig (+ model.safetensors when trained jointly)
    base/config.json            StageConfig (U-Net, diffusion, default sampling settings)
    base/model.safetensors      the U-Net's (EMA) weights
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import CascadeConfig, StageConfig, TextEncoderConfig
from .diffusion.denoiser import Denoiser, TextCondition
from .diffusion.sampling import check_sampling, denoise
from .errors import InputError
from .files import atomic_folder
from .models.text_encoders import TextEncoder, build_text_encoder
from .models.unet import EfficientUNet

FORMAT = "fineimagen-pipeline"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"


def default_model_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("default_model")))


def save_stage_folder(out: Path, cascade: CascadeConfig, stage: StageConfig,
                      unet_weights: dict, text_weights: dict | None) -> Path:
    """Write a one-stage pipeline folder from raw weights (used by the trainer)."""
    return _write_folder(out, cascade.text_encoder, text_weights, [(stage, unet_weights)])


def _write_folder(out: Path, text_cfg: TextEncoderConfig, text_weights: dict | None,
                  stages: list[tuple[StageConfig, dict]]) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    with atomic_folder(out, replace=True) as tmp:
        index = {"format": FORMAT, "format_version": FORMAT_VERSION,
                 "text_encoder": "text_encoder", "stages": [s.name for s, _ in stages]}
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


def _contiguous(weights: dict, dtype: torch.dtype | None = None) -> dict:
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
            .detach().cpu().contiguous() for k, v in weights.items()}


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"not a fineimagen model folder: {what} is missing ({path})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: malformed JSON ({err.msg})") from None


def _load_weights(module: torch.nn.Module, path: Path, what: str) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"{what}: weights missing ({path})")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise InputError(f"{what}: unreadable weights ({err})") from None
    reference = module.state_dict()
    missing = sorted(set(reference) - set(state))
    extra = sorted(set(state) - set(reference))
    wrong = [k for k in reference if k in state and state[k].shape != reference[k].shape]
    if missing or extra or wrong:
        detail = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                  else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, config says "
                       f"{tuple(reference[wrong[0]].shape)}")
        raise InputError(f"{what}: weights do not match the config ({detail})")
    module.load_state_dict({k: v.float() for k, v in state.items()})


class TextToImagePipeline:
    """Text in, images out: encode the prompt once, run the stages."""

    def __init__(self, text_encoder: TextEncoder, text_config: TextEncoderConfig,
                 stages: list[tuple[StageConfig, Denoiser]]):
        self.text_encoder, self.text_config = text_encoder, text_config
        self.stages = stages
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ folders
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> TextToImagePipeline:
        """Load a pipeline folder; with no path, the model shipped inside the package."""
        root = Path(path) if path is not None else default_model_path()
        if not root.is_dir():
            raise InputError(f"model folder not found: {root}")
        index = _read_json(root / "model_index.json", "model_index.json")
        if index.get("format") != FORMAT or not isinstance(index.get("stages"), list):
            raise InputError(f"{root}: model_index.json is not a fineimagen pipeline index")
        if index.get("format_version", 0) > FORMAT_VERSION:
            raise InputError(f"{root}: format version {index['format_version']} is newer than "
                             f"this fineimagen reads ({FORMAT_VERSION}); upgrade fineimagen")
        text_dir = root / index.get("text_encoder", "text_encoder")
        text_cfg = TextEncoderConfig.from_dict(
            _read_json(text_dir / "config.json", "text_encoder/config.json"), "text_encoder")
        text_encoder = build_text_encoder(text_cfg)
        if not text_encoder.frozen:
            _load_weights(text_encoder, text_dir / WEIGHTS, "text_encoder")
        stages = []
        for name in index["stages"]:
            cfg = StageConfig.from_dict(_read_json(root / name / "config.json",
                                                   f"{name}/config.json"), name)
            denoiser = Denoiser(EfficientUNet(cfg.unet), cfg.diffusion)
            _load_weights(denoiser.unet, root / name / WEIGHTS, name)
            denoiser.unet.to(memory_format=torch.channels_last)  # the CPU fast path
            stages.append((cfg, denoiser.eval()))
        if not stages:
            raise InputError(f"{root}: the pipeline has no stages")
        return cls(text_encoder.eval(), text_cfg, stages)

    def save_pretrained(self, path: str | Path) -> Path:
        text_weights = None if self.text_encoder.frozen else self.text_encoder.state_dict()
        return _write_folder(Path(path), self.text_config, text_weights,
                             [(cfg, d.unet.state_dict()) for cfg, d in self.stages])

    def to(self, device: str | torch.device) -> TextToImagePipeline:
        self.device = torch.device(device)
        self.text_encoder.to(self.device)
        for _, denoiser in self.stages:
            denoiser.to(self.device)
        return self

    # ------------------------------------------------------------------ generation
    def encode(self, prompts: list[str]) -> TextCondition:
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise InputError("prompt is empty")
        with torch.no_grad():
            embeds, mask = self.text_encoder.encode(prompts)
        return TextCondition(embeds.float().to(self.device), mask.to(self.device))

    def check_options(self, sampler=None, steps=None, guidance=None, threshold=None):
        """The base stage's sampling settings with the given ones applied, validated."""
        from .diffusion.schedules import SAMPLERS

        settings = replace(self.stages[0][0].sampling, **{k: v for k, v in dict(
            sampler=sampler, steps=steps, guidance=guidance, threshold=threshold).items()
            if v is not None})
        if settings.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {settings.sampler!r} "
                             f"(choose from {', '.join(SAMPLERS)})")
        check_sampling(settings.steps, settings.guidance)
        if not 0 <= settings.threshold < 1:
            raise InputError(f"threshold must be in [0, 1), got {settings.threshold}")
        return settings

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], n: int = 1, seed: int = 0,
                 sampler: str | None = None, steps: int | None = None,
                 guidance: float | None = None, threshold: float | None = None,
                 progress: bool = True, bf16: bool = True) -> list[Image.Image]:
        """`n` images per prompt; image j of the flattened list uses seed `seed + j` alone.

        Unset sampling options take the stage's defaults (its config's `sampling`).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if n <= 0:
            raise InputError(f"n must be positive, got {n}")
        cfg, denoiser = self.stages[0]
        settings = self.check_options(sampler, steps, guidance, threshold)
        repeated = [p for p in prompts for _ in range(n)]
        cond = self.encode(repeated)
        seeds = [seed + j for j in range(len(repeated))]
        use_bf16 = bf16 and self.device.type == "cpu"

        def predict(x_t, t):
            with torch.autocast("cpu", torch.bfloat16, enabled=use_bf16):
                return denoiser.guided(x_t, t.to(self.device), cond, settings.guidance,
                                       settings.threshold)

        shape = (cfg.unet.out_channels, cfg.resolution, cfg.resolution)
        x = denoise(predict, cfg.diffusion, settings.sampler, settings.steps, seeds, shape,
                    self.device, progress)
        return to_pil(x)


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] -> PIL images."""
    array = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]
