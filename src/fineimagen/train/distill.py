"""Guided distillation of a base stage (Meng et al. 2023, "On Distillation of Guided Diffusion
Models"), in two stages, each one `fineimagen train --distill-from TEACHER` run:

- `--distill-steps 0`: a student that takes the guidance weight w as an input
  (UNetConfig.guidance_input) learns the teacher's classifier-free guided prediction
  out_u + w (out_c - out_u) (Meng et al. eq. 5, in the model's prediction space) in one call,
  w ~ U[w_min, w_max] (sec. 4.1). It starts as the teacher (the w embedding starts at zero).
- `--distill-steps N`: progressive distillation (Salimans & Ho 2022, alg. 2; Meng et al.
  sec. 4.2): from a guidance-input teacher, one deterministic DDIM step of the student from t
  to the next time of the N-step trailing grid matches two of the teacher's on the 2N-step
  grid, at the same w. Halve N from run to run (16 -> 8 -> 4); the student samples with
  `ddim` and N steps.

Both train on the teacher's own data and text encoder; the student's folder is a pipeline
folder whose base stage samples as it was distilled to.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import CascadeConfig
from ..diffusion.denoiser import Denoiser, TextCondition, _draw
from ..errors import InputError
from .jobs import Job, shapes_data, write_stage_model


class GuidanceDistill(nn.Module):
    """Stage 1: the student's one call matches the teacher's guided prediction."""

    def __init__(self, student: Denoiser, teacher: Denoiser, w_range: tuple[float, float]):
        super().__init__()
        self.denoiser = student  # the name the trainer's export and EMA read
        self.teacher = [teacher.eval().requires_grad_(False)]  # a list: not a submodule
        self.w_range = w_range

    def forward(self, images, captions, embeds=None, mask=None, generator=None):
        student, teacher = self.denoiser, _on(self.teacher[0], images.device)
        b, device = images.shape[0], images.device
        t = _draw(lambda **k: torch.randint(0, student.cfg.timesteps, (b,), **k), generator,
                  device)
        eps = _draw(lambda **k: torch.randn(images.shape, **k), generator, device)
        w = _weights(self.w_range, b, generator, device)
        alpha, sigma = student.coefficients(t)
        x_t = alpha * images + sigma * eps
        cond = TextCondition(embeds, mask)
        with torch.no_grad():
            both = TextCondition(torch.cat([cond.embeds, cond.null().embeds]),
                                 torch.cat([cond.mask, cond.null().mask]))
            out_c, out_u = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]).float(),
                                   both).float().chunk(2)
            target = out_u + w.view(-1, 1, 1, 1) * (out_c - out_u)
        out = student(x_t, t.float(), cond, guidance=w)
        per_image = F.mse_loss(out.float(), target, reduction="none").flatten(1).mean(1)
        return (student.loss_weight(t) * per_image).mean()


class ProgressiveDistill(nn.Module):
    """Stage 2: one student DDIM step on the N-step grid = two teacher steps on the 2N one."""

    def __init__(self, student: Denoiser, teacher: Denoiser, steps: int,
                 w_range: tuple[float, float]):
        super().__init__()
        self.denoiser = student
        self.teacher = [teacher.eval().requires_grad_(False)]
        self.w_range = w_range
        grid = ddim_grid(student.cfg.timesteps, steps)
        fine = ddim_grid(student.cfg.timesteps, 2 * steps)
        if not np.array_equal(fine[::2], grid):
            raise InputError(f"{steps} steps: the {2 * steps}-step grid does not contain the "
                             f"{steps}-step one (timesteps {student.cfg.timesteps})")
        # per student step k: (t, the teacher's midpoint, the next time; -1 is clean)
        self.register_buffer("times", torch.tensor(
            [[grid[k], fine[2 * k + 1], grid[k + 1] if k + 1 < steps else -1]
             for k in range(steps)]), persistent=False)

    def forward(self, images, captions, embeds=None, mask=None, generator=None):
        student, teacher = self.denoiser, _on(self.teacher[0], images.device)
        b, device = images.shape[0], images.device
        k = _draw(lambda **kw: torch.randint(0, len(self.times), (b,), **kw), generator,
                  device)
        t, mid, s = self.times[k].unbind(1)
        eps = _draw(lambda **kw: torch.randn(images.shape, **kw), generator, device)
        w = _weights(self.w_range, b, generator, device)
        a_t, s_t = _coefficients(student, t)
        x_t = a_t * images + s_t * eps
        cond = TextCondition(embeds, mask)
        with torch.no_grad():  # two DDIM steps of the teacher (Salimans & Ho, alg. 2)
            x_mid = ddim_step(teacher, x_t, t, mid, cond, w)
            x_s = ddim_step(teacher, x_mid, mid, s, cond, w)
            target = one_step_x0(x_t, x_s, (a_t, s_t), _coefficients(student, s))
        pred = student.to_x0(student(x_t, t.float(), cond, guidance=w).float(), x_t, t)
        weight = (a_t ** 2 / s_t ** 2).clamp(min=1.0).flatten()  # truncated SNR (their eq. 10)
        per_image = F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)
        return (weight * per_image).mean()


def ddim_grid(timesteps: int, steps: int) -> np.ndarray:
    """The DDIM sampler's trailing timesteps for `steps` steps (as diffusers lays them out)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=timesteps, timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.numpy().astype(np.int64)


