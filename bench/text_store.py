"""Training speed with and without a text-embedding store, on the same data and model.

Usage: python bench/text_store.py [--n 512] [--steps 30] [--batch 32] [--preset P]
                                  [--out bench/results/text_store]
Writes an ImageFolder of N shapes scenes (varied captions, all distinct; N is raised to
cover every step, so no caption is read twice and the encoder arm's in-memory cache cannot
help), embeds its captions (`fineimagen embed`), then trains the
base stage STEPS steps twice, encoder vs store, and reports img/s (median of the logged
rates after the first log) as a ratio. Run it on a quiet machine. Writes text_store.json and
text_store.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

from fineimagen.data.writers import write_samples
from fineimagen.domains.shapes.samples import make_sample
from fineimagen.train.trainer import TrainConfig, train
from machine import describe  # bench/ is on sys.path when a bench script runs


def rate(run: Path) -> float:
    with (run / "metrics.csv").open() as f:
        rates = [float(r["img_per_s"]) for r in csv.DictReader(f)]
    return statistics.median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--preset", default="shapes-32-128-light")
    parser.add_argument("--out", default="bench/results/text_store")
    args = parser.parse_args()
    # every caption read once: the encoder arm's in-memory cache (EmbeddingCache) must not
    # answer a second epoch
    args.n = max(args.n, (args.steps + 1) * args.batch)
    work = Path(tempfile.mkdtemp(prefix="text-store-"))
    samples = ((s.image, s.caption, {}) for s in
               (make_sample(i, 32, varied=True) for i in range(args.n)))
    data = write_samples(work / "data", samples, "imagefolder")
    from fineimagen.cli import main as cli

    start = time.perf_counter()
    cli(["embed", "--data", str(data), "--preset", args.preset, "--out", str(work / "store")])
    embed_s = time.perf_counter() - start
    rows = {}
    for name, store in (("encoder", ""), ("store", str(work / "store"))):
        cfg = TrainConfig.from_dict(dict(
            preset=args.preset, data=str(data), out=str(work / name), steps=args.steps,
            batch_size=args.batch, warmup=5, log_every=5, checkpoint_every=args.steps,
            text_store=store), "bench")
        train(cfg, progress=False)
        rows[name] = rate(work / name)
        print(f"{name:8s} {rows[name]:.1f} img/s")
    result = {"meta": {"date": time.strftime("%Y-%m-%d"), "machine": describe(),
                       "n": args.n, "steps": args.steps, "batch": args.batch,
                       "preset": args.preset, "embed_seconds": embed_s},
              "img_per_s": rows, "speedup": rows["store"] / rows["encoder"]}
    print(f"speed-up with the store: {result['speedup']:.2f}x (embedding took {embed_s:.0f} s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "text_store.json").write_text(json.dumps(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(list(rows), list(rows.values()))
    ax.set_ylabel("training images / s")
    ax.set_title(f"text store: {result['speedup']:.2f}x")
    fig.tight_layout()
    fig.savefig(out / "text_store.png", dpi=100)


if __name__ == "__main__":
    main()
