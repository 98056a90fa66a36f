"""ViT image encoder (Dosovitskiy et al. 2021): patches (or a convolutional stem in their
place, Xiao et al. 2021), a pre-norm Transformer, a pooled class token (or the mean of the
patch tokens, as in Beyer et al. 2022)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ViTConfig
from ..errors import InputError
from .layers import sincos_2d

POOLS = ("cls", "mean")


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.image_size % cfg.patch or cfg.width % cfg.heads:
            raise InputError(f"ViT: image_size {cfg.image_size} must be a multiple of patch "
                             f"{cfg.patch} and width {cfg.width} of heads {cfg.heads}")
        if cfg.pool not in POOLS:
            raise InputError(f"ViT: pool must be one of {', '.join(POOLS)}, got {cfg.pool!r}")
        self.cfg = cfg
        n = (cfg.image_size // cfg.patch) ** 2
        self.patches = ConvStem(cfg.patch, cfg.width) if cfg.conv_stem else \
            nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.positions = nn.Parameter(torch.randn(1, n + 1, cfg.width) * 0.02)
        fixed = sincos_2d(cfg.image_size // cfg.patch, cfg.width) if cfg.sincos_positions \
            else torch.zeros(n, cfg.width)
        self.register_buffer("fixed_positions", F.pad(fixed, (0, 0, 1, 0))[None],
                             persistent=False)  # none for the class token
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, int(cfg.mlp_ratio * cfg.width),
                                           dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> pooled features [B, width] (the class token, or the
        mean of the patch tokens with pool="mean")."""
        side = self.cfg.image_size
        if images.shape[-2:] != (side, side):
            images = F.interpolate(images, size=(side, side), mode="bilinear",
                                   antialias=True, align_corners=False)
        x = self.patches(images).flatten(2).transpose(1, 2)  # [B, N, W]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.positions + self.fixed_positions
        x = self.blocks(x)
        return self.norm(x[:, 1:].mean(1) if self.cfg.pool == "mean" else x[:, 0])


class ConvStem(nn.Module):
    """The patch map as a stack of 3x3 convolutions (Xiao et al. 2021, "early
    convolutions"): one at full size, then one of stride 2 per halving down to the patch
    grid (channels doubling, each with GroupNorm and GELU), and a 1x1 map to the width.
    Unlike one linear map per patch, it sees patterns across patch borders (texture)."""

    def __init__(self, patch: int, width: int, channels: int = 24):
        super().__init__()
        if patch & (patch - 1):
            raise InputError(f"ViT: conv_stem needs a power-of-two patch, got {patch}")
        layers: list[nn.Module] = []
        cin, stride = 3, 1
        for _ in range(int(math.log2(patch)) + 1):
            layers += [nn.Conv2d(cin, channels, 3, stride=stride, padding=1),
                       nn.GroupNorm(min(8, channels), channels), nn.GELU()]
            cin, channels, stride = channels, 2 * channels, 2
        layers.append(nn.Conv2d(cin, width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, width, H / patch, W / patch]"""
        return self.layers(images)
