"""One folder of generated images judged by an earlier commit's evaluator and by this one.

Usage: python bench/evaluator_compare.py --images DIR [--n-prompts 400 --eval-seed 123 |
                                         --prompts P.jsonl] [--before COMMIT] [--json OUT]
The images are `{index:05d}_{k}.png` of the eval set that the bench scripts draw
(`make_evalset(n, "heldout", seed)`) or of a prompts file. The earlier evaluator is read out
of git (`git archive COMMIT src/fineimagen`) and runs in a subprocess on the prompts it can
read (it knows no relations). Prints both tables and writes both to the JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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


def score_before(items, images: str, commit: str) -> dict:
    """The evaluator of `commit` on the prompts without relations."""
    kept = [(i, line) for i, line in enumerate(lines_of(items)) if "relations" not in line["scene"]]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--prompts")
    parser.add_argument("--n-prompts", type=int, default=400)
    parser.add_argument("--eval-seed", type=int, default=123)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--json")
    args = parser.parse_args()
    items = compbench.read_prompts(args.prompts) if args.prompts else \
        compbench.make_evalset(args.n_prompts, "heldout", seed=args.eval_seed)
    before = score_before(items, args.images, args.before)
    after = compbench.score_folder(items, args.images, faults=True)
    print(f"evaluator of {args.before} (no relation prompts):")
    print(compbench.format_table(before))
    print("\nstrict evaluator:")
    print(compbench.format_table(after))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": " ".join(["python", "bench/evaluator_compare.py", *sys.argv[1:]]),
            "before_commit": args.before, "before": before, "after": after}, indent=2) + "\n")


if __name__ == "__main__":
    main()
