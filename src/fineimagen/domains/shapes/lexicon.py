"""The shapes grammar's lexicon: every phrase of the caption grammar (captions.py) as a word
tuple, with what it says; the planner (plan.py) and the free reader (reading.py) read by it."""

from __future__ import annotations

import functools
import re

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
    more_words,
)

SEPARATORS = ("and", ",")


@functools.cache
def lexicon() -> dict[tuple[str, ...], tuple[str, object]]:
    """Every phrase of the grammar (as a word tuple) -> (kind, value)."""
    table: dict[tuple[str, ...], tuple[str, object]] = {}

    def add(phrase: str, kind: str, value: object) -> None:
        table[tuple(phrase_words(phrase))] = (kind, value)

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


def phrase_words(text: str) -> list[str]:
    """The words of a text as the lexicon spells them (lower case; commas kept)."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*|,", text.lower())
