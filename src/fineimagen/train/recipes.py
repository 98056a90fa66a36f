"""Named training recipes (`presets/recipes/NAME.json`): the exact settings of a shipped
model, so one command reproduces it. Command-line flags override a recipe's fields.

A recipe may hold `"machine"` (where it was run and how long it took: documentation only)
`"prepare"`: CLI commands (argument lists, e.g. a `dataset` and an `embed`) that make the
recipe's data, each run only when its `--out` does not exist yet;
and `"phases"`: a list of {"name": ..., field: value, ...}, run in order, each with the
recipe's other fields and its own in place of them, writing to OUT/NAME; a phase that trains
the same stage as the one before it starts from that one's model (`init`). With `--resume` a
finished phase is skipped and an interrupted one continues from its checkpoint, so one
command resumes the whole chain.
`"assemble"`: phase names whose models are joined, in that order, into one pipeline at
OUT/model once every phase has finished (a whole cascade from one command).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import InputError
from .trainer import TrainConfig, model_folder

NOT_TRAINING_FIELDS = ("machine", "prepare", "assemble")


def recipe_names() -> list[str]:
    folder = resources.files("fineimagen").joinpath("presets/recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _recipe_file(recipe: str) -> dict:
    """A named recipe or a path to a recipe JSON file, parsed and checked."""
    path = Path(recipe)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text()
    elif recipe in recipe_names():
        text = resources.files("fineimagen").joinpath(f"presets/recipes/{recipe}.json").read_text()
    else:
        raise InputError(f"unknown recipe {recipe!r} (choose from {', '.join(recipe_names())})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"recipe {recipe}: malformed JSON ({err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("phases", []), list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"].isidentifier()
            for p in data.get("phases", [])):
        raise InputError(f"recipe {recipe}: expected an object whose 'phases' (if any) are "
                         "objects each with a 'name' (letters, digits, _)")
    assemble = data.get("assemble", [])
    names = [p["name"] for p in data.get("phases", [])]
    if not isinstance(assemble, list) or not all(a in names for a in assemble):
        raise InputError(f"recipe {recipe}: 'assemble' must list phase names (of {names})")
    commands = data.get("prepare", [])
    if not isinstance(commands, list) or not all(
            isinstance(c, list) and all(isinstance(a, str) for a in c) and "--out" in c
            for c in commands):
        raise InputError(f"recipe {recipe}: 'prepare' must be a list of argument lists, each "
                         "with --out")
    return data


def _recipe(recipe: str | None) -> dict:
    """A recipe's TrainConfig fields and phases (its other fields left out)."""
    if recipe is None:
        return {}
    return {k: v for k, v in _recipe_file(recipe).items() if k not in NOT_TRAINING_FIELDS}


def train_config(recipe: str | None, overrides: dict) -> TrainConfig:
    """A TrainConfig from a recipe (or the defaults) with `overrides` applied; a recipe of
    phases gives its last phase's (see `train_phases`)."""
    return train_phases(recipe, overrides)[-1]


def train_phases(recipe: str | None, overrides: dict) -> list[TrainConfig]:
    """One TrainConfig per phase of the recipe (one for a recipe without phases), the
    `overrides` applied to each; with a recipe, `resume` is set only where a phase has a
    checkpoint (so `--recipe NAME --resume` also starts from scratch)."""
    base = _recipe(recipe)
    where = f"recipe {recipe}" if recipe else "train"
    phases = base.pop("phases", None)
    if not phases:
        merged = {**base, **overrides}
        if recipe is not None:  # a recipe's one command both starts and resumes
            merged["resume"] = _resumable(overrides, Path(merged.get("out", TrainConfig.out)))
        return [TrainConfig.from_dict(merged, where)]
    root = Path(overrides.get("out", base.get("out", TrainConfig.out)))
    configs, previous = [], None
    for phase in phases:
        fields = {k: v for k, v in phase.items() if k != "name"}
        out = root / phase["name"]
        merged = {**base, **fields, **overrides, "out": str(out)}
        if previous is not None and merged.get("stage", TrainConfig.stage) == previous.stage:
            chained = str(Path(previous.out) if previous.stage == "align" else
                          model_folder(previous))  # --init reads a run's aligner/ folder
            if merged.get("distill_from") and "distill_from" not in fields:
                merged["distill_from"] = chained  # a distillation's teacher
            elif "init" not in fields and not merged.get("distill_from"):
                merged["init"] = chained
        merged["resume"] = _resumable(overrides, out)
        previous = TrainConfig.from_dict(merged, f"{where}, phase {phase['name']}")
        configs.append(previous)
    return configs


def _resumable(overrides: dict, out: Path) -> bool:
    """`--resume` asked for, and a run at `out` to resume from."""
    return bool(overrides.get("resume")) and (out / "checkpoint.pt").is_file()


def finished(cfg: TrainConfig) -> bool:
    """Whether a phase's run reached its last step and wrote its model."""
    import torch

    checkpoint = Path(cfg.out) / "checkpoint.pt"
    written = model_folder(cfg) / ("config.json" if cfg.stage == "align" else "model_index.json")
    if not written.is_file() or not checkpoint.is_file():
        return False
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["step"] >= cfg.steps


def prepare_commands(recipe: str | None) -> list[list[str]]:
    """The recipe's data-making commands whose `--out` does not exist yet."""
    if recipe is None:
        return []
    return [c for c in _recipe_file(recipe).get("prepare", [])
            if not Path(c[c.index("--out") + 1]).exists()]


def assembly(recipe: str | None, overrides: dict) -> tuple[list[Path], Path] | None:
    """The phase models a recipe joins into one pipeline, and where it goes (OUT/model);
    None for a recipe without `assemble`."""
    if recipe is None or not _recipe_file(recipe).get("assemble"):
        return None
    phases = {Path(cfg.out).name: cfg for cfg in train_phases(recipe, overrides)}
    root = Path(overrides.get("out", _recipe(recipe).get("out", TrainConfig.out)))
    return [model_folder(phases[name]) for name in _recipe_file(recipe)["assemble"]], \
        root / "model"
