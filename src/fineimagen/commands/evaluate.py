"""The `eval` verb: score images (or truth renders) against scene specs, the evaluator's
self-test and its adversarial check, in the shapes or the OpenMoji domain."""

from __future__ import annotations

import json

from ..errors import InputError


def evaluate(args) -> None:
    if args.geneval:
        write_json(args.json, evaluate_geneval(args))
        return
    if args.domain == "openmoji":
        write_json(args.json, evaluate_openmoji(args))
        return
    if args.selftest:
        _selftest(args)
        return
    if args.adversarial:
        _adversarial(args)
        return
    if not args.prompts:
        raise InputError("eval needs --selftest, or --prompts with --images or --render-truth")
    from ..eval import compbench

    items = compbench.read_prompts(args.prompts)
    if args.render_truth:
        scores = _score_truth(items, args)
    elif args.images:
        scores = compbench.score_folder(items, args.images)
    else:
        raise InputError("--prompts needs --images DIR or --render-truth")
    print(compbench.format_table(scores))
    if args.fid:
        scores["fid"] = _fid(items, args)
    write_json(args.json, scores)


def _fid(items, args) -> dict:
    from ..eval.fid import in_domain_fid
    from ..pipeline import TextToImagePipeline

    if not args.images:
        raise InputError("--fid needs --images DIR")
    pipe = TextToImagePipeline.from_pretrained(args.model)
    if pipe.aligner is None:
        raise InputError("--fid needs a model with an aligner (none in this folder)")
    result = in_domain_fid(pipe.aligner, items, args.images, args.seed)
    print(f"in-domain FID {result['fid']:.2f} ({result['n_generated']} generated vs "
          f"{result['n_truth']} truth renders); mean score generated "
          f"{result['score_generated']:.3f}, truth {result['score_truth']:.3f}")
    return result


def _score_truth(items, args) -> dict:
    from ..domains.shapes.samples import check_side
    from ..eval.compbench import render_truth

    check_side(args.size)
    if args.save_images:
        from ..files import atomic_folder

        with atomic_folder(args.save_images) as folder:
            return render_truth(items, args.size, args.samples, args.seed, folder)
    return render_truth(items, args.size, args.samples, args.seed)


def _sizes(text: str) -> list[int]:
    from ..domains.shapes.samples import check_side

    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise InputError(f"--sizes must be integers joined by commas: {text!r}") from None
    for size in sizes:
        check_side(size)
    return sizes


def _adversarial(args) -> None:
    from ..eval import adversarial, compbench

    items = compbench.read_prompts(args.prompts) if args.prompts else \
        compbench.make_evalset(400, "heldout", seed=args.seed + 1000)
    table = adversarial.run(items, _sizes(args.sizes or "32,128"), args.seed)
    print(adversarial.format_table(table))
    write_json(args.json, table)


def _selftest(args) -> None:
    from ..domains.shapes.selftest import agreement, format_agreement

    sizes = _sizes(args.sizes or "32,64,128")
    rows = {}
    for size in sizes:
        for condition in ("clean", "perturbed", "rimmed"):
            rows[f"{size}px {condition}"] = agreement(
                size, args.n, args.seed, perturbed=condition != "clean",
                rimmed=condition == "rimmed")
    print(format_agreement(rows))
    write_json(args.json, {name: vars(row) for name, row in rows.items()})


def evaluate_openmoji(args) -> dict:
    from ..domains.openmoji.vocab import vocabulary
    from ..eval import emoji_bench

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
    from ..eval.compbench import format_table

    items = emoji_bench.read_emoji_prompts(args.prompts, names)
    if args.render_truth:
        images = [[emoji_bench.truth_image(it, args.size, args.seed, k * args.samples + j)[0]
                   for j in range(args.samples)] for k, it in enumerate(items)]
        if args.save_images:  # the shapes' layout: {index:05d}_{k}.png
            from PIL import Image

            from ..files import atomic_folder

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
        from ..pipeline import TextToImagePipeline

        pipe = TextToImagePipeline.from_pretrained(args.model)
        if pipe.aligner is None:
            raise InputError("--fid needs a model with an aligner (none in this folder)")
        scores["fid"] = emoji_bench.emoji_fid(pipe.aligner, items, images, args.seed)
        print(f"in-domain FID {scores['fid']['fid']:.2f} ({scores['fid']['n_generated']} "
              f"generated vs {scores['fid']['n_truth']} truth renders)")
    return scores


def evaluate_geneval(args) -> dict:
    """GenEval's prompts scored by its rules with the exact OpenMoji evaluator: images in
    its layout, or truth renders of the covered prompts' specs (`--render-truth`)."""
    import numpy as np

    from ..domains import get_domain, parse_scene
    from ..domains.openmoji.parser import parse_emoji_image
    from ..eval import geneval

    prompts = geneval.read_metadata(args.geneval)
    domain = get_domain(geneval.DOMAIN)
    if not (args.images or args.render_truth):
        raise InputError("--geneval needs --images DIR (GenEval's layout) or --render-truth")
    correct: dict[int, list[bool]] = {}
    for p in prompts:
        correct[p.index] = []
        if p.spec is None:
            continue
        if args.render_truth:
            scene = parse_scene(p.spec)
            images = [domain.render(scene, args.size,
                                    np.random.default_rng([args.seed, p.index, k]))
                      for k in range(args.samples)]
            if args.save_images:
                from PIL import Image

                geneval.write_prompt_folder(args.save_images, p,
                                            [Image.fromarray(im) for im in images])
        else:
            images = geneval.read_prompt_images(args.images, p)
        for image in images:
            parsed = parse_emoji_image(image, domain.names, domain.colors)
            correct[p.index].append(geneval.is_correct(p.record, parsed, image.shape[0]))
    scores = geneval.summarize(prompts, correct)
    print(geneval.format_table(scores))
    return scores


def write_json(path: str | None, payload: dict) -> None:
    if path:
        from ..files import atomic_write_text

        atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
