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


def grouped_bars(rows: dict[str, list[float]], columns: list[str], path: Path,
                 ylabel: str = "share correct") -> None:
    """One group of bars per column, one bar per row (row -> a value per column), y in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / max(1, len(rows))
    for j, (label, values) in enumerate(rows.items()):
        ax.bar([i + j * width for i in range(len(columns))], values, width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(columns))], columns, rotation=20,
                  fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
