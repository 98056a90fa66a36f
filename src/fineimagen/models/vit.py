"""ViT image encoder (Dosovitskiy et al. 2021): patches, a pre-norm Transformer, a pooled
class token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ViTConfig
from ..errors import InputError


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.image_size % cfg.patch or cfg.width % cfg.heads:
            raise InputError(f"ViT: image_size {cfg.image_size} must be a multiple of patch "
                             f"{cfg.patch} and width {cfg.width} of heads {cfg.heads}")
        self.cfg = cfg
        n = (cfg.image_size // cfg.patch) ** 2
        self.patches = nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.positions = nn.Parameter(torch.randn(1, n + 1, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, int(cfg.mlp_ratio * cfg.width),
                                           dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> pooled features [B, width] (the class token)."""
        side = self.cfg.image_size
        if images.shape[-2:] != (side, side):
            images = F.interpolate(images, size=(side, side), mode="bilinear",
                                   antialias=True, align_corners=False)
        x = self.patches(images).flatten(2).transpose(1, 2)  # [B, N, W]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.positions
        return self.norm(self.blocks(x)[:, 0])
