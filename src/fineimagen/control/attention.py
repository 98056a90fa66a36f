"""Cross-attention control through the U-Net's attention processors: prompt-to-prompt editing
(Hertz et al. 2022). Source and target images are drawn in one batch from the same noise;
for the first part of the steps the target's attention maps are the source's (cross-attention
mapped token by token, self-attention copied), so the layout stays and only the changed
words act; a local blend (sec. 3.2) keeps every pixel away from the changed words equal to
the source:
    x_t(target) <- M * x_t(target) + (1 - M) * x_t(source),
M = the changed words' attention (both prompts) summed over steps, averaged over layers and
heads, min-max normalized, thresholded and dilated by a pixel. (The paper thresholds at 0.3
of the peak; a small model's word maps are flatter, so the default here is 0.6 of the range.)

Injected maps keep the layout, so an edit of where, how large or how many cannot happen
under them, and with a small model they also hold back colour and shape. An edit can
therefore run without injection: both images are drawn from the same noise, and M is where
the two prompts' predictions of the clean image differ (the mask of DiffEdit, Couairon et
al. 2022), |x0(target) - x0(source)| summed over the steps so far, normalized and
thresholded alike; it covers the object's old place and its new one, and everything else
stays the source's.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.layers import Attention, AttnProcessor, attention_probs, set_processor

MAX_CHANGED_SHARE = 0.5  # edits that change more of the prompt's words are not an "edit"


@dataclass
class TokenMap:
    """For each target token position (null token 0 included), the source positions whose
    attention it takes (averaged), and which target positions carry the edit."""

    sources: list[list[int]]
    edited_target: list[int]
    edited_source: list[int]
    reweight: dict[int, float]  # target position -> factor on its attention


def map_tokens(source_ids: list[int], target_ids: list[int],
               reweight: dict[int, float] | None = None) -> TokenMap:
    """Align two token sequences (special tokens included) by difflib opcodes: equal tokens
    map one to one, a replaced block maps each of its tokens to the whole source block
    (word swap), inserted tokens keep their own attention. Positions are shifted by one for
    the U-Net's null token at 0."""
    matcher = difflib.SequenceMatcher(a=source_ids, b=target_ids, autojunk=False)
    sources: list[list[int]] = [[0]] + [[] for _ in target_ids]
    edited_t, edited_s = [], []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        for j in range(b0, b1):
            if op == "equal":
                sources[j + 1] = [a0 + (j - b0) + 1]
            elif op == "replace":
                sources[j + 1] = list(range(a0 + 1, a1 + 1))
        if op != "equal":
            edited_t += list(range(b0 + 1, b1 + 1))
            edited_s += list(range(a0 + 1, a1 + 1))
    return TokenMap(sources, edited_t, edited_s, reweight or {})


def check_edit(source_words: list[str], target_words: list[str]) -> None:
    """Refuse prompt pairs that are not an edit of a few words, saying why."""
    if source_words == target_words:
        raise InputError("the two prompts are the same; nothing to edit (or give a reweight)")
    matcher = difflib.SequenceMatcher(a=source_words, b=target_words, autojunk=False)
    changed = sum(max(a1 - a0, b1 - b0) for op, a0, a1, b0, b1 in matcher.get_opcodes()
                  if op != "equal")
    if changed > MAX_CHANGED_SHARE * max(len(source_words), len(target_words)):
        raise InputError(f"the prompts differ in {changed} of "
                         f"{max(len(source_words), len(target_words))} words; prompt-to-prompt "
                         "edits a few words of one prompt")


class EditProcessor(AttnProcessor):
    """One per attention layer. The batch holds [source, target] conditional rows first
    (B each) and the unconditional rows after; only conditional target rows are edited."""

    def __init__(self, state: EditState):
        self.state = state

    def __call__(self, attn: Attention, q, k, v, mask):
        with torch.autocast(q.device.type, enabled=False):
            probs = self.state.edit(attn, attention_probs(q, k, mask))
            return probs @ v.float()


