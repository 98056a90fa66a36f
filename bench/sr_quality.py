"""Super-resolution quality and cascade latency.

Usage: python bench/sr_quality.py [--model DIR] [--regression DIR] [--n 200] [--out DIR]
1. Held-out shapes scenes drawn at the base size (32 px) and enlarged to 128 px by the
   SR stage of --model, the regression SR stage of --regression and bicubic: PSNR
   and SSIM against the 128 px truth, and the scene parser's agreement with the true scene
   per attribute (texture included, which is unreadable at 32 px).
2. Public-domain photos shipped by scikit-image (`skimage.data`), centre-cropped, reduced to
   32 px and enlarged to 128 px: PSNR and SSIM against the 128 px photo.
3. Latency on this machine: one 128 px image through each cascade (--model's, and
   --regression's) with its settings, per stage (bench/latency.py, default precision).
4. Region prompts, where the --regression stage reads them: the held-out scenes with every
   object's texture drawn as another one in the 32 px input, given each object's prompt
   (every attribute and its cell, as scene control words it) over its box, or the scene's
   caption (every attribute) as a plain prompt, or no text; the parser's texture agreement
   with the scene, and the same for the true inputs. (Section 1 gives the stage the
   samples' own captions, which state a random subset of the attributes.)
Writes sr_quality.json and sr_quality.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.parser import parse_image
from fineimagen.domains.shapes.samples import make_sample
from fineimagen.domains.shapes.selftest import match_groups, truth_groups
from fineimagen.pipeline import TextToImagePipeline
from latency import latency  # bench/ is on sys.path when a bench script runs
from machine import describe


def bicubic(images: list[Image.Image], size: int) -> list[Image.Image]:
    return [im.resize((size, size), Image.BICUBIC) for im in images]


def enlarge(pipe, stage, images, prompts, size, batch=16) -> list[Image.Image]:
    if pipe is None:
        return bicubic(images, size)
    out = []
    for i in range(0, len(images), batch):
        out += pipe.upscale(images[i:i + batch], prompts[i:i + batch], seed=i, stage=stage,
                            progress=False)
    return out


def metrics(outputs, truths) -> dict:
    psnr = [peak_signal_noise_ratio(np.asarray(t), np.asarray(o), data_range=255)
            for o, t in zip(outputs, truths, strict=True)]
    ssim = [structural_similarity(np.asarray(t), np.asarray(o), channel_axis=2,
                                  data_range=255) for o, t in zip(outputs, truths, strict=True)]
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}


def parser_agreement(outputs, scenes) -> dict:
    keys = vocab.ATTRIBUTES
    hits, total, exact = dict.fromkeys(keys, 0), 0, 0
    for image, scene in zip(outputs, scenes, strict=True):
        parsed = parse_image(np.asarray(image))
        truth = truth_groups(scene)
        matched = match_groups(truth, parsed.groups, keys)
        right = True
        for t, d in zip(truth, matched, strict=True):
            for k in keys:
                ok = d is not None and d[k] == t[k]
                hits[k] += ok
                right &= ok
        total += len(truth)
        exact += right and len(parsed.groups) == len(truth)
    per = {k: hits[k] / total for k in keys}
    return {**per, "all": float(np.mean(list(per.values()))), "scenes": exact / len(scenes)}


def region_prompt_texture(pipe, stage, n: int, side: int, low_side: int) -> dict:
    """Section 4: texture agreement of the outputs with the region prompts (see above)."""
    from dataclasses import replace

    from fineimagen.control.regions import Region, box_mask
    from fineimagen.domains.shapes.captions import caption, object_phrase
    from fineimagen.domains.shapes.render import render
    from fineimagen.domains.shapes.scene import Group, sample_scene

    outputs = {f"{given} input, {text}": [] for given in ("restyled", "true")
               for text in ("prompts", "caption", "no prompts")}
    scenes = []
    for i in range(n):
        rng = np.random.default_rng([7, i, 1])  # make_sample's held-out stream, seed 7
        scene, placed = sample_scene(rng, "heldout")
        pick = np.random.default_rng([7, i, 4])
        restyled = [replace(o, texture=str(pick.choice([t for t in vocab.TEXTURES
                                                        if t != o.texture])))
                    for o in placed]
        regions = [Region(object_phrase(Group(o.shape, o.color, scene.groups[o.group].size,
                                              vocab.position_at(o.x, o.y), o.texture, 1)),
                          box_mask(o.box(), low_side)) for o in placed]
        words = caption(scene, np.random.default_rng([7, i, 5]))
        for given, objects in (("restyled", restyled), ("true", placed)):
            low = Image.fromarray(render(objects, scene.background, low_side))
            for text, prompt, region in (("prompts", None, regions), ("caption", words, None),
                                         ("no prompts", None, None)):
                outputs[f"{given} input, {text}"] += pipe.upscale(
                    [low], prompt, seed=i, stage=stage, progress=False, regions=region)
        scenes.append(scene)
    return {key: parser_agreement(out, scenes)["texture"] for key, out in outputs.items()}


def photos(size: int) -> list[Image.Image]:
    import skimage.data as data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                 "hubble_deep_field"):
        try:
            array = getattr(data, name)()
        except Exception:  # some need a download; keep the ones shipped in the package
            continue
        im = Image.fromarray(array).convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        out.append(im.crop((left, top, left + side, top + side))
                   .resize((size, size), Image.LANCZOS))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline with an SR stage (default: shipped)")
    parser.add_argument("--regression", help="pipeline folder with a regression SR stage")
    parser.add_argument("--n", type=int, default=200, help="held-out scenes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results/sr_quality")
    args = parser.parse_args()
    pipe = TextToImagePipeline.from_pretrained(args.model)
    sr = next(i for i, s in enumerate(pipe.stages) if s.is_sr)
    low_side, side = pipe.stages[sr].cfg.input_resolution, pipe.stages[sr].cfg.resolution
    model_name = f"--model's {pipe.stages[sr].cfg.kind} SR"
    methods = {model_name: (pipe, sr)}
    if args.regression:
        reg = TextToImagePipeline.from_pretrained(args.regression)
        methods["regression SR"] = (reg, next(i for i, s in enumerate(reg.stages) if s.is_sr))
    methods["bicubic"] = (None, None)
    samples = [make_sample(i, side, "heldout", seed=7, low_size=low_side) for i in range(args.n)]
    lows = [Image.fromarray(s.lowres) for s in samples]
    truths = [Image.fromarray(s.image) for s in samples]
    prompts = [s.caption for s in samples]
    pics = photos(side)
    pic_lows = [p.resize((low_side, low_side), Image.LANCZOS) for p in pics]
    results = {"shapes": {}, "photos": {}}
    for name, (model, stage) in methods.items():
        out = enlarge(model, stage, lows, prompts, side)
        results["shapes"][name] = {**metrics(out, truths),
                                   "parser": parser_agreement(out, [s.scene for s in samples])}
        pic_out = enlarge(model, stage, pic_lows, ["a photo"] * len(pics), side)
        results["photos"][name] = metrics(pic_out, pics)
        print(name, json.dumps(results["shapes"][name]), json.dumps(results["photos"][name]))
    results["parser_on_truth_128"] = parser_agreement(truths, [s.scene for s in samples])
    if args.regression and reg.stages[methods["regression SR"][1]].cfg.regression.region_dim:
        results["region_prompts_texture"] = region_prompt_texture(
            reg, methods["regression SR"][1], args.n, side, low_side)
        print("region prompts, texture:", json.dumps(results["region_prompts_texture"]))
    results["latency"] = {model_name: latency(pipe, args.repeats)}
    if args.regression:
        results["latency"]["regression SR"] = latency(reg, args.repeats)
    print(json.dumps(results["latency"], indent=2))
    results["meta"] = {"date": time.strftime("%Y-%m-%d"), "scenes": args.n,
                       "photos": len(pics), "machine": describe(),
                       "model": args.model or "shipped", "regression": args.regression}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sr_quality.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "sr_quality.png")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["shapes"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].bar(names, [results["shapes"][n]["psnr"] for n in names], label="shapes")
    axes[0].set_title("shapes 32->128: PSNR (dB)")
    axes[1].bar(names, [results["photos"][n]["psnr"] for n in names], color="tab:orange")
    axes[1].set_title("skimage photos 32->128: PSNR (dB)")
    keys = [*vocab.ATTRIBUTES, "scenes"]
    width = 0.8 / len(names)
    for j, n in enumerate(names):
        axes[2].bar([i + j * width for i in range(len(keys))],
                    [results["shapes"][n]["parser"][k] for k in keys], width, label=n)
    axes[2].set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], keys, rotation=20,
                       fontsize=8)
    axes[2].set_ylim(0, 1)
    axes[2].legend(fontsize=7)
    axes[2].set_title("scene parser on the 128 px outputs")
    for ax in axes[:2]:
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
