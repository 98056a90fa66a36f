"""A second phrase bank for shapes scenes, written apart from the training grammar
(`captions.py`) and never used in training: the "free" style of eval prompts, so that a
model and a planner can be measured on wordings no grammar of theirs wrote.

It says what a scene states in other words and other forms: synonyms of sizes, colours,
textures, places and counts; colour and texture as clauses ("a star that is red"); whole
sentences and frames ("There is ...", "The picture shows ..."). `tests/test_paraphrase.py`
asserts that no word 3-gram outside the slot words (the attribute values themselves) is
shared with the training grammar.
"""

from __future__ import annotations

import numpy as np

from .scene import Group, Scene

NOUNS = {
    "circle": (("circle", "circles"), ("round shape", "round shapes"), ("disc", "discs")),
    "square": (("square", "squares"), ("square shape", "square shapes")),
    "triangle": (("triangle", "triangles"), ("three-sided shape", "three-sided shapes")),
    "star": (("star", "stars"), ("five-pointed star", "five-pointed stars")),
    "heart": (("heart", "hearts"), ("heart shape", "heart shapes")),
}
COLORS = {"red": ("red", "scarlet"), "orange": ("orange", "tangerine"),
          "yellow": ("yellow", "lemon"), "green": ("green", "emerald"),
          "cyan": ("cyan", "aqua"), "blue": ("blue", "cobalt"),
          "purple": ("purple", "lilac"), "pink": ("pink", "rose")}
SIZES = {"small": ("small", "miniature", "petite"), "medium": ("mid-sized", "average-sized"),
         "large": ("huge", "oversized", "enormous")}
TEXTURE_WORDS = {"solid": ("plain-coloured", "unpatterned"), "striped": ("stripy", "banded"),
                 "dotted": ("spotty", "speckled"), "checkered": ("chequerboard", "tartan")}
TEXTURE_CLAUSES = {"solid": "without any pattern", "striped": "covered in stripes",
                   "dotted": "covered in spots", "checkered": "patterned like a chessboard"}
PLACES = {
    "top left": ("up in the left corner", "near the upper left"),
    "top": ("along the top edge", "near the top middle"),
    "top right": ("up in the right corner", "near the upper right"),
    "left": ("halfway down the left edge", "toward the left side"),
    "center": ("dead centre", "smack in the centre"),
    "right": ("halfway down the right edge", "toward the right side"),
    "bottom left": ("down in the left corner", "near the lower left"),
    "bottom": ("along the bottom edge", "near the bottom middle"),
    "bottom right": ("down in the right corner", "near the lower right"),
}
COUNTS = {1: ("one single", "just one", "exactly one"), 2: ("a couple of", "exactly two"),
          3: ("three separate", "exactly three"), 4: ("a group of four", "exactly four")}
RELATIONS = {"left_of": ("positioned left of", "sitting on the left side of"),
             "right_of": ("positioned right of", "sitting on the right side of"),
             "above": ("placed higher up than", "sitting over"),
             "below": ("placed lower down than", "sitting underneath")}
BACKDROPS = ("with a {} backdrop", "set against plain {}")
BACKDROP_WORDS = {"gray": ("grey", "gray")}
FRAMES = ("{}", "There is {}.", "The picture shows {}.", "An image containing {}.",
          "Please draw {}.", "I would like {}.")
JOINS = (" together with ", " as well as ", ", plus ")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def free_group(g: Group, rng: np.random.Generator) -> str:
    """One group in the free style, e.g. 'exactly two emerald stars covered in stripes,
    toward the left side' or 'a round shape that is scarlet'."""
    count = g.count if g.count is not None else 2
    noun = _pick(rng, NOUNS[g.shape])[count > 1]
    words = [_pick(rng, COUNTS[count])] if g.count is not None else ["some"]
    color_clause = g.color is not None and rng.random() < 0.5
    texture_clause = g.texture is not None and rng.random() < 0.5
    if g.size:
        words.append(_pick(rng, SIZES[g.size]))
    if g.texture and not texture_clause:
        words.append(_pick(rng, TEXTURE_WORDS[g.texture]))
    if g.color and not color_clause:
        words.append(_pick(rng, COLORS[g.color]))
    text = " ".join([*words, noun])
    if color_clause:  # "... that is red [and covered in stripes]"
        text += f" that {'are' if count > 1 else 'is'} {_pick(rng, COLORS[g.color])}"
        if texture_clause:
            text += " and " + TEXTURE_CLAUSES[g.texture]
    elif texture_clause:
        text += " " + TEXTURE_CLAUSES[g.texture]
    if g.position:
        text += ", " + _pick(rng, PLACES[g.position])
    return text


def free_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A free-style prompt stating exactly what `scene` states."""
    parts: list[str] = []
    related = set()
    for r in scene.relations:
        parts.append(f"{free_group(scene.groups[r.subject], rng)} "
                     f"{_pick(rng, RELATIONS[r.relation])} "
                     f"{free_group(scene.groups[r.object], rng)}")
        related |= {r.subject, r.object}
    parts += [free_group(g, rng) for i, g in enumerate(scene.groups) if i not in related]
    order = rng.permutation(len(parts))
    text = parts[order[0]]
    for k in order[1:]:
        text += _pick(rng, JOINS) + parts[k]
    if scene.background:
        word = _pick(rng, BACKDROP_WORDS.get(scene.background, (scene.background,)))
        text += " " + _pick(rng, BACKDROPS).format(word)
    return _pick(rng, FRAMES).format(text)
