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

import functools
import re
from dataclasses import replace

import numpy as np

from ...errors import InputError
from . import vocab
from .captions import (
    BACKGROUND_WORDS,
    COLOR_PHRASES,
    COLOR_WORDS,
    COUNT_WORDS,
    MORE_COLOR_WORDS,
    MORE_COUNT_WORDS,
    MORE_POSITION_PHRASES,
    MORE_SHAPE_WORDS,
    MORE_SIZE_WORDS,
    PLURAL_RELATION_PHRASES,
    POSITION_PHRASES,
    RELATION_PHRASES,
    SHAPE_WORDS,
    SIZE_WORDS,
    TEXTURE_ADJECTIVES,
    TEXTURE_PHRASES,
    caption,
    more_words,
)
from .scene import Group, Relation, Scene, parse_spec

SEPARATORS = ("and", ",")


class PlanError(InputError):
    """The prompt is not in the grammar the planner reads."""


@functools.cache
def _lexicon() -> dict[tuple[str, ...], tuple[str, object]]:
    """Every phrase of the grammar (as a word tuple) -> (kind, value)."""
    table: dict[tuple[str, ...], tuple[str, object]] = {}

    def add(phrase: str, kind: str, value: object) -> None:
        table[tuple(_words(phrase))] = (kind, value)

    for count in COUNT_WORDS:
        for w in more_words(COUNT_WORDS, MORE_COUNT_WORDS, count):
            add(w, "count", count)
    add("an", "count", 1)
    for kind, synonyms, more, values in (
            ("size", SIZE_WORDS, MORE_SIZE_WORDS, vocab.SIZES),
            ("color", COLOR_WORDS, MORE_COLOR_WORDS, vocab.COLORS),
            ("texture", TEXTURE_ADJECTIVES, {}, vocab.TEXTURES)):
        for value in values:
            for w in more_words(synonyms, more, value):
                add(w, kind, value)
    for color in vocab.COLORS:
        for p in COLOR_PHRASES:
            add(p.format(color), "color_after", color)
    for shape in vocab.SHAPES:
        for w in more_words(SHAPE_WORDS, MORE_SHAPE_WORDS, shape):
            add(w, "shape", (shape, False))
            add(w + "s", "shape", (shape, True))
    for texture, phrase in TEXTURE_PHRASES.items():
        add(phrase, "texture_after", texture)
    for position in POSITION_PHRASES:
        for p in more_words(POSITION_PHRASES, MORE_POSITION_PHRASES, position):
            add(p, "position", position)
    for background in vocab.BACKGROUNDS:
        for w in BACKGROUND_WORDS.get(background, (background,)):
            for p in ("on a {} background", "against a {} background", "on {}"):
                add(p.format(w), "background", background)
    for s in SEPARATORS:
        add(s, "separator", s)
    for table_ in (RELATION_PHRASES, PLURAL_RELATION_PHRASES):
        for relation, phrases in table_.items():
            for p in phrases:
                add(p, "relation", relation)
    return table


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*|,", text.lower())


def plan_scene(prompt: str) -> Scene:
    """The scene spec `prompt` states, e.g. 'two small red circles at the top left and a blue
    star' -> two groups; raises PlanError at the first word outside the grammar."""
    words = _words(prompt)
    if not words:
        raise PlanError("prompt is empty")
    table = _lexicon()
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
