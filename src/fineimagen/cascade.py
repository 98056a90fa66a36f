"""The cascade: the only module that knows about stages. A base stage draws from noise;
each super-resolution stage enlarges the previous stage's output (Imagen sec. 2.5): a
diffusion SR stage samples conditioned on the noise-augmented, enlarged low-res image, a
regression SR stage maps it in one pass. Text is encoded once and shared by all stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .config import SamplerConfig, StageConfig
from .diffusion.denoiser import Denoiser, TextCondition
from .diffusion.sampling import check_sampling, denoise, initial_noise
from .errors import InputError
from .models.sr import RegionText, RegressionSR, upsample, whole_image
from .precision import use_bf16 as resolve_bf16

STAGE_SEED_STRIDE = 7_000_003  # seed offset between the stages of one image
AUG_SEED_OFFSET = 3_500_017  # the SR input's augmentation noise, apart from any image's seeds
SAMPLING_OPTIONS = ("sampler", "steps", "guidance", "threshold", "aug_level")


@dataclass
class StageControl:
    """How control plugs into one stage's loop (all optional)."""

    guide: Callable | None = None  # (denoiser, x_t, t, **extra) -> guided prediction
    callback: Callable | None = None  # after each step (see diffusion.sampling.StepCallback)
    update: Callable | None = None  # before each step (see diffusion.sampling.StepUpdate)
    x_start: torch.Tensor | None = None  # img2img: the noised start, at `start_step`
    start_step: int = 0
    regions: RegionText | None = None  # region prompts for a regression SR stage


@dataclass
class Stage:
    cfg: StageConfig
    model: Denoiser | RegressionSR

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def is_sr(self) -> bool:
        return bool(self.cfg.input_resolution)

    def weights(self) -> dict:
        module = self.model if self.cfg.kind == "regression" else self.model.unet
        return module.state_dict()

    def settings(self, **overrides) -> SamplerConfig:
        """This stage's sampling settings with `overrides` (None = keep), validated."""
        from .diffusion.schedules import SAMPLERS

        unknown = set(overrides) - set(SAMPLING_OPTIONS)
        if unknown:
            raise InputError(f"unknown option {sorted(unknown)[0]!r} for stage {self.name!r} "
                             f"(choose from {', '.join(SAMPLING_OPTIONS)})")
        s = replace(self.cfg.sampling, **{k: v for k, v in overrides.items() if v is not None})
        if s.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {s.sampler!r} (choose from {', '.join(SAMPLERS)})")
        check_sampling(s.steps, s.guidance)
        if not 0 <= s.threshold < 1:
            raise InputError(f"threshold must be in [0, 1), got {s.threshold}")
        if not 0 <= s.aug_level < 1:
            raise InputError(f"aug_level must be in [0, 1), got {s.aug_level}")
        return s

    def run(self, cond: TextCondition | None, seeds: list[int], settings: SamplerConfig,
            lowres: torch.Tensor | None, device: torch.device, progress: bool = True,
            bf16: bool | None = None, control: StageControl | None = None) -> torch.Tensor:
        """[len(seeds), 3, R, R] in about [-1, 1]; SR stages enlarge `lowres` [B, 3, r, r].
        `bf16`: autocast on the CPU (None: where the CPU computes bf16 natively). On a GPU the
        weights' dtype decides: float16 or bfloat16 weights run under autocast in it."""
        weights = next(self.model.parameters()).dtype
        half = device.type == "cuda" and weights != torch.float32
        with torch.autocast("cuda", weights if half else torch.float16, enabled=half):
            return self._run(cond, seeds, settings, lowres, device, progress, bf16,
                             control).float()

    def _run(self, cond, seeds, settings, lowres, device, progress, bf16, control):
        control = control or StageControl()
        size = (self.cfg.resolution, self.cfg.resolution)
        use_bf16 = device.type == "cpu" and resolve_bf16(bf16)  # the CPU fast path
        if self.is_sr and lowres is None:
            raise InputError(f"stage {self.name!r} enlarges an image: give one")
        if self.cfg.kind == "regression":
            regions = control.regions
            if regions is None and cond is not None and self.cfg.reads_prompt:
                # the prompt over the whole image
                regions = whole_image(cond, lowres.shape[-1])
            with torch.autocast("cpu", torch.bfloat16, enabled=use_bf16):
                return self.model(lowres, size, regions).float().clamp(-1, 1)
        extra = {}
        if self.is_sr:
            level = round(settings.aug_level * (self.cfg.diffusion.timesteps - 1))
            levels = torch.full((len(seeds),), level, device=device)
            noise = initial_noise([s + AUG_SEED_OFFSET for s in seeds], (3, *size), device)
            extra = {"lowres": self.model.noise_augment(upsample(lowres, size), levels, noise),
                     "aug_level": levels.float()}
        model, guide = self.model, control.guide

        def predict(x_t, t):
            with torch.autocast("cpu", torch.bfloat16, enabled=use_bf16):
                if guide is not None:
                    return guide(model, x_t, t.to(device), **extra)
                return model.guided(x_t, t.to(device), cond, settings.guidance,
                                    settings.threshold, **extra)

        update = None
        if control.update is not None:
            def update(step, t, x):
                with torch.autocast("cpu", torch.bfloat16, enabled=use_bf16):
                    return control.update(step, t, x)

        return denoise(predict, self.cfg.diffusion, settings.sampler, settings.steps, seeds,
                       (self.cfg.unet.out_channels, *size), device, progress,
                       control.callback, control.x_start, control.start_step, update)


def stage_seeds(seeds: list[int], index: int) -> list[int]:
    """The seeds of stage `index` for images drawn with `seeds` (index 0: the seeds)."""
    return [s + index * STAGE_SEED_STRIDE for s in seeds]


def _reporting(control: StageControl, name: str, steps: int, on_step: Callable
               ) -> StageControl:
    """`control` with `on_step` called after each of its steps (after its own callback)."""
    inner = control.callback

    def callback(step, t, x, t_next):
        replaced = inner(step, t, x, t_next) if inner is not None else None
        on_step(name, step, steps, x if replaced is None else replaced)
        return replaced

    return replace(control, callback=callback)


def run_stages(stages: list[Stage], cond: TextCondition | None, seeds: list[int],
               settings: list[SamplerConfig], x: torch.Tensor | None, start: int, stop: int,
               device: torch.device, progress: bool = True, bf16: bool | None = None,
               offload: bool = False, controls: dict[int, StageControl] | None = None,
               on_step: Callable | None = None) -> dict[str, torch.Tensor]:
    """Run stages start..stop-1 (SR stages on `x`, the previous output); each stage's output
    by name. With `offload`, a stage sits on `device` only while it runs (GPU memory);
    `controls` plug control into stages by index; `on_step(stage, step, steps, x)` follows
    every step (once after a stage without a loop)."""
    outputs = {}
    for i in range(start, stop):
        stage = stages[i]
        if offload:
            stage.model.to(device)
        control = (controls or {}).get(i)
        if on_step is not None and stage.cfg.kind != "regression":
            control = _reporting(control or StageControl(), stage.name,
                                 settings[i].steps, on_step)
        x = stage.run(cond, stage_seeds(seeds, i), settings[i], x, device, progress, bf16,
                      control)
        if on_step is not None and stage.cfg.kind == "regression":
            on_step(stage.name, 0, 1, x)
        if offload:
            stage.model.to("cpu")
        outputs[stage.name] = x
    return outputs
