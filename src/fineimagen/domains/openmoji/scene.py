"""OpenMoji scenes: 1-3 groups of identical emoji objects in the 9 cells, with counts 1-4,
3 sizes and relations, over a light background; their specs, captions and splits.

A spec of this domain: {"domain": "openmoji", "background": "light gray", "objects":
[{"object": "red apple", "count": 2, "position": "top left", "size": "small"}], "relations":
[{"subject": 0, "relation": "left_of", "object": 1}]}; an object's colour is its own, so a
caption names the object ("two red apples at the top left and a cat in the center").

Counts are worded with the shapes' count words and the name's plural: the head noun (the
last word, or the one before " with", " and" or " of") takes -s/-es/-ies, with a few
irregular ones (mouse -> mice, fish -> fish); names that are plural already are counted in
their unit ("a bunch of grapes", "two bunches of grapes"; `UNITS`).

Splits: `heldout` object x cell x count combinations (a stable tenth of them, by hash) never
appear in `train` scenes; the other names (aliases) of a stable half of the objects never
appear in training captions and make the `paraphrase` eval prompts.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from ...errors import InputError
from ..shapes import vocab
from ..shapes.captions import (
    COUNT_WORDS,
    INVERSE,
    PLURAL_RELATION_PHRASES,
    POSITION_PHRASES,
    RELATION_PHRASES,
    SIZE_WORDS,
)
from ..shapes.scene import (
    Group,
    PlacedObject,
    Relation,
    Scene,
    layout,
    relation_holds,
    relations_hold,
)
from .colors import GENEVAL_COLORS
from .render import glyph
from .vocab import character, other_names

DOMAIN = "openmoji"
BACKGROUNDS = ("light gray", "pale blue")
# an object's extent by size class, as a fraction of the side (small: 12.8 px at 64 px)
SIZE_FRACTION = {"small": 0.2, "medium": 0.26, "large": 0.33}
COUNT_WEIGHTS = (0.4, 0.25, 0.2, 0.15)  # counts 1-4
RELATION_SHARE = 0.3  # training captions of two or more groups that state a relation
UNITS = {"grapes": ("bunch of grapes", "bunches of grapes"),
         "cherries": ("pair of cherries", "pairs of cherries"),
         "books": ("stack of books", "stacks of books"),
         "eyeglasses": ("pair of eyeglasses", "pairs of eyeglasses")}
IRREGULAR = {"mouse": "mice", "fish": "fish", "t-shirt": "t-shirts", "cactus": "cacti",
             "knife": "knives", "leaf": "leaves", "sheep": "sheep"}


@dataclass(frozen=True)
class EmojiGroup:
    object: str
    count: int | None = None
    position: str | None = None
    size: str | None = None
    color: str | None = None  # one of colors.GENEVAL_COLORS: the glyph recoloured to it

    def fields(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class EmojiScene:
    groups: tuple[EmojiGroup, ...]
    background: str | None = None
    relations: tuple[Relation, ...] = ()
    domain: str = DOMAIN  # the registered domain (vocabulary) it was read in

    def to_spec(self) -> dict:
        spec: dict = {"domain": self.domain}
        if self.background is not None:
            spec["background"] = self.background
        spec["objects"] = [g.fields() for g in self.groups]
        if self.relations:
            spec["relations"] = [r.to_spec() for r in self.relations]
        return spec


def parse_emoji_spec(spec: dict, names: tuple[str, ...], domain: str = DOMAIN) -> EmojiScene:
    """An EmojiScene from a spec dict, its objects named from `names` (the vocabulary of
    `domain`); InputError naming the first bad field."""
    if not isinstance(spec, dict) or not isinstance(spec.get("objects"), list) \
            or not 1 <= len(spec["objects"]) <= 3:
        raise InputError("an openmoji spec needs 'objects': a list of 1-3 groups")
    unknown = set(spec) - {"domain", "objects", "background", "relations"}
    if unknown:
        raise InputError(f"unknown scene key {sorted(unknown)[0]!r} "
                         "(allowed: domain, objects, background, relations)")
    groups = []
    for i, obj in enumerate(spec["objects"]):
        said = obj.get("object") if isinstance(obj, dict) else obj
        if not isinstance(obj, dict) or said not in names:
            raise InputError(f"object {i}: 'object' must name one of the vocabulary's "
                             f"objects, got {said!r}")
        extra = set(obj) - {"object", "count", "position", "size", "color"}
        if extra:
            raise InputError(f"object {i}: unknown keys {sorted(extra)} (an openmoji object "
                             "has object, count, position, size, color)")
        for key, allowed in (("count", vocab.COUNTS), ("position", vocab.POSITIONS),
                             ("size", vocab.SIZES), ("color", GENEVAL_COLORS)):
            if key in obj and obj[key] not in allowed:
                raise InputError(f"object {i}: {key} {obj[key]!r} is not one of {allowed}")
        groups.append(EmojiGroup(**obj))
    background = spec.get("background")
    if background is not None and background not in BACKGROUNDS:
        raise InputError(f"background {background!r} is not one of {BACKGROUNDS}")
    relations = tuple(Relation(**r) for r in spec.get("relations", []))
    return EmojiScene(tuple(groups), background, relations, domain)


def emoji_category(scene: EmojiScene) -> str:
    """The category a spec belongs to, by what it constrains."""
    if scene.relations:
        return "relation"
    if len(scene.groups) >= 2:
        return "two_objects"
    g = scene.groups[0]
    if g.position is not None:
        return "position"
    if g.size is not None:
        return "size"
    return "counting" if (g.count or 1) > 1 else "single_object"


def is_heldout(name: str, position: str, count: int) -> bool:
    """One tenth of the object x cell x count combinations, by a stable hash."""
    return zlib.crc32(f"{name}|{position}|{count}".encode()) % 10 == 0


def alias_heldout(name: str) -> bool:
    """Half of the objects keep their other names out of training captions."""
    return zlib.crc32(f"alias|{name}".encode()) % 2 == 0


def emoji_layout(scene: EmojiScene, rng: np.random.Generator) -> list[PlacedObject] | None:
    """Objects placed by the shapes' layout at the emoji sizes; `shape` holds the name."""
    proxy = Scene(tuple(Group(shape=g.object, color=g.color or "", texture="", size=g.size,
                              position=g.position, count=g.count) for g in scene.groups))
    return layout(proxy, rng, sizes=SIZE_FRACTION)


