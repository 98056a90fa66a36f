"""How often the layout planner reads a prompt's scene exactly: the planned spec equals the
truth spec (groups in any order, the same stated attributes, nothing extra, relations and
background alike), on the grammar-style and the free-style eval sets.

Usage: python bench/planner_quality.py [--n 400] [--seed 0] [--out bench/results/planner]
Writes planner_quality.json (per style: exact share, per category, prompts that failed to
plan, and a sample of misreadings).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from fineimagen.domains.shapes.plan import PlanError, plan_with_report
from fineimagen.domains.shapes.scene import Scene
from fineimagen.eval.compbench import make_evalset
from machine import describe  # bench/ is on sys.path when a bench script runs


def canonical(scene: Scene) -> tuple:
    """Order-free form: sorted group field sets, relations by their groups' fields (each in
    its left_of / above form)."""
    groups = [tuple(sorted(g.fields().items())) for g in scene.groups]
    inverse = {"right_of": "left_of", "below": "above"}  # "B right of A" is "A left of B"
    relations = sorted((groups[r.object], inverse[r.relation], groups[r.subject])
                       if r.relation in inverse else
                       (groups[r.subject], r.relation, groups[r.object])
                       for r in scene.relations)
    return tuple(sorted(groups)), scene.background, tuple(relations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=123, help="eval set seed (123: the one "
                        "bench/model_quality.py generates for)")
    parser.add_argument("--out", default="bench/results/planner")
    args = parser.parse_args()
    result = {"meta": {"date": time.strftime("%Y-%m-%d"), "machine": describe(), "n": args.n,
                       "seed": args.seed}}
    for style in ("grammar", "free"):
        items = make_evalset(args.n, "heldout", args.seed, style)
        exact, failed, unread_any = Counter(), 0, 0
        per_cat, wrong = Counter(), []
        for item in items:
            per_cat[item.category] += 1
            try:
                scene, unread = plan_with_report(item.prompt)
            except PlanError as err:
                failed += 1
                wrong.append({"prompt": item.prompt, "error": str(err)[:200]})
                continue
            unread_any += bool(unread)
            if canonical(scene) == canonical(item.scene):
                exact[item.category] += 1
            else:
                wrong.append({"prompt": item.prompt, "read": scene.to_spec(),
                              "truth": item.scene.to_spec(), "unread": unread})
        row = {"exact": sum(exact.values()) / len(items), "failed_to_plan": failed,
               "with_unread_words": unread_any,
               "categories": {c: exact[c] / per_cat[c] for c in sorted(per_cat)},
               "misread_sample": wrong[:25]}
        result[style] = row
        print(f"{style:8s} exact {row['exact']:.3f} (failed to plan {failed}, with unread "
              f"words {unread_any}) " + ", ".join(f"{c} {v:.2f}"
                                                  for c, v in row["categories"].items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "planner_quality.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
