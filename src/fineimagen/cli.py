"""The `fineimagen` command line: dataset and eval (generation and training build on these).

Every user error prints one line `fineimagen: error: ...` to stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import InputError


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
    evalset = kinds.add_parser("evalset", help="a balanced GenEval-style prompt set (JSONL)")
    evalset.add_argument("--out", required=True, help="output .jsonl file")
    evalset.add_argument("--n", type=_positive, required=True, help="number of prompts")
    evalset.add_argument("--split", choices=("train", "heldout"), default="heldout")
    evalset.add_argument("--seed", type=int, default=0)

    ev = commands.add_parser("eval", help="score images against scene specs, or self-test")
    ev.add_argument("--selftest", action="store_true", help="validate the scene parser")
    ev.add_argument("--prompts", help="prompts JSONL ({'prompt', 'scene'} a line)")
    ev.add_argument("--images", help="folder of {index:05d}_{k}.png")
    ev.add_argument("--render-truth", action="store_true",
                    help="score ground-truth renders of the specs instead of --images")
    ev.add_argument("--save-images", help="with --render-truth: keep the renders here")
    ev.add_argument("--size", type=int, default=128, help="render size for --render-truth")
    ev.add_argument("--samples", type=_positive, default=1, help="renders per prompt")
    ev.add_argument("--n", type=_positive, default=2000, help="scenes per row of --selftest")
    ev.add_argument("--sizes", default="32,64,128", help="sizes for --selftest")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", help="also write the results here as JSON")
    return parser


def _dataset(args) -> None:
    if args.kind == "shapes":
        from .data.shapes import write_folder

        out = write_folder(args.out, args.n, args.size, args.split, args.seed)
        print(f"wrote {args.n} scenes of {args.size} px to {out}")
        return
    from .eval.compbench import make_evalset
    from .files import atomic_write_text

    items = make_evalset(args.n, args.split, args.seed)
    lines = [json.dumps({"prompt": it.prompt, "scene": it.scene.to_spec(),
                         "category": it.category, "unseen": it.unseen}) for it in items]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {len(items)} prompts to {args.out}")


def _eval(args) -> None:
    if args.selftest:
        _selftest(args)
        return
    if not args.prompts:
        raise InputError("eval needs --selftest, or --prompts with --images or --render-truth")
    from .eval import compbench

    items = compbench.read_prompts(args.prompts)
    if args.render_truth:
        scores = _score_truth(items, args)
    elif args.images:
        scores = compbench.score_folder(items, args.images)
    else:
        raise InputError("--prompts needs --images DIR or --render-truth")
    print(compbench.format_table(scores))
    _write_json(args.json, scores)


def _score_truth(items, args) -> dict:
    from .data.shapes import check_side
    from .eval.compbench import render_truth

    check_side(args.size)
    if args.save_images:
        from .files import atomic_folder

        with atomic_folder(args.save_images) as folder:
            return render_truth(items, args.size, args.samples, args.seed, folder)
    return render_truth(items, args.size, args.samples, args.seed)


def _selftest(args) -> None:
    from .eval.selftest import agreement, format_agreement

    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise InputError(f"--sizes must be integers joined by commas: {args.sizes!r}") from None
    rows = {}
    for size in sizes:
        for perturbed in (False, True):
            name = f"{size}px {'perturbed' if perturbed else 'clean'}"
            rows[name] = agreement(size, args.n, args.seed, perturbed)
    print(format_agreement(rows))
    _write_json(args.json, {name: vars(row) for name, row in rows.items()})


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        from .files import atomic_write_text

        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        {"dataset": _dataset, "eval": _eval}[args.command](args)
    except InputError as err:
        print(f"fineimagen: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fineimagen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
