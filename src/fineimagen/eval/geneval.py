"""GenEval's prompts (Ghosh et al., NeurIPS 2023): its metadata read and checked, each
prompt as an `openmoji-coco` scene spec, its image layout written and read, and its
scoring rules applied with the exact OpenMoji evaluator in place of its COCO detector.

The rules (GenEval's `evaluate_images.py`, restated): per `include` group, the `count`
best-matching objects of its class must be found; where the group asks a colour, at least
`count` of them must show it; where it asks a position relative to an earlier group, every
one of them must stand in that relation to every counted object of that group (which must
itself have been matched), by `relative_position` with its 0.1 margin; an `exclude` group
fails the image when `count` or more objects of its class are found. An image whose
background is not the domain's fails. A tag's score is the share of correct images over
the covered prompts; `overall` is the mean of the six tags' scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..domains.openmoji.coco import GENEVAL_CLASSES, NOT_COVERED
from ..domains.openmoji.colors import GENEVAL_COLORS
from ..domains.openmoji.parser import UNKNOWN, EmojiObject, ParsedEmojiScene
from ..domains.openmoji.scene import box_relations
from ..errors import InputError
from ..files import read_jsonl

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = {"left of": "left_of", "right of": "right_of", "above": "above",
             "below": "below"}
DOMAIN = "openmoji-coco"


@dataclass
class GenEvalPrompt:
    index: int  # the line number from 0: the folder `<index:05d>`
    record: dict  # the line as read (written back beside the images)
    tag: str
    prompt: str
    spec: dict | None  # the openmoji-coco scene spec; None where a class is not covered
    uncovered: tuple[str, ...]  # the classes it names that no glyph draws


def read_metadata(path: str | Path) -> list[GenEvalPrompt]:
    """GenEval's `evaluation_metadata.jsonl`, every line checked (errors name the line)."""
    prompts = []
    for number, record in read_jsonl(path):
        try:
            prompts.append(_prompt(len(prompts), record))
        except InputError as err:
            raise InputError(f"{path}, line {number}: {err}") from None
    return prompts


