"""From user controls to the objects the cascade runs: encoded clauses, compositions, known
regions and img2img starts, per stage."""

from __future__ import annotations

import torch

from ..cascade import StageControl, stage_seeds
from ..diffusion.denoiser import TextCondition
from ..diffusion.sampling import initial_noise, sampling_timesteps
from ..errors import InputError
from .guidance import Composition, KnownRegion, Term
from .prompts import Clause, parse_prompt, weight_tokens
from .regions import Region, check_regions


def is_plain(prompt: str) -> bool:
    """True when the prompt has no markup: one clause of weight 1 without word weights."""
    clauses = parse_prompt(prompt)
    return len(clauses) == 1 and clauses[0].weight == 1.0 and not clauses[0].spans


def encode_clause(pipe, clause: Clause) -> TextCondition:
    """The clause's text encoded once, its word weights applied to the token embeddings."""
    cond = pipe.encode([clause.text])
    if not clause.spans:
        return cond
    spans = pipe.text_encoder.token_spans([clause.text])
    embeds = weight_tokens(cond.embeds, cond.mask, spans, [clause.spans])
    return TextCondition(embeds, cond.mask)


def composition(pipe, prompt: str, regions: list[Region], negative: str | None,
                guidance: float, threshold: float) -> Composition:
    """Global clauses of `prompt`, each region's clauses on its mask, and the negative
    prompt (else the empty prompt) as the unconditional branch."""
    check_regions(regions)
    terms = [Term(encode_clause(pipe, c), c.weight) for c in parse_prompt(prompt)]
    for region in regions:
        mask = region.mask.to(pipe.device)
        terms += [Term(encode_clause(pipe, c), c.weight, mask)
                  for c in parse_prompt(region.prompt)]
    if negative is not None:
        clauses = parse_prompt(negative)
        if len(clauses) != 1 or clauses[0].weight != 1.0:
            raise InputError("the negative prompt is one clause (no AND / NOT / :weight)")
        uncond = encode_clause(pipe, clauses[0])
    else:
        uncond = terms[0].cond.null()
    return Composition(terms, uncond, guidance, threshold)


def stage_controls(pipe, comp: Composition, settings: list, stop: int) -> dict:
    """The composition carried into every diffusion stage (masks at its resolution)."""
    controls = {0: StageControl(guide=comp)}
    for i in range(1, stop):
        stage = pipe.stages[i]
        if stage.cfg.kind == "diffusion":
            controls[i] = StageControl(guide=comp.resized(
                stage.cfg.resolution, settings[i].guidance, settings[i].threshold))
    return controls


def keep_known(pipe, controls: dict, index: int, known: torch.Tensor, keep: torch.Tensor,
               seeds: list[int]) -> None:
    """Stage `index` puts `known` ([1 or B, 3, R, R], x0) back where `keep` is 1."""
    stage = pipe.stages[index]
    control = controls.setdefault(index, StageControl())
    b = len(seeds)
    control.callback = KnownRegion(stage.model, known.expand(b, -1, -1, -1).to(pipe.device),
                                   keep.to(pipe.device), stage_seeds(seeds, index))


def img2img_start(pipe, control: StageControl, x0: torch.Tensor, strength: float,
                  settings, seeds: list[int]) -> None:
    """Start the base stage part-way: x0 diffused to the step that leaves `strength` of the
    schedule to run (SDEdit, Meng et al. 2022)."""
    if not 0 < strength <= 1:
        raise InputError(f"strength must be in (0, 1], got {strength}")
    stage = pipe.stages[0]
    timesteps = sampling_timesteps(settings.sampler, stage.cfg.diffusion, settings.steps)
    start = min(settings.steps - 1, round(settings.steps * (1 - strength)))
    if start == 0:
        return  # the whole schedule: start from pure noise
    shape = x0.shape[1:]
    noise = initial_noise(seeds, tuple(shape), pipe.device)
    level = torch.full((len(seeds),), int(timesteps[start]), device=pipe.device)
    control.x_start = stage.model.noise_augment(x0.expand(len(seeds), -1, -1, -1), level, noise)
    control.start_step = start
