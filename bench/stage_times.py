"""Per-stage sampling time of a preset's untrained cascade (random weights), at batch 1 and
8, in fp32 and in half-precision weights where the device has them: what Imagen's
64 -> 256 -> 1024 layout costs on this hardware before any training. A small local T5
(4 layers, width 512) stands in for T5-XXL (no download here); the stages are at full width.

Usage: python bench/stage_times.py [--preset imagen-64-256-1024] [--device cuda]
       [--batches 1,8] [--repeats 3] [--steps 0] [--out bench/results/stage_times]
Writes stage_times.json and stage_times.png.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from charts import stage_bars, write_results  # bench/ is on sys.path when a bench script runs
from fineimagen.config import load_preset
from fineimagen.models.text_encoders import minilm_path
from fineimagen.pipeline import TextToImagePipeline
from machine import describe


def small_t5(folder: Path) -> Path:
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    config = T5Config(vocab_size=30522, d_model=512, d_kv=64, d_ff=1024, num_layers=4,
                      num_heads=8, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def stage_times(pipe, batch: int, repeats: int, device: str) -> dict:
    """Median seconds of each stage for one call drawing `batch` images."""
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    marks: dict[str, list[float]] = {}

    def callback(stage, step, steps, x):
        if step + 1 == steps:
            sync()
            marks.setdefault(stage, []).append(time.perf_counter())

    pipe("a red apple", n=batch, progress=False, callback=callback)  # warm-up
    per_stage: dict[str, list[float]] = {s.name: [] for s in pipe.stages}
    for r in range(repeats):
        marks.clear()
        sync()
        start = time.perf_counter()
        pipe("a red apple", n=batch, seed=r, progress=False, callback=callback)
        previous = start
        for s in pipe.stages:
            per_stage[s.name].append(marks[s.name][-1] - previous)
            previous = marks[s.name][-1]
    return {k: float(np.median(v)) for k, v in per_stage.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="imagen-64-256-1024")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="steps per stage (0: the preset's)")
    parser.add_argument("--out", default="bench/results/stage_times")
    args = parser.parse_args()
    cascade = load_preset(args.preset)
    if args.steps:
        cascade = replace(cascade, stages=[replace(s, sampling=replace(s.sampling,
                                                                       steps=args.steps))
                                           for s in cascade.stages])
    dtypes = {"fp32": torch.float32}
    if args.device.startswith("cuda"):
        dtypes["bf16" if torch.cuda.is_bf16_supported() else "fp16"] = (
            torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        t5 = small_t5(Path(tmp) / "t5")
        for name, dtype in dtypes.items():
            half = dtype if dtype is not torch.float32 else None
            pipe = TextToImagePipeline.from_preset(cascade, text_encoder=t5, seed=0, dtype=half)
            pipe.to(args.device, half)
            for batch in map(int, args.batches.split(",")):
                rows[f"{name} batch {batch}"] = stage_times(pipe, batch, args.repeats,
                                                            args.device)
                print(f"{name} batch {batch}: " + ", ".join(
                    f"{k} {v:.2f} s" for k, v in rows[f"{name} batch {batch}"].items()),
                    flush=True)
            del pipe
    results = {"rows": rows, "meta": {
        "date": time.strftime("%Y-%m-%d"), "machine": describe(), "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "preset": args.preset, "steps": {s.name: s.sampling.steps for s in cascade.stages},
        "repeats": args.repeats}}
    out = write_results(results, args.out, "stage_times")
    stage_bars(rows, "seconds per call",
               f"{args.preset} untrained, {results['meta']['gpu'] or 'CPU'}",
               out / "stage_times.png")


if __name__ == "__main__":
    main()
