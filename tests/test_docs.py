"""Every result file README and docs cite exists and is committed (not git-ignored)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"bench/results/[\w./*{},-]*[\w*}]")


def expand(path: str) -> list[str]:
    """'a_{x,y}' -> ['a_x', 'a_y']."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [q for alt in m.group(1).split(",")
            for q in expand(path[:m.start()] + alt + path[m.end():])]


def cited_paths() -> set[str]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {p for doc in docs for m in CITED.finditer(doc.read_text()) for p in expand(m[0])}


def test_every_cited_result_exists_and_is_not_ignored():
    paths = cited_paths()
    assert len(paths) > 5
    missing = sorted(p for p in paths if "*" not in p and not (ROOT / p).exists())
    assert not missing, missing
    plain = sorted(p for p in paths if "*" not in p)
    ignored = subprocess.run(["git", "check-ignore", *plain], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert not ignored, ignored


def test_docs_point_nowhere_outside_the_repository():
    for doc in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        assert "../shared" not in doc.read_text(), doc.name


def test_ci_stops_at_the_first_failing_step():
    """Each of CI's steps is a command of its own under `set -e`: in `ruff check . && pytest`
    a failing ruff skips pytest without stopping the script, whose status is then the last
    command's (the slow tests') alone."""
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert "set -euo pipefail" in lines
    steps = [line for line in lines if line.startswith(("ruff", "pytest"))]
    assert steps == ["ruff check .", "pytest", "pytest -m slow"]
    assert all("&&" not in line and "||" not in line for line in steps)