def _prompt(index: int, record: dict) -> GenEvalPrompt:
    tag, prompt = record.get("tag"), record.get("prompt")
    if tag not in TAGS:
        raise InputError(f"tag {tag!r} is not one of {', '.join(TAGS)}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("'prompt' must be a string, not empty")
    include = record.get("include")
    if not isinstance(include, list) or not include:
        raise InputError("'include' must be a non-empty list of groups")
    for i, group in enumerate(include):
        _check_group(group, f"include {i}", earlier=i)
    exclude = record.get("exclude", [])
    if not isinstance(exclude, list):
        raise InputError("'exclude' must be a list of groups")
    for i, group in enumerate(exclude):
        _check_group(group, f"exclude {i}", earlier=0)
    names = [g["class"] for g in include + exclude]
    uncovered = tuple(dict.fromkeys(n for n in names if n in NOT_COVERED))
    spec = None if uncovered else to_spec(record)
    return GenEvalPrompt(index, record, tag, prompt, spec, uncovered)


def _check_group(group, where: str, earlier: int) -> None:
    if not isinstance(group, dict):
        raise InputError(f"{where}: a group must be an object")
    unknown = set(group) - {"class", "count", "color", "position"}
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if group.get("class") not in GENEVAL_CLASSES:
        raise InputError(f"{where}: class {group.get('class')!r} is not a GenEval class")
    count = group.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InputError(f"{where}: count must be a positive integer, got {count!r}")
    if "color" in group and group["color"] not in GENEVAL_COLORS:
        raise InputError(f"{where}: color {group['color']!r} is not one of GenEval's ten")
    if "position" in group:
        position = group["position"]
        if not (isinstance(position, list) and len(position) == 2
                and position[0] in RELATIONS and isinstance(position[1], int)
                and 0 <= position[1] < earlier):
            raise InputError(f"{where}: position must be [RELATION, J] with RELATION one of "
                             f"{', '.join(RELATIONS)} and J an earlier group")


def to_spec(record: dict) -> dict:
    """The openmoji-coco scene spec a covered GenEval line states: each include group an
    object group (its count exact: an exclude of count + 1 says no more), its colour, and
    its position as a relation to the earlier group."""
    objects, relations = [], []
    for i, group in enumerate(record["include"]):
        obj = {"object": group["class"], "count": group["count"]}
        if "color" in group:
            obj["color"] = group["color"]
        objects.append(obj)
        if "position" in group:
            relation, j = group["position"]
            relations.append({"subject": i, "relation": RELATIONS[relation], "object": j})
    spec = {"domain": DOMAIN, "objects": objects}
    if relations:
        spec["relations"] = relations
    return spec


def relative_position(a: EmojiObject, b: EmojiObject, side: int) -> set[str]:
    """GenEval's relations of object a to object b, by their boxes (scene.box_relations)."""
    return box_relations(tuple(v / side for v in a.box), tuple(v / side for v in b.box))


def is_correct(record: dict, parsed: ParsedEmojiScene, side: int) -> bool:
    """Whether a parsed image passes a GenEval line by GenEval's rules (module docstring)."""
    if parsed.background is None:
        return False
    found: dict[str, list[EmojiObject]] = {}
    for obj in sorted(parsed.objects, key=lambda o: -o.score):  # best matches first
        if obj.name != UNKNOWN:
            found.setdefault(obj.name, []).append(obj)
    matched: list[list[EmojiObject] | None] = []
    correct = True
    for group in record["include"]:
        objects = found.get(group["class"], [])[:group["count"]]
        ok = len(objects) >= group["count"]
        if ok and "color" in group:
            ok = sum(o.color == group["color"] for o in objects) >= group["count"]
        if ok and "position" in group:
            relation, j = group["position"]
            target = matched[j]
            ok = target is not None and all(
                relation in relative_position(o, t, side) for o in objects for t in target)
        matched.append(objects if ok else None)
        correct &= ok
    for group in record.get("exclude", []):
        if len(found.get(group["class"], [])) >= group["count"]:
            correct = False
    return correct


def summarize(prompts: list[GenEvalPrompt], correct: dict[int, list[bool]]) -> dict:
    """Per tag the share of correct images over covered prompts, `overall` the mean of the
    tags, and how many prompts were covered and not."""
    scores: dict = {}
    for tag in TAGS:
        images = [c for p in prompts if p.tag == tag and p.spec is not None
                  for c in correct[p.index]]
        scores[tag] = float(np.mean(images)) if images else None
    tags = [scores[t] for t in TAGS if scores[t] is not None]
    scores["overall"] = float(np.mean(tags)) if tags else None
    scores["covered"] = sum(p.spec is not None for p in prompts)
    scores["not_covered"] = sum(p.spec is None for p in prompts)
    scores["images"] = sum(len(correct[p.index]) for p in prompts if p.spec is not None)
    return scores


def format_table(scores: dict) -> str:
    rows = [f"{tag:<16} {scores[tag]:.3f}" if scores[tag] is not None else f"{tag:<16} -"
            for tag in TAGS]
    rows.append(f"{'overall':<16} {scores['overall']:.3f}" if scores["overall"] is not None
                else "overall -")
    rows.append(f"prompts covered {scores['covered']}, not covered {scores['not_covered']} "
                f"(classes no glyph draws); {scores['images']} images judged")
    return "\n".join(rows)


def sample_folder(out: Path, index: int) -> Path:
    """GenEval's layout: `OUT/<index:05d>/samples/`, beside `OUT/<index:05d>/metadata.jsonl`."""
    return Path(out) / f"{index:05d}" / "samples"


def write_prompt_folder(out: Path, prompt: GenEvalPrompt, images) -> None:
    """One prompt's folder: its metadata line and its images `samples/<k:05d>.png`."""
    from ..files import atomic_write_text
    from ..images import save_png

    samples = sample_folder(out, prompt.index)
    samples.mkdir(parents=True, exist_ok=True)
    atomic_write_text(samples.parent / "metadata.jsonl", json.dumps(prompt.record) + "\n")
    for k, image in enumerate(images):
        save_png(image, samples / f"{k:05d}.png")


def read_prompt_images(folder: str | Path, prompt: GenEvalPrompt) -> list[np.ndarray]:
    """A prompt's images from GenEval's layout (RGB uint8), in sample order."""
    from ..images import open_image

    samples = sample_folder(Path(folder), prompt.index)
    files = sorted(samples.glob("*.png")) if samples.is_dir() else []
    if not files:
        raise InputError(f"no images for prompt {prompt.index} in {samples}")
    return [np.asarray(open_image(f)) for f in files]