def sample_emoji_scene(rng: np.random.Generator, names: tuple[str, ...],
                       split: str = "train", colors: tuple[str, ...] = (),
                       domain: str = DOMAIN) -> tuple[EmojiScene, list[PlacedObject]]:
    """A random complete scene: `train` avoids every held-out combination, `heldout` gives
    its first group one. With `colors`, each group is one of them with RECOLOR_SHARE, else
    its glyph as drawn (its colour then unstated: a many-coloured glyph has no one name)."""
    if split not in ("train", "heldout"):
        raise InputError(f"unknown split {split!r} (choose from train, heldout)")
    for _ in range(200):
        n = int(rng.choice((1, 2, 3), p=(0.4, 0.35, 0.25)))
        objects = [names[int(k)] for k in rng.choice(len(names), n, replace=False)]
        cells = [str(c) for c in rng.choice(vocab.POSITIONS, n, replace=False)]
        groups = []
        for k, (name, cell) in enumerate(zip(objects, cells, strict=True)):
            count = int(rng.choice(vocab.COUNTS, p=COUNT_WEIGHTS))
            color = str(rng.choice(colors)) if colors and rng.random() < RECOLOR_SHARE \
                else None
            groups.append(EmojiGroup(name, count, cell, str(rng.choice(vocab.SIZES)), color))
            held = is_heldout(name, cell, count)
            if held != (split == "heldout" and k == 0):
                break
        else:
            scene = EmojiScene(tuple(groups), str(rng.choice(BACKGROUNDS)), domain=domain)
            placed = emoji_layout(scene, rng)
            if placed is not None:
                return scene, placed
    raise InputError("no openmoji scene could be laid out in 200 draws")


RECOLOR_SHARE = 0.5  # of training groups with colours: recoloured (else natural)
GENEVAL_PHRASING_SHARE = 0.3  # of their captions: in GenEval's phrasing
POSITION_MARGIN = 0.1  # GenEval's: a share of the two boxes' sizes along each axis
GENEVAL_RELATIONS = {"left_of": "left of", "right_of": "right of", "above": "above",
                     "below": "below"}


