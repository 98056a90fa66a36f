"""The `train` verb (recipes of phases, resumable) and `embed` (a text-embedding store)."""

from __future__ import annotations

import os
import time

from ..errors import InputError


def train_recipe(args, run_command) -> None:
    """Run `train` (a recipe's phases, or one run): data first, phases in order, the
    cascade assembled; `run_command` runs a CLI command line (the recipe's data steps)."""
    from ..train.recipes import assembly, finished, prepare_commands, train_phases

    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "recipe") and v not in (None, False)}
    if "negative_weights" in overrides:
        overrides["negative_weights"] = dict(overrides["negative_weights"])
    from ..train.trainer import train

    phases = train_phases(args.recipe, overrides)
    is_main = os.environ.get("RANK", "0") == "0"  # under torchrun: the main process reports
    for command in prepare_commands(args.recipe):  # the recipe's data, made once
        out = command[command.index("--out") + 1]
        if is_main:
            print("preparing: fineimagen " + " ".join(command))
            run_command(command)
        while not os.path.exists(out):  # other ranks wait for it (written atomically)
            time.sleep(1)
    result = None
    for k, cfg in enumerate(phases):
        if len(phases) > 1 and args.resume and finished(cfg):
            if is_main:
                print(f"phase {k + 1}/{len(phases)} ({cfg.out}) finished before: skipped")
            continue
        if len(phases) > 1 and is_main:
            print(f"phase {k + 1}/{len(phases)}: {cfg.out}")
        result = train(cfg)
    joined = assembly(args.recipe, overrides)
    if result is None:
        if is_main and (joined is None or joined[1].is_dir()):
            print("every phase had finished: the model is "
                  f"{joined[1] if joined else phases[-1].out + '/model'}")
            return
    elif is_main:
        if result.skipped:
            print(f"{result.skipped} steps skipped for a non-finite loss or gradient")
        print(f"model written to {result.folder} ({result.processes} "
              f"process{'es' if result.processes > 1 else ''})")
    if joined is not None and is_main:
        from ..pipeline import TextToImagePipeline

        parts, out = joined
        TextToImagePipeline.assemble(parts).save_pretrained(out)
        print(f"cascade assembled from {', '.join(str(p) for p in parts)}: {out}")


def embed(args) -> None:
    from ..config import load_preset
    from ..data.formats import dataset_captions
    from ..models.text_encoders import build_text_encoder
    from ..models.text_store import build_store

    cascade = load_preset(args.preset)
    encoder = build_text_encoder(cascade.text_encoder)
    if not encoder.frozen:
        raise InputError(f"preset {args.preset} trains its text encoder: nothing to store")
    captions = dataset_captions(args.data, args.text_column)
    index = build_store(captions, encoder, cascade.text_encoder.to_dict(), args.out)
    print(f"embedded {index['captions']} distinct captions (of {len(captions)}) into {args.out}")
