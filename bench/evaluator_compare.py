"""One folder of generated images judged by an earlier commit's evaluator and by this one.

Usage: python bench/evaluator_compare.py (--images DIR | --adversarial SIZE)
                                         [--n-prompts 400 --eval-seed 123 | --prompts P.jsonl]
                                         [--before COMMIT] [--json OUT]
The images are `{index:05d}_{k}.png` of the eval set that the bench scripts draw
(`make_evalset(n, "heldout", seed)`) or of a prompts file; with `--adversarial SIZE`, the
must-fail and must-pass changes of `fineimagen eval --adversarial` at that size instead,
each judged by both. The earlier evaluator is read out of git (`git archive COMMIT
src/fineimagen`) and runs in a subprocess on the prompts it can read (it knows no relations).
Prints both tables and writes both to the JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from fineimagen.eval import compbench

BEFORE = "f9da8d6"  # the last commit with the lenient evaluator (hue-only colour, ...)
REPO = Path(__file__).resolve().parents[1]

_OLD_SCORER = """
import json, sys
from fineimagen.eval import compbench
prompts, folder, indices = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
items = compbench.read_prompts(prompts)
print(json.dumps(compbench.score_folder(items, folder, indices=indices)))
"""


def lines_of(items) -> list[dict]:
    return [{"prompt": it.prompt, "scene": it.scene.to_spec()} for it in items]


def score_before(items, images: str, commit: str, indices: list[int] | None = None) -> dict:
    """The evaluator of `commit` on the prompts without relations (`indices`: the items'
    numbers in the file names)."""
    kept = [(i, line) for i, line in zip(indices or range(len(items)), lines_of(items),
                                         strict=True) if "relations" not in line["scene"]]
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src/fineimagen"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        prompts = Path(tmp) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps(line) + "\n" for _, line in kept))
        out = subprocess.run([sys.executable, "-c", _OLD_SCORER, str(prompts), images,
                              json.dumps([i for i, _ in kept])], check=True,
                             capture_output=True, text=True,
                             env={"PYTHONPATH": str(Path(tmp) / "src"), "PATH": "/usr/bin"})
    return json.loads(out.stdout)


def adversarial(items, size: int, commit: str) -> dict:
    """{change: {"applied", "before", "after"}}: the share each evaluator passes (prompts
    with relations left out of both, as the earlier one cannot read them)."""
    import numpy as np
    from PIL import Image

    from fineimagen.eval import adversarial as adv

    items = [it for it in items if not it.scene.relations]
    rows = {}
    changes = {**adv.MUST_FAIL, **adv.MUST_PASS}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, change) in enumerate(changes.items()):
            folder = Path(tmp) / str(k)
            folder.mkdir()
            used = []
            for index, truth in enumerate(adv.truths(items, size)):
                image = change(truth, np.random.default_rng([0, index, k]))
                if image is not None and compbench.judged(truth.item, size):
                    Image.fromarray(image).save(folder / f"{index:05d}_0.png")
                    used.append(index)
            if not used:
                continue
            chosen = [items[i] for i in used]
            before = score_before(chosen, str(folder), commit, used)
            after = compbench.score_folder(chosen, folder, used)
            rows[name] = {"applied": len(used), "before": _passed(before, chosen),
                          "after": _passed(after, chosen)}
            print(f"{name:<32} {len(used):>5} before {rows[name]['before']:.3f} "
                  f"after {rows[name]['after']:.3f}")
    return rows


def _passed(scores: dict, items) -> float:
    """The share of images judged right (one image a prompt), from the category table."""
    counts = Counter(it.category for it in items)
    per = scores["categories"]
    return sum(per[c] * n for c, n in counts.items() if c in per) / sum(
        n for c, n in counts.items() if c in per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--images")
    target.add_argument("--adversarial", type=int, metavar="SIZE")
    parser.add_argument("--prompts")
    parser.add_argument("--n-prompts", type=int, default=400)
    parser.add_argument("--eval-seed", type=int, default=123)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--json")
    args = parser.parse_args()
    items = compbench.read_prompts(args.prompts) if args.prompts else \
        compbench.make_evalset(args.n_prompts, "heldout", seed=args.eval_seed)
    command = " ".join(["python", "bench/evaluator_compare.py", *sys.argv[1:]])
    if args.adversarial:
        rows = adversarial(items, args.adversarial, args.before)
        if args.json:
            Path(args.json).write_text(json.dumps({"command": command, "before_commit":
                                                   args.before, "size": args.adversarial,
                                                   "changes": rows}, indent=2) + "\n")
        return
    before = score_before(items, args.images, args.before)
    after = compbench.score_folder(items, args.images, faults=True)
    print(f"evaluator of {args.before} (no relation prompts):")
    print(compbench.format_table(before))
    print("\nstrict evaluator:")
    print(compbench.format_table(after))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": command,
            "before_commit": args.before, "before": before, "after": after}, indent=2) + "\n")


if __name__ == "__main__":
    main()
