"""Scene specs: parsing and validation, random completion, and layout of objects on the canvas.

A *spec* may leave any attribute but `shape` open; `complete` fills the open ones at random
and `layout` places every object. Coordinates are fractions of the image side, y downwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from itertools import permutations

import numpy as np

from ...errors import InputError
from ...files import loads
from . import vocab

MAX_GROUPS = 3
GAP = 0.09  # least distance between the bounding boxes of two objects
MARGIN = 0.02  # least distance between an object and the image border
CELL_MARGIN = 0.02  # a group's centroid keeps this far inside its cell
GROUP_JITTER = 0.03  # random shift of a group's centre from its cell's centre
BOX_MARGIN = 0.03  # an object's region box exceeds its extent by this (control, SR hints)

# Arrangements of a group's objects, as offsets in units of (object size + GAP).
ARRANGEMENTS = {
    1: [((0.0, 0.0),)],
    2: [((-0.5, 0.0), (0.5, 0.0)), ((0.0, -0.5), (0.0, 0.5))],
    3: [
        ((-1.0, 0.0), (0.0, 0.0), (1.0, 0.0)),
        ((0.0, -1.0), (0.0, 0.0), (0.0, 1.0)),
        ((-0.5, 0.5), (0.5, 0.5), (0.0, -0.5)),
        ((-0.5, -0.5), (0.5, -0.5), (0.0, 0.5)),
    ],
    4: [
        ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)),
        ((-1.5, 0.0), (-0.5, 0.0), (0.5, 0.0), (1.5, 0.0)),
        ((0.0, -1.5), (0.0, -0.5), (0.0, 0.5), (0.0, 1.5)),
    ],
}


@dataclass(frozen=True)
class Group:
    """A group of `count` identical objects; None means "not constrained"."""

    shape: str
    color: str | None = None
    size: str | None = None
    position: str | None = None
    texture: str | None = None
    count: int | None = None

    def fields(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Relation:
    """Group `subject` lies `relation` (vocab.RELATIONS) of group `object`."""

    subject: int
    relation: str
    object: int

    def to_spec(self) -> dict:
        return {"subject": self.subject, "relation": self.relation, "object": self.object}


@dataclass(frozen=True)
class Scene:
    groups: tuple[Group, ...]
    background: str | None = None
    relations: tuple[Relation, ...] = ()

    def to_spec(self) -> dict:
        spec: dict = {"objects": [g.fields() for g in self.groups]}
        if self.background is not None:
            spec = {"background": self.background, **spec}
        if self.relations:
            spec["relations"] = [r.to_spec() for r in self.relations]
        return spec

    def has_count(self) -> bool:
        """Some group states a count above one."""
        return any((g.count or 1) > 1 for g in self.groups)

    def is_complete(self) -> bool:
        return self.background is not None and all(
            None not in asdict(g).values() for g in self.groups
        )


@dataclass(frozen=True)
class PlacedObject:
    """One object on the canvas: centre (x, y) and extent `size`, as fractions of the side."""

    group: int
    shape: str
    color: str
    texture: str
    x: float
    y: float
    size: float

    def box(self, margin: float = BOX_MARGIN) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): its extent grown by `margin` on each side, within [0, 1]."""
        half = self.size / 2 + margin
        return (max(0.0, self.x - half), max(0.0, self.y - half),
                min(1.0, self.x + half), min(1.0, self.y + half))


# ----------------------------------------------------------------------------- parsing
def parse_spec(spec: dict | str) -> Scene:
    """Validate a scene spec (a dict or JSON text) and return it as a `Scene`."""
    if isinstance(spec, str):
        spec = loads(spec)
    if not isinstance(spec, dict):
        raise InputError("a scene spec must be a JSON object with an 'objects' list")
    unknown = set(spec) - {"domain", "objects", "background", "relations"}
    if unknown:
        raise InputError(f"unknown scene key {sorted(unknown)[0]!r} "
                         "(allowed: domain, objects, background, relations)")
    if spec.get("domain", "shapes") != "shapes":
        raise InputError(f"a shapes spec says domain 'shapes', not {spec['domain']!r}")
    background = spec.get("background")
    if background is not None and background not in vocab.BACKGROUNDS:
        raise InputError(_unknown("background", background, vocab.BACKGROUNDS))
    objects = spec.get("objects")
    if not isinstance(objects, list) or not 1 <= len(objects) <= MAX_GROUPS:
        raise InputError(f"'objects' must be a list of 1 to {MAX_GROUPS} object groups")
    groups = tuple(_parse_group(o, i) for i, o in enumerate(objects))
    _check_distinct(groups)
    relations = _parse_relations(spec.get("relations", []), len(groups))
    scene = Scene(groups, background, relations)
    if relations and _relation_cells(scene) is None:
        raise InputError("the relations contradict each other or the stated positions")
    return scene


