"""Attention grounding for the base stage: a training loss that makes each object's pixels
read the words that describe it.

A plain diffusion loss lets a pixel take its colour from any word of the prompt, so "a red
circle and a blue square" often comes out swapped or one-coloured. The shapes data knows
which words describe which group and where that group shows, so the cross-attention maps
can be supervised, as TokenCompose (Wang et al. 2024) does with segmentation masks:

- token side (their L_token): the share of a phrase token's attention that falls inside its
  group's mask, pushed to 1: L_tok = mean_j (1 - sum_p M(p) A(p, j) / sum_p A(p, j))^2;
- pixel side: a pixel of a group attends to that group's words rather than the other text
  tokens: L_pix = mean_p over the mask of -log(sum_{j in group} A(p, j) / sum_j A(p, j)).

A(p, j) is the attention of image position p to text token j (softmax over the null token
and the tokens, mean over heads); the null token is free to take any share.

At high noise x_t hardly shows where the objects are, so no map can find them; the "signal"
weighting weighs each sample's terms by abar(t), the signal's share of x_t's variance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.layers import Attention, MapRecorder

EPS = 1e-6
GROUNDING_WEIGHTINGS = ("uniform", "signal")


def sample_weights(weighting: str, abar: torch.Tensor) -> torch.Tensor | None:
    """Each sample's weight in the grounding loss from abar(t) [B]: None (all equal) for
    "uniform", abar itself for "signal"."""
    if weighting not in GROUNDING_WEIGHTINGS:
        raise ValueError(f"unknown grounding weighting {weighting!r}")
    return None if weighting == "uniform" else abar.float()


def install_recorder(unet: torch.nn.Module) -> MapRecorder:
    """Route the U-Net's cross-attention layers (only) through one recorder."""
    recorder = MapRecorder()
    for layer in unet.modules():
        if isinstance(layer, Attention) and layer.is_cross:
            layer.processor = recorder
    return recorder


def token_phrases(token_spans: list[list[tuple[int, int]]], phrase_spans: torch.Tensor
                  ) -> torch.Tensor:
    """Which group phrase each text token lies in: [B, L] long, -1 for none (special tokens,
    the words that join phrases, the background). `token_spans`: the encoder's character span
    per position; `phrase_spans` [B, G, 2]."""
    out = torch.full((len(token_spans), max(map(len, token_spans))), -1, dtype=torch.long)
    for b, spans in enumerate(token_spans):
        for k, (start, end) in enumerate(phrase_spans[b].tolist()):
            if end <= start:
                continue
            for j, (a, z) in enumerate(spans):
                if z > a and start <= a and z <= end:
                    out[b, j] = k
    return out


def grounding_loss(maps: list[torch.Tensor], phrases: torch.Tensor, masks: torch.Tensor,
                   sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """(L_tok + L_pix) / 2 averaged over the recorded layers (module docstring). `maps`
    [B, N, 1 + L] per layer (`MapRecorder`); `phrases` [B, L] from `token_phrases`; `masks`
    [B, G, H, W] each phrase's group coverage; `sample_weight` [B] weighs each sample's tokens
    and pixels in the two means (None: all 1). A sample whose text was dropped (classifier-
    free guidance) attends to no token, and is not grounded."""
    losses = []
    for probs in maps:
        text = probs[..., 1:]  # [B, N, L]: attention to the tokens, the null token left out
        side = math.isqrt(text.shape[1])
        m = F.adaptive_avg_pool2d(masks, side).flatten(2).to(text.dtype)  # [B, G, N]
        groups = masks.shape[1]
        kept = text.sum((1, 2)) > 0  # [B]
        member = ((phrases[..., None] == torch.arange(groups, device=phrases.device))
                  & kept[:, None, None]).to(text.dtype)  # [B, L, G]
        grounded = ((member.sum(1) > 0) & (m.sum(-1) > 0)).to(text.dtype)  # [B, G]
        if sample_weight is not None:
            grounded = grounded * sample_weight[:, None].to(text.dtype)
        token_weight = member * grounded[:, None, :]  # tokens to ground, by phrase
        # token side: the share of each token's attention inside its group's mask
        inside = torch.einsum("bgn,bnl->blg", m, text)  # [B, L, G]
        total = text.sum(1)[..., None]  # [B, L, 1]
        share = inside / (total + EPS)
        tok = (token_weight * (1 - share) ** 2).sum() / token_weight.sum().clamp(min=EPS)
        # pixel side: the share of each mask pixel's text attention on its group's tokens
        own = torch.einsum("bnl,blg->bng", text, member)  # [B, N, G]
        all_text = text.sum(-1, keepdim=True)  # [B, N, 1]
        nll = -torch.log(own / (all_text + EPS) + EPS)  # [B, N, G]
        weight = m.transpose(1, 2) * grounded[:, None, :]  # [B, N, G]
        pix = (weight * nll).sum() / weight.sum().clamp(min=EPS)
        losses.append((tok + pix) / 2)
    return torch.stack(losses).mean()
