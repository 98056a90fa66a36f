"""Writing a benchmark's results: the JSON and a stacked bar chart of seconds per stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_results(results: dict, out: str | Path, name: str) -> Path:
    """`out`/`name`.json, the folder made as needed; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    return out


def stage_bars(rows: dict[str, dict[str, float]], ylabel: str, title: str, path: Path) -> None:
    """One bar per row, stacked by stage (row -> {stage: seconds})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(next(iter(rows.values())))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bottom = np.zeros(len(rows))
    for stage in stages:
        heights = [row[stage] for row in rows.values()]
        ax.bar(list(rows), heights, bottom=bottom, label=stage)
        bottom += heights
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
