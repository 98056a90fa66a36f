"""Captions for shapes scenes from a small grammar with varied phrasing.

`caption(scene, rng)` mentions exactly the attributes set in `scene` (a spec may leave some
open); `mention(scene, rng)` drops attributes of a complete scene at random, so training
captions range from terse to exhaustive. Deterministic for a given generator state.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import vocab
from .scene import Group, PlacedObject, Relation, Scene, relation_holds

SHAPE_WORDS = {
    "circle": ("circle", "circle", "disk"),
    "square": ("square",),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
}
COLOR_WORDS = {"purple": ("purple", "violet"), "cyan": ("cyan", "turquoise")}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium", "medium-sized"),
              "large": ("large", "big")}
TEXTURE_ADJECTIVES = {"solid": ("solid", "plain"), "striped": ("striped",),
                      "dotted": ("dotted", "polka-dot", "spotted"),
                      "checkered": ("checkered", "checked")}
TEXTURE_PHRASES = {"solid": "in a solid colour", "striped": "with stripes",
                   "dotted": "with dots", "checkered": "with a checkerboard pattern"}
COUNT_WORDS = {1: ("a", "one", "1"), 2: ("two", "2", "a pair of"), 3: ("three", "3"),
               4: ("four", "4")}
POSITION_PHRASES = {
    "top left": ("at the top left", "in the upper left corner", "in the top-left corner"),
    "top": ("at the top", "at the top center", "in the upper middle"),
    "top right": ("at the top right", "in the upper right corner", "in the top-right corner"),
    "left": ("on the left", "at the left side", "in the middle left"),
    "center": ("in the center", "in the middle", "at the centre"),
    "right": ("on the right", "at the right side", "in the middle right"),
    "bottom left": ("at the bottom left", "in the lower left corner",
                    "in the bottom-left corner"),
    "bottom": ("at the bottom", "at the bottom center", "in the lower middle"),
    "bottom right": ("at the bottom right", "in the lower right corner",
                     "in the bottom-right corner"),
}
# training only (`varied=True`; the eval grammar keeps the tables above): more synonyms, a
# colour after the noun ("a star painted red"), whole-caption frames and filler sentences
# that say nothing of the scene (long prompts), so a model reads a scene out of many wordings
MORE_SHAPE_WORDS = {"circle": ("round figure",), "square": ("block",),
                    "triangle": ("three-cornered figure",), "star": ("star figure",),
                    "heart": ("love heart",)}
MORE_COLOR_WORDS = {"red": ("crimson",), "orange": ("amber",), "yellow": ("golden",),
                    "green": ("jade",), "blue": ("sapphire",), "pink": ("salmon-pink",)}
MORE_SIZE_WORDS = {"small": ("wee",), "medium": ("moderate-sized",), "large": ("giant",)}
MORE_COUNT_WORDS = {1: ("a lone",), 3: ("a trio of",), 4: ("a set of four",)}
MORE_POSITION_PHRASES = {"left": ("on the left-hand side",), "right": ("on the right-hand side",)}
COLOR_PHRASES = ("coloured {}", "painted {}")
FRAMES = ("A picture of {}.", "Draw {}.", "Show me {}.", "An illustration with {}.",
          "Here we have {}.", "Make an image of {}.", "Generate {}", "a render of {}")
FRAME_SHARE = 0.25
FILLERS = ("It is a simple flat drawing.", "The lines are clean and sharp.",
           "Nothing else is in view.", "This is for a children's book.",
           "Use flat colours without shading.", "The style is minimal.",
           "Keep it neat and tidy.", "Think of a poster from a school classroom.",
           "The composition should feel calm.", "No text or letters anywhere.",
           "It was sketched quickly on a tablet.", "The edges are crisp.",
           "Imagine it printed on a card.", "Nobody is in the picture.",
           "The scene is viewed straight on.", "There are no shadows.")
FILLER_SHARE = 0.06  # long captions: 1-24 filler sentences before or after the scene
BACKGROUND_PHRASES = ("on a {} background", "against a {} background", "on {}")
BACKGROUND_WORDS = {"gray": ("gray", "grey")}


def _choose(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def more_words(table: dict, more: dict, key, varied: bool = True) -> tuple[str, ...]:
    """`table`'s words for `key` (the key itself where it has none), with `varied` also the
    training-only ones of `more`."""
    return table.get(key, (key,)) + (more.get(key, ()) if varied else ())


def group_phrase(g: Group, rng: np.random.Generator, with_position: bool = True,
                 varied: bool = False) -> str:
    """'two small red striped circles at the top left' with the attributes `g` sets
    (`varied`: from the training-only wordings as well)."""
    count = g.count if g.count is not None else 2  # an open count reads as a bare plural
    words = ([_choose(rng, more_words(COUNT_WORDS, MORE_COUNT_WORDS, count, varied))]
             if g.count is not None else [])
    if g.size:
        words.append(_choose(rng, more_words(SIZE_WORDS, MORE_SIZE_WORDS, g.size, varied)))
    color_after = varied and g.color is not None and rng.random() < 0.15
    if g.color and not color_after:
        words.append(_choose(rng, more_words(COLOR_WORDS, MORE_COLOR_WORDS, g.color, varied)))
    texture_after = g.texture is not None and rng.random() < 0.3
    if g.texture and not texture_after:
        words.append(_choose(rng, TEXTURE_ADJECTIVES[g.texture]))
    noun = _choose(rng, more_words(SHAPE_WORDS, MORE_SHAPE_WORDS, g.shape, varied))
    words.append(noun + ("s" if count > 1 else ""))
    if color_after:
        words.append(_choose(rng, COLOR_PHRASES).format(g.color))
    if texture_after:
        words.append(TEXTURE_PHRASES[g.texture])
    if g.position and with_position:
        where = more_words(POSITION_PHRASES, MORE_POSITION_PHRASES, g.position, varied)
        words.append(_choose(rng, where))
    phrase = " ".join(words)
    return "an" + phrase[1:] if phrase.startswith("a ") and phrase[2] in "aeiou" else phrase


def dress(text: str, spans: list[tuple[int, int, int]], rng: np.random.Generator
          ) -> tuple[str, list[tuple[int, int, int]]]:
    """Training captions: with FRAME_SHARE the caption inside a sentence frame ("Draw {}."),
    with FILLER_SHARE 1-24 filler sentences before or after it; `spans` shifted to match."""
    if rng.random() < FRAME_SHARE:
        frame = _choose(rng, FRAMES)
        shift = frame.index("{}")
        text = frame.format(text[0].upper() + text[1:] if shift == 0 else text)
        spans = [(a + shift, b + shift, g) for a, b, g in spans]
    if rng.random() < FILLER_SHARE:
        filler = " ".join(_choose(rng, FILLERS) for _ in range(int(rng.integers(1, 25))))
        if rng.random() < 0.5:
            return f"{text}{'' if text.endswith('.') else '.'} {filler}", spans
        shift = len(filler) + 1
        text = f"{filler} {text}"
        spans = [(a + shift, b + shift, g) for a, b, g in spans]
    return text, spans


RELATION_PHRASES = {"left_of": ("to the left of", "is to the left of"),
                    "right_of": ("to the right of", "is to the right of"),
                    "above": ("above", "is above"), "below": ("below", "is below")}
# the same after a plural subject ("two stars are above a circle")
PLURAL_RELATION_PHRASES = {k: tuple(p.replace("is ", "are ") for p in v)
                           for k, v in RELATION_PHRASES.items()}
INVERSE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
RELATION_SHARE = 0.3  # training captions of two or more groups that state a relation
RELATION_DROPS_CELLS = 0.5  # of those, the share whose two groups' cells are left unsaid


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption that states exactly the attributes and relations `scene` sets."""
    return caption_spans(scene, rng)[0]