def _parse_relations(relations: object, n_groups: int) -> tuple[Relation, ...]:
    """Validate the `relations` list: subject and object index distinct groups, and each
    group takes part in at most one relation (what the captions and planner can say)."""
    if not isinstance(relations, list):
        raise InputError("'relations' must be a list of {subject, relation, object}")
    parsed, used = [], set()
    for k, rel in enumerate(relations):
        where = f"relation {k}"
        if not isinstance(rel, dict) or set(rel) != {"subject", "relation", "object"}:
            raise InputError(f"{where}: must be an object with keys subject, relation, object")
        for key in ("subject", "object"):
            index = rel[key]
            if isinstance(index, bool) or not isinstance(index, int) \
                    or not 0 <= index < n_groups:
                raise InputError(f"{where}: {key} must be an object index from 0 to "
                                 f"{n_groups - 1}, got {index!r}")
        if rel["relation"] not in vocab.RELATIONS:
            raise InputError(f"{where}: " + _unknown("relation", rel["relation"],
                                                     vocab.RELATIONS))
        if rel["subject"] == rel["object"]:
            raise InputError(f"{where}: subject and object are the same group")
        if {rel["subject"], rel["object"]} & used:
            raise InputError(f"{where}: a group takes part in at most one relation")
        used |= {rel["subject"], rel["object"]}
        parsed.append(Relation(rel["subject"], rel["relation"], rel["object"]))
    return tuple(parsed)


def relation_holds(relation: str, subject: list[tuple[float, float]],
                   other: list[tuple[float, float]],
                   margin: float = vocab.RELATION_MARGIN) -> bool:
    """Whether every (x, y) point of `subject` lies `relation` of every point of `other`,
    at least `margin` apart along the relation's axis (y downwards)."""
    axis, sign = {"left_of": (0, 1), "right_of": (0, -1),
                  "above": (1, 1), "below": (1, -1)}[relation]
    return all(sign * (b[axis] - a[axis]) >= margin for a in subject for b in other)


def _cells_hold(relation: str, a: str, b: str) -> bool:
    """The relation between two cells (strictly another column or row)."""
    (ra, ca), (rb, cb) = vocab.cell_of(a), vocab.cell_of(b)
    return {"left_of": ca < cb, "right_of": ca > cb, "above": ra < rb,
            "below": ra > rb}[relation]


@lru_cache(maxsize=256)
def _relation_cells(scene: Scene) -> tuple[tuple[str, ...], ...] | None:
    """Every assignment of distinct cells to the groups that keeps their stated positions
    and satisfies the relations at cell level; None when there is none."""
    options = tuple(
        cells for cells in permutations(vocab.POSITIONS, len(scene.groups))
        if all(g.position in (None, c) for g, c in zip(scene.groups, cells, strict=True))
        and all(_cells_hold(r.relation, cells[r.subject], cells[r.object])
                for r in scene.relations)
    )
    return options or None


def relations_hold(scene: Scene, placed: list[PlacedObject]) -> bool:
    """Whether laid-out objects satisfy every relation of the scene."""
    def points(group):
        return [(o.x, o.y) for o in placed if o.group == group]

    return all(relation_holds(r.relation, points(r.subject), points(r.object))
               for r in scene.relations)


def _parse_group(obj: object, index: int) -> Group:
    where = f"object {index}"
    if not isinstance(obj, dict):
        raise InputError(f"{where}: must be a JSON object")
    unknown = set(obj) - set(vocab.ATTRIBUTES)
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if "shape" not in obj:
        raise InputError(f"{where}: 'shape' is required")
    for key in vocab.ATTRIBUTES:
        value = obj.get(key)
        if value is None and key != "shape":
            continue
        allowed = vocab.VOCAB[key]
        if key == "count" and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{where}: count must be an integer from 1 to 4, got {value!r}")
        if value not in allowed:
            raise InputError(f"{where}: " + _unknown(key, value, allowed))
    return Group(**obj)


