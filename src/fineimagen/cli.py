"""The `fineimagen` command line: dataset, eval, train, generate, upscale, edit.

Every user error prints one line `fineimagen: error: ...` to stderr and exits with code 2.
This module only parses (the options of ten verbs make it long); each verb's work is in
commands/.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import InputError, TrainingError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise InputError(message)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fineimagen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    dataset = commands.add_parser("dataset", help="write shapes data or an eval prompt set")
    kinds = dataset.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    shapes = kinds.add_parser("shapes", help="an image-text folder of shapes scenes")
    shapes.add_argument("--out", required=True, help="output folder (new or empty)")
    shapes.add_argument("--n", type=_positive, required=True, help="number of scenes")
    shapes.add_argument("--size", type=int, default=128, help="image side in px (16-4096)")
    shapes.add_argument("--split", choices=("train", "heldout"), default="train")
    shapes.add_argument("--seed", type=int, default=0)
    _add_openmoji_dataset(kinds)
    evalset = kinds.add_parser("evalset", help="a balanced GenEval-style prompt set (JSONL)")
    evalset.add_argument("--out", required=True, help="output .jsonl file")
    evalset.add_argument("--n", type=_positive, required=True, help="number of prompts")
    evalset.add_argument("--split", choices=("train", "heldout"), default="heldout")
    evalset.add_argument("--style", choices=("grammar", "free"), default="grammar",
                         help="word the scenes as training captions do, or in a second "
                              "phrase bank never used in training (same scenes per seed)")
    evalset.add_argument("--seed", type=int, default=0)
    evalset.add_argument("--domain", choices=("shapes", "openmoji"), default="shapes",
                         help="openmoji: emoji scenes (--style free names objects by the "
                              "aliases training never saw)")
    evalset.add_argument("--vocab", default="openmoji-100", help="--domain openmoji: vocabulary")

    ev = commands.add_parser("eval", help="score images against scene specs, or self-test")
    ev.add_argument("--selftest", action="store_true", help="validate the scene parser")
    ev.add_argument("--adversarial", action="store_true",
                    help="changed truth renders that must fail or pass (with --prompts, of "
                         "those prompts; else of a fresh held-out set of 400)")
    ev.add_argument("--prompts", help="prompts JSONL ({'prompt', 'scene'} a line)")
    ev.add_argument("--geneval", metavar="METADATA",
                    help="GenEval's evaluation_metadata.jsonl: score --images (GenEval's "
                         "layout) or --render-truth by GenEval's rules, the exact OpenMoji "
                         "evaluator in place of its detector (openmoji-coco)")
    ev.add_argument("--images", help="folder of {index:05d}_{k}.png")
    ev.add_argument("--render-truth", action="store_true",
                    help="score ground-truth renders of the specs instead of --images")
    ev.add_argument("--save-images", help="with --render-truth: keep the renders here")
    ev.add_argument("--size", type=int, default=128, help="render size for --render-truth")
    ev.add_argument("--samples", type=_positive, default=1, help="renders per prompt")
    ev.add_argument("--n", type=_positive, default=2000, help="scenes per row of --selftest")
    ev.add_argument("--sizes", help="sizes for --selftest (default 32,64,128) or "
                    "--adversarial (default 32,128)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--fid", action="store_true",
                    help="with --images: also the in-domain FID and mean CLIP-score, on the "
                         "aligner of --model, against truth renders of the same prompts")
    ev.add_argument("--model", help="model for --fid: a built-in name or a folder (default shapes)")
    ev.add_argument("--json", help="also write the results here as JSON")
    ev.add_argument("--domain", choices=("shapes", "openmoji"), default="shapes",
                    help="the scenes' domain (openmoji: emoji identity by template matching)")
    ev.add_argument("--vocab", default="openmoji-100", help="--domain openmoji: vocabulary")
    embed = commands.add_parser("embed", help="encode every distinct caption of a dataset "
                                "once into a text-embedding store")
    embed.add_argument("--data", required=True, help="a dataset (see train --data)")
    embed.add_argument("--preset", default="shapes-32-128",
                       help="preset whose frozen text encoder encodes (default shapes-32-128)")
    embed.add_argument("--out", required=True, help="store folder (new or empty)")
    embed.add_argument("--text-column", dest="text_column", default="text",
                       help="a Hugging Face dataset's text column")
    _add_train(commands)
    export = commands.add_parser("export", help="each network as an ONNX or OpenVINO graph, "
                                 "for CPU serving runtimes")
    export.add_argument("--model", help="a built-in model (default shapes) or a folder")
    export.add_argument("--format", choices=("onnx", "openvino"), default="onnx")
    export.add_argument("--out", required=True, help="the exported folder (new or empty); "
                        "`generate --model OUT` samples from it")
    serve = commands.add_parser("serve", help="an HTTP API in the OpenAI images style")
    serve.add_argument("--model", help="a built-in model (default shapes) or a folder")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", dest="api_key", default=os.environ.get("FINEIMAGEN_API_KEY"),
                       help="require `Authorization: Bearer KEY` (or FINEIMAGEN_API_KEY)")
    serve.add_argument("--max-queue", dest="max_queue", type=_positive, default=64)
    serve.add_argument("--max-batch", dest="max_batch", type=_positive, default=8)
    serve.add_argument("--cors", help="allow this browser origin (none by default)")
    serve.add_argument("--no-ui", dest="ui", action="store_false",
                       help="the HTTP API alone, without the web UI at /ui")
    serve.add_argument("--files", default="serve-files",
                       help="folder for images returned as URLs (kept one hour)")
    _add_generate(commands)
    _add_upscale(commands)
    _add_edit(commands)
    return parser


def _add_openmoji_dataset(kinds) -> None:
    moji = kinds.add_parser("openmoji", help="scenes of OpenMoji emoji (needs the openmoji "
                            "extra), as an ImageFolder or WebDataset shards")
    moji.add_argument("--out", help="output folder (new or empty)")
    moji.add_argument("--n", type=_positive, help="number of scenes")
    moji.add_argument("--size", type=int, default=64, help="image side in px (32-512)")
    moji.add_argument("--vocab", default="openmoji-100", help="openmoji-100 or openmoji-all")
    moji.add_argument("--format", choices=("imagefolder", "webdataset"), default="imagefolder")
    moji.add_argument("--split", choices=("train", "heldout"), default="train")
    moji.add_argument("--seed", type=int, default=0)
    moji.add_argument("--list-vocab", metavar="VOCAB",
                      help="print the vocabulary's canonical names, one a line, and stop")


def _decays(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected decays like 0.99,0.995, got {text!r}") \
            from None


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train one stage of a cascade")
    train.add_argument("--recipe", help="a named training recipe (e.g. shapes-base) or a "
                       "recipe JSON file; a recipe of phases runs them in order")
    train.add_argument("--stage", help="stage name in the preset (default: base), or 'align' "
                                       "for the contrastive aligner")
    train.add_argument("--preset", help="preset name or JSON file (default: shapes-32-128)")
    train.add_argument("--data", help="'shapes', an image-text folder, an ImageFolder "
                       "(metadata.jsonl), WebDataset shards (.tar, folder or pattern) or a "
                       "Hugging Face dataset (saved to disk or parquet)")
    train.add_argument("--steps", type=int)
    train.add_argument("--batch-size", type=int, dest="batch_size")
    train.add_argument("--grad-accum", type=int, dest="grad_accum")
    train.add_argument("--lr", type=float)
    train.add_argument("--lr-schedule", choices=("constant", "cosine"), dest="lr_schedule",
                       help="after warmup (a resumed run may change it: the decay starts "
                            "from the step it resumes at)")
    train.add_argument("--warmup", type=int, help="optimizer steps of linear warmup")
    train.add_argument("--ema-decay", type=float, dest="ema_decay")
    train.add_argument("--ema-also", type=_decays, dest="ema_also", metavar="D,D,...",
                       help="more EMA decays kept beside --ema-decay, each exported as "
                            "OUT/model-ema-D")
    train.add_argument("--mixed-precision", choices=("auto", "bf16", "no"),
                       dest="mixed_precision", help="auto (default): bf16 where the hardware "
                       "computes it natively, else fp32")
    train.add_argument("--checkpoint-every", type=int, dest="checkpoint_every")
    train.add_argument("--snapshot-every", type=int, dest="snapshot_every", metavar="N",
                       help="also write the EMA model every N steps to OUT/snapshots/ "
                            "(for learning curves)")
    train.add_argument("--max-bad-steps", type=int, dest="max_bad_steps", metavar="K",
                       help="stop after K steps in a row with a non-finite loss or gradient "
                            "(each is skipped; default 10)")
    train.add_argument("--workers", type=int)
    train.add_argument("--crop", type=int, help="SR stages: train on random crops of this side")
    train.add_argument("--seed", type=int)
    train.add_argument("--out", help="run folder (checkpoint, metrics, model/)")
    train.add_argument("--resume", action="store_true",
                       help="continue from out/checkpoint.pt (a recipe of phases: skip the "
                            "finished ones, continue the interrupted one)")
    train.add_argument("--image-column", dest="image_column",
                       help="--data a Hugging Face dataset: the image column (default image)")
    train.add_argument("--text-column", dest="text_column",
                       help="--data a Hugging Face dataset: the text column (default text)")
    train.add_argument("--text-store", dest="text_store", metavar="STORE",
                       help="read the captions' text embeddings from this store "
                            "(`fineimagen embed`) instead of running the text encoder")
    train.add_argument("--varied-captions", action="store_true", dest="varied_captions",
                       help="shapes data: captions also in training-only wordings, sentence "
                            "frames and filler sentences (long prompts)")
    train.add_argument("--distill-from", dest="distill_from", metavar="TEACHER",
                       help="guided distillation of this pipeline folder's base stage: with "
                            "--distill-steps 0 (default) its guidance into one call, with N "
                            "its sampling into N DDIM steps (halve N run by run)")
    train.add_argument("--distill-steps", type=int, dest="distill_steps", metavar="N")
    train.add_argument("--init", help="fine-tune: start from this pipeline folder's weights "
                       "for the stage (its configs must match the preset)")
    train.add_argument("--train-only", dest="train_only", metavar="PREFIXES",
                       help="train only the parameters whose names start with these "
                            "(comma-separated), e.g. model.region_in")
    train.add_argument("--swap-negatives", type=float, dest="swap_negatives", metavar="P",
                       help="--stage align: the chance that a hard negative swaps an "
                            "attribute between two groups of the scene")
    train.add_argument("--negative-weight", type=_attribute_weight, action="append",
                       dest="negative_weights", metavar="ATTRIBUTE=W",
                       help="--stage align: make that attribute's hard negatives W times as "
                            "likely as the others' (repeatable), e.g. texture=3")
    train.add_argument("--texture-loss", type=float, dest="texture_loss", metavar="W",
                       help="--stage align on shapes: add W x an auxiliary loss, which "
                            "textures each render shows (a training-only head)")
    train.add_argument("--grounding", type=float, metavar="W",
                       help="a base stage on shapes: add W x the attention grounding loss "
                            "(each group's pixels attend to the words that describe it)")
    train.add_argument("--grounding-weighting", choices=("uniform", "signal"),
                       dest="grounding_weighting",
                       help="how the grounding loss weighs a sample's noise level: 'uniform' "
                            "(default) or 'signal', by the signal's share abar(t) of x_t")


def _add_generate(commands) -> None:
    gen = commands.add_parser("generate", help="draw images from text")
    gen.add_argument("prompt", nargs="?", help="the prompt (or use --prompts)")
    gen.add_argument("--prompts", help="a prompts JSONL: one image set per line")
    gen.add_argument("--geneval", metavar="METADATA",
                     help="GenEval's evaluation_metadata.jsonl: draw every prompt into "
                          "GenEval's layout (OUT/<index:05d>/samples/<k:05d>.png)")
    gen.add_argument("--model", help="a built-in model (default shapes) or a folder")
    gen.add_argument("--sampler", help="ddpm | ddim | dpm++ | unipc")
    gen.add_argument("--steps", type=int)
    gen.add_argument("--guidance", type=float)
    gen.add_argument("--threshold", type=float, help="dynamic thresholding percentile")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--n", type=_positive, default=1, help="images per prompt")
    gen.add_argument("--batch", type=_positive, default=64, help="images per model batch")
    gen.add_argument("--rerank", type=_positive, default=1,
                     help="draw N candidates per image, keep the best by the aligner's score")
    _add_stage_options(gen)
    gen.add_argument("--stages", help="last stage to run, by name or index (default: all)")
    gen.add_argument("--negative", help="negative prompt (replaces the unconditional branch)")
    _add_region_args(gen)
    gen.add_argument("--scene", help="a scene spec JSON file: one region per object")
    gen.add_argument("--control", choices=("scene",),
                     help="with --prompts: compile each line's scene to regions")
    gen.add_argument("--plan-layout", action="store_true", dest="plan_layout",
                     help="read each prompt's scene off its words (shapes grammar) and draw it "
                          "with scene control")
    gen.add_argument("--revise-prompt", action="store_true", dest="revise_prompt",
                     help="draw each prompt as the planner read it, in the training grammar's "
                          "words (shapes; plain generation unless --plan-layout)")
    gen.add_argument("--show-plan", action="store_true", dest="show_plan",
                     help="with --plan-layout or --revise-prompt: print the scene each prompt "
                          "was read as, in canonical words and as a spec")
    gen.add_argument("--excite", nargs="?", const="", metavar="WORDS",
                     help="attend-and-excite: strengthen neglected subjects (default: the "
                          "prompt's shape nouns; or comma-separated words)")
    gen.add_argument("--layout-guidance", type=float, default=0.0, dest="layout_guidance",
                     metavar="STEP", help="pull each region's subject into its region by "
                     "gradient steps of this size (0: off; try 0.03)")
    gen.add_argument("--out", default="out", help="output folder")


def _add_edit(commands) -> None:
    ed = commands.add_parser("edit", help="prompt-to-prompt (--from/--to), img2img or "
                                          "inpainting (--image [--mask] --prompt)")
    ed.add_argument("--from", dest="source", help="prompt-to-prompt: the source prompt")
    ed.add_argument("--to", dest="target", help="prompt-to-prompt: the edited prompt")
    ed.add_argument("--reweight", action="append", default=[], metavar="WORD=FACTOR",
                    help="prompt-to-prompt: scale a word's attention; repeatable")
    ed.add_argument("--inject", action=argparse.BooleanOptionalAction, default=None,
                    help="prompt-to-prompt: inject the source's attention maps (keeps the "
                         "layout; default only for --reweight of the same prompt) or draw "
                         "the edit free and blend where the predictions differ")
    ed.add_argument("--plan-layout", action="store_true", dest="plan_layout",
                    help="prompt-to-prompt by planning: both prompts read as scenes, only the "
                         "changed objects redrawn")
    ed.add_argument("--image", help="a square RGB image")
    ed.add_argument("--prompt")
    ed.add_argument("--mask", help="inpainting mask of the image's size (white = repaint)")
    ed.add_argument("--strength", type=float,
                    help="share of the schedule to run (default 0.6; 1 with --mask)")
    ed.add_argument("--negative", help="negative prompt")
    ed.add_argument("--model", help="a built-in model (default shapes) or a folder")
    ed.add_argument("--n", type=_positive, default=1)
    ed.add_argument("--seed", type=int, default=0)
    ed.add_argument("--steps", type=int)
    ed.add_argument("--guidance", type=float)
    _add_stage_options(ed)
    ed.add_argument("--out", default="out", help="output folder ({k:02d}.png)")


def _add_stage_options(parser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                        help="auto (default): on the CPU bf16 where it computes it natively "
                             "(AVX-512 BF16, AMX), else fp32; on a GPU bf16 weights where "
                             "supported, else fp16 (fp16: GPU only)")
    parser.add_argument("--stage-option", action="append", default=[], dest="stage_option",
                        metavar="STAGE.KEY=VALUE",
                        help="a sampling option of one stage, e.g. sr.steps=8 or "
                             "sr.aug_level=0.2 (keys: sampler, steps, guidance, threshold, "
                             "aug_level); repeatable")


def _add_region_args(parser) -> None:
    parser.add_argument("--region", action="append", default=[], metavar="'NAME: PROMPT'",
                        help="a prompt for a named region (top left ... bottom right, left "
                             "half ...); repeatable")
    parser.add_argument("--box", action="append", nargs=2, default=[],
                        metavar=("X0,Y0,X1,Y1", "PROMPT"),
                        help="a prompt for a box (fractions of the side); repeatable")
    parser.add_argument("--mask-region", action="append", nargs=2, default=[],
                        dest="mask_region", metavar=("MASK", "PROMPT"),
                        help="a prompt for a mask image (white = inside); repeatable")


def _add_upscale(commands) -> None:
    up = commands.add_parser("upscale", help="enlarge images with the super-resolution stages")
    up.add_argument("images", nargs="+", help="square RGB images (PNG/JPEG)")
    up.add_argument("--prompt", help="what the images show (needed by diffusion SR stages; "
                    "a regression stage with reads_prompt reads it too)")
    up.add_argument("--model", help="a built-in model (default shapes) or a folder")
    up.add_argument("--stage", default="1", help="first SR stage, by name or index (default 1)")
    up.add_argument("--stages", help="last stage to run, by name or index (default: all)")
    _add_region_args(up)  # for SR stages that read region prompts
    _add_stage_options(up)
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--out", default="out", help="output folder (same file names, PNG)")


def _attribute_weight(text: str) -> tuple[str, float]:
    """"texture=3" -> ("texture", 3.0), for --negative-weight."""
    name, _, weight = text.partition("=")
    try:
        return name, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ATTRIBUTE=WEIGHT, got {text!r}") from None


def _generate(args) -> None:
    from .commands.generate import generate_geneval, generate_to_folder

    if args.geneval:
        if args.prompt is not None or args.prompts is not None:
            raise InputError("--geneval draws GenEval's prompts: give no prompt or --prompts")
        written = generate_geneval(args)
        print(f"wrote {written} images to {args.out} (GenEval's layout)")
        return
    if (args.prompt is None) == (args.prompts is None):
        raise InputError("give one prompt or --prompts FILE")
    written = generate_to_folder(args)
    print(f"wrote {written} images to {args.out}")


def _edit(args) -> None:
    from .commands.generate import edit_files

    written = edit_files(args)
    print(f"wrote {written} images to {args.out}")


def _upscale(args) -> None:
    from .commands.generate import upscale_files

    written = upscale_files(args)
    print(f"wrote {written} images to {args.out}")


def _export(args) -> None:
    from .export import export_pipeline
    from .pipeline import TextToImagePipeline

    out = export_pipeline(TextToImagePipeline.from_pretrained(args.model), args.out,
                          args.format)
    print(f"exported to {out} ({args.format}); sample with: fineimagen generate --model {out}")


def _serve(args) -> None:
    try:
        import uvicorn

        from .serve.app import ServeConfig, create_app
    except ImportError:
        raise InputError("serve needs the serve extra: pip install 'fineimagen[serve]'") from None
    from .pipeline import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(args.model)
    name = "shapes" if args.model is None else os.path.basename(os.path.normpath(args.model))
    app = create_app(pipe, ServeConfig(args.api_key, args.max_queue, args.max_batch, args.files,
                                       cors=args.cors, model_name=name, ui=args.ui))
    ui = f", UI: http://{args.host}:{args.port}/ui" if args.ui else ""
    print(f"serving {name} on http://{args.host}:{args.port} (API: /v1/images/generations{ui})")
    # bounded: at most 128 open connections (more get 503), idle ones closed after 5 s
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                limit_concurrency=128, timeout_keep_alive=5)


def _train(args) -> None:
    from .commands.train import train_recipe

    train_recipe(args, main)


def _embed(args) -> None:
    from .commands.train import embed

    embed(args)


def _dataset(args) -> None:
    from .commands.dataset import dataset

    dataset(args)


def _eval(args) -> None:
    from .commands.evaluate import evaluate

    evaluate(args)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        {"dataset": _dataset, "embed": _embed, "eval": _eval, "train": _train,
         "generate": _generate, "upscale": _upscale, "edit": _edit,
         "export": _export, "serve": _serve}[args.command](args)
    except InputError as err:
        print(f"fineimagen: error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"fineimagen: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fineimagen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
