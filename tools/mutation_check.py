"""Break each feature on purpose and show which test then fails (docs/reliability.md).

Usage: python tools/mutation_check.py [--only NAME,...] [--out bench/results/mutations]

Each mutation replaces lines of the source (every `old` must occur exactly once), runs the
tests named for that feature, and restores the file, whatever happens. A mutation that no
named test catches is a survivor: the script exits 1 and names it. Writes mutations.json
(a run with --only updates its mutations' rows).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "fineimagen"
CONTROL_TESTS = "tests/test_responsive_control.py"
EXPORT_TEST = "tests/test_export.py::test_exported_graphs_draw_the_pytorch_images"


@dataclass
class Mutation:
    name: str
    file: str  # under src/fineimagen
    edits: list[tuple[str, str]]  # (old, new), each old found exactly once
    tests: list[str]  # pytest node ids or files


MUTATIONS = [
    Mutation("classifier-free guidance ignores the text", "diffusion/denoiser.py",
             [("out = out_u + guidance * (out_c - out_u)", "out = out_u")],
             [f"{CONTROL_TESTS}::test_guidance_draws_the_colour_the_text_names"]),
    Mutation("the export drops the text states", "export.py",
             [("text=text.float(), text_mask=text_mask.bool()",
               "text=torch.zeros_like(text).float(), text_mask=text_mask.bool()")],
             [EXPORT_TEST]),
    Mutation("the negative prompt is replaced by the empty prompt", "stage_controls.py",
             [("    if negative is not None:\n        clauses = parse_prompt(negative)",
               "    if False:\n        clauses = parse_prompt(negative)")],
             [f"{CONTROL_TESTS}::test_the_negative_prompt_pushes_away_from_its_words",
              EXPORT_TEST]),
    Mutation("region prompts are dropped", "stage_controls.py",
             [("        terms += [Term(encode_clause(pipe, c), c.weight, mask, hide)\n"
               "                  for c in parse_prompt(region.prompt)]",
               "        terms += []")],
             [f"{CONTROL_TESTS}::test_each_region_draws_its_own_prompt_inside_its_mask",
              EXPORT_TEST]),
    Mutation("region masks are ignored", "control/guidance.py",
             [("        masks = [t.mask.to(like) for t in self.terms if t.mask is not None]",
               "        masks = []")],
             [f"{CONTROL_TESTS}::test_each_region_draws_its_own_prompt_inside_its_mask"]),
    Mutation("word weights are ignored", "control/prompts.py",
             [("                    factors[i] *= f", "                    factors[i] *= 1.0")],
             [f"{CONTROL_TESTS}::test_a_word_weight_moves_the_picture_toward_the_word"]),
    Mutation("prompt-to-prompt injects nothing", "control/attention.py",
             [("            if self.step < self.cross_steps:\n                n = len(",
               "            if False:\n                n = len("),
              ("        elif self.step < self.self_steps:\n            tgt = src",
               "        elif False:\n            tgt = src")],
             [f"{CONTROL_TESTS}::test_prompt_to_prompt_injects_the_source_maps_into_the_target"]),
    Mutation("attend-and-excite excites nothing", "control/attention_guidance.py",
             [("                total = total + self.excite_step * excite_energy(maps)",
               "                total = total + 0 * excite_energy(maps)")],
             [f"{CONTROL_TESTS}::test_attend_and_excite_and_layout_guidance_change_the_picture"]),
    Mutation("layout guidance sees no box", "control/attention_guidance.py",
             [("                total = total + self.layout_step * box_energy(maps, target.mask)",
               "                total = total + 0 * box_energy(maps, target.mask)")],
             [f"{CONTROL_TESTS}::test_attend_and_excite_and_layout_guidance_change_the_picture"]),
    Mutation("the evaluator's colour check is off", "domains/shapes/judge.py",
             [('    ignored = ("position", "count") + ',
               '    ignored = ("position", "count", "color") + ')],
             ["tests/test_strict_evaluator.py", "tests/test_compbench.py"]),
    Mutation("the evaluator's count check is off", "domains/shapes/judge.py",
             [("    if None not in counts and sum(counts) != len(objects):",
               "    if False:"),
              ("    if not members or (group.count is not None and len(members) != group.count):",
               "    if not members:"),
              ("        if groups[j].count is not None and len(dealt[j]) == groups[j].count:",
               "        if False:")],
             ["tests/test_strict_evaluator.py", "tests/test_compbench.py"]),
    Mutation("the evaluator's background check is off", "domains/shapes/judge.py",
             [("    if parsed.background is None or scene.background not in (None, "
               "parsed.background):\n        return False\n    objects = parsed.objects\n"
               "    counts = [g.count for g in scene.groups]\n    if None not in counts",
               "    if parsed.background is None:\n        return False\n    objects = "
               "parsed.objects\n    counts = [g.count for g in scene.groups]\n"
               "    if None not in counts")],
             ["tests/test_strict_evaluator.py", "tests/test_compbench.py"]),
]


def run(mutation: Mutation) -> dict:
    path = SRC / mutation.file
    original = path.read_text()
    text = original
    for old, new in mutation.edits:
        if text.count(old) != 1:
            raise SystemExit(f"{mutation.name}: the line to mutate is not in {mutation.file} "
                             f"exactly once: {old[:60]!r}")
        text = text.replace(old, new)
    start = time.perf_counter()
    try:
        path.write_text(text)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *mutation.tests], cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(original)
    failed = [line.split(" ")[1] for line in proc.stdout.splitlines()
              if line.startswith("FAILED ")]
    return {"file": mutation.file, "tests": mutation.tests, "caught": proc.returncode != 0,
            "failed": failed, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutation names")
    parser.add_argument("--out", default="bench/results/mutations")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only.split(",")]
    out = ROOT / args.out
    saved = out / "mutations.json"
    results = json.loads(saved.read_text())["results"] if saved.exists() else {}
    results = {k: v for k, v in results.items() if k in {m.name for m in MUTATIONS}}
    for mutation in chosen:
        results[mutation.name] = row = run(mutation)
        print(f"{'caught' if row['caught'] else 'SURVIVED'}: {mutation.name} "
              f"({', '.join(row['failed']) or 'no test failed'})", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d"), "results": results}, indent=2) + "\n")
    survivors = [name for name, row in results.items() if not row["caught"]]
    if survivors:
        print("survivors:", "; ".join(survivors))
        sys.exit(1)


if __name__ == "__main__":
    main()
