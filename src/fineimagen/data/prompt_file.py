"""Prompt files: JSONL, one `{"prompt": str, "scene"?: <scene spec>}` a line (other keys are
kept by their writers and ignored here). Generation reads the prompts, scene control and the
evaluator the scenes, each in the domain its spec names (`"domain": "openmoji"`), else in
the domain given (the model's); errors name the line."""

from __future__ import annotations

from pathlib import Path

from ..domains import Domain, parse_scene
from ..errors import InputError
from ..files import read_jsonl


def parse_scene_spec(spec: dict | str, domain: str | Domain | None = None):
    """A scene spec (a dict or JSON text) in the domain it names, else in `domain` (None:
    shapes)."""
    return parse_scene(spec, domain)


def read_prompt_file(path: str | Path, need_scene: bool = False,
                     domain: str | Domain | None = None) -> list[tuple[str, object]]:
    """(prompt, scene or None) per line, scenes read as in `parse_scene_spec`; with
    `need_scene` every line must have a scene."""
    records = []
    for number, record in read_jsonl(path):
        where = f"{path}, line {number}"
        if need_scene and "scene" not in record:
            raise InputError(f"{where}: a line needs 'prompt' and 'scene'")
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{where}: 'prompt' must be a string, not empty")
        scene = None
        if "scene" in record:
            try:
                scene = parse_scene_spec(record["scene"], domain)
            except InputError as err:
                raise InputError(f"{where}: {err}") from None
        records.append((prompt, scene))
    return records