def box_relations(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
                  ) -> set[str]:
    """GenEval's relations of box a to box b ((x0, y0, x1, y1), y down): the centres'
    offset, shrunk along each axis by POSITION_MARGIN of the boxes' summed sizes, points
    mostly left, right, up or down ("left of", "right of", "above", "below")."""
    boxes = np.array([a, b], np.float64).reshape(2, 2, 2)  # [box, corner, xy]
    center_a, center_b = boxes.mean(axis=1)
    dim_a, dim_b = np.abs(boxes[:, 1] - boxes[:, 0])
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - POSITION_MARGIN * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    return {name for name, holds in (("left of", dx < -0.5), ("right of", dx > 0.5),
                                     ("above", dy < -0.5), ("below", dy > 0.5)) if holds}


def _extent_box(obj: PlacedObject) -> tuple[float, float, float, float]:
    """The glyph's visible box in its square extent (fractions of the side)."""
    w, h = glyph(character(obj.shape)).size
    half_w, half_h = obj.size * w / max(w, h) / 2, obj.size * h / max(w, h) / 2
    return (obj.x - half_w, obj.y - half_h, obj.x + half_w, obj.y + half_h)


def geneval_relations_hold(scene: EmojiScene, placed: list[PlacedObject]) -> bool:
    """Every relation of the scene holds by GenEval's box test between every object of its
    subject group and every object of its object group."""
    return all(GENEVAL_RELATIONS[r.relation] in box_relations(_extent_box(a), _extent_box(b))
               for r in scene.relations for a in placed if a.group == r.subject
               for b in placed if b.group == r.object)


def complete_emoji(scene: EmojiScene, rng: np.random.Generator):
    """The scene with every open attribute drawn (count 1, free cells, any size and
    background) and laid out, relations holding (in openmoji-coco, whose prompts are
    GenEval's, by GenEval's box test too); InputError when no layout is found."""
    for _ in range(200):
        cells = [c for c in vocab.POSITIONS if c not in {g.position for g in scene.groups}]
        order = [str(c) for c in rng.permutation(cells)]
        groups = tuple(EmojiGroup(g.object, g.count or 1, g.position or order[k],
                                  g.size or str(rng.choice(vocab.SIZES)), g.color)
                       for k, g in enumerate(scene.groups))
        full = EmojiScene(groups, scene.background or str(rng.choice(BACKGROUNDS)),
                          scene.relations, scene.domain)
        placed = emoji_layout(full, rng)
        if placed is not None and relations_hold(full, placed) and (
                scene.domain != "openmoji-coco" or geneval_relations_hold(full, placed)):
            return full, placed
    raise InputError(f"no layout of {scene.to_spec()} found in 200 draws")


def characters(scene: EmojiScene) -> dict[str, str]:
    return {g.object: character(g.object) for g in scene.groups}


# ----------------------------------------------------------------------------- captions
def plural(name: str) -> str:
    """'red apple' -> 'red apples', 'ear of maize' -> 'ears of maize', 'mouse' -> 'mice'."""
    if name in UNITS:
        return UNITS[name][1]
    words = name.split()
    head = next((i - 1 for i, w in enumerate(words) if w in ("with", "and", "of") and i),
                len(words) - 1)
    word = words[head]
    if word in IRREGULAR:
        word = IRREGULAR[word]
    elif word.endswith(("s", "sh", "ch", "x", "z")):
        word += "es"
    elif word.endswith("y") and word[-2:-1] not in "aeiou":
        word = word[:-1] + "ies"
    else:
        word += "s"
    return " ".join(words[:head] + [word] + words[head + 1:])


def object_words(name: str, count: int, said: str | None = None) -> str:
    """'two red apples', 'a bunch of grapes', 'an octopus' (`said`: the name to use)."""
    said = said or name
    unit = UNITS.get(said)
    noun = (unit[count > 1] if unit else plural(said) if count > 1 else said)
    if count == 1:
        return ("an " if noun[0] in "aeiou" else "a ") + noun
    return f"{COUNT_WORDS[count][0]} {noun}"


def _choose(rng, options):
    return options[int(rng.integers(len(options)))]


def name_for(name: str, rng: np.random.Generator, style: str) -> str:
    """The name a caption uses: `train` the canonical name or (for half of the objects)
    an alias; `paraphrase` a held-out alias where the object has one."""
    aliases = other_names(name)
    if style == "paraphrase" and alias_heldout(name) and aliases:
        return _choose(rng, aliases)
    if style == "train" and not alias_heldout(name) and aliases and rng.random() < 0.4:
        return _choose(rng, aliases)
    return name


