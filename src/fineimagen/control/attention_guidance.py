"""Gradient guidance from cross-attention maps: before a step, x_t moves down the gradient of
an energy of the text's attention maps, so the next prediction draws what was asked.

Attend-and-excite (Chefer et al. 2023, eq. 2 and 3): every subject word must own some spot,
    L_excite = max_s (1 - max_p G * A_s(p)),
with A_s the word's attention over image positions (renormalized over the prompt's words,
without the special tokens) and G a small Gaussian smoothing.
Layout guidance (Chen et al. 2023, backward guidance, eq. 3; in the spirit of BoxDiff, Xie
et al. 2023): each region's subject attends inside the region,
    L_box = mean_regions (1 - sum_{p in box} A_s(p) / sum_p A_s(p))^2.
Update (our normalization, so one step size fits any model and resolution):
    x_t <- x_t - eta * sigma_t * L * grad / rms(grad),
per image, with sigma_t the noise level; the step shrinks as the energy vanishes. Applied
during the first `until` share of the steps only: layout is settled early.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..diffusion.denoiser import Denoiser, TextCondition
from ..errors import InputError
from ..models.layers import MapRecorder, set_processor
from .guidance import stack_conditions

EXCITE_STEP = 0.1  # eta of attend-and-excite (best on 56 held-out prompts of 0.1, 0.15, 0.3, 1)
LAYOUT_STEP = 0.03  # the suggested eta of layout guidance (best of 0.03, 0.1, 0.3, 1)
# eta for scenes with a count when none is asked: on the second held-out set at 128 px, 0 /
# 0.015 / 0.03 gave counting 0.86 / 0.96 / 1.00 and position 0.96 / 0.96 / 0.93 (README)
COUNT_LAYOUT_STEP = 0.015
GUIDED_SHARE = 0.3  # the first share of the steps that get a gradient step


@dataclass
class AttentionTarget:
    """One prompt whose attention is shaped: each entry of `subjects` is a word's token
    positions (the U-Net's null token at 0); `mask` None means attend-and-excite."""

    cond: TextCondition  # [1, L, D]
    words: list[int]  # positions of every word token (not special, not padding)
    subjects: list[list[int]]
    mask: torch.Tensor | None = None  # [1, 1, H, W] in [0, 1]


def word_positions(spans: list[tuple[int, int]]) -> list[int]:
    """Positions (null token at 0) of the tokens that cover characters of the prompt."""
    return [j + 1 for j, (a, b) in enumerate(spans) if b > a]


def find_words(text: str, words: list[str], plural: bool = False) -> list[tuple[int, int]]:
    """Character spans of whole-word, case-insensitive occurrences of `words` in `text`
    (with `plural`, also the word + "s"), in text order."""
    pattern = rf"\b(?:{'|'.join(map(re.escape, words))}){'s?' if plural else ''}\b"
    return [m.span() for m in re.finditer(pattern, text, flags=re.IGNORECASE)]


def subject_positions(prompt: str, spans: list[tuple[int, int]],
                      words: list[str] | None = None, nouns: tuple[str, ...] = ()
                      ) -> list[list[int]]:
    """Per subject word of `prompt` (default: those of `nouns` it holds, singular or plural:
    the domain's object nouns), the positions of its tokens. Explicit `words` must all occur
    in the prompt."""
    if words is None:
        hits = find_words(prompt, list(nouns), plural=True) if nouns else []
    else:
        hits = []
        for word in words:
            found = find_words(prompt, [word])
            if not found:
                raise InputError(f"excite: {word!r} is not a word of the prompt {prompt!r}")
            hits += found
    groups = [[j + 1 for j, (a, b) in enumerate(spans) if b > a and a < e and s < b]
              for s, e in hits]
    return [g for g in groups if g]


def finest_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """The mean of the layers at the finest resolution that has text attention: [B, N, M]."""
    finest = max(m.shape[1] for m in maps)
    return torch.stack([m for m in maps if m.shape[1] == finest]).mean(0)


def subject_maps(probs: torch.Tensor, words: list[int], subjects: list[list[int]]
                 ) -> torch.Tensor:
    """[B, N, M] -> [B, S, side, side]: each subject's share of the attention paid to words."""
    side = math.isqrt(probs.shape[1])
    share = probs[..., words] / probs[..., words].sum(-1, keepdim=True).clamp(min=1e-8)
    index = {p: i for i, p in enumerate(words)}
    per = torch.stack([share[..., [index[p] for p in g]].sum(-1) for g in subjects], 1)
    return per.view(probs.shape[0], len(subjects), side, side)


def gaussian_smooth(maps: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """A 3x3 Gaussian blur of [B, S, H, W] (attend-and-excite smooths before the max)."""
    x = torch.tensor([-1.0, 0.0, 1.0], device=maps.device)
    g = torch.exp(-x**2 / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 3, 3)
    b, s, h, w = maps.shape
    out = F.conv2d(F.pad(maps.reshape(b * s, 1, h, w), (1, 1, 1, 1), mode="replicate"), kernel)
    return out.view(b, s, h, w)


def excite_energy(maps: torch.Tensor) -> torch.Tensor:
    """[B, S, H, W] -> [B]: the most neglected subject's 1 - max (Chefer et al. eq. 3)."""
    peaks = gaussian_smooth(maps).flatten(2).amax(-1)  # [B, S]
    return (1 - peaks).amax(-1)


def box_energy(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, S, H, W], mask [1, 1, H', W'] -> [B]: mean over subjects of (1 - share inside)^2."""
    m = F.interpolate(mask.to(maps), size=maps.shape[-2:], mode="area")
    inside = (maps * m).flatten(2).sum(-1) / maps.flatten(2).sum(-1).clamp(min=1e-8)
    return ((1 - inside) ** 2).mean(-1)


class AttentionGuidance:
    """A pre-step update (see diffusion.sampling.StepUpdate) of the base stage: one gradient
    step on x_t of the summed energies of `targets` at each of the first `steps` steps it
    sees (an img2img run starts part-way)."""

    def __init__(self, denoiser: Denoiser, targets: list[AttentionTarget], steps: int,
                 excite_step: float = EXCITE_STEP, layout_step: float = LAYOUT_STEP):
        if not targets:
            raise ValueError("attention guidance needs at least one target")
        self.denoiser, self.targets, self.steps = denoiser, targets, steps
        self.excite_step, self.layout_step = excite_step, layout_step
        self.energies: list[torch.Tensor] = []  # per guided step, [B] (for tests and plots)

    def energy(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[B]: the weighted sum of every target's energy at x_t."""
        b, k = x_t.shape[0], len(self.targets)
        conds = stack_conditions([TextCondition(tg.cond.embeds.expand(b, -1, -1),
                                                tg.cond.mask.expand(b, -1))
                                  for tg in self.targets])
        recorder = MapRecorder()
        set_processor(self.denoiser.unet, recorder)
        try:
            tt = (t.expand(b) if t.dim() == 0 else t).float()
            self.denoiser(torch.cat([x_t] * k), torch.cat([tt] * k), conds)
        finally:
            set_processor(self.denoiser.unet, None)
        fine = finest_maps(recorder.maps)  # [k * b, N, M]
        probs = fine.view(k, b, *fine.shape[1:])
        total = x_t.new_zeros(b)
        for target, p in zip(self.targets, probs, strict=True):
            maps = subject_maps(p, target.words, target.subjects)
            if target.mask is None:
                total = total + self.excite_step * excite_energy(maps)
            else:
                total = total + self.layout_step * box_energy(maps, target.mask)
        return total

    def __call__(self, step: int, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if len(self.energies) >= self.steps:
            return x
        with torch.enable_grad():
            x_in = x.detach().float().requires_grad_(True)
            energy = self.energy(x_in, t.to(x.device))
            (grad,) = torch.autograd.grad(energy.sum(), x_in)
        self.energies.append(energy.detach())
        _, sigma = self.denoiser.coefficients(t.to(x.device).reshape(1).long())
        rms = grad.flatten(1).pow(2).mean(1).sqrt().clamp(min=1e-12).view(-1, 1, 1, 1)
        return x - sigma * energy.detach().view(-1, 1, 1, 1) * grad / rms