def _unknown(key: str, value: object, allowed: tuple) -> str:
    return f"unknown {key} {value!r} (choose from {', '.join(map(str, allowed))})"


def _check_distinct(groups: tuple[Group, ...]) -> None:
    """Groups must be told apart: different positions, and different shape or colour."""
    for i, a in enumerate(groups):
        for j in range(i):
            b = groups[j]
            if a.position is not None and a.position == b.position:
                raise InputError(f"objects {j} and {i} both take position {a.position!r}")
            if a.shape == b.shape and a.color is not None and a.color == b.color:
                raise InputError(
                    f"objects {j} and {i} are both {a.color} {a.shape}s: groups in one scene "
                    "differ in shape or colour (use count for several identical objects)"
                )


# ----------------------------------------------------------------------------- completion
def complete(
    scene: Scene, rng: np.random.Generator, avoid_heldout: bool = False, tries: int = 200,
    per_group: bool = False, fixed: dict[int, list[PlacedObject]] | None = None,
) -> tuple[Scene, list[PlacedObject]]:
    """Fill every open attribute at random and lay the scene out.

    With `avoid_heldout`, open attributes never form a held-out combination (training data).
    With `per_group`, each group is placed with its own random stream, and `fixed` groups
    keep the objects given (see `layout`).
    Raises InputError when no completion of the spec fits on the canvas.
    """
    for _ in range(tries):
        filled = _fill(_with_relation_cells(scene, rng), rng, avoid_heldout)
        if filled is None:
            continue
        placed = layout(filled, rng, per_group, fixed)
        if placed is not None and relations_hold(filled, placed):
            return filled, placed
    raise InputError("the scene does not fit on the canvas (too many or too large objects)")


def _with_relation_cells(scene: Scene, rng: np.random.Generator) -> Scene:
    """A scene with relations gets cells for its open positions that satisfy them."""
    if not scene.relations:
        return scene
    options = _relation_cells(scene)
    if options is None:
        raise InputError("the relations contradict each other or the stated positions")
    cells = options[int(rng.integers(len(options)))]
    return replace(scene, groups=tuple(replace(g, position=c)
                                       for g, c in zip(scene.groups, cells, strict=True)))


def _fill(scene: Scene, rng: np.random.Generator, avoid_heldout: bool) -> Scene | None:
    background = scene.background or str(rng.choice(vocab.BACKGROUNDS))
    used_positions = {g.position for g in scene.groups if g.position}
    used_looks: set[tuple[str, str]] = {(g.shape, g.color) for g in scene.groups if g.color}
    groups = []
    for g in scene.groups:
        for _ in range(20):
            new = replace(
                g,
                color=g.color or str(rng.choice(vocab.COLORS)),
                size=g.size or str(rng.choice(vocab.SIZES)),
                texture=g.texture or str(rng.choice(vocab.TEXTURES)),
                count=g.count or int(rng.choice(vocab.COUNTS, p=(0.4, 0.25, 0.2, 0.15))),
                position=g.position or str(rng.choice(vocab.POSITIONS)),
            )
            fresh_look = g.color is not None or (new.shape, new.color) not in used_looks
            fresh_cell = g.position is not None or new.position not in used_positions
            allowed = not (avoid_heldout and vocab.heldout_combinations(new.fields()))
            if fresh_look and fresh_cell and allowed:
                break
        else:
            return None
        used_positions.add(new.position)
        used_looks.add((new.shape, new.color))
        groups.append(new)
    return Scene(tuple(groups), background, scene.relations)