def caption_spans(scene: Scene, rng: np.random.Generator, varied: bool = False
                  ) -> tuple[str, list[tuple[int, int, int]]]:
    """`caption`'s text and, per group phrase, (start, end, group index): where in the text
    each group is described (what the base stage's attention grounding reads). A relation
    reads "A to the left of B", "A is above B" or, inverted, "B is to the right of A".
    `varied`: the training-only wordings as well."""
    units: list[list] = []  # each: group indices and joining words, alternating
    related = set()
    for r in scene.relations:
        first, words, second = r.subject, r.relation, r.object
        if rng.random() < 0.5:
            first, words, second = second, INVERSE[words], first
        plural = (scene.groups[first].count or 2) > 1
        phrases = (PLURAL_RELATION_PHRASES if plural else RELATION_PHRASES)[words]
        units.append([first, f" {_choose(rng, phrases)} ", second])
        related |= {r.subject, r.object}
    units += [[i] for i in range(len(scene.groups)) if i not in related]
    units = [units[int(k)] for k in rng.permutation(len(units))]
    pieces: list = []
    for k, unit in enumerate(units):
        if k:
            pieces.append(" and " if k == len(units) - 1 else ", ")
        pieces += unit
    text, spans = "", []
    for piece in pieces:
        if isinstance(piece, str):
            text += piece
            continue
        phrase = group_phrase(scene.groups[piece], rng, varied=varied)
        spans.append((len(text), len(text) + len(phrase), piece))
        text += phrase
    if scene.background:
        word = _choose(rng, BACKGROUND_WORDS.get(scene.background, (scene.background,)))
        text += " " + _choose(rng, BACKGROUND_PHRASES).format(word)
    return text, spans


def say_relation(said: Scene, placed: list[PlacedObject], rng: np.random.Generator) -> Scene:
    """Training captions: with probability RELATION_SHARE, `said` (of two or more groups)
    gains one relation that the laid-out objects satisfy, and with RELATION_DROPS_CELLS
    its two groups' cells go unsaid."""
    if len(said.groups) < 2 or rng.random() >= RELATION_SHARE:
        return said
    i, j = (int(k) for k in rng.choice(len(said.groups), 2, replace=False))
    points = [[(o.x, o.y) for o in placed if o.group == g] for g in (i, j)]
    holding = [r for r in vocab.RELATIONS if relation_holds(r, *points)]
    if not holding:
        return said
    groups = list(said.groups)
    if rng.random() < RELATION_DROPS_CELLS:
        groups[i], groups[j] = replace(groups[i], position=None), replace(groups[j], position=None)
    relation = Relation(i, holding[int(rng.integers(len(holding)))], j)
    return replace(said, groups=tuple(groups), relations=(relation,))


def mention(scene: Scene, rng: np.random.Generator, keep: float = 0.8) -> Scene:
    """The scene with each optional attribute kept with probability `keep` (training captions).

    Shape and count are always kept: "a circle" must mean one circle.
    """

    def drop(g: Group) -> Group:
        fields = {k: v for k, v in g.fields().items()
                  if k in ("shape", "count") or rng.random() < keep}
        return Group(**fields)

    background = scene.background if rng.random() < keep * 0.6 else None
    return Scene(tuple(drop(g) for g in scene.groups), background, scene.relations)


def object_phrase(g: Group) -> str:
    """'a large red striped star at the top left': one object in the captions' first wording."""
    words = ["a"] + [w for w in (g.size, g.color) if w]
    if g.texture:
        words.append(TEXTURE_ADJECTIVES[g.texture][0])
    words.append(g.shape)
    if g.position:
        words.append(POSITION_PHRASES[g.position][0])
    return " ".join(words)
