"""Noise schedules and samplers by name, both from diffusers so training and sampling agree.

The forward process (Ho et al. 2020, eq. 4): x_t = alpha_t x_0 + sigma_t eps with
alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t).
"""

from __future__ import annotations

import torch

from ..config import DiffusionConfig
from ..errors import InputError

BETA_SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction"}
SAMPLERS = ("ddpm", "ddim", "dpm++", "unipc")


def check_diffusion(cfg: DiffusionConfig) -> None:
    if cfg.schedule not in BETA_SCHEDULES:
        raise InputError(f"unknown schedule {cfg.schedule!r} (choose from cosine, linear)")
    if cfg.prediction not in PREDICTION_TYPES:
        raise InputError(f"unknown prediction {cfg.prediction!r} (choose from eps, v)")
    if cfg.snr_offset and cfg.prediction != "v":
        raise InputError("snr_offset weights v prediction (eps-space weight would diverge "
                         "at high noise)")
    if not 0 <= cfg.input_perturbation < 1:
        raise InputError(f"input_perturbation must be in [0, 1), got {cfg.input_perturbation}")


def make_scheduler(name: str, cfg: DiffusionConfig):
    """A diffusers scheduler by our name, configured like the training schedule."""
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
    )

    check_diffusion(cfg)
    common = dict(num_train_timesteps=cfg.timesteps, beta_schedule=BETA_SCHEDULES[cfg.schedule],
                  prediction_type=PREDICTION_TYPES[cfg.prediction])
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small_log")
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True,
                             timestep_spacing="trailing")
    if name == "dpm++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++",
                                           solver_order=2, timestep_spacing="trailing")
    if name == "unipc":
        return UniPCMultistepScheduler(**common, timestep_spacing="trailing")
    raise InputError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")


def alphas_cumprod(cfg: DiffusionConfig) -> torch.Tensor:
    """abar_t for t = 0 .. T-1, float64."""
    return make_scheduler("ddpm", cfg).alphas_cumprod.double()
