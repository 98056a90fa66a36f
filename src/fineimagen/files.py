"""Files: writing all or nothing (a crash or a bad input never leaves half a result behind),
reading JSONL with errors that name the line, and reading model folders' JSON and
safetensors weights with errors that say what does not match."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(out: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `out` that becomes `out` when the block succeeds.

    `out` must not exist or be empty, unless `replace` (then an old `out` is removed only
    once the new one is complete); on any error the temporary folder is removed.
    """
    out = Path(out)
    if not replace and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output folder {out} exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) for every non-empty line of a JSONL file of JSON objects.

    Errors name the file and the line; a file without records is an error too.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompts file not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}, line {number}: malformed JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}, line {number}: expected a JSON object")
        records.append((number, record))
    if not records:
        raise InputError(f"{path}: no prompts")
    return records


def loads(text: str):
    """JSON text -> its value; InputError 'malformed JSON: ... at column N'."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON: {err.msg} at column {err.colno}") from None


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"not a fineimagen model folder: {what} is missing ({path})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: malformed JSON ({err.msg})") from None


def load_weights(module: torch.nn.Module, path: Path, what: str,
                 expected: dict | None = None) -> None:
    """Load safetensors into `module`, or say precisely how they do not match its config.
    `expected` is the part of its state dict saved (default: all of it)."""
    import torch
    from safetensors.torch import load_file

    if not path.is_file():
        raise InputError(f"{what}: weights missing ({path})")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise InputError(f"{what}: unreadable weights ({err})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InputError(f"{what}: tensor {name} holds NaN or Inf values ({path})")
    reference = module.state_dict() if expected is None else expected
    missing = sorted(set(reference) - set(state))
    extra = sorted(set(state) - set(reference))
    wrong = [k for k in reference if k in state and state[k].shape != reference[k].shape]
    if missing or extra or wrong:
        detail = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                  else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, config says "
                       f"{tuple(reference[wrong[0]].shape)}")
        raise InputError(f"{what}: weights do not match the config ({detail})")
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=expected is None)


def check_inside(root: Path, path: Path, what: str) -> Path:
    """`path`, refused where it (through links or '..') leaves the folder `root`."""
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        raise InputError(f"{what}: {path} leads outside the model folder (to {target})")
    return path


def check_links(root: Path) -> None:
    """Refuse a folder holding a link that leads outside it."""
    for path in root.rglob("*"):
        if path.is_symlink():
            check_inside(root, path, "a link in the model folder")


MAX_PARAMETERS = 10**10  # a component's config asking for more is refused before allocating


def check_size(build, what: str) -> None:
    """Build the module on the meta device (no memory) and refuse it above MAX_PARAMETERS."""
    import torch

    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in build().parameters())
    except (ValueError, TypeError, RuntimeError) as err:
        raise InputError(f"{what}: the config does not build a model ({err})") from None
    if count > MAX_PARAMETERS:
        raise InputError(f"{what}: the config asks for {count:.3g} parameters, more than the "
                         f"{MAX_PARAMETERS:.0e} fineimagen loads")
