"""Prompt files: JSONL, one `{"prompt": str, "scene"?: <scene spec>}` a line (other keys are
kept by their writers and ignored here). Generation reads the prompts, scene control and the
evaluator the scenes (of the shapes, or OpenMoji ones saying `"domain": "openmoji"`);
errors name the line."""

from __future__ import annotations

import json
from pathlib import Path

from ..domains.openmoji.scene import EmojiScene, is_emoji_spec, parse_emoji_spec
from ..domains.openmoji.vocab import OPENMOJI_100
from ..domains.shapes.scene import Scene, parse_spec
from ..errors import InputError
from ..files import read_jsonl


def parse_scene_spec(spec: dict | str) -> Scene | EmojiScene:
    """A scene spec (a dict or JSON text) of either domain: an OpenMoji one (it says
    `"domain": "openmoji"`, its objects named from openmoji-100) or a shapes one."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise InputError(f"malformed JSON: {err.msg} at column {err.colno}") from None
    if is_emoji_spec(spec):
        return parse_emoji_spec(spec, OPENMOJI_100)
    return parse_spec(spec)


def read_prompt_file(path: str | Path, need_scene: bool = False
                     ) -> list[tuple[str, Scene | EmojiScene | None]]:
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
                scene = parse_scene_spec(record["scene"])
            except InputError as err:
                raise InputError(f"{where}: {err}") from None
        records.append((prompt, scene))
    return records
