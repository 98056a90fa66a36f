"""Imagen's Efficient U-Net (Saharia et al. 2022, appendix B.1), for base and SR stages.

Per level: downsample *before* the level's residual blocks on the way down and upsample
*after* them on the way up (the paper's change that saves memory and time at high
resolution); more blocks at low resolution; skip connections scaled by 1/sqrt(2); timestep
and pooled-text conditioning through FiLM; per-token cross-attention to the text at chosen
levels (no pooling of tokens into latents, so control can address single words); optional
self-attention. With `lowres_cond` the upsampled low-resolution image is concatenated to the
input and the noise-augmentation level joins the conditioning (super-resolution stages).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UNetConfig
from .layers import Attention, ResBlock, coordinate_grid, timestep_embedding

SKIP_SCALE = 1 / math.sqrt(2)
COORDS = ("none", "stem", "levels")


class Level(nn.Module):
    """Residual blocks at one resolution, each optionally followed by attention layers."""

    def __init__(self, cin: int, cout: int, n_blocks: int, cond_dim: int, cfg: UNetConfig,
                 cross: bool, self_attn: bool):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.self_attn = nn.ModuleList()
        self.cross_attn = nn.ModuleList()
        for i in range(n_blocks):
            self.blocks.append(ResBlock(cin if i == 0 else cout, cout, cond_dim, cfg.groups,
                                        cfg.dropout))
            self.self_attn.append(Attention(cout, cfg.heads, cfg.head_dim, groups=cfg.groups,
                                            positions=cfg.attention_positions)
                                  if self_attn else nn.Identity())
            self.cross_attn.append(Attention(cout, cfg.heads, cfg.head_dim, cfg.text_dim,
                                             cfg.groups, positions=cfg.attention_positions)
                                   if cross else nn.Identity())

    def forward(self, x, cond, context, context_mask):
        for block, sa, ca in zip(self.blocks, self.self_attn, self.cross_attn, strict=True):
            x = block(x, cond)
            if isinstance(sa, Attention):
                x = sa(x)
            if isinstance(ca, Attention):
                x = ca(x, context, context_mask)
        return x


def downsample(channels: int, resample: str) -> nn.Module:
    """x1/2: a stride-2 3x3 conv ("conv"), or space-to-depth then a 1x1 conv ("light")."""
    if resample == "light":
        return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * channels, channels, 1))
    return nn.Conv2d(channels, channels, 3, stride=2, padding=1)


def pool_text(text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of token embeddings [B, L, D] -> [B, D]; 0 when every token is masked."""
    m = mask.to(text.dtype)[..., None]  # [B, L, 1]
    return (text * m).sum(1) / m.sum(1).clamp(min=1)


GUIDANCE_SCALE = 100.0  # w in [0, 10] embedded over the range timesteps span


