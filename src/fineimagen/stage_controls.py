"""From user controls to the objects the cascade runs: encoded clauses, compositions, known
regions and img2img starts, per stage."""

from __future__ import annotations

import math

import torch

from .cascade import StageControl, stage_seeds
from .control.attention_guidance import (
    EXCITE_STEP,
    GUIDED_SHARE,
    AttentionGuidance,
    AttentionTarget,
    find_words,
    subject_positions,
    word_positions,
)
from .control.guidance import Composition, KnownRegion, Term
from .control.prompts import Clause, parse_prompt, weight_tokens
from .control.regions import Region, check_regions
from .diffusion.denoiser import TextCondition
from .diffusion.sampling import initial_noise, sampling_timesteps
from .domains import get_domain
from .errors import InputError

MAX_GUIDANCE_STEP = 10.0  # the largest layout-guidance step size accepted


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
                guidance: float, threshold: float,
                backdrop: torch.Tensor | None = None) -> Composition:
    """Global clauses of `prompt`, each region's clauses on its mask, and the negative
    prompt (else the empty prompt) as the unconditional branch. With a `backdrop` (x0 of
    the canvas without objects), each region's clauses see it in place of the other
    regions (guidance.Composition)."""
    check_regions(regions)
    terms = [Term(encode_clause(pipe, c), c.weight) for c in parse_prompt(prompt)]
    masks = [region.mask.to(pipe.device) for region in regions]
    total = sum(masks) if masks else None
    for region, mask in zip(regions, masks, strict=True):
        hide = None
        if backdrop is not None and len(regions) > 1:  # the other regions, where not this one
            hide = (total - mask).clamp(0, 1) * (1 - mask)
        terms += [Term(encode_clause(pipe, c), c.weight, mask, hide)
                  for c in parse_prompt(region.prompt)]
    if negative is not None:
        clauses = parse_prompt(negative)
        if len(clauses) != 1 or clauses[0].weight != 1.0:
            raise InputError("the negative prompt is one clause (no AND / NOT / :weight)")
        uncond = encode_clause(pipe, clauses[0])
    else:
        uncond = terms[0].cond.null()
    return Composition(terms, uncond, guidance, threshold,
                       None if backdrop is None else backdrop.to(pipe.device))


def stage_controls(pipe, comp: Composition, settings: list, stop: int) -> dict:
    """The composition carried into every diffusion stage (masks at its resolution)."""
    controls = {0: StageControl(guide=comp)}
    for i in range(1, stop):
        stage = pipe.stages[i]
        if stage.cfg.kind == "diffusion":
            controls[i] = StageControl(guide=comp.resized(
                stage.cfg.resolution, settings[i].guidance, settings[i].threshold))
    return controls


def region_prompts_into_sr(pipe, controls: dict, regions: list[Region], n: int,
                           stop: int) -> None:
    """Each regression SR stage that reads region prompts gets them: each region's words
    (markup dropped, negative clauses left out), pooled, over its mask at the stage's input
    side (models.sr.RegionText)."""
    from .models.sr import RegionText, pool_text

    readers = [i for i in range(1, stop) if pipe.stages[i].cfg.reads_regions]
    if not regions or not readers:
        return
    words = [" ".join(c.text for c in parse_prompt(r.prompt) if c.weight > 0) or "."
             for r in regions]
    cond = pipe.encode(words)
    embeds = pool_text(cond.embeds, cond.mask).float()
    for i in readers:
        side = pipe.stages[i].cfg.input_resolution
        masks = torch.cat([torch.nn.functional.interpolate(r.mask.float(), size=(side, side),
                                                           mode="area")
                           for r in regions], 1)
        controls.setdefault(i, StageControl()).regions = RegionText(
            masks.expand(n, -1, -1, -1).to(pipe.device),
            embeds[None].expand(n, -1, -1).to(pipe.device))


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


def check_attention_options(prompt: str, excite: bool | list[str], layout: float,
                            has_regions: bool, nouns: tuple[str, ...]) -> list[Clause]:
    """Raise InputError for options attention guidance cannot apply; the clauses that
    attend-and-excite acts on (positive ones that name a subject: one of `nouns`, the
    domain's object nouns, or with a list `excite` one of its words)."""
    if not (math.isfinite(layout) and 0 <= layout <= MAX_GUIDANCE_STEP):
        raise InputError(f"layout guidance must be a number in [0, {MAX_GUIDANCE_STEP:g}], "
                         f"got {layout}")
    if layout > 0 and not has_regions:
        raise InputError("layout guidance needs regions, boxes or a scene")
    if not excite:
        return []
    clauses = [c for c in parse_prompt(prompt) if c.weight > 0]
    if excite is True:
        chosen = [c for c in clauses if nouns and find_words(c.text, list(nouns), plural=True)]
        if not chosen:
            raise InputError(f"excite: {prompt!r} names no object to excite (name the words)")
        return chosen
    for word in excite:
        if not any(find_words(c.text, [word]) for c in clauses):
            raise InputError(f"excite: {word!r} is not a word of the prompt {prompt!r}")
    return [c for c in clauses if find_words(c.text, excite)]


def attention_guidance(pipe, prompt: str, regions: list[Region], excite: bool | list[str],
                       layout: float, steps: int) -> AttentionGuidance | None:
    """The base stage's attention guidance, or None: with `excite`, attend-and-excite on the
    subject words of each positive clause of `prompt` (True: its shape nouns; a list: those
    words); with `layout` > 0, each region's subjects (its shape nouns, else all its words)
    kept inside the region at that step size (control.attention_guidance)."""
    nouns = get_domain(pipe.domain).subject_nouns
    clauses = check_attention_options(prompt, excite, layout, bool(regions), nouns)
    targets = []

    def target(clause: Clause, mask, words):
        spans = pipe.text_encoder.token_spans([clause.text])[0]
        subjects = subject_positions(clause.text, spans, words, nouns)
        if not subjects and mask is not None:  # a region without a shape noun: all its words
            subjects = [[p] for p in word_positions(spans)]
        if subjects:
            targets.append(AttentionTarget(encode_clause(pipe, clause),
                                           word_positions(spans), subjects, mask))

    for clause in clauses:
        words = None if excite is True else \
            [w for w in excite if find_words(clause.text, [w])]
        target(clause, None, words)
    if layout > 0:
        for region in regions:
            for clause in parse_prompt(region.prompt):
                if clause.weight > 0:
                    target(clause, region.mask.to(pipe.device), None)
    if not targets:
        return None
    guided = max(1, math.ceil(GUIDED_SHARE * steps))
    return AttentionGuidance(pipe.stages[0].model, targets, guided, EXCITE_STEP, layout)
