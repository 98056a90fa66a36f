"""Training ablations at an equal budget, one change at a time, each with a learning curve.

Usage: python bench/ablate.py --arms coords-none,coords-stem [--with ARM] [--steps 3200]
                              [--runs runs/ablations] [--out bench/results/ablations]
                              [--prompts 400]

Every arm trains the 32 px base of `shapes-32-128` on plain shapes captions with the same
seed, schedule and number of images (`TRAIN`), changing only what its line in `ARMS` says
(`--with ARM`: each arm on top of ARM's changes, named ARM+arm, for the questions asked once
a first one is settled).
The EMA weights are kept every `snapshot_every` steps; each snapshot is scored by
`position_probe.py` (one red circle asked for in each of the 9 cells), the last also by
`model_quality.py` (the strict evaluator on held-out prompts x 2 at 32 px). Each part is
skipped where its result exists, so the same command resumes after any interruption (the
training resumes from its checkpoint). Results, per budget: OUT/steps-N/ARM/
{position_probe,model_quality}.json and OUT/steps-N/ablations.json (all arms: images,
minutes, position, overall), with a plot; runs in RUNS/steps-N/ARM.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from charts import write_results  # bench/ is on sys.path when a bench script runs
from fineimagen.config import load_preset
from fineimagen.train.trainer import TrainConfig, snapshot_folder, train
from machine import describe

PRESET = "shapes-32-128"
# the third base of history.md (205k images: 3,200 steps of 64) learned places; 1,000 steps
# (64k images) drew blobs in every arm tried (docs/experiments.md)
TRAIN = dict(stage="base", data="shapes", steps=3200, batch_size=64, lr=1e-3, warmup=200,
             lr_schedule="cosine", ema_decay=0.998, seed=0, checkpoint_every=50,
             snapshot_every=800, mixed_precision="auto", workers=1)
# arm -> {"unet": UNetConfig fields, "text": TextEncoderConfig fields, "train": TrainConfig
# fields, "diffusion": DiffusionConfig fields}, each over PRESET's base and TRAIN
ARMS = {
    "coords-none": {},
    "coords-stem": {"unet": {"coords": "stem"}},
    "coords-levels": {"unet": {"coords": "levels"}},
    "attention-positions": {"unet": {"attention_positions": True}},
    "coords-levels-attention": {"unet": {"coords": "levels", "attention_positions": True}},
    # the three confounds of the failed retrain of 2026-12-06, one at a time
    "light": {"unet": {"resample": "light", "channels": 32, "channel_mults": [1, 3, 6]}},
    "whole-prompt": {"text": {"binding": "prompt", "special_tokens": True}},
    "varied-captions": {"train": {"varied_captions": True}},
    # cheap knobs
    "snr-offset": {"diffusion": {"snr_offset": 1.0}},
    "input-perturbation": {"diffusion": {"input_perturbation": 0.1}},
    "ema-decays": {"train": {"ema_also": [0.99, 0.995, 0.999]}},
}
BENCH = Path(__file__).parent


def arm_change(arm: str) -> dict:
    """The arm's changes; "A+B" is A's with B's on top (each part a dict merged)."""
    change: dict = {}
    for part in arm.split("+"):
        for key, fields in ARMS[part].items():
            change[key] = {**change.get(key, {}), **fields}
    return change


def arm_preset(arm: str) -> dict:
    """PRESET's cascade with the arm's changes to its base stage and text encoder."""
    cascade = load_preset(PRESET).to_dict()
    change = arm_change(arm)
    cascade["text_encoder"].update(change.get("text", {}))
    base = next(s for s in cascade["stages"] if s["name"] == "base")
    base["unet"].update(change.get("unet", {}))
    base["diffusion"].update(change.get("diffusion", {}))
    return cascade


def train_arm(arm: str, runs: Path) -> tuple[Path, float]:
    """Train (or resume) one arm; returns its run folder and the minutes it trained."""
    run = runs / arm
    run.mkdir(parents=True, exist_ok=True)
    preset = run / "preset.json"
    preset.write_text(json.dumps(arm_preset(arm), indent=1))
    fields = {**TRAIN, **arm_change(arm).get("train", {}), "preset": str(preset),
              "out": str(run)}
    minutes_file = run / "minutes.json"
    minutes = json.loads(minutes_file.read_text())["minutes"] if minutes_file.exists() else 0.0
    if (run / "model" / "model_index.json").exists():
        return run, minutes
    cfg = TrainConfig.from_dict({**fields, "resume": (run / "checkpoint.pt").exists()})
    start = time.perf_counter()
    train(cfg)
    minutes += (time.perf_counter() - start) / 60
    minutes_file.write_text(json.dumps({"minutes": round(minutes, 1)}))
    return run, minutes


