"""Layout planning from the prompt: a prompt in the shapes grammar read back into the scene
spec it states, so that scene control (regions, sketch) can draw it from the prompt alone.

Relations ("A to the left of B", "B is below A") become the spec's `relations`, the group
before the relation words its subject.

This is the two-stage scheme of LLM-grounded diffusion (Lian et al. 2023, LMD): a planner
turns the prompt into a layout, a layout-grounded sampler draws it. Here the planner is a
deterministic reader of the captions' grammar (captions.py), which it inverts exactly:
`plan_scene(caption(scene, rng)) == scene` up to the order of the groups.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...errors import InputError
from .captions import (
    caption,
)
from .lexicon import lexicon, phrase_words
from .scene import Group, Relation, Scene, parse_spec


class PlanError(InputError):
    """The prompt is not in the grammar the planner reads."""


def plan_scene(prompt: str) -> Scene:
    """The scene spec `prompt` states, e.g. 'two small red circles at the top left and a blue
    star' -> two groups; raises PlanError at the first word outside the grammar."""
    words = phrase_words(prompt)
    if not words:
        raise PlanError("prompt is empty")
    table = lexicon()
    longest = max(len(k) for k in table)
    groups: list[Group] = []
    current: dict = {}
    relations: list[Relation] = []
    background = None
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            if tuple(words[i:i + n]) in table:
                kind, value = table[tuple(words[i:i + n])]
                break
        else:
            raise PlanError(f"prompt word {i + 1} ({words[i]!r}) is not in the shapes "
                            "grammar the layout planner reads")
        phrase = " ".join(words[i:i + n])
        i += n
        if kind in ("separator", "background", "relation"):
            if current:
                groups.append(_finish(current, phrase))
                current = {}
            if kind == "relation":
                if not groups or i == len(words):
                    raise PlanError(f"{phrase!r} needs an object group on each side")
                relations.append(Relation(len(groups) - 1, value, len(groups)))
            if kind == "background":
                if background is not None or i < len(words):
                    raise PlanError(f"{phrase!r}: the background is said once, at the end")
                background = value
            continue
        key = {"texture_after": "texture", "color_after": "color"}.get(kind, kind)
        if "shape" in current and (kind == "count" or key in current):
            groups.append(_finish(current, phrase))  # a new group without a separator
            current = {}
        if key in current:
            raise PlanError(f"{phrase!r}: the {key} of one object group is said twice")
        if kind == "position" and not current and groups and previous_open(groups, relations):
            groups[-1] = replace(groups[-1], position=value)  # "a circle, on the right"
            continue
        if kind in ("texture_after", "color_after") and "shape" not in current:
            raise PlanError(f"{phrase!r} comes before the shape it describes")
        current[key] = value  # a place may come first: "at the top left, a star"
    if current:
        groups.append(_finish(current, "the end"))
    if not groups:
        raise PlanError("the prompt names no shape")
    if relations and relations[-1].object >= len(groups):
        raise PlanError(f"no object group after {relations[-1].relation!r}")
    try:
        return parse_spec(Scene(tuple(groups), background, tuple(relations)).to_spec())
    except InputError as err:
        raise PlanError(f"the planned scene is not valid: {err}") from None


def previous_open(groups: list[Group], relations: list[Relation]) -> bool:
    """Whether the last group may still take a place said after a comma: it has none and
    is no relation's object awaiting its own words."""
    return groups[-1].position is None and not (relations and relations[-1].object ==
                                                len(groups))


def plan_with_report(prompt: str) -> tuple[Scene, list[str]]:
    """The scene a prompt states, read in the grammar or, failing that, in ordinary language
    (domains.shapes.reading), and the words that could not be read (none in the grammar)."""
    try:
        return plan_scene(prompt), []
    except PlanError as strict:
        from .reading import read_free

        reading = read_free(prompt)
        try:
            return plan_scene(reading.text), reading.unread
        except PlanError as err:
            unread = f" (could not read: {', '.join(map(repr, reading.unread))})" \
                if reading.unread else ""
            raise PlanError(f"{strict}; read as ordinary language: {err}{unread}") from None


def _finish(fields: dict, where: str) -> Group:
    """A Group from one phrase's fields; a bare plural ('red circles') leaves the count open,
    a singular without a count word means one."""
    if "shape" not in fields:
        raise PlanError(f"no shape before {where!r}")
    shape, plural = fields.pop("shape")
    count = fields.pop("count", None if plural else 1)
    return Group(shape=shape, count=count, **fields)


def revised_prompt(scene: Scene) -> str:
    """The scene in the grammar's canonical words (what a user's prompt was read as)."""
    return caption(scene, np.random.default_rng(0))
