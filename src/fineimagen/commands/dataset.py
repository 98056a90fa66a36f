"""The `dataset` verb: shapes and OpenMoji scene data, and evaluation prompt sets."""

from __future__ import annotations

import json

from ..errors import InputError


def dataset(args) -> None:
    if args.kind == "openmoji":
        openmoji_dataset(args)
        return
    if args.kind == "evalset" and args.domain == "openmoji":
        from ..files import atomic_write_text

        records = openmoji_evalset(args)
        atomic_write_text(args.out, dumps(records))
        print(f"wrote {len(records)} prompts to {args.out}")
        return
    if args.kind == "shapes":
        from ..domains.shapes.samples import write_folder

        out = write_folder(args.out, args.n, args.size, args.split, args.seed)
        print(f"wrote {args.n} scenes of {args.size} px to {out}")
        return
    from ..eval.compbench import make_evalset
    from ..files import atomic_write_text

    items = make_evalset(args.n, args.split, args.seed, args.style)
    lines = [json.dumps({"prompt": it.prompt, "scene": it.scene.to_spec(),
                         "category": it.category, "unseen": it.unseen}) for it in items]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {len(items)} prompts to {args.out}")


def openmoji_dataset(args) -> None:
    from ..domains.openmoji.vocab import vocabulary

    if args.list_vocab:
        print("\n".join(vocabulary(args.list_vocab)))
        return
    if not args.out or not args.n:
        raise InputError("dataset openmoji needs --out and --n (or --list-vocab VOCAB)")
    if not 32 <= args.size <= 512:
        raise InputError(f"--size must be 32-512 px for openmoji scenes, got {args.size}")
    from tqdm import tqdm

    from ..data.writers import write_samples
    from ..domains import get_domain
    from ..domains.openmoji.render import attribution
    from ..domains.openmoji.scene import make_emoji_sample

    domain = get_domain("openmoji-coco" if args.vocab == "openmoji-coco" else "openmoji")
    names = vocabulary(args.vocab)

    def samples():
        for i in tqdm(range(args.n), desc="rendering", unit="scene"):
            s = make_emoji_sample(i, args.size, names, args.split, args.seed, domain.colors,
                                  domain.name)
            yield s.image, s.caption, {"scene": s.scene.to_spec()}

    card = (f"# OpenMoji scenes ({args.vocab}, {args.n} scenes, {args.size} px, split "
            f"{args.split}, seed {args.seed})\n\nMade by `fineimagen dataset openmoji`. "
            f"{attribution()}\n")
    out = write_samples(args.out, samples(), args.format, card)
    print(f"wrote {args.n} scenes of {args.size} px to {out} ({args.format})")


def openmoji_evalset(args) -> list[dict]:
    from ..domains.openmoji.vocab import vocabulary
    from ..eval.emoji_bench import make_emoji_evalset

    style = {"grammar": "canonical", "free": "paraphrase"}[args.style]
    items = make_emoji_evalset(args.n, vocabulary(args.vocab), args.split, args.seed, style)
    return [{"prompt": it.prompt, "scene": it.scene.to_spec(), "category": it.category,
             "unseen": it.unseen} for it in items]


def dumps(records: list[dict]) -> str:
    return "\n".join(json.dumps(r) for r in records) + "\n"
