"""The denoising loop. It owns no model and no scheduler math: the scheduler is diffusers',
chosen by name, and `predict(x_t, t)` is whatever turns one step into a guided prediction
(plain classifier-free guidance, or a control method's composition of several calls).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..config import DiffusionConfig
from ..errors import InputError
from .schedules import make_scheduler

# the seed offset of a stochastic sampler's step noise: apart from every image's starting
# noise (seed + 1 was image j + 1's), the SR, stage and rerank offsets
STEP_NOISE_SEED_OFFSET = 2_750_159

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# after each step: (step index, t, x_{t_next}, t_next or None at the end) -> a replacement
# for x (e.g. a known region put back, for inpainting) or None to keep it
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor | None],
                        torch.Tensor | None]
# before each step: (step index, t, x_t) -> x_t moved (e.g. a gradient step of attention
# guidance, control.attention_guidance)
StepUpdate = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def initial_noise(seeds: list[int], shape: tuple[int, ...], device="cpu") -> torch.Tensor:
    """One noise image per seed: image i depends only on seeds[i], never on the batch."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s)))
                        for s in seeds]).to(device)


def check_sampling(steps: int, guidance: float) -> None:
    if steps <= 0:
        raise InputError(f"steps must be positive, got {steps}")
    if not torch.isfinite(torch.tensor(float(guidance))):
        raise InputError(f"guidance must be a finite number, got {guidance}")


def denoise(predict: Predict, diffusion: DiffusionConfig, sampler: str, steps: int,
            seeds: list[int], shape: tuple[int, ...], device="cpu", progress: bool = True,
            callback: StepCallback | None = None, x_start: torch.Tensor | None = None,
            start_step: int = 0, update: StepUpdate | None = None) -> torch.Tensor:
    """Run the reverse process from noise (or from `x_start` at `start_step`) to x0.

    `shape` is one image's [C, H, W]; the result is [len(seeds), C, H, W], roughly in [-1, 1].
    """
    scheduler = make_scheduler(sampler, diffusion)
    scheduler.set_timesteps(steps, device=device)
    generators = [torch.Generator().manual_seed(int(s) + STEP_NOISE_SEED_OFFSET) for s in seeds]
    x = x_start if x_start is not None else \
        initial_noise(seeds, shape, device) * scheduler.init_noise_sigma
    step_kwargs = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = generators
    timesteps = scheduler.timesteps[start_step:]
    for i, t in enumerate(tqdm(timesteps, desc=f"sampling ({sampler})", disable=not progress,
                               leave=False)):
        if update is not None:
            x = update(start_step + i, t, x)
        x_in = scheduler.scale_model_input(x, t)
        out = predict(x_in, t)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
        if callback is not None:
            t_next = timesteps[i + 1] if i + 1 < len(timesteps) else None
            replaced = callback(start_step + i, t, x, t_next)
            x = x if replaced is None else replaced
    return x


def sampling_timesteps(sampler: str, diffusion: DiffusionConfig, steps: int) -> torch.Tensor:
    """The timesteps `denoise` visits for these settings (img2img starts part-way)."""
    scheduler = make_scheduler(sampler, diffusion)
    scheduler.set_timesteps(steps)
    return scheduler.timesteps