def bench(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(BENCH / script), *args], check=True)


def score(models: list[Path], folder: Path, prompts: int) -> tuple[dict, dict]:
    """Position probe of every model, strict evaluator of the last (each skipped where its
    result exists): ({model: probe row}, the guidance-3 score table)."""
    probe, quality = folder / "position_probe.json", folder / "model_quality.json"
    if not probe.exists():
        bench("position_probe.py", "--models", ",".join(map(str, models)), "--out",
              str(folder))
    if not quality.exists():
        bench("model_quality.py", "--model", str(models[-1]), "--stages", "base",
              "--guidance", "3", "--n-prompts", str(prompts), "--images-per-prompt", "2",
              "--out", str(folder))
    return (json.loads(probe.read_text())["results"],
            json.loads(quality.read_text())["results"]["3"])


def score_arm(arm: str, run: Path, out: Path, prompts: int) -> dict:
    """Position probe per snapshot, strict evaluator on the last: the arm's row."""
    folder = out / arm
    steps, every = TRAIN["steps"], TRAIN["snapshot_every"]
    snapshots = [snapshot_folder(run, s) for s in range(every, steps + 1, every)]
    curve, scores = score(snapshots, folder, prompts)
    row = {"change": arm_change(arm), "images": TRAIN["batch_size"] * steps,
           "position_curve": {str(TRAIN["batch_size"] * every * (i + 1)): curve[str(s)]["in_cell"]
                              for i, s in enumerate(snapshots)},
           "overall": scores["overall"], "categories": scores["categories"]}
    decays = arm_change(arm).get("train", {}).get("ema_also", [])
    if decays:  # each other EMA decay's last snapshot, scored alike
        row["by_decay"] = {}
        for decay in decays:
            model = snapshots[-1].with_name(f"{snapshots[-1].name}-ema-{decay:g}")
            probed, scored = score([model], folder / f"ema-{decay:g}", prompts)
            row["by_decay"][f"{decay:g}"] = {"in_cell": probed[str(model)]["in_cell"],
                                             "overall": scored["overall"],
                                             "categories": scored["categories"]}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", required=True, help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--with", dest="base", help="an arm whose changes every arm adds to")
    parser.add_argument("--runs", default="runs/ablations")
    parser.add_argument("--out", default="bench/results/ablations")
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--steps", type=int, default=TRAIN["steps"],
                        help="steps of 64 per arm; snapshots at each quarter")
    args = parser.parse_args()
    TRAIN.update(steps=args.steps, snapshot_every=args.steps // 4,
                 warmup=min(TRAIN["warmup"], args.steps // 10))
    arms = args.arms.split(",")
    unknown = [a for a in [*arms, args.base or "coords-none"] if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm {unknown[0]!r} (choose from {', '.join(ARMS)})")
    if args.base:
        arms = [f"{args.base}+{a}" for a in arms]
    out = Path(args.out) / f"steps-{args.steps}"
    runs = Path(args.runs) / f"steps-{args.steps}"
    summary = out / "ablations.json"
    rows = json.loads(summary.read_text())["results"] if summary.exists() else {}
    for arm in arms:
        run, minutes = train_arm(arm, runs)
        rows[arm] = {**score_arm(arm, run, out, args.prompts), "minutes": minutes}
        print(f"{arm}: position {rows[arm]['categories'].get('position')}, overall "
              f"{rows[arm]['overall']:.3f}, curve {rows[arm]['position_curve']}", flush=True)
        meta = {"date": time.strftime("%Y-%m-%d"), "preset": PRESET, "train": TRAIN,
                "prompts": args.prompts, "images_per_prompt": 2, "machine": describe()}
        write_results({"meta": meta, "results": rows}, out, "ablations")
        plot_curves(rows, out / "ablations.png")


def plot_curves(rows: dict, path: Path) -> None:
    """Position probe's share in the asked cell against images seen, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, row in rows.items():
        curve = row["position_curve"]
        ax.plot([int(k) / 1000 for k in curve], list(curve.values()), marker="o", label=arm)
    ax.axhline(1 / 9, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("images seen (thousands)")
    ax.set_ylabel("one circle in the asked cell")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