def layout(scene: Scene, rng: np.random.Generator, per_group: bool = False,
           fixed: dict[int, list[PlacedObject]] | None = None,
           sizes: dict[str, float] | None = None) -> list[PlacedObject] | None:
    """Place every object of a complete scene without overlap; None when it does not fit.
    With `per_group`, group i draws from its own stream (one key from `rng`, then i), so a
    change to one group moves no other unless they collide (edits by planning). `fixed`
    (with `per_group`) maps group indices to objects already placed, which those groups
    keep; the other groups are placed around them, trying longer on their streams.
    `sizes`: each size class's extent (a fraction of the side; default the shapes')."""
    sizes = sizes or vocab.SIZE_FRACTION
    fixed = fixed or {}
    if fixed and not per_group:
        raise ValueError("fixed groups need per_group layout")
    placed = [o for objects in fixed.values() for o in objects]
    key = int(rng.integers(2**62)) if per_group else None
    for index, g in enumerate(scene.groups):
        g_rng = rng if key is None else np.random.default_rng([key, index])
        if index in fixed:
            continue
        side = sizes[g.size] * (1 + g_rng.uniform(-1, 1) * vocab.SIZE_JITTER)
        objects = _place_group(index, g, side, placed, g_rng, tries=64 if fixed else 8)
        if objects is None:
            return None
        placed.extend(objects)
    return sorted(placed, key=lambda o: o.group)  # in group order, as drawn without fixed


def _place_group(index, g, side, placed, rng, tries=8):
    row, col = vocab.cell_of(g.position)
    options = ARRANGEMENTS[g.count]
    for _ in range(tries):
        offsets = np.array(options[rng.integers(len(options))]) * (side + GAP)
        centre = (np.array([col, row]) + 0.5) / 3 + rng.uniform(-1, 1, 2) * GROUP_JITTER
        points = offsets + centre
        lo = points.min(0) - side / 2 - MARGIN
        hi = points.max(0) + side / 2 + MARGIN
        points -= np.minimum(lo, 0) + np.maximum(hi - 1, 0)  # push inside the canvas
        cx, cy = points.mean(0)
        inside_cell = (
            col / 3 + CELL_MARGIN < cx < (col + 1) / 3 - CELL_MARGIN
            and row / 3 + CELL_MARGIN < cy < (row + 1) / 3 - CELL_MARGIN
        )
        low, high = points.min() - side / 2, points.max() + side / 2
        fits = low > MARGIN - 1e-9 and high < 1 - MARGIN + 1e-9  # wider groups cannot fit
        if not (inside_cell and fits):
            continue
        objects = [
            PlacedObject(index, g.shape, g.color, g.texture, float(x), float(y), float(side))
            for x, y in points
        ]
        if all(_apart(a, b) for a in objects for b in placed):
            return objects
    return None


def _apart(a: PlacedObject, b: PlacedObject) -> bool:
    reach = (a.size + b.size) / 2 + GAP
    return abs(a.x - b.x) >= reach or abs(a.y - b.y) >= reach


# ----------------------------------------------------------------------------- sampling
def sample_scene(
    rng: np.random.Generator, split: str = "train", n_groups: int | None = None
) -> tuple[Scene, list[PlacedObject]]:
    """A random complete scene of the split: `train` avoids every held-out combination,
    `heldout` gives one group a held-out combination."""
    if split not in ("train", "heldout"):
        raise InputError(f"unknown split {split!r} (choose from train, heldout)")
    for _ in range(100):  # a rare draw cannot be laid out at all: draw again
        n = n_groups or int(rng.choice((1, 2, 3), p=(0.4, 0.35, 0.25)))
        shapes = [str(s) for s in rng.choice(vocab.SHAPES, size=n)]
        groups = [Group(shape=s) for s in shapes]
        if split == "heldout":
            groups[0] = heldout_group(rng)
        try:
            return complete(Scene(tuple(groups)), rng, avoid_heldout=split == "train")
        except InputError:
            continue
    raise AssertionError("no scene could be laid out in 100 draws")


def heldout_group(rng: np.random.Generator) -> Group:
    """A partial group that uses one held-out combination, of a kind chosen at random."""
    kind = int(rng.integers(3))
    if kind == 0:
        shape, color = _pick(rng, vocab.HELDOUT_SHAPE_COLOR)
        return Group(shape=shape, color=color)
    if kind == 1:
        count, position = _pick(rng, vocab.HELDOUT_COUNT_POSITION)
        return Group(shape=str(rng.choice(vocab.SHAPES)), count=count, position=position,
                     size=str(rng.choice(("small", "medium"))))
    texture, shape = _pick(rng, vocab.HELDOUT_TEXTURE_SHAPE)
    return Group(shape=shape, texture=texture)


def _pick(rng: np.random.Generator, combos: frozenset) -> tuple:
    ordered = sorted(combos, key=str)
    return ordered[int(rng.integers(len(ordered)))]