@dataclass
class EditState:
    tokens: TokenMap
    images: int  # B: source (and target) images per batch half
    cross_steps: int  # steps whose cross-attention is replaced
    self_steps: int  # steps whose self-attention is replaced
    blend_threshold: float = 0.6  # local blend: min-max normalized map above this
    blend_from: str = "attention"  # or "prediction": where x0(target) and x0(source) differ
    step: int = 0

    def __post_init__(self):
        self.maps: list[torch.Tensor] = []  # [B, H*W] per cross layer of this step
        self.total: torch.Tensor | None = None  # running sum of the steps' maps [B, 1, S, S]

    def edit(self, attn: Attention, probs: torch.Tensor) -> torch.Tensor:
        b = self.images
        if probs.shape[0] < 2 * b:
            return probs
        src, tgt = probs[:b], probs[b:2 * b]
        if attn.is_cross:
            tgt = tgt.clone()
            if self.step < self.cross_steps:
                n = len(self.tokens.sources)  # the target's own tokens; padding stays
                tgt[..., :n] = torch.stack([src[..., s].mean(-1) for s in self.tokens.sources],
                                           -1)
            for j, factor in self.tokens.reweight.items():
                tgt[..., j] = tgt[..., j] * factor
            edited = self.tokens.edited_target + self.tokens.edited_source
            if edited and self.blend_from == "attention":
                words = torch.cat([probs[b:2 * b][..., self.tokens.edited_target],
                                   src[..., self.tokens.edited_source]], -1)
                self.maps.append(words.mean(1).amax(-1))  # [B, N]: mean of heads, max of words
        elif self.step < self.self_steps:
            tgt = src
        return torch.cat([src, tgt, probs[2 * b:]])

    def add_difference(self, x0: torch.Tensor) -> None:
        """Fold |x0(target) - x0(source)| ([2B, C, S, S] predictions) into the blend map."""
        b = self.images
        diff = (x0[b:2 * b] - x0[:b]).abs().mean(1, keepdim=True)
        self.total = diff if self.total is None else self.total + diff

    def end_step(self, size: int) -> None:
        """Fold this step's maps of the edited words into the running local-blend map."""
        if self.maps:
            grids = [F.interpolate(m.view(-1, 1, math.isqrt(m.shape[-1]),
                                          math.isqrt(m.shape[-1])),
                                   size=(size, size), mode="bilinear", align_corners=False)
                     for m in self.maps]
            mean = torch.stack(grids).mean(0)
            self.total = mean if self.total is None else self.total + mean
        self.maps = []
        self.step += 1

    def blend_mask(self) -> torch.Tensor | None:
        """[B, 1, S, S] in {0, 1}: where the edit acted so far (the edited words' attention or
        the predictions' difference), dilated by 1 px."""
        if self.total is None:
            return None
        flat = self.total.flatten(1)
        low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
        share = (self.total - low) / (high - low).clamp(min=1e-8)
        mask = (share > self.blend_threshold).float()
        return F.max_pool2d(mask, 3, stride=1, padding=1)


def install(unet: torch.nn.Module, state: EditState | None) -> None:
    """Route every attention layer through an EditProcessor (or back to the default)."""
    set_processor(unet, EditProcessor(state) if state is not None else None)


class PromptToPrompt:
    """The base stage's guide and step callback for one edit: classifier-free guidance with
    the edit processors installed, and the local blend after every step."""

    def __init__(self, state: EditState, cond, guidance: float, threshold: float, size: int,
                 local_blend: bool = True):
        self.state, self.cond = state, cond
        self.guidance, self.threshold, self.size = guidance, threshold, size
        self.local_blend = local_blend

    def __call__(self, denoiser, x_t, t, **extra):
        """Classifier-free guidance over [source, target] rows; while cross-attention is
        replaced, the target also takes the source's pooled text (the U-Net's FiLM input)."""
        from ..diffusion.denoiser import TextCondition, threshold_x0
        from ..models.unet import pool_text

        b = self.state.images
        tt = (t.expand(x_t.shape[0]) if t.dim() == 0 else t).float()
        pooled = pool_text(self.cond.embeds, self.cond.mask)
        if self.state.step < self.state.cross_steps:
            pooled = torch.cat([pooled[:b], pooled[:b]])
        null = self.cond.null()
        both = TextCondition(torch.cat([self.cond.embeds, null.embeds]),
                             torch.cat([self.cond.mask, null.mask]))
        install(denoiser.unet, self.state)
        try:
            out_c, out_u = denoiser(torch.cat([x_t, x_t]), torch.cat([tt, tt]), both,
                                    pooled=torch.cat([pooled, torch.zeros_like(pooled)]),
                                    **{k: torch.cat([v, v]) for k, v in extra.items()}
                                    ).float().chunk(2)
        finally:
            install(denoiser.unet, None)
        out = out_u + self.guidance * (out_c - out_u)
        x0 = threshold_x0(denoiser.to_x0(out, x_t.float(), tt.long()), self.threshold)
        if self.state.blend_from == "prediction":
            self.state.add_difference(x0)
        return denoiser.from_x0(x0, x_t.float(), tt.long())

    def callback(self, step: int, t, x: torch.Tensor, t_next) -> torch.Tensor:
        self.state.end_step(self.size)
        mask = self.state.blend_mask() if self.local_blend else None
        if mask is None:
            return x
        b = self.state.images
        src, tgt = x[:b], x[b:]
        return torch.cat([src, mask * tgt + (1 - mask) * src])


class SRBlend:
    """An SR stage's step callback: the target keeps the source's pixels outside the base
    stage's local-blend mask (enlarged), so SR adds no change away from the edit."""

    def __init__(self, state: EditState):
        self.state = state

    def __call__(self, step: int, t, x: torch.Tensor, t_next) -> torch.Tensor:
        mask = self.state.blend_mask()
        if mask is None:
            return x
        mask = F.interpolate(mask, size=x.shape[-2:], mode="nearest")
        b = self.state.images
        return torch.cat([x[:b], mask * x[b:] + (1 - mask) * x[:b]])


def reweight_positions(encoder, prompt: str, words: dict[str, float]) -> dict[int, float]:
    """{word: factor} -> {token position (null token at 0): factor} for the word's tokens."""
    import re

    spans = encoder.token_spans([prompt])[0]
    out: dict[int, float] = {}
    for word, factor in words.items():
        if not math.isfinite(factor) or abs(factor) > 10:
            raise InputError(f"reweight of {word!r}: {factor} is not a number in [-10, 10]")
        hits = [m.span() for m in re.finditer(rf"\b{re.escape(word)}\b", prompt)]
        if not hits:
            raise InputError(f"reweight: {word!r} is not a word of the target prompt")
        for j, (a, b) in enumerate(spans):
            if b > a and any(a < e and s < b for s, e in hits):
                out[j + 1] = factor
    return out