class EfficientUNet(nn.Module):
    """x_t [B, 3, H, W], t [B] (0..timesteps), text [B, L, D], mask [B, L] -> [B, 3, H, W]."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        if not len(cfg.channel_mults) == len(cfg.blocks_per_level):
            raise ValueError("channel_mults and blocks_per_level need one entry per level")
        self.cfg = cfg
        ch = [cfg.channels * m for m in cfg.channel_mults]
        cond_dim = 4 * cfg.channels
        self.time_mlp = nn.Sequential(nn.Linear(cfg.channels, cond_dim), nn.SiLU(),
                                      nn.Linear(cond_dim, cond_dim))
        self.text_pool = nn.Linear(cfg.text_dim, cond_dim)
        self.aug_mlp = nn.Sequential(nn.Linear(cfg.channels, cond_dim), nn.SiLU(),
                                     nn.Linear(cond_dim, cond_dim)) if cfg.lowres_cond else None
        self.guidance_mlp = None
        if cfg.guidance_input:  # zero at the start: a student begins as its teacher
            self.guidance_mlp = nn.Sequential(nn.Linear(cfg.channels, cond_dim), nn.SiLU(),
                                              nn.Linear(cond_dim, cond_dim))
            nn.init.zeros_(self.guidance_mlp[2].weight)
            nn.init.zeros_(self.guidance_mlp[2].bias)
        if cfg.coords not in COORDS:
            raise ValueError(f"coords must be one of {', '.join(COORDS)}, not {cfg.coords!r}")
        in_ch = cfg.in_channels * (2 if cfg.lowres_cond else 1) + 2 * (cfg.coords != "none")
        self.stem = nn.Conv2d(in_ch, ch[0], 3, padding=1)
        n = len(ch)
        # "levels": level i > 0 gets W_i [x, y] added to its input (a concatenation
        # followed by a linear map is the same as adding a linear map of the new channels)
        self.level_coords = nn.ModuleList(nn.Conv2d(2, ch[i - 1], 1) for i in range(1, n)) \
            if cfg.coords == "levels" else None
        if cfg.resample not in ("conv", "light"):
            raise ValueError(f"resample must be 'conv' or 'light', not {cfg.resample!r}")
        self.downsamples = nn.ModuleList(
            [nn.Identity()] + [downsample(ch[i - 1], cfg.resample) for i in range(1, n)])
        self.down = nn.ModuleList(
            Level(ch[max(i - 1, 0)], ch[i], cfg.blocks_per_level[i], cond_dim, cfg,
                  i in cfg.cross_attention_levels, i in cfg.self_attention_levels)
            for i in range(n))
        # the middle attends like the U-Net does anywhere: no text (or self) attention at all
        # when no level has it (Imagen's last SR stage)
        self.mid = Level(ch[-1], ch[-1], 2, cond_dim, cfg, bool(cfg.cross_attention_levels),
                         bool(cfg.self_attention_levels))
        self.up = nn.ModuleList(
            Level(2 * ch[i], ch[i], cfg.blocks_per_level[i], cond_dim, cfg,
                  i in cfg.cross_attention_levels, i in cfg.self_attention_levels)
            for i in range(n))
        self.upsamples = nn.ModuleList(
            [nn.Identity()] + [nn.Conv2d(ch[i], ch[i - 1], 1 if cfg.resample == "light" else 3,
                                         padding=0 if cfg.resample == "light" else 1)
                               for i in range(1, n)])
        self.out_norm = nn.GroupNorm(min(cfg.groups, ch[0]), ch[0])
        self.out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        for name, module in self.named_modules():
            if isinstance(module, Attention):
                module.name = name

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor, lowres: torch.Tensor | None = None,
                aug_level: torch.Tensor | None = None,
                pooled: torch.Tensor | None = None,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """`pooled` [B, D] overrides the masked mean of the text (prompt-to-prompt keeps the
        source's global conditioning this way). `guidance` [B]: the guidance weight w of a
        guidance-input U-Net (default 1: the conditional prediction)."""
        cfg = self.cfg
        cond = self.time_mlp(timestep_embedding(t, cfg.channels))  # [B, 4C]
        if self.guidance_mlp is not None:
            w = torch.ones_like(t) if guidance is None else guidance.to(t.dtype)
            cond = cond + self.guidance_mlp(timestep_embedding(w * GUIDANCE_SCALE, cfg.channels))
        if pooled is None:
            pooled = pool_text(text, text_mask)
        cond = cond + self.text_pool(pooled)
        if cfg.lowres_cond:
            if lowres is None or aug_level is None:
                raise ValueError("a lowres_cond U-Net needs `lowres` and `aug_level`")
            lowres = F.interpolate(lowres, size=x.shape[-2:], mode="bilinear",
                                   align_corners=False, antialias=False)
            x = torch.cat([x, lowres], dim=1)
            cond = cond + self.aug_mlp(timestep_embedding(aug_level, cfg.channels))
        if cfg.coords != "none":
            x = torch.cat([x, coordinate_grid(*x.shape[-2:], x).expand(x.shape[0], -1, -1, -1)],
                          dim=1)
        h = self.stem(x)
        skips = []
        for i, (downsample, level) in enumerate(zip(self.downsamples, self.down, strict=True)):
            h = downsample(h)
            if self.level_coords is not None and i > 0:
                h = h + self.level_coords[i - 1](coordinate_grid(*h.shape[-2:], h))
            h = level(h, cond, text, text_mask)  # downsample before the blocks
            skips.append(h)
        h = self.mid(h, cond, text, text_mask)
        for i in reversed(range(len(self.up))):
            h = torch.cat([h, skips[i] * SKIP_SCALE], dim=1)
            h = self.up[i](h, cond, text, text_mask)
            if i > 0:  # upsample after the blocks: x2 nearest, then 3x3 ("light": 1x1 first)
                h = (F.interpolate(self.upsamples[i](h), scale_factor=2.0, mode="nearest")
                     if cfg.resample == "light" else
                     self.upsamples[i](F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return self.out(F.silu(self.out_norm(h)))