def ddim_step(denoiser: Denoiser, x_t, t, s, cond: TextCondition, w) -> torch.Tensor:
    """Deterministic DDIM from t to s (s = -1: clean): x_s = a_s x0 + s_s (x_t - a_t x0) / s_t."""
    x0 = denoiser.to_x0(denoiser(x_t, t.float(), cond, guidance=w).float(), x_t, t)
    a_t, s_t = _coefficients(denoiser, t)
    a_s, s_s = _coefficients(denoiser, s)
    return a_s * x0 + s_s * (x_t - a_t * x0) / s_t


def one_step_x0(x_t, x_s, at_t, at_s) -> torch.Tensor:
    """The x0 whose one DDIM step from x_t lands on x_s (Salimans & Ho 2022, alg. 2):
    x0 = (x_s - (s_s / s_t) x_t) / (a_s - (s_s / s_t) a_t); at_t, at_s: (alpha, sigma)."""
    (a_t, s_t), (a_s, s_s) = at_t, at_s
    ratio = s_s / s_t
    return (x_s - ratio * x_t) / (a_s - ratio * a_t)


def _coefficients(denoiser: Denoiser, t: torch.Tensor):
    """alpha_t, sigma_t as [B, 1, 1, 1]; t = -1 is the clean image (alpha 1, sigma 0)."""
    abar = torch.cat([torch.ones(1, device=t.device, dtype=denoiser.abar.dtype),
                      denoiser.abar.to(t.device)])[t.long() + 1].float().view(-1, 1, 1, 1)
    return abar.sqrt(), (1 - abar).clamp(min=0).sqrt()


def _weights(w_range, b, generator, device) -> torch.Tensor:
    low, high = w_range
    return low + (high - low) * _draw(lambda **k: torch.rand(b, **k), generator, device)


def _on(module: nn.Module, device) -> nn.Module:
    if next(module.parameters()).device != torch.device(device):
        module.to(device)
    return module


def distill_job(cfg):
    """(the trainer's job, the cascade it writes) for a distillation run of `cfg`."""
    from ..pipeline import TextToImagePipeline

    if cfg.init:
        raise InputError("--distill-from starts the student from the teacher: give no --init")
    low, high = cfg.distill_guidance
    if not 0 <= low < high:
        raise InputError(f"distill_guidance must be [low, high] with 0 <= low < high, got "
                         f"{list(cfg.distill_guidance)}")
    if cfg.distill_steps < 0:
        raise InputError(f"distill_steps must be 0 (guidance) or a step count, got "
                         f"{cfg.distill_steps}")
    root = Path(cfg.distill_from)
    teacher_pipe = TextToImagePipeline.from_pretrained(root)
    stage = teacher_pipe.stages[teacher_pipe.stage_index(cfg.stage)]
    if stage.cfg.kind != "diffusion" or stage.is_sr:
        raise InputError(f"--distill-from distils a base diffusion stage, not {cfg.stage!r}")
    teacher = stage.model
    with torch.random.fork_rng():  # the student's new layers: the same on every run and rank
        torch.manual_seed(cfg.seed)
        module, student_cfg = _student(cfg, root, stage, teacher)
    cascade = CascadeConfig(teacher_pipe.text_config, [student_cfg])
    encoder = teacher_pipe.text_encoder.requires_grad_(False)  # the teacher's, kept as it is
    kept = None if encoder.frozen else encoder.state_dict()
    job = Job(module, encoder, student_cfg.resolution,
               lambda folder, shadow: write_stage_model(folder, cascade, student_cfg, shadow,
                                                      True, kept),
               shapes_data(student_cfg, cfg.seed, varied=cfg.varied_captions))
    return job, cascade


def _student(cfg, root: Path, stage, teacher: Denoiser):
    """The distillation module and the student stage's config."""
    if cfg.distill_steps == 0:
        if stage.cfg.unet.guidance_input:
            raise InputError(f"{root} is already guidance-distilled: give --distill-steps N")
        unet_cfg = replace(stage.cfg.unet, guidance_input=True)
        student_cfg = replace(stage.cfg, unet=unet_cfg)
        from ..models.unet import EfficientUNet

        student = Denoiser(EfficientUNet(unet_cfg), stage.cfg.diffusion)
        missing, unexpected = student.unet.load_state_dict(teacher.unet.state_dict(),
                                                           strict=False)
        if unexpected or not all(k.startswith("guidance_mlp.") for k in missing):
            raise InputError(f"{root}: its {cfg.stage} weights do not fit the student")
        module = GuidanceDistill(student, teacher, tuple(cfg.distill_guidance))
    else:
        if not stage.cfg.unet.guidance_input:
            raise InputError(f"{root} takes no guidance input: distil its guidance first "
                             "(--distill-steps 0), then the steps")
        student = copy.deepcopy(teacher)
        student_cfg = replace(stage.cfg, sampling=replace(stage.cfg.sampling, sampler="ddim",
                                                          steps=cfg.distill_steps))
        module = ProgressiveDistill(student, teacher, cfg.distill_steps,
                                    tuple(cfg.distill_guidance))
    return module, student_cfg
