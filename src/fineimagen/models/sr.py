"""Regression super-resolution (a fast, deterministic SR stage, e.g. SRResNet without its
learned upsampler): bilinear upsampling plus a residual stack of 3x3 convolutions that
predicts the detail the interpolation misses, trained with an L1 loss.

The full-resolution stack sees a few pixels around each one; a pattern drawn in an object's
own coordinates (three stripe periods across it) needs the whole object. An optional context
U-Net on the low-res input (cheap: 1/16 of the pixels at 4x) gives the stack that view.

It reads no prompt, but it can read region prompts (`RegionText`): each region's pooled text
embedding, projected and painted over its mask, joins the context U-Net's first features, so
a stated texture is drawn as stated where the low-res image shows it faintly or wrongly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RegressionConfig
from ..errors import InputError


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(x)))


@dataclass
class RegionText:
    """Region prompts for an SR stage: `masks` [B, K, h, w] in [0, 1] at the low-res input's
    side and each prompt's pooled text embedding `embeds` [B, K, D] (all-zero: no region)."""

    masks: torch.Tensor
    embeds: torch.Tensor

    def to(self, device) -> RegionText:
        return RegionText(self.masks.to(device), self.embeds.to(device))


def pool_text(embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, L, D] token embeddings and their [N, L] mask -> [N, D]: the mean over tokens."""
    weights = mask.to(embeds.dtype).unsqueeze(-1)
    return (embeds * weights).sum(1) / weights.sum(1).clamp(min=1)


def whole_image(cond, side: int) -> RegionText:
    """A prompt as one region over the whole image (how a plain prompt reaches an SR stage
    that reads region prompts): `cond` (embeds [B, L, D], mask [B, L]) pooled per image."""
    embeds = pool_text(cond.embeds, cond.mask).float()[:, None]
    return RegionText(embeds.new_ones(len(embeds), 1, side, side), embeds)


class ContextUNet(nn.Module):
    """Features of the low-res image with a receptive field of whole objects: residual blocks
    at sides r, r/2, ..., r/2^(levels-1) and back up, with skips (no normalization)."""

    def __init__(self, channels: int, levels: int, blocks: int):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.down = nn.ModuleList(
            nn.Sequential(*[_Residual(channels) for _ in range(blocks)]) for _ in range(levels))
        self.pool = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in range(levels - 1))
        self.merge = nn.ModuleList(
            nn.Conv2d(2 * channels, channels, 1) for _ in range(levels - 1))
        self.up = nn.ModuleList(
            nn.Sequential(*[_Residual(channels) for _ in range(blocks)])
            for _ in range(levels - 1))

    def forward(self, lowres: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """`extra` [B, channels, h, w] joins the first features (region prompts)."""
        h = self.stem(lowres)
        if extra is not None:
            h = h + extra
        skips = []
        for i, blocks in enumerate(self.down):
            h = blocks(h)
            if i < len(self.pool):
                skips.append(h)
                h = self.pool[i](F.silu(h))
        for merge, blocks in zip(self.merge, self.up, strict=True):
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = blocks(merge(torch.cat([h, skip], 1)))
        return h


class RegressionSR(nn.Module):
    """lowres [B, 3, h, w] in [-1, 1] -> [B, 3, H, W] at the requested size."""

    def __init__(self, cfg: RegressionConfig):
        super().__init__()
        if cfg.context_channels < 0 or cfg.context_levels < 1 or cfg.context_blocks < 0:
            raise InputError("regression context: channels >= 0, levels >= 1 and blocks >= 0 "
                             f"(got {cfg.context_channels}, {cfg.context_levels}, "
                             f"{cfg.context_blocks})")
        if cfg.region_dim < 0 or (cfg.region_dim and not cfg.context_channels):
            raise InputError("regression region_dim needs a context U-Net (context_channels "
                             f"> 0) and must be >= 0 (got {cfg.region_dim})")
        if cfg.degrade_blur < 0 or cfg.degrade_noise < 0:
            raise InputError("regression degrade_blur and degrade_noise must be >= 0 (got "
                             f"{cfg.degrade_blur}, {cfg.degrade_noise})")
        self.cfg = cfg
        self.stem = nn.Conv2d(3, cfg.channels, 3, padding=1)
        self.context = self.context_out = None
        if cfg.context_channels:
            self.context = ContextUNet(cfg.context_channels, cfg.context_levels,
                                       cfg.context_blocks)
            self.context_out = nn.Conv2d(cfg.context_channels, cfg.channels, 1)
        self.region_in = None
        if cfg.region_dim:
            self.region_in = nn.Linear(cfg.region_dim, cfg.context_channels)
            nn.init.zeros_(self.region_in.weight)  # fine-tuned from a stage without regions:
            nn.init.zeros_(self.region_in.bias)  # starts as that stage
        self.blocks = nn.Sequential(*[_Residual(cfg.channels) for _ in range(cfg.blocks)])
        self.out = nn.Conv2d(cfg.channels, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts as plain bilinear upsampling
        nn.init.zeros_(self.out.bias)

    def forward(self, lowres: torch.Tensor, size: tuple[int, int],
                regions: RegionText | None = None) -> torch.Tensor:
        """`lowres` at its own side (the context U-Net reads it there) or already at `size`;
        `regions` at the side of `lowres` (read only by a stage with region_dim)."""
        up = upsample(lowres, size)
        h = self.stem(up)
        if self.context is not None:
            painted = self.paint(regions) if regions is not None else None
            h = h + upsample(self.context_out(self.context(lowres, painted)), size)
        return up + self.out(F.silu(self.blocks(h)))

    def paint(self, regions: RegionText) -> torch.Tensor | None:
        """sum_k mask_k(p) * W e_k: each region's projected prompt over its mask."""
        if self.region_in is None:
            return None
        projected = self.region_in(regions.embeds)
        return torch.einsum("bkhw,bkc->bchw", regions.masks.to(projected.dtype), projected)

    def loss(self, target: torch.Tensor, lowres: torch.Tensor,
             regions: RegionText | None = None) -> torch.Tensor:
        """L1 between the prediction and the target, from `lowres` (either side, as above)."""
        pred = self(lowres, target.shape[-2:], regions)
        return F.l1_loss(pred.float(), target.float())


