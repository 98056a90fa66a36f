"""Prompt-to-prompt edits that change one attribute, judged by the scene parser.

Usage: python bench/edit_quality.py [--model DIR] [--pairs 100] [--stages base|all]
       [--ways free,inject,planned] [--out DIR]
Each pair: a held-out scene of one or two groups, its caption, and the caption of the same
scene with one attribute (color, shape, size, position, texture, count) changed. Each pair is
edited three ways: `free` (no injection; blend where the predictions differ, the default) and
`inject` (the source's attention maps for the first steps), which draw the same plain
source, and `planned` (both prompts read as scenes and drawn with scene control; only the
changed objects' boxes are redrawn), whose source is drawn with scene control. Reported per
way:
  - changed as asked: the edited group's attribute in the edited image has the new value;
  - others kept: every other parsed attribute of the edited image equals the source's;
  - pixel change outside the edit: mean |target - source| (0-255) over pixels farther than
    3 px from every object the parser found in either image;
  - seconds per pair against plain sampling of one image (the cost).
Each way's source is drawn with up to --source-tries seeds (as a user re-rolls) and edited
from the first that shows its own prompt; pairs without one are counted apart (an edit cannot
be judged against a wrong start). `source_ok_first_try` is the first seed's rate. For scale,
`plain_target` is how often the target prompt drawn plainly from the first way's seed is
right. Pairs whose source or target cannot be laid out at all (three large circles in one
corner: no scene of the data) are not posed. An edit a way refuses (a planned target that
does not fit beside the kept objects) counts as a source that was right and an edit that
failed.
Writes edit_quality.json and edit_quality.png.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from fineimagen.control.attention import check_edit
from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.captions import caption
from fineimagen.domains.shapes.parser import MIN_TEXTURE_SIDE, parse_image
from fineimagen.domains.shapes.scene import Group, Scene, complete
from fineimagen.domains.shapes.selftest import match_groups, truth_groups
from fineimagen.errors import InputError
from fineimagen.eval.compbench import is_correct
from fineimagen.pipeline import TextToImagePipeline
from machine import describe  # bench/ is on sys.path when a bench script runs

ATTRIBUTES = ("color", "shape", "size", "position", "texture", "count")


def make_pairs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < n:
        attribute = ATTRIBUTES[len(pairs) % len(ATTRIBUTES)]
        shapes = [str(s) for s in rng.permutation(vocab.SHAPES)]
        colors = [str(c) for c in rng.permutation(vocab.COLORS)]
        cells = [str(p) for p in rng.permutation(vocab.POSITIONS)]
        groups = [Group(shapes[0], colors[0], str(rng.choice(vocab.SIZES)), cells[0],
                        "solid", 1)]
        if rng.random() < 0.5:
            groups.append(Group(shapes[1], colors[1], None, cells[1], None, 1))
        old = getattr(groups[0], attribute)
        choices = [v for v in vocab.VOCAB[attribute] if v != old and v not in (
            cells[1:2] if attribute == "position" else [])]
        new = choices[int(rng.integers(len(choices)))]
        edited = [replace(groups[0], **{attribute: new})] + groups[1:]
        phrasing = int(rng.integers(2**31))
        source, target = Scene(tuple(groups)), Scene(tuple(edited))
        a = caption(source, np.random.default_rng(phrasing))
        b = caption(target, np.random.default_rng(phrasing))
        try:
            check_edit(a.split(), b.split())  # wordings that drifted apart are no edit
            for scene in (source, target):  # a scene the data could never draw is no edit
                complete(scene, np.random.default_rng(0))
        except InputError:
            continue
        pairs.append((attribute, source, target, a, b))
    return pairs


WAYS = {"free": {"inject": False}, "inject": {"inject": True},  # edit_prompt's options
        "planned": {"plan_layout": True}}


def judge(attribute, source_scene, target_scene, source_img, target_img) -> dict:
    side = source_img.shape[0]
    ps, pt = parse_image(source_img), parse_image(target_img)
    keys = tuple(k for k in vocab.ATTRIBUTES if k != "texture" or side >= MIN_TEXTURE_SIDE)
    found_s = match_groups(truth_groups(source_scene), ps.groups, keys)
    found_t = match_groups(truth_groups(target_scene), pt.groups, keys)
    kept = len(ps.groups) == len(pt.groups) and all(
        a is not None and b is not None and a[k] == b[k]
        for g, (a, b) in enumerate(zip(found_s, found_t, strict=True)) for k in keys
        if not (g == 0 and k == attribute))
    objects = np.zeros(source_img.shape[:2], bool)
    ys, xs = np.indices(objects.shape) + 0.5
    for obj in ps.objects + pt.objects:
        half = obj.extent * side / 2
        objects |= (abs(xs - obj.x * side) < half) & (abs(ys - obj.y * side) < half)
    far = ~ndimage.binary_dilation(objects, iterations=3)
    diff = np.abs(target_img.astype(int) - source_img.astype(int)).mean(-1)
    return {"source_ok": bool(is_correct(source_scene, ps, side)),
            "changed": bool(is_correct(target_scene, pt, side)), "kept": bool(kept),
            "outside_change": float(diff[far].mean()) if far.any() else 0.0}


def edit_pair(pipe, pair, seeds, folder: Path, index: int, ways: dict) -> tuple[dict, dict]:
    """Judge one pair each of `ways`, from the first seed whose source (that way's) is
    right; seconds per way."""
    attribute, s_scene, t_scene, a, b = pair
    row, seconds = {"attribute": attribute, "from": a, "to": b}, dict.fromkeys(ways, 0.0)
    for way, options in ways.items():
        for attempt, seed in enumerate(seeds):
            start = time.perf_counter()
            try:
                [src], [tgt] = pipe.edit_prompt(a, b, seed=seed, progress=False, **options)
            except InputError as err:  # e.g. a planned target that does not fit the canvas
                row[way] = {"source_ok": True, "changed": False, "kept": False,
                            "outside_change": None, "tries": attempt + 1, "refused": str(err)}
                break
            seconds[way] += time.perf_counter() - start
            row[way] = {**judge(attribute, s_scene, t_scene, np.asarray(src), np.asarray(tgt)),
                        "tries": attempt + 1}
            if row[way]["source_ok"]:
                break
        if "refused" not in row[way]:
            src.save(folder / f"{index:03d}_{way}_source.png")
            tgt.save(folder / f"{index:03d}_{way}.png")
    [plain] = pipe(b, seed=seeds[row[next(iter(ways))]["tries"] - 1], progress=False)
    row["plain_target"] = bool(is_correct(t_scene, parse_image(np.asarray(plain)), plain.width))
    return row, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pipeline folder (default: the shipped model)")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--stages", default="all", help="'base' or 'all'")
    parser.add_argument("--source-tries", type=int, default=4,
                        help="seeds tried per pair for a source that shows its prompt")
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated, of "
                        + ", ".join(WAYS))
    parser.add_argument("--out", default="bench/results/edit_quality")
    args = parser.parse_args()
    unknown = set(args.ways.split(",")) - set(WAYS)
    if unknown:
        parser.error(f"unknown way {sorted(unknown)[0]!r} (choose from {', '.join(WAYS)})")
    ways = {w: WAYS[w] for w in args.ways.split(",")}
    pipe = TextToImagePipeline.from_pretrained(args.model)
    if args.stages == "base":
        pipe.stages = pipe.stages[:1]
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, seconds = [], dict.fromkeys(ways, 0.0)
    for i, pair in enumerate(make_pairs(args.pairs)):
        seeds = [i * args.source_tries + k for k in range(args.source_tries)]
        row, spent = edit_pair(pipe, pair, seeds, out / "images", i, ways)
        rows.append(row)
        seconds = {way: seconds[way] + spent[way] for way in ways}
    start = time.perf_counter()
    timed = rows[:10]
    for i, row in enumerate(timed):
        pipe(row["from"], seed=i, progress=False)
    plain = (time.perf_counter() - start) / len(timed)
    summary = {}
    for attribute in ATTRIBUTES + ("all",):
        sel = [r for r in rows if attribute in ("all", r["attribute"])]
        first_ok = [r for r in sel if r[next(iter(ways))]["source_ok"]]
        summary[attribute] = {"pairs": len(sel), "plain_target": float(np.mean(
            [r["plain_target"] for r in first_ok])) if first_ok else None}
        for way in ways:
            good = [r[way] for r in sel if r[way]["source_ok"]]
            summary[attribute][way] = {
                "source_ok": len(good) / len(sel),
                "source_ok_first_try": float(np.mean([r[way]["source_ok"] and
                                                      r[way]["tries"] == 1 for r in sel])),
                "changed_as_asked": float(np.mean([g["changed"] for g in good]))
                if good else None,
                "others_kept": float(np.mean([g["kept"] for g in good])) if good else None,
                "outside_change_mean": float(np.mean([r[way]["outside_change"] for r in sel
                                                      if r[way]["outside_change"] is not None])),
                "refused": sum("refused" in r[way] for r in sel)}
    for way in ways:  # one edit: a source and its target
        edits = sum(r[way]["tries"] for r in rows)
        summary[f"seconds_per_pair_{way}"] = seconds[way] / edits
        summary[f"slowdown_vs_plain_image_{way}"] = seconds[way] / edits / plain
    print(json.dumps(summary, indent=2))
    meta = {"date": time.strftime("%Y-%m-%d"), "model": args.model or "shipped",
            "stages": args.stages, "source_tries": args.source_tries, "ways": list(ways),
            "machine": describe()}
    (out / "edit_quality.json").write_text(json.dumps({"meta": meta, "summary": summary,
                                                       "pairs": rows}, indent=2) + "\n")
    plot(summary, ways, out / "edit_quality.png")


def plot(summary, ways, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*ATTRIBUTES, "all"]
    bars = [("plain target", lambda n: summary[n]["plain_target"])]
    for way in ways:
        bars += [(f"{way}: changed", lambda n, w=way: summary[n][w]["changed_as_asked"]),
                 (f"{way}: kept", lambda n, w=way: summary[n][w]["others_kept"])]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for j, (label, value) in enumerate(bars):
        ax.bar(np.arange(len(names)) + width * j, [value(n) or 0 for n in names], width,
               label=label)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.set_title("edits of one attribute (sources that showed their prompt)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
