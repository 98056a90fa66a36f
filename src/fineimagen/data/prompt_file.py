"""Prompt files: JSONL, one `{"prompt": str, "scene"?: <scene spec>}` a line (other keys are
kept by their writers and ignored here). Generation reads the prompts, scene control and the
evaluator the scenes; errors name the line."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..files import read_jsonl
from .scene import Scene, parse_spec


def read_prompt_file(path: str | Path, need_scene: bool = False
                     ) -> list[tuple[str, Scene | None]]:
    """(prompt, scene or None) per line; with `need_scene` every line must have a scene."""
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
                scene = parse_spec(record["scene"])
            except InputError as err:
                raise InputError(f"{where}: {err}") from None
        records.append((prompt, scene))
    return records
