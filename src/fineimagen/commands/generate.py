"""Batch generation to a folder: `{index:05d}_{k}.png`, the k-th image of prompt `index`,
the layout `fineimagen eval --images` reads. Each file is written whole (temp + rename)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..data.prompt_file import parse_scene_spec, read_prompt_file
from ..errors import InputError
from ..images import save_png


def read_prompt_lines(path: str | Path, domain: str | None = None) -> list[str]:
    """The `prompt` of every line of a prompt file (data/prompt_file.py)."""
    return [prompt for prompt, _ in read_prompt_file(path, domain=domain)]


def parse_stage_options(items: list[str]) -> dict:
    """["sr.steps=8", "sr.aug_level=0.2"] -> {"sr": {"steps": 8, "aug_level": 0.2}}; a stage
    may be a name or an index."""
    options: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, name = key.rpartition(".")
        if not sep or not dot or not stage or not name:
            raise InputError(f"--stage-option {item!r}: expected STAGE.KEY=VALUE")
        parsed: object = value
        if name == "steps":
            try:
                parsed = int(value)
            except ValueError:
                raise InputError(f"--stage-option {item!r}: steps must be an integer") from None
        elif name != "sampler":
            try:
                parsed = float(value)
            except ValueError:
                raise InputError(f"--stage-option {item!r}: {name} must be a number") from None
        target = int(stage) if stage.lstrip("-").isdigit() else stage
        options.setdefault(target, {})[name] = parsed
    return options


def load_pipeline(args):
    """The pipeline of `--model` on `--device` (cpu, cuda, cuda:N)."""
    import torch

    from ..pipeline import TextToImagePipeline

    device = args.device
    if not (device == "cpu" or re.fullmatch(r"cuda(:\d+)?", device)):
        raise InputError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device here")
    precision = getattr(args, "precision", "auto")
    if device == "cpu" and precision == "fp16":
        raise InputError("--precision fp16 runs on a CUDA device (--device cuda); on the CPU "
                         "use bf16 or fp32")
    dtype = None
    if device != "cpu":  # weights kept in the precision they run in
        from ..precision import native_bf16

        auto = torch.bfloat16 if native_bf16(device) else torch.float16
        dtype = {"auto": auto, "bf16": torch.bfloat16, "fp16": torch.float16,
                 "fp32": torch.float32}[precision]
    return TextToImagePipeline.from_pretrained(args.model, dtype).to(device, dtype)


def bf16_choice(args) -> bool | None:
    """`--precision` as the pipeline's `bf16` argument on the CPU (None: auto); on a GPU the
    weights' dtype decides (`load_pipeline`)."""
    return {"auto": None, "bf16": True, "fp32": False, "fp16": None}[args.precision]


