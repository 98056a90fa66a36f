"""The prompt language: word weights and composition.

    prompt  := clause (("AND" | "NOT") clause)*      NOT starts a negated clause
    clause  := ["NOT"] phrase [":" number]           ":0.8" weighs the clause (default 1)
    phrase  := (word | "(" phrase [":" number] ")" | "[" phrase "]")+

`(red:1.5)` scales the word's token embeddings by 1.5, `(red)` by 1.1 and `[striped]` by
1/1.1 (nested markup multiplies); the sequence mean is kept (see `weight_tokens`). Clauses
combine by composable diffusion (Liu et al. 2022, eq. 8):
    guided = uncond + sum_i w_i (cond_i - uncond),  w_i = guidance x clause weight,
and a NOT clause has a negative weight. Weights are finite numbers in [-10, 10]. Every
syntax error is a `PromptSyntaxError` naming the column of the first bad character.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from ..errors import InputError

MAX_WEIGHT = 10.0
EMPHASIS = 1.1  # "(word)" multiplies by this, "[word]" divides
_NUMBER = re.compile(r"\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)")
_SEPARATOR = re.compile(r"\s*\b(AND|NOT)\b")


class PromptSyntaxError(InputError):
    """A prompt that does not follow the grammar; the message names the column (1-based)."""


@dataclass
class Clause:
    text: str  # the phrase without markup, single-spaced
    weight: float = 1.0  # composition weight; negative for NOT
    spans: list[tuple[int, int, float]] = field(default_factory=list)  # (start, end, factor)


def parse_prompt(prompt: str) -> list[Clause]:
    """Clauses of `prompt`, each with its plain text, weight and weighted character spans."""
    if not isinstance(prompt, str):
        raise PromptSyntaxError("a prompt must be a string")
    clauses, pos, negate = [], 0, False
    while True:
        clause, pos = _clause(prompt, pos, negate)
        clauses.append(clause)
        sep = _SEPARATOR.match(prompt, pos)
        if sep is None:
            if prompt[pos:].strip():
                raise PromptSyntaxError(_at(prompt, pos, "unexpected text"))
            return clauses
        negate, pos = sep.group(1) == "NOT", sep.end()


def _at(prompt: str, pos: int, what: str) -> str:
    pos = min(pos, len(prompt))
    while pos < len(prompt) and prompt[pos].isspace():
        pos += 1
    shown = repr(prompt[pos]) if pos < len(prompt) else "the end"
    return f"prompt column {pos + 1}: {what} at {shown}"


def _clause(prompt: str, pos: int, negate: bool) -> tuple[Clause, int]:
    if not negate:
        lead = re.compile(r"\s*NOT\b").match(prompt, pos)
        if lead:
            negate, pos = True, lead.end()
    words: list[str] = []
    spans: list[tuple[int, int, float]] = []
    pos = _phrase(prompt, pos, words, spans, 1.0, closer=None)
    if not words:
        raise PromptSyntaxError(_at(prompt, pos, "expected words"))
    weight = 1.0
    colon = re.compile(r"\s*:").match(prompt, pos)
    if colon:
        weight, pos = _number(prompt, colon.end())
    text = " ".join(words)
    return Clause(text, -weight if negate else weight, spans), pos


def _phrase(prompt, pos, words, spans, factor, closer) -> int:
    """Read words and groups until `closer`, ':' or a clause separator; return the position."""
    while True:
        while pos < len(prompt) and prompt[pos].isspace():
            pos += 1
        if pos >= len(prompt) or prompt[pos] in ":" + (closer or "") or \
                (closer is None and _SEPARATOR.match(prompt, pos)):
            return pos
        ch = prompt[pos]
        if ch in "([":
            pos = _group(prompt, pos, words, spans, factor)
        elif ch in ")]":
            raise PromptSyntaxError(_at(prompt, pos, "unbalanced bracket"))
        else:
            end = pos
            while end < len(prompt) and not prompt[end].isspace() and prompt[end] not in "()[]:":
                end += 1
            start = len(" ".join(words)) + (1 if words else 0)
            words.append(prompt[pos:end])
            if factor != 1.0:
                spans.append((start, start + end - pos, factor))
            pos = end


def _group(prompt, pos, words, spans, factor) -> int:
    opener = prompt[pos]
    closer = ")" if opener == "(" else "]"
    before = len(words)
    inner = factor * (EMPHASIS if opener == "(" else 1 / EMPHASIS)
    marks = len(spans)
    end = _phrase(prompt, pos + 1, words, spans, inner, closer)
    if len(words) == before:
        raise PromptSyntaxError(_at(prompt, end, f"empty {opener}{closer}"))
    if end < len(prompt) and prompt[end] == ":":
        if opener == "[":
            raise PromptSyntaxError(_at(prompt, end, "a weight belongs in (word:weight)"))
        weight, end = _number(prompt, end + 1)
        spans[marks:] = [(s, e, f / EMPHASIS * weight) for s, e, f in spans[marks:]]
    while end < len(prompt) and prompt[end].isspace():
        end += 1
    if end >= len(prompt) or prompt[end] != closer:
        raise PromptSyntaxError(_at(prompt, end, f"expected {closer!r}"))
    return end + 1


def _number(prompt: str, pos: int) -> tuple[float, int]:
    match = _NUMBER.match(prompt, pos)
    if not match:
        raise PromptSyntaxError(_at(prompt, pos, "expected a number"))
    value = float(match.group(1))
    if not math.isfinite(value) or abs(value) > MAX_WEIGHT:
        raise PromptSyntaxError(_at(prompt, pos, f"weight {match.group(1)} is outside "
                                                 f"[-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}]"))
    return value, match.end()


def weight_tokens(embeds: torch.Tensor, mask: torch.Tensor,
                  token_spans: list[list[tuple[int, int]]],
                  spans: list[list[tuple[int, int, float]]]) -> torch.Tensor:
    """Scale the embeddings of tokens inside weighted character spans, then rescale each
    sequence so the mean of its tokens' embeddings is what it was (as A1111 and compel do)."""
    out = embeds.clone()
    for b, (tokens, weighted) in enumerate(zip(token_spans, spans, strict=True)):
        if not weighted:
            continue
        factors = torch.ones(embeds.shape[1], dtype=embeds.dtype, device=embeds.device)
        for i, (start, end) in enumerate(tokens):
            for s, e, f in weighted:
                if end > start and start < e and s < end:  # the token overlaps the span
                    factors[i] *= f
        keep = mask[b]
        before = embeds[b][keep].mean()
        out[b] = embeds[b] * factors[:, None]
        after = out[b][keep].mean()
        if after.abs() > 1e-8:
            out[b] = out[b] * (before / after)
    return out
