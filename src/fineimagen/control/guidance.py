"""Guidance objects: they turn one batched model call into the guided prediction of a step.

`Composition` covers classifier-free guidance, composable diffusion and region prompts:
    out = out_u + g [ (1 - R) * sum_global w_k (out_k - out_u)
                      + sum_regions w_k (m_k / max(1, sum_j m_j)) (out_k - out_u) ]
with out_u the unconditional (or negative-prompt) prediction, g the guidance scale, m_k a
region's mask and R = min(1, sum_j m_j): global clauses guide outside the regions, each
region's clauses inside it, overlapping regions are averaged (Liu et al. 2022, eq. 8;
Bar-Tal et al. 2023, MultiDiffusion, eq. 5 with masks). Without regions this is eq. 8.

With a known `backdrop` (scenes), a region's terms may `hide` part of the canvas (the other
regions): they and an unconditional branch of their own are then evaluated on a view of
x_t with that part replaced by the backdrop diffused to step t, and inside the region
out_u is that view's u_k, so there the guided prediction is u_k + g w_k (out_k - u_k): the
object denoised as if alone on the background (MultiDiffusion's per-region denoising). A
region prompt names one object ("a small circle") and the model reads it as the whole
image: seeing the other objects, it would predict them away inside its own region.

`KnownRegion` puts a known image back outside a mask after every step (RePaint-style
inpainting, Lugmayr et al. 2022, eq. 8): x_{t'} <- k * q(x_{t'} | x0_known) + (1 - k) * x_{t'}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..diffusion.denoiser import Denoiser, TextCondition, threshold_x0


@dataclass
class Term:
    cond: TextCondition  # one prompt: embeds [1, L, D], mask [1, L]
    weight: float = 1.0  # times the guidance scale; negative pushes away (NOT)
    mask: torch.Tensor | None = None  # [1, 1, H, W] in [0, 1]; None: a global term
    hide: torch.Tensor | None = None  # [1, 1, H, W]: where this term sees the backdrop


def stack_conditions(conds: list[TextCondition]) -> TextCondition:
    """Concatenate conditions of different lengths, padding with masked-out tokens."""
    length = max(c.embeds.shape[1] for c in conds)
    embeds = [F.pad(c.embeds, (0, 0, 0, length - c.embeds.shape[1])) for c in conds]
    masks = [F.pad(c.mask, (0, length - c.mask.shape[1]), value=False) for c in conds]
    return TextCondition(torch.cat(embeds), torch.cat(masks))


class Composition:
    """Weighted global and region terms around an unconditional branch (and one more per
    region view with a backdrop; see module doc)."""

    def __init__(self, terms: list[Term], uncond: TextCondition, guidance: float,
                 threshold: float = 0.0, backdrop: torch.Tensor | None = None):
        if not terms:
            raise ValueError("a composition needs at least one term")
        if backdrop is None and any(t.hide is not None for t in terms):
            raise ValueError("terms that hide part of the canvas need a backdrop")
        self.terms, self.uncond = terms, uncond
        self.guidance, self.threshold = guidance, threshold
        self.backdrop = backdrop  # [1, 3, H, W] x0 in [-1, 1], or None

    def resized(self, size: int, guidance: float, threshold: float) -> Composition:
        """The same terms, region masks at another resolution, another stage's guidance
        (later stages see the whole canvas: no term hides anything there)."""
        terms = [Term(t.cond, t.weight, None if t.mask is None else
                      F.interpolate(t.mask, size=(size, size), mode="bilinear",
                                    align_corners=False)) for t in self.terms]
        return Composition(terms, self.uncond, guidance, threshold)

    def region_weights(self, like: torch.Tensor) -> list[torch.Tensor]:
        """Per term, its spatial weight [1, 1, H, W] (global terms: 1 - R)."""
        masks = [t.mask.to(like) for t in self.terms if t.mask is not None]
        if not masks:
            return [torch.ones_like(like[:1, :1]) for _ in self.terms]
        total = torch.stack(masks).sum(0)  # [1, 1, H, W]
        outside = 1 - total.clamp(max=1)
        norm = total.clamp(min=1)
        return [outside if t.mask is None else t.mask.to(like) / norm for t in self.terms]

    def __call__(self, denoiser: Denoiser, x_t: torch.Tensor, t: torch.Tensor,
                 **extra) -> torch.Tensor:
        b, k = x_t.shape[0], len(self.terms)
        tt = (t.expand(b) if t.dim() == 0 else t).float()
        views = self.views()  # term index -> its view; the region's terms share one
        firsts = sorted(set(views.values()))
        seen = {v: self.shown(denoiser, x_t, tt, self.terms[v].hide, v) for v in firsts}
        inputs = [seen[views[i]] if i in views else x_t for i in range(k)]
        inputs += [x_t] + [seen[v] for v in firsts]  # the unconditional branch on each view
        conds = [term.cond for term in self.terms] + [self.uncond] * (1 + len(firsts))
        n = len(conds)
        both = stack_conditions([TextCondition(c.embeds.expand(b, -1, -1), c.mask.expand(b, -1))
                                 for c in conds])
        repeated = {name: torch.cat([v] * n) for name, v in extra.items()}
        out = denoiser(torch.cat(inputs), torch.cat([tt] * n), both,
                       **repeated).float().view(n, b, *x_t.shape[1:])
        out_u = out[k]
        own_u = {v: out[k + 1 + j] for j, v in enumerate(firsts)}
        weights = self.region_weights(x_t)
        guided = out_u.clone()
        for v in firsts:  # inside a hiding region its own unconditional prediction
            guided += weights[v] * (own_u[v] - out_u)
        for i, (term, out_k, where) in enumerate(zip(self.terms, out[:k], weights, strict=True)):
            u = own_u[views[i]] if i in views else out_u
            guided += self.guidance * term.weight * where * (out_k - u)
        x0 = threshold_x0(denoiser.to_x0(guided, x_t.float(), tt.long()), self.threshold)
        return denoiser.from_x0(x0, x_t.float(), tt.long())

    def views(self) -> dict[int, int]:
        """For each hiding term, the first term with the same hide mask (one view each)."""
        first: dict[int, int] = {}
        return {i: first.setdefault(id(term.hide), i) for i, term in enumerate(self.terms)
                if term.hide is not None}

    def shown(self, denoiser: Denoiser, x_t: torch.Tensor, tt: torch.Tensor,
              hide: torch.Tensor, view: int) -> torch.Tensor:
        """A view of x_t: the `hide` part replaced by the backdrop diffused to step t (noise
        drawn from the step and the view alone: each image still depends only on its own
        seed)."""
        seed = int(tt[0]) * 7919 + view
        noise = torch.randn(self.backdrop.shape[1:], generator=torch.Generator().manual_seed(seed))
        backdrop = denoiser.noise_augment(self.backdrop.to(x_t), tt, noise.to(x_t))
        hide = hide.to(x_t)
        return x_t * (1 - hide) + backdrop * hide


class KnownRegion:
    """A step callback that keeps `known` (x0, [B, 3, H, W] in [-1, 1]) where `keep` is 1."""

    def __init__(self, denoiser: Denoiser, known: torch.Tensor, keep: torch.Tensor,
                 seeds: list[int]):
        self.denoiser, self.known, self.keep = denoiser, known, keep
        self.seeds = seeds

    def __call__(self, step: int, t, x: torch.Tensor, t_next) -> torch.Tensor:
        if t_next is None:  # the final step: the known pixels exactly
            return self.keep * self.known + (1 - self.keep) * x
        noise = torch.stack([torch.randn(self.known.shape[1:], generator=torch.Generator()
                                         .manual_seed(s * 1009 + step)) for s in self.seeds])
        level = torch.full((x.shape[0],), int(t_next), device=x.device)
        noisy = self.denoiser.noise_augment(self.known, level, noise.to(x.device))
        return self.keep * noisy + (1 - self.keep) * x
