"""The exact judge of a shapes image against its spec, and the category of a spec.

An image is correct when its detected objects can be dealt out to the spec's groups, every object to
one group, so that each group gets exactly its count (at least one object where the count
is not set), each object has its group's shape, colour, size and texture where the spec
sets them, and each group's centroid lies in its position cell where set. Attributes the
spec leaves open are free per object, as in GenEval: "two circles" is right with one red
and one blue circle. Unasked-for objects make an image wrong. Texture is not judged below
64 px: there the texture constraints are dropped and texture-category prompts are left
out of the table.
"""

from __future__ import annotations

from . import vocab
from .parser import MIN_TEXTURE_SIDE, ParsedScene, position_of_objects
from .scene import Scene, relation_holds


def category_of(scene: Scene) -> str:
    """The GenEval category a spec belongs to, by the attributes it constrains."""
    groups = scene.groups
    if scene.relations:
        return "relation"
    if len(groups) >= 2:
        colored = all(g.color for g in groups) and len({g.color for g in groups}) == len(groups)
        return "color_attribution" if colored else "two_objects"
    g = groups[0]
    for key, name in (("texture", "texture"), ("position", "position"), ("size", "size"),
                      ("color", "colors")):
        if getattr(g, key) is not None:
            return name
    return "counting" if g.count not in (None, 1) else "single_object"


def is_unseen(scene: Scene) -> bool:
    return any(vocab.heldout_combinations(g.fields()) for g in scene.groups)


def could_match(scene, parsed) -> bool:
    """The checks before the search, in every domain: the stated background drawn, and as
    many objects as the counts ask (at least one a group, at most MAX_OBJECTS)."""
    if parsed.background is None or scene.background not in (None, parsed.background):
        return False
    n, counts = len(parsed.objects), [g.count for g in scene.groups]
    if None not in counts and sum(counts) != n:
        return False
    return len(counts) <= n <= MAX_OBJECTS


def is_correct(scene: Scene, parsed: ParsedScene, side: int) -> bool:
    """Whether a parsed image obeys a spec (the matching rule of the module docstring)."""
    if not could_match(scene, parsed):
        return False
    objects = parsed.objects
    ignored = ("position", "count") + (("texture",) if side < MIN_TEXTURE_SIDE else ())
    wanted = [{k: v for k, v in g.fields().items() if k not in ignored} for g in scene.groups]
    fits = [[j for j, w in enumerate(wanted) if all(getattr(o, k) == v for k, v in w.items())]
            for o in objects]
    return _deal(scene, objects, fits, [[] for _ in scene.groups], 0)


MAX_OBJECTS = 12  # no spec asks for more (3 groups of 4); more is wrong without a search

ATTRIBUTION_FAULTS = ("right", "bound, extra objects", "swapped", "one colour", "other")


def attribution_fault(scene: Scene, parsed: ParsedScene, side: int) -> str:
    """How a colour-attribution image (two or more groups of distinct colours) went, one of
    ATTRIBUTION_FAULTS: right; every group's shape shows in its colour, but with more objects
    than asked for; swapped (every group's shape shows only in another group's colour); all
    objects (two or more) one colour; other."""
    if is_correct(scene, parsed, side):
        return "right"
    objects = parsed.objects

    def shows(shape, color):
        return any(o.color == color and shape in (None, o.shape) for o in objects)

    groups = scene.groups
    asked = sum(g.count or 1 for g in groups)
    if all(shows(g.shape, g.color) for g in groups) and len(objects) > asked:
        return "bound, extra objects"
    if all(not shows(g.shape, g.color)
           and any(shows(g.shape, h.color) for h in groups if h is not g) for g in groups):
        return "swapped"
    if len(objects) > 1 and len({o.color for o in objects}) == 1:
        return "one colour"
    return "other"


def _deal(scene: Scene, objects, fits, dealt: list[list], i: int) -> bool:
    """Depth-first search over the ways to give objects i.. to the groups they fit."""
    groups = scene.groups
    if i == len(objects):
        return all(_group_ok(g, members) for g, members in zip(groups, dealt, strict=True)) \
            and all(relation_holds(r.relation, _points(dealt[r.subject]), _points(dealt[r.object]))
                    for r in scene.relations)
    for j in fits[i]:
        if groups[j].count is not None and len(dealt[j]) == groups[j].count:
            continue
        dealt[j].append(objects[i])
        found = _deal(scene, objects, fits, dealt, i + 1)
        dealt[j].pop()
        if found:
            return True
    return False


def _points(objects) -> list[tuple[float, float]]:
    return [(o.x, o.y) for o in objects]


def _group_ok(group, members: list) -> bool:
    if not members or (group.count is not None and len(members) != group.count):
        return False
    return group.position is None or position_of_objects(members) == group.position
