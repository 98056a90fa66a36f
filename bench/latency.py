"""Latency of one 128 px image through a cascade on this machine, side by side: PyTorch in
fp32 and in bf16 autocast (where the CPU computes bf16 natively, or with --bf16), and the
exported graphs (`fineimagen export`) in onnxruntime and OpenVINO; per stage and for the text
encoding (medians of --repeats runs after a warm-up), and which of fp32 / bf16 the
pipeline's default (`bf16=None`, precision.py) picks here.

Usage: python bench/latency.py [--model DIR] [--repeats 20]
       [--runtimes torch,onnxruntime,openvino] [--bf16] [--out DIR]
Writes latency.json and latency.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from charts import stage_bars, write_results  # bench/ is on sys.path when a bench script runs
from fineimagen.pipeline import TextToImagePipeline
from fineimagen.precision import use_bf16
from machine import describe

PROMPT = "a large blue star in the center"


def latency(pipe, repeats: int, bf16: bool | None = None) -> dict:
    """Median seconds for the whole cascade (text encoding included), for the text encoding,
    and for each stage run alone (the base stage's includes its text encoding)."""
    pipe(PROMPT, seed=0, progress=False, bf16=bf16)  # warm-up
    per_stage = {s.name: [] for s in pipe.stages}
    totals, encoding = [], []
    for r in range(repeats):
        start = time.perf_counter()
        pipe.encode([PROMPT])
        encoding.append(time.perf_counter() - start)
        start = time.perf_counter()
        pipe(PROMPT, seed=r, progress=False, bf16=bf16)  # the whole cascade
        totals.append(time.perf_counter() - start)
        start = time.perf_counter()
        low = pipe(PROMPT, seed=r, progress=False, stages=0, bf16=bf16)
        per_stage[pipe.stages[0].name].append(time.perf_counter() - start)
        for i, s in enumerate(pipe.stages[1:], start=1):
            start = time.perf_counter()
            low = pipe.upscale(low, PROMPT, seed=r, stage=i, stages=i, progress=False,
                               bf16=bf16)
            per_stage[s.name].append(time.perf_counter() - start)
    return {"seconds_total": float(np.median(totals)),
            "seconds_text_encoding": float(np.median(encoding)),
            "seconds_per_stage": {k: float(np.median(v)) for k, v in per_stage.items()},
            "settings": {s.name: vars(s.settings()) for s in pipe.stages}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--runtimes", default="torch,onnxruntime,openvino",
                        help="comma-separated: torch (fp32 and bf16), onnxruntime, openvino")
    parser.add_argument("--bf16", action="store_true",
                        help="time bf16 autocast even where the CPU only emulates it")
    parser.add_argument("--out", default="bench/results/latency")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    runtimes = args.runtimes.split(",")
    rows = {}
    if "torch" in runtimes:
        rows["torch fp32"] = latency(pipe, args.repeats, False)
        if use_bf16(None) or args.bf16:  # emulated bf16 (AVX2) is many times slower
            rows["torch bf16"] = latency(pipe, args.repeats, True)
    with tempfile.TemporaryDirectory() as tmp:
        for runtime, fmt in (("onnxruntime", "onnx"), ("openvino", "openvino")):
            if runtime in runtimes:
                from fineimagen.export import export_pipeline

                folder = export_pipeline(pipe, Path(tmp) / fmt, fmt)
                exported = TextToImagePipeline.from_exported(folder, runtime)
                rows[runtime] = latency(exported, args.repeats, False)
    auto = "bf16" if use_bf16(None) else "fp32"
    first = next(iter(rows.values()))["seconds_total"]
    results = {"rows": rows, "default_picks": auto,
               "time_over_first_row": {k: v["seconds_total"] / first for k, v in rows.items()},
               "meta": {"date": time.strftime("%Y-%m-%d"), "machine": describe(),
                        "model": args.model or "shipped", "repeats": args.repeats}}
    for name, row in rows.items():
        stages = ", ".join(f"{k} {v:.3f} s" for k, v in row["seconds_per_stage"].items())
        print(f"{name}: {row['seconds_total']:.3f} s per image (text encoding "
              f"{row['seconds_text_encoding']:.3f} s; stages alone: {stages}); "
              f"{results['time_over_first_row'][name]:.2f}x the first row's time")
    print(f"the default picks {auto} here")
    out = write_results(results, args.out, "latency")
    stage_bars({k: v["seconds_per_stage"] for k, v in rows.items()}, "seconds per 128 px image",
               f"{results['meta']['machine'][:60]}\ndefault picks {auto}", out / "latency.png")


if __name__ == "__main__":
    main()
