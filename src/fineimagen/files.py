"""Files: writing all or nothing (a crash or a bad input never leaves half a result behind),
and reading JSONL with errors that name the line."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError


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
