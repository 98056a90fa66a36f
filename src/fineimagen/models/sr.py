"""Regression super-resolution (a fast, deterministic SR stage, e.g. SRResNet without its
learned upsampler): bilinear upsampling plus a residual stack of 3x3 convolutions that
predicts the detail the interpolation misses, trained with an L1 loss.

The full-resolution stack sees a few pixels around each one; a pattern drawn in an object's
own coordinates (three stripe periods across it) needs the whole object. An optional context
U-Net on the low-res input (cheap: 1/16 of the pixels at 4x) gives the stack that view."""

from __future__ import annotations

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

    def forward(self, lowres: torch.Tensor) -> torch.Tensor:
        h = self.stem(lowres)
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
        self.cfg = cfg
        self.stem = nn.Conv2d(3, cfg.channels, 3, padding=1)
        self.context = self.context_out = None
        if cfg.context_channels:
            self.context = ContextUNet(cfg.context_channels, cfg.context_levels,
                                       cfg.context_blocks)
            self.context_out = nn.Conv2d(cfg.context_channels, cfg.channels, 1)
        self.blocks = nn.Sequential(*[_Residual(cfg.channels) for _ in range(cfg.blocks)])
        self.out = nn.Conv2d(cfg.channels, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts as plain bilinear upsampling
        nn.init.zeros_(self.out.bias)

    def forward(self, lowres: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """`lowres` at its own side (the context U-Net reads it there) or already at `size`."""
        up = upsample(lowres, size)
        h = self.stem(up)
        if self.context is not None:
            h = h + upsample(self.context_out(self.context(lowres)), size)
        return up + self.out(F.silu(self.blocks(h)))

    def loss(self, target: torch.Tensor, lowres: torch.Tensor) -> torch.Tensor:
        """L1 between the prediction and the target, from `lowres` (either side, as above)."""
        pred = self(lowres, target.shape[-2:])
        return F.l1_loss(pred.float(), target.float())


def upsample(lowres: torch.Tensor, size) -> torch.Tensor:
    """Bilinear enlargement, the same in every SR stage (diffusion and regression)."""
    if tuple(lowres.shape[-2:]) == tuple(size):
        return lowres
    return F.interpolate(lowres, size=tuple(size), mode="bilinear", align_corners=False)