def degrade(lowres: torch.Tensor, blur_max: float, noise_max: float,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """A training input made to look like a base stage's sample: per image, a Gaussian blur of
    sigma ~ U[0, blur_max] pixels (separable, reflected edges), then Gaussian noise of
    std ~ U[0, noise_max], clamped to [-1, 1]."""
    if blur_max < 0 or noise_max < 0:
        raise InputError(f"degrade: blur and noise must be >= 0 (got {blur_max}, {noise_max})")
    b, c, h, w = lowres.shape
    out = lowres
    if blur_max > 0:
        radius = min(max(1, math.ceil(2 * blur_max)), min(h, w) - 1)
        sigma = (torch.rand(b, 1, generator=generator) * blur_max).clamp_min(1e-3)
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-x.pow(2) / (2 * sigma.pow(2)))
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)
        kernel = kernel.to(lowres.device, lowres.dtype)  # [B*C, 2r+1]
        flat = out.reshape(1, b * c, h, w)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"),
                        kernel[:, None, None, :], groups=b * c)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"),
                        kernel[:, None, :, None], groups=b * c)
        out = flat.reshape(b, c, h, w)
    if noise_max > 0:
        std = torch.rand(b, 1, 1, 1, generator=generator) * noise_max
        noise = torch.randn(out.shape, generator=generator) * std
        out = (out + noise.to(out.device, out.dtype)).clamp(-1, 1)
    return out


def upsample(lowres: torch.Tensor, size) -> torch.Tensor:
    """Bilinear enlargement, the same in every SR stage (diffusion and regression)."""
    if tuple(lowres.shape[-2:]) == tuple(size):
        return lowres
    return F.interpolate(lowres, size=tuple(size), mode="bilinear", align_corners=False)
