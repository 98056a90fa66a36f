"""Regression super-resolution (a fast, deterministic SR stage, e.g. SRResNet without its
learned upsampler): bilinear upsampling plus a residual stack of 3x3 convolutions that
predicts the detail the interpolation misses, trained with an L1 loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RegressionConfig


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(x)))


class RegressionSR(nn.Module):
    """lowres [B, 3, h, w] in [-1, 1] -> [B, 3, H, W] at the requested size."""

    def __init__(self, cfg: RegressionConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Conv2d(3, cfg.channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_Residual(cfg.channels) for _ in range(cfg.blocks)])
        self.out = nn.Conv2d(cfg.channels, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts as plain bilinear upsampling
        nn.init.zeros_(self.out.bias)

    def forward(self, lowres: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        up = upsample(lowres, size)
        return up + self.out(F.silu(self.blocks(self.stem(up))))

    def loss(self, target: torch.Tensor, lowres_up: torch.Tensor) -> torch.Tensor:
        """L1 between the prediction and the target; `lowres_up` is already at full size."""
        pred = self(lowres_up, target.shape[-2:])
        return F.l1_loss(pred.float(), target.float())


def upsample(lowres: torch.Tensor, size) -> torch.Tensor:
    """Bilinear enlargement, the same in every SR stage (diffusion and regression)."""
    if tuple(lowres.shape[-2:]) == tuple(size):
        return lowres
    return F.interpolate(lowres, size=tuple(size), mode="bilinear", align_corners=False)
