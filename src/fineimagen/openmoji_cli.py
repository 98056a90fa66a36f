"""The OpenMoji domain's command-line verbs: `dataset openmoji`, `dataset evalset --domain
openmoji`, `eval --domain openmoji` (self-test, adversarial check, scoring)."""

from __future__ import annotations

import json

from .errors import InputError


def add_dataset_parser(kinds, positive) -> None:
    moji = kinds.add_parser("openmoji", help="scenes of OpenMoji emoji (needs the openmoji "
                            "extra), as an ImageFolder or WebDataset shards")
    moji.add_argument("--out", help="output folder (new or empty)")
    moji.add_argument("--n", type=positive, help="number of scenes")
    moji.add_argument("--size", type=int, default=64, help="image side in px (32-512)")
    moji.add_argument("--vocab", default="openmoji-100", help="openmoji-100 or openmoji-all")
    moji.add_argument("--format", choices=("imagefolder", "webdataset"), default="imagefolder")
    moji.add_argument("--split", choices=("train", "heldout"), default="train")
    moji.add_argument("--seed", type=int, default=0)
    moji.add_argument("--list-vocab", metavar="VOCAB",
                      help="print the vocabulary's canonical names, one a line, and stop")


def dataset(args) -> None:
    from .domains.openmoji.vocab import vocabulary

    if args.list_vocab:
        print("\n".join(vocabulary(args.list_vocab)))
        return
    if not args.out or not args.n:
        raise InputError("dataset openmoji needs --out and --n (or --list-vocab VOCAB)")
    if not 32 <= args.size <= 512:
        raise InputError(f"--size must be 32-512 px for openmoji scenes, got {args.size}")
    from tqdm import tqdm

    from .data.writers import write_samples
    from .domains.openmoji.render import attribution
    from .domains.openmoji.scene import make_emoji_sample

    names = vocabulary(args.vocab)

    def samples():
        for i in tqdm(range(args.n), desc="rendering", unit="scene"):
            s = make_emoji_sample(i, args.size, names, args.split, args.seed)
            yield s.image, s.caption, {"scene": s.scene.to_spec()}

    card = (f"# OpenMoji scenes ({args.vocab}, {args.n} scenes, {args.size} px, split "
            f"{args.split}, seed {args.seed})\n\nMade by `fineimagen dataset openmoji`. "
            f"{attribution()}\n")
    out = write_samples(args.out, samples(), args.format, card)
    print(f"wrote {args.n} scenes of {args.size} px to {out} ({args.format})")


def evalset(args) -> list[dict]:
    from .domains.openmoji.vocab import vocabulary
    from .eval.emoji_bench import make_emoji_evalset

    style = {"grammar": "canonical", "free": "paraphrase"}[args.style]
    items = make_emoji_evalset(args.n, vocabulary(args.vocab), args.split, args.seed, style)
    return [{"prompt": it.prompt, "scene": it.scene.to_spec(), "category": it.category,
             "unseen": it.unseen} for it in items]


def evaluate(args) -> dict:
    from .domains.openmoji.vocab import vocabulary
    from .eval import emoji_bench

    names = vocabulary(args.vocab)
    if args.selftest:
        sizes = [int(s) for s in (args.sizes or "32,64").split(",")]
        rows = {size: emoji_bench.selftest(names, size, min(args.n, 400), args.seed)
                for size in sizes}
        for size, row in rows.items():
            ids = ", ".join(f"{k} {v:.3f}" for k, v in row["identity"].items())
            print(f"{size:4d} px  identity by size: {ids}; whole scene {row['scene']:.3f} "
                  f"({row['scenes']} scenes, {row['objects']} objects)")
        return {"selftest": rows}
    if args.adversarial:
        items = (emoji_bench.read_emoji_prompts(args.prompts, names) if args.prompts else
                 emoji_bench.make_emoji_evalset(min(args.n, 400), names, seed=args.seed))
        size = int((args.sizes or "64").split(",")[0])
        table = emoji_bench.adversarial(items, names, size, args.seed)
        for change, row in table.items():
            print(f"{change:<30} must {row['must']:<4} passed {row['passed']:.3f} "
                  f"(n {row['n']})" if row["passed"] is not None else f"{change:<30} n 0")
        return {"adversarial": table, "size": size}
    if not args.prompts:
        raise InputError("eval needs --selftest, --adversarial, or --prompts with --images "
                         "or --render-truth")
    from .eval.compbench import format_table

    items = emoji_bench.read_emoji_prompts(args.prompts, names)
    if args.render_truth:
        images = [[emoji_bench.truth_image(it, args.size, args.seed, k * args.samples + j)[0]
                   for j in range(args.samples)] for k, it in enumerate(items)]
        if args.save_images:  # the shapes' layout: {index:05d}_{k}.png
            from PIL import Image

            from .files import atomic_folder

            with atomic_folder(args.save_images) as folder:
                for k, row in enumerate(images):
                    for j, image in enumerate(row):
                        Image.fromarray(image).save(folder / f"{k:05d}_{j}.png")
    elif args.images:
        images = emoji_bench.load_folder_images(args.images, len(items))
    else:
        raise InputError("--prompts needs --images DIR or --render-truth")
    scores = emoji_bench.score_images(items, images, names)
    print(format_table(scores))
    print(f"identity (asked objects drawn as the right emoji): {scores['identity']:.3f}")
    if args.fid:
        from .pipeline import TextToImagePipeline

        pipe = TextToImagePipeline.from_pretrained(args.model)
        if pipe.aligner is None:
            raise InputError("--fid needs a model with an aligner (none in this folder)")
        scores["fid"] = emoji_bench.emoji_fid(pipe.aligner, items, images, args.seed)
        print(f"in-domain FID {scores['fid']['fid']:.2f} ({scores['fid']['n_generated']} "
              f"generated vs {scores['fid']['n_truth']} truth renders)")
    return scores


def dumps(records: list[dict]) -> str:
    return "\n".join(json.dumps(r) for r in records) + "\n"
