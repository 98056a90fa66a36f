"""Reading a prompt in the OpenMoji domains: GenEval's phrasing and the captions' own.

"a photo of two blue bananas right of a car" -> two blue bananas, a car, the bananas right
of the car. A prompt is an optional frame ("a photo of"), then one or two object phrases
joined by "and" or a relation ("left of", "right of", "above", "below", with or without
"to the"); an object phrase is a count word (a, an, one .. four), an optional colour of
GenEval's ten and an object's name, singular or plural (GenEval's plain "+s" plurals too:
"toothbrushs", "sheeps"). Anything else is refused with the word that could not be read.
"""

from __future__ import annotations

import re

from ...errors import InputError
from ..shapes.scene import Relation
from .colors import GENEVAL_COLORS
from .scene import EmojiGroup, EmojiScene, plural

FRAMES = ("a photo of ", "an image of ", "a picture of ", "a drawing of ")
COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
RELATIONS = {"to the left of": "left_of", "to the right of": "right_of", "left of": "left_of",
             "right of": "right_of", "above": "above", "below": "below"}


def _names_by_form(names: tuple[str, ...]) -> dict[str, str]:
    forms = {}
    for name in names:
        for form in (name, plural(name), name + "s", name + "es"):
            forms.setdefault(form, name)
    return forms


def read_prompt(prompt: str, names: tuple[str, ...], domain: str) -> EmojiScene:
    """The scene a prompt states in one of the OpenMoji domains (module docstring)."""
    text = " ".join(re.sub(r"[^a-z ]", " ", prompt.lower()).split())
    for frame in FRAMES:
        if text.startswith(frame):
            text = text[len(frame):]
            break
    if not text:
        raise InputError(f"nothing to read in {prompt!r}")
    pattern = "|".join(re.escape(r) for r in sorted(RELATIONS, key=len, reverse=True))
    parts = re.split(rf" (and|{pattern}) ", text, maxsplit=1)
    forms = _names_by_form(names)
    groups = [_group(part, forms, prompt) for part in parts[::2]]
    relations: tuple[Relation, ...] = ()
    if len(parts) == 3 and parts[1] != "and":
        relations = (Relation(0, RELATIONS[parts[1]], 1),)
    return EmojiScene(tuple(groups), None, relations, domain)


def _group(phrase: str, forms: dict[str, str], prompt: str) -> EmojiGroup:
    words = phrase.split()
    if not words or words[0] not in COUNTS:
        raise InputError(f"{prompt!r}: expected a count word (a, an, one .. four) before "
                         f"{phrase!r}")
    count, rest = COUNTS[words[0]], words[1:]
    color = None
    if rest and rest[0] in GENEVAL_COLORS and " ".join(rest) not in forms:
        color, rest = rest[0], rest[1:]
    name = forms.get(" ".join(rest))
    if name is None:
        raise InputError(f"{prompt!r}: {' '.join(rest)!r} is no object of this vocabulary")
    return EmojiGroup(name, count, None, None, color)
