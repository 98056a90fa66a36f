"""Shared building blocks: timestep embedding, residual blocks, attention with processors.

Every attention layer computes its output through `self.processor`, an object with
`__call__(attn, q, k, v, mask) -> out`; control methods swap it to record or rewrite the
attention maps without touching model code (DESIGN.md).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@lru_cache(maxsize=32)  # every attention layer asks again at every sampling step
def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """[grid * grid, width] codes, row-major: half the channels encode the row, half the
    column, each as sin and cos of the cell centre p in (0, 1) at angular frequencies
    geometric from pi to pi * grid (as MAE's codes, He et al. 2022, with frequencies
    spread over the few positions a small grid has). Cached, and made on the CPU whatever
    the default device (a model built on the meta device must not leave meta codes in the
    cache): read it, never write it."""
    if width % 4:
        raise InputError(f"sin-cos position codes need a width divisible by 4, got {width}")
    n = width // 4
    freqs = math.pi * grid ** (torch.arange(n, dtype=torch.float32, device="cpu")
                               / max(n - 1, 1))
    centres = (torch.arange(grid, dtype=torch.float32, device="cpu") + 0.5) / grid
    index = centres[:, None] * freqs  # [grid, width / 4]
    codes = torch.cat([index.sin(), index.cos()], dim=1)  # [grid, width / 2]
    rows = codes[:, None, :].expand(grid, grid, -1)
    cols = codes[None, :, :].expand(grid, grid, -1)
    return torch.cat([rows, cols], dim=-1).reshape(grid * grid, width)


def coordinate_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """CoordConv's channels (Liu et al. 2018): [1, 2, H, W], x then y, each the pixel
    centre's place in [-1, 1] (left/top -1), in `like`'s dtype and device."""
    ys = (torch.arange(height, device=like.device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=like.device, dtype=torch.float32) + 0.5) / width
    y, x = torch.meshgrid(ys * 2 - 1, xs * 2 - 1, indexing="ij")
    return torch.stack([x, y])[None].to(like.dtype)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with FiLM (scale, shift) from the conditioning vector."""

    def __init__(self, cin: int, cout: int, cond_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, cout, H, W]
        scale, shift = self.film(F.silu(cond))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class AttnProcessor:
    """Default processor: softmax(q k^T / sqrt(d)) v in float32.

    float32 on purpose: on CPU the bf16 attention backward ran ~2.5x slower (DESIGN.md), and
    the maps are small (at most a few hundred positions by a few dozen tokens).
    """

    def __call__(self, attn: Attention, q, k, v, mask):
        with torch.autocast(q.device.type, enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                  attn_mask=mask)


def attention_probs(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None
                    ) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) in float32, masked keys excluded: [B, h, N, M]. For
    processors that read or rewrite the maps (the default fuses this into SDPA)."""
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


class MapRecorder(AttnProcessor):
    """Keeps every cross-attention layer's probabilities (mean of heads, with their graph),
    for attention guidance at sampling and attention grounding in training."""

    def __init__(self):
        self.maps: list[torch.Tensor] = []  # [B, N, 1 + L] per cross layer

    def __call__(self, attn: Attention, q, k, v, mask):
        with torch.autocast(q.device.type, enabled=False):
            probs = attention_probs(q, k, mask)
            if attn.is_cross:
                self.maps.append(probs.mean(1))
            return probs @ v.float()


def set_processor(module: nn.Module, processor: AttnProcessor | None) -> None:
    """Route every attention layer of `module` through `processor` (None: the default)."""
    for layer in module.modules():
        if isinstance(layer, Attention):
            layer.processor = processor or AttnProcessor()


class Attention(nn.Module):
    """Multi-head attention of image positions to themselves (self) or to text tokens (cross).

    Cross-attention appends one learned null token, so a prompt with every token masked out
    (the unconditional branch of classifier-free guidance) still attends to something.
    With `positions`, fixed 2-D sin-cos codes of each position are added to the image
    tokens that make the queries (and, in self-attention, the keys), never the values:
    attention can then depend on where a token is (as DETR's codes, Carion et al. 2020).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None,
                 groups: int = 16, positions: bool = False):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.is_cross = heads, head_dim, context_dim is not None
        if positions and dim % 4:
            raise InputError(f"attention position codes need a width divisible by 4, got {dim}")
        self.positions = positions
        self.norm = nn.GroupNorm(min(groups, dim), dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        kv_dim = context_dim if self.is_cross else dim
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, inner) * 0.02) if self.is_cross else None
        self.to_out = nn.Linear(inner, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        self.processor = AttnProcessor()
        self.name = ""  # set by the U-Net, so processors can tell layers apart

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, h*d] -> [B, h, N, d]
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        placed = tokens
        if self.positions:
            if h != w:
                raise ValueError(f"attention position codes need a square map, got {h}x{w}")
            placed = tokens + sincos_2d(h, c).to(tokens.device, tokens.dtype)
        q = self._split(self.to_q(placed))
        mask = None
        if self.is_cross:
            null = self.null_kv.to(context.dtype)
            k = torch.cat([null[0].expand(b, 1, -1), self.to_k(context)], dim=1)
            v = torch.cat([null[1].expand(b, 1, -1), self.to_v(context)], dim=1)
            keep = torch.cat([context_mask.new_ones(b, 1), context_mask], dim=1).bool()
            mask = keep[:, None, None, :]  # [B, 1, 1, 1+L]
        else:
            k, v = self.to_k(placed), self.to_v(tokens)
        k, v = self._split(k), self._split(v)
        out = self.processor(self, q, k, v, mask)  # [B, h, HW, d]
        out = self.to_out(out.transpose(1, 2).flatten(2))  # [B, HW, C]
        return x + out.transpose(1, 2).reshape(b, c, h, w)
