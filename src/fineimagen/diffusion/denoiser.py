"""The denoiser: a U-Net plus its prediction type, the training loss, classifier-free
guidance and thresholding.

With alpha = sqrt(abar_t), sigma = sqrt(1 - abar_t) and x_t = alpha x0 + sigma eps:
  v   = alpha eps - sigma x0        (Salimans & Ho 2022, progressive distillation, sec. 4)
  x0  = alpha x_t - sigma v,   eps = sigma x_t + alpha v
  x0  = (x_t - sigma eps) / alpha
Guidance (Ho & Salimans 2022, eq. 6; Imagen sec. 2.2): out = out_u + w (out_c - out_u).
Dynamic thresholding (Imagen sec. 2.3): s = max(quantile_p(|x0|), 1), x0 <- clip(x0, -s, s) / s.
Min-SNR-gamma (Hang et al. 2023, eq. 9): weight the x0 error by min(SNR, gamma),
SNR = alpha^2 / sigma^2; since |v err|^2 = (SNR + 1) |x0 err|^2 and
|eps err|^2 = SNR |x0 err|^2, the v (eps) loss is weighted by min(SNR, gamma) / (SNR + 1)
(resp. / SNR).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DiffusionConfig
from .schedules import alphas_cumprod, check_diffusion


@dataclass
class TextCondition:
    """Encoded prompts for one batch: per-token embeddings and their mask."""

    embeds: torch.Tensor  # [B, L, D]
    mask: torch.Tensor  # [B, L] bool

    def repeat(self, n: int) -> TextCondition:
        """Each row repeated n times in place: [a, b] -> [a] * n + [b] * n."""
        return TextCondition(self.embeds.repeat_interleave(n, 0),
                             self.mask.repeat_interleave(n, 0))

    def null(self) -> TextCondition:
        """The unconditional input: every token masked out (only the null token remains)."""
        return TextCondition(torch.zeros_like(self.embeds), torch.zeros_like(self.mask))


class Denoiser(nn.Module):
    def __init__(self, unet: nn.Module, cfg: DiffusionConfig):
        super().__init__()
        check_diffusion(cfg)
        self.unet, self.cfg = unet, cfg
        self.register_buffer("abar", alphas_cumprod(cfg).float(), persistent=False)

    def coefficients(self, t: torch.Tensor, ndim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        abar = self.abar[t.long()].view(-1, *([1] * (ndim - 1)))
        return abar.sqrt(), (1 - abar).sqrt()

    def forward(self, x_t, t, cond: TextCondition, **extra) -> torch.Tensor:
        return self.unet(x_t, t, cond.embeds, cond.mask, **extra)

    # ------------------------------------------------------------------ training
    def loss(self, x0: torch.Tensor, cond: TextCondition, generator: torch.Generator | None = None,
             lowres: torch.Tensor | None = None, with_t: bool = False):
        """Mean squared error of the prediction target at a uniformly drawn t (Ho et al. eq. 14),
        Min-SNR-gamma weighted, with the text dropped with probability cond_drop (for
        classifier-free guidance). SR stages take `lowres` (already at x0's size), noise-
        augmented at a level drawn from U[0, noise_aug_max]. `with_t`: return (loss, t)."""
        b = x0.shape[0]
        extra = {}
        if lowres is not None:
            top = self.cfg.noise_aug_max * (self.cfg.timesteps - 1)
            level = (_draw(partial(torch.rand, b), generator, x0.device) * top).round().long()
            noise = _draw(partial(torch.randn, lowres.shape), generator, x0.device)
            extra = {"lowres": self.noise_augment(lowres, level, noise),
                     "aug_level": level.float()}
        t = _draw(partial(torch.randint, 0, self.cfg.timesteps, (b,)), generator, x0.device)
        eps = _draw(partial(torch.randn, x0.shape), generator, x0.device)
        alpha, sigma = self.coefficients(t)
        noise = eps
        if self.cfg.input_perturbation > 0:  # Ning et al. 2023, eq. 8 (the target keeps eps)
            xi = _draw(partial(torch.randn, x0.shape), generator, x0.device)
            noise = eps + self.cfg.input_perturbation * xi
        x_t = alpha * x0 + sigma * noise
        drop = _draw(partial(torch.rand, b), generator, x0.device) < self.cfg.cond_drop
        cond = TextCondition(cond.embeds * ~drop[:, None, None], cond.mask & ~drop[:, None])
        target = eps if self.cfg.prediction == "eps" else alpha * eps - sigma * x0
        out = self(x_t, t.float(), cond, **extra)
        per_image = F.mse_loss(out.float(), target, reduction="none").flatten(1).mean(1)
        loss = (self.loss_weight(t) * per_image).mean()
        return (loss, t) if with_t else loss

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-timestep weight of the prediction-space MSE; ones when min_snr_gamma is 0.
        The x0-space weight min(SNR + snr_offset, gamma) divided by SNR + 1 (v) or SNR (eps)
        (Hang et al. 2023, sec. 3.4, with snr_offset 0)."""
        if self.cfg.min_snr_gamma <= 0:
            return torch.ones(t.shape, device=t.device)
        abar = self.abar[t.long()]
        snr = abar / (1 - abar)
        clipped = (snr + self.cfg.snr_offset).clamp(max=self.cfg.min_snr_gamma)
        return clipped / (snr + 1) if self.cfg.prediction == "v" else clipped / snr

    def noise_augment(self, lowres: torch.Tensor, level: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
        """Noise-conditioning augmentation (Ho et al. 2022, cascaded diffusion, sec. 4.1;
        Imagen sec. 2.5): the low-res input diffused to timestep `level` [B]."""
        alpha, sigma = self.coefficients(level, lowres.dim())
        return alpha * lowres + sigma * noise

    # ------------------------------------------------------------------ sampling
    def to_x0(self, out, x_t, t):
        alpha, sigma = self.coefficients(t)
        if self.cfg.prediction == "v":
            return alpha * x_t - sigma * out
        return (x_t - sigma * out) / alpha

    def from_x0(self, x0, x_t, t):
        alpha, sigma = self.coefficients(t)
        eps = (x_t - alpha * x0) / sigma
        return eps if self.cfg.prediction == "eps" else alpha * eps - sigma * x0

    def guided(self, x_t, t, cond: TextCondition, guidance: float, threshold: float = 0.0,
               **extra) -> torch.Tensor:
        """The guided model output (in the prediction type), with x0 thresholded.

        Conditional and unconditional branches run as one batch of 2B.
        """
        b = x_t.shape[0]
        tt = t.expand(b) if t.dim() == 0 else t
        if getattr(self.unet, "cfg", None) is not None and self.unet.cfg.guidance_input:
            w = torch.full((b,), float(guidance), device=x_t.device)  # a distilled student
            out = self(x_t, tt.float(), cond, guidance=w, **extra)
        elif guidance == 1.0:
            out = self(x_t, tt.float(), cond, **extra)
        else:
            both = TextCondition(torch.cat([cond.embeds, cond.null().embeds]),
                                 torch.cat([cond.mask, cond.null().mask]))
            doubled = {k: torch.cat([v, v]) for k, v in extra.items()}
            out_c, out_u = self(torch.cat([x_t, x_t]), torch.cat([tt, tt]).float(), both,
                                **doubled).float().chunk(2)
            out = out_u + guidance * (out_c - out_u)
        x0 = threshold_x0(self.to_x0(out.float(), x_t.float(), tt), threshold)
        return self.from_x0(x0, x_t.float(), tt)


def _draw(make, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """`make(generator=..., device=...)` on the generator's own device, moved to `device`: a
    CPU generator drives CUDA training too, so a run's noise (and its resume) is the same on
    any device."""
    where = generator.device if generator is not None else device
    return make(generator=generator, device=where).to(device)


def threshold_x0(x0: torch.Tensor, p: float) -> torch.Tensor:
    """Static clipping to [-1, 1] when p == 0, else Imagen's dynamic thresholding at
    percentile p: each image is clipped to [-s, s] and divided by s."""
    if p <= 0:
        return x0.clamp(-1, 1)
    s = torch.quantile(x0.abs().flatten(1), p, dim=1).clamp(min=1.0)
    s = s.view(-1, *([1] * (x0.dim() - 1)))
    return x0.clamp(-s, s) / s
