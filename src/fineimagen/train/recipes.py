"""Named training recipes (`presets/recipes/NAME.json`): the exact settings of a shipped
model, so one command reproduces it. Command-line flags override a recipe's fields."""

from __future__ import annotations

import json
from importlib import resources

from ..errors import InputError
from .trainer import TrainConfig


def recipe_names() -> list[str]:
    folder = resources.files("fineimagen").joinpath("presets/recipes")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def train_config(recipe: str | None, overrides: dict) -> TrainConfig:
    """A TrainConfig from a recipe (or the defaults) with `overrides` applied."""
    base: dict = {}
    if recipe is not None:
        if recipe not in recipe_names():
            raise InputError(f"unknown recipe {recipe!r} (choose from {', '.join(recipe_names())})")
        text = resources.files("fineimagen").joinpath(f"presets/recipes/{recipe}.json").read_text()
        base = json.loads(text)
    return TrainConfig.from_dict({**base, **overrides}, f"recipe {recipe}" if recipe else "train")