def generate_to_folder(args) -> int:
    from ..model_folder import model_domain

    domain = model_domain(args.model)  # a spec naming no domain is read as the model's
    prompts = read_prompt_lines(args.prompts, domain) if args.prompts else [args.prompt]
    if not prompts[0].strip():
        raise InputError("prompt is empty")
    pipe = load_pipeline(args)
    options = dict(sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                   threshold=args.threshold,
                   stage_options=parse_stage_options(args.stage_option))
    pipe.check_options(**options)
    if args.revise_prompt:  # drawn as read, in the grammar's words
        from ..domains.shapes.plan import revised_prompt

        prompts = [revised_prompt(scene) for scene in
                   read_scenes(prompts, args.show_plan)]
    last = _stage_arg(args.stages)
    if last is not None:
        pipe.stage_index(last)
    if args.rerank > 1 and pipe.aligner is None:
        raise InputError("--rerank needs a model with an aligner (none in this folder)")
    control = _control_options(args, pipe, prompts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if control:
        return _generate_controlled(args, pipe, prompts, control, options, last, out)
    per_batch = max(1, args.batch // (args.n * args.rerank))
    written = 0
    chunks = range(0, len(prompts), per_batch)
    for start in tqdm(chunks, desc="generating", disable=len(chunks) == 1, unit="batch"):
        chunk = prompts[start:start + per_batch]
        images = pipe(chunk, n=args.n, seed=args.seed + start * args.n,
                      progress=len(chunks) == 1, rerank=args.rerank, stages=last,
                      bf16=bf16_choice(args), **options)
        for j, image in enumerate(images):
            index, k = start + j // args.n, j % args.n
            save_png(image, out / f"{index:05d}_{k}.png")
            written += 1
    return written


def generate_geneval(args) -> int:
    """GenEval's prompts into its layout: plain prompts, or with `--control scene` each
    covered prompt's openmoji-coco spec drawn by scene control (a prompt naming a class no
    glyph draws is drawn plain)."""
    from ..eval.geneval import read_metadata, write_prompt_folder

    prompts = read_metadata(args.geneval)
    if args.control == "scene" and not any(p.spec for p in prompts):
        raise InputError("--control scene: no GenEval prompt here is covered by a glyph")
    pipe = load_pipeline(args)
    options = dict(sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                   threshold=args.threshold, stage_options=parse_stage_options(args.stage_option))
    pipe.check_options(**options)
    last = _stage_arg(args.stages)
    out = Path(args.out)
    written = 0
    for p in tqdm(prompts, desc="generating", unit="prompt"):
        scene = p.spec if args.control == "scene" and p.spec is not None else None
        images = pipe(p.prompt, n=args.n, seed=args.seed + p.index * args.n, progress=False,
                      stages=last, bf16=bf16_choice(args), scene=scene, **options)
        write_prompt_folder(out, p, images)
        written += len(images)
    return written


def region_args(args, pipe) -> list:
    """--region, --box and --mask-region as checked Regions (masks at the base side)."""
    from ..control.regions import Region, box_mask, check_regions, image_mask, parse_region

    size = pipe.stages[0].cfg.resolution
    regions = [parse_region(r, size) for r in args.region]
    for box, prompt in args.box:
        regions.append(Region(prompt, box_mask(box.split(","), size)))
    for path, prompt in args.mask_region:
        sides = tuple(sorted({size, pipe.stages[-1].cfg.resolution}))
        regions.append(Region(prompt, image_mask(_open_image(path, "L"), size, sides)))
    check_regions(regions)
    return regions


def _control_options(args, pipe, prompts: list[str]) -> dict:
    """Every control flag parsed and checked (before anything is written)."""
    from ..domains import get_domain
    from ..stage_controls import check_attention_options, is_plain

    if args.plan_layout and (args.scene or args.control):
        raise InputError("--plan-layout plans the scene from each prompt: not with --scene "
                         "or --control")
    for prompt in prompts:
        is_plain(prompt)  # raises PromptSyntaxError with the column of the first bad char
    regions = region_args(args, pipe)
    control = {}
    if regions:
        control["regions"] = regions
    if args.negative is not None:
        control["negative_prompt"] = args.negative
    if args.scene:
        try:
            text = Path(args.scene).read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"cannot read scene {args.scene}: {err.strerror}") from None
        control["scene"] = parse_scene_spec(text, pipe.domain)
    if args.control == "scene":
        if not args.prompts:
            raise InputError("--control scene needs --prompts (a JSONL with scenes)")
        control["scenes"] = [scene for _, scene in
                             read_prompt_file(args.prompts, need_scene=True, domain=pipe.domain)]
    if args.show_plan and not (args.plan_layout or args.revise_prompt):
        raise InputError("--show-plan shows what --plan-layout or --revise-prompt read: give "
                         "one of them too")
    if args.plan_layout:  # each prompt's own scene, as --control scene gives each line's
        control["scenes"] = read_scenes(prompts, args.show_plan and not args.revise_prompt,
                                        pipe.domain)
    if args.excite is not None:
        words = [w.strip() for w in args.excite.split(",") if w.strip()]
        control["excite"] = words or True
    if args.layout_guidance:
        control["layout_guidance"] = args.layout_guidance
    has_regions = bool(regions) or "scene" in control or "scenes" in control
    for prompt in prompts:  # before anything is written
        check_attention_options(prompt, control.get("excite", False), args.layout_guidance,
                                has_regions, get_domain(pipe.domain).subject_nouns)
    if args.rerank > 1 and control:
        raise InputError("--rerank does not combine with control options")
    return control


def read_scenes(prompts: list[str], show: bool, domain: str = "shapes") -> list:
    """Each prompt's scene as the planner reads it (a prompt it cannot read raises
    PlanError); words it could not read are reported on stderr, and with `show` the reading
    is printed in canonical words and as a spec. Domains other than shapes read by their
    own reader (`Domain.read`), which refuses what it cannot read."""
    from ..domains import get_domain
    from ..domains.shapes.plan import plan_with_report, revised_prompt

    if domain != "shapes":
        scenes = [get_domain(domain).read(prompt) for prompt in prompts]
        if show:
            for prompt, scene in zip(prompts, scenes, strict=True):
                print(f"read {prompt!r} as {json.dumps(scene.to_spec())}")
        return scenes

    scenes = []
    for prompt in prompts:
        scene, unread = plan_with_report(prompt)
        if unread:
            print(f"could not read: {', '.join(map(repr, unread))} (in {prompt!r})",
                  file=sys.stderr)
        if show:
            print(f"read {prompt!r} as {revised_prompt(scene)!r}: {json.dumps(scene.to_spec())}")
        scenes.append(scene)
    return scenes


def _generate_controlled(args, pipe, prompts, control, options, last, out: Path) -> int:
    scenes = control.pop("scenes", None)
    written = 0
    for index in tqdm(range(len(prompts)), desc="generating", disable=len(prompts) == 1):
        extra = dict(control, scene=scenes[index]) if scenes else control
        images = pipe(prompts[index], n=args.n, seed=args.seed + index * args.n,
                      progress=len(prompts) == 1, stages=last, bf16=bf16_choice(args),
                      **options, **extra)
        for k, image in enumerate(images):
            save_png(image, out / f"{index:05d}_{k}.png")
            written += 1
    return written


def _open_image(path: str, mode: str):
    from ..images import open_image

    return open_image(path, mode)


def edit_files(args) -> int:
    """`fineimagen edit`: prompt-to-prompt, img2img or inpainting; inputs checked before
    anything is written."""
    if (args.source is None) != (args.target is None):
        raise InputError("prompt-to-prompt needs both --from and --to")
    if args.plan_layout and args.source is None:
        raise InputError("--plan-layout plans prompt-to-prompt edits: give --from and --to")
    if args.source is not None:
        if args.image or args.prompt:
            raise InputError("give --from/--to, or --image with --prompt, not both")
        return _edit_prompt(args)
    if not args.image or args.prompt is None:
        raise InputError("edit needs --from and --to, or --image and --prompt")
    image = _open_image(args.image, "RGB")
    mask = _open_image(args.mask, "L") if args.mask else None
    if not args.prompt.strip():
        raise InputError("prompt is empty")
    pipe = load_pipeline(args)
    stage_options = parse_stage_options(args.stage_option)
    options = dict(steps=args.steps, guidance=args.guidance)
    pipe.check_options(stage_options=stage_options, **options)
    if mask is not None and mask.size != image.size:
        raise InputError(f"the mask is {mask.width}x{mask.height}, the image "
                         f"{image.width}x{image.height}: they must match")
    images = pipe.edit(image, args.prompt, mask=mask, strength=args.strength, n=args.n,
                       seed=args.seed, negative_prompt=args.negative,
                       stage_options=stage_options, progress=args.n == 1,
                       bf16=bf16_choice(args), **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k, im in enumerate(images):
        save_png(im, out / f"{k:02d}.png")
    return len(images)


def _edit_prompt(args) -> int:
    reweight = {}
    for item in args.reweight:
        word, sep, value = item.rpartition("=")
        try:
            reweight[word] = float(value)
        except ValueError:
            raise InputError(f"--reweight {item!r}: expected WORD=NUMBER") from None
        if not sep or not word:
            raise InputError(f"--reweight {item!r}: expected WORD=NUMBER")
    pipe = load_pipeline(args)
    stage_options = parse_stage_options(args.stage_option)
    sources, targets = pipe.edit_prompt(args.source, args.target, n=args.n, seed=args.seed,
                                        reweight=reweight, inject=args.inject,
                                        stage_options=stage_options,
                                        progress=args.n == 1, steps=args.steps,
                                        guidance=args.guidance, bf16=bf16_choice(args),
                                        plan_layout=args.plan_layout)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k, (a, b) in enumerate(zip(sources, targets, strict=True)):
        save_png(a, out / f"{k:02d}_source.png")
        save_png(b, out / f"{k:02d}.png")
    return 2 * len(targets)


def _stage_arg(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


def upscale_files(args) -> int:
    """`fineimagen upscale`: every input checked before anything is written."""

    images = [_open_image(name, "RGB") for name in args.images]
    if args.prompt is not None and not args.prompt.strip():
        raise InputError("prompt is empty")
    pipe = load_pipeline(args)
    stage_options = parse_stage_options(args.stage_option)
    pipe.check_options(stage_options=stage_options)
    regions = region_args(args, pipe)
    stage, last = _stage_arg(args.stage), _stage_arg(args.stages)
    outputs = pipe.upscale(images, args.prompt, seed=args.seed, stage=stage, stages=last,
                           stage_options=stage_options, progress=len(images) == 1,
                           bf16=bf16_choice(args), regions=regions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, image in zip(args.images, outputs, strict=True):
        save_png(image, out / (Path(name).stem + ".png"))
    return len(outputs)
