"""Batch generation to a folder: `{index:05d}_{k}.png`, the k-th image of prompt `index`,
the layout `fineimagen eval --images` reads. Each file is written whole (temp + rename)."""

from __future__ import annotations

import os
from pathlib import Path

from tqdm.auto import tqdm

from .errors import InputError
from .files import read_jsonl


def read_prompt_lines(path: str | Path) -> list[str]:
    """The `prompt` of every line of a JSONL file (other keys are ignored here)."""
    prompts = []
    for number, record in read_jsonl(path):
        prompt = record.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{path}, line {number}: needs a non-empty 'prompt' string")
        prompts.append(prompt)
    return prompts


def generate_to_folder(args) -> int:
    from .pipeline import TextToImagePipeline

    prompts = read_prompt_lines(args.prompts) if args.prompts else [args.prompt]
    if not prompts[0].strip():
        raise InputError("prompt is empty")
    pipe = TextToImagePipeline.from_pretrained(args.model)
    options = dict(sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                   threshold=args.threshold)
    pipe.check_options(**options)
    if args.rerank > 1 and pipe.aligner is None:
        raise InputError("--rerank needs a model with an aligner (none in this folder)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_batch = max(1, args.batch // (args.n * args.rerank))
    written = 0
    chunks = range(0, len(prompts), per_batch)
    for start in tqdm(chunks, desc="generating", disable=len(chunks) == 1, unit="batch"):
        chunk = prompts[start:start + per_batch]
        images = pipe(chunk, n=args.n, seed=args.seed + start * args.n,
                      progress=len(chunks) == 1, rerank=args.rerank, **options)
        for j, image in enumerate(images):
            index, k = start + j // args.n, j % args.n
            _save_png(image, out / f"{index:05d}_{k}.png")
            written += 1
    return written


def _save_png(image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