def group_words(g: EmojiGroup, rng: np.random.Generator, style: str = "canonical") -> str:
    count = g.count or 1
    said = name_for(g.object, rng, style)
    text = object_words(g.object, count, said)
    adjectives = ([_choose(rng, SIZE_WORDS[g.size])] if g.size else []) + \
        ([g.color] if g.color else [])
    if adjectives:  # "two small blue bananas": size and colour after the count word
        first, rest = text.split(" ", 1)
        said = " ".join(adjectives)
        if first in ("a", "an"):
            first = "an" if said[0] in "aeiou" else "a"
        text = f"{first} {said} {rest}"
    if g.position:
        text += " " + _choose(rng, POSITION_PHRASES[g.position])
    return text


def emoji_caption(scene: EmojiScene, rng: np.random.Generator, style: str = "canonical",
                  geneval: bool = False) -> str:
    """A caption stating exactly what `scene` states, e.g. 'two apples at the top left and a
    cat in the center on a light gray background'. `style`: canonical (canonical names),
    train (aliases of the training half), paraphrase (held-out aliases). `geneval`: in
    GenEval's phrasing ("a photo of a zebra right of a bed")."""
    units, related = [], set()
    for r in scene.relations:
        first, words, second = r.subject, r.relation, r.object
        if rng.random() < 0.5:
            first, words, second = second, INVERSE[words], first
        table = PLURAL_RELATION_PHRASES if (scene.groups[first].count or 1) > 1 else \
            RELATION_PHRASES
        said = GENEVAL_RELATIONS[words] if geneval else _choose(rng, table[words])
        units.append(f"{group_words(scene.groups[first], rng, style)} {said} "
                     f"{group_words(scene.groups[second], rng, style)}")
        related |= {r.subject, r.object}
    units += [group_words(g, rng, style) for i, g in enumerate(scene.groups) if i not in related]
    units = [units[int(k)] for k in rng.permutation(len(units))]
    text = units[0] if len(units) == 1 else ", ".join(units[:-1]) + " and " + units[-1]
    if scene.background:
        text += f" on a {scene.background} background"
    return "a photo of " + text if geneval else text


def training_statement(scene: EmojiScene, placed: list[PlacedObject],
                       rng: np.random.Generator) -> EmojiScene:
    """What a training caption states: each attribute kept with a random share (count and
    object always), and with RELATION_SHARE a relation the objects satisfy in place of
    the two groups' cells."""
    keep = 1.0 if rng.random() < 0.25 else rng.uniform(0.0, 1.0)
    groups = [EmojiGroup(g.object, g.count,
                         g.position if rng.random() < keep else None,
                         g.size if rng.random() < keep else None,
                         g.color if rng.random() < keep else None) for g in scene.groups]
    background = scene.background if rng.random() < keep * 0.6 else None
    relations: tuple[Relation, ...] = ()
    if len(groups) >= 2 and rng.random() < RELATION_SHARE:
        i, j = (int(k) for k in rng.choice(len(groups), 2, replace=False))
        points = [[(o.x, o.y) for o in placed if o.group == k] for k in (i, j)]
        holding = [r for r in vocab.RELATIONS if relation_holds(r, *points)]
        if holding:
            relations = (Relation(i, _choose(rng, holding), j),)
            for k in (i, j):
                groups[k] = replace(groups[k], position=None)
    return EmojiScene(tuple(groups), background, relations, scene.domain)


# ----------------------------------------------------------------------------- samples
@dataclass
class EmojiSample:
    image: np.ndarray  # uint8 [size, size, 3]
    caption: str
    scene: EmojiScene  # complete: every attribute as rendered
    placed: list[PlacedObject]


def make_emoji_sample(index: int, size: int, names: tuple[str, ...], split: str = "train",
                      seed: int = 0, colors: tuple[str, ...] = (),
                      domain: str = DOMAIN) -> EmojiSample:
    """Sample `index` of the stream (seed, split): a random scene, its render and a training
    caption (a random share of its attributes, names and aliases of the training half;
    with `colors`, glyphs recoloured and, in a share of captions, GenEval's phrasing)."""
    from ..shapes.samples import check_side
    from .render import render_emoji

    check_side(size)
    rng = np.random.default_rng([seed, index, 10 if split == "train" else 11])
    scene, placed = sample_emoji_scene(rng, names, split, colors, domain)
    said = training_statement(scene, placed, rng)
    caption = emoji_caption(said, rng, "train", geneval=bool(colors) and
                            rng.random() < GENEVAL_PHRASING_SHARE)
    return EmojiSample(render_emoji(placed, scene.background, size, characters(scene)),
                       caption, scene, placed)
