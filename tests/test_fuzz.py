"""Fuzzing the parsers of user input (hypothesis): whatever the input, the only exception is
the project's own InputError, and each case ends quickly (a deadline per example)."""

import contextlib
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fineimagen.cli import build_parser
from fineimagen.commands.generate import parse_stage_options
from fineimagen.control.prompts import parse_prompt
from fineimagen.control.regions import parse_region
from fineimagen.data.prompt_file import read_prompt_file
from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.plan import plan_scene
from fineimagen.domains.shapes.scene import parse_spec
from fineimagen.errors import InputError

FUZZ = settings(max_examples=1500, deadline=500,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
WORDS = [*vocab.SHAPES, *vocab.COLORS, *vocab.SIZES, *vocab.TEXTURES, *vocab.RELATIONS,
         *vocab.POSITIONS, "objects", "relations", "background", "count", "subject",
         "object", "relation", "shape", "white", "AND", "NOT", ":", "(", ")", "[", "]"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10) | st.floats(allow_nan=True)
    | st.sampled_from(WORDS) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=6), inner, max_size=5),
    max_leaves=20)


def only_input_errors(call, *args):
    with contextlib.suppress(InputError):
        call(*args)


@FUZZ
@given(st.text(alphabet=string.printable + "é漢", max_size=80))
def test_prompt_language(text):
    only_input_errors(parse_prompt, text)


@FUZZ
@given(st.lists(st.sampled_from(WORDS + ["a", "two", "and", ",", "is", "to the left of",
                                         "on a black background", "!", "dog"]), max_size=14))
def test_layout_planner(words):
    only_input_errors(plan_scene, " ".join(words))


@FUZZ
@given(JSON_VALUES)
def test_scene_specs(spec):
    only_input_errors(parse_spec, spec)
    only_input_errors(parse_spec, json.dumps(spec))


@FUZZ
@given(st.fixed_dictionaries(
    {"objects": st.lists(st.dictionaries(st.sampled_from(vocab.ATTRIBUTES),
                                         st.sampled_from(WORDS) | st.integers(-1, 5),
                                         max_size=6), max_size=4)},
    optional={"relations": st.lists(st.dictionaries(
        st.sampled_from(["subject", "relation", "object"]),
        st.integers(-1, 4) | st.sampled_from(vocab.RELATIONS), max_size=3), max_size=3),
        "background": st.sampled_from(WORDS)}))
def test_near_valid_scene_specs(spec):
    only_input_errors(parse_spec, spec)


@FUZZ
@given(st.text(alphabet=string.printable, max_size=40))
def test_region_arguments(text):
    only_input_errors(parse_region, text, 32)


@FUZZ
@given(st.lists(st.text(alphabet=string.printable, max_size=24), max_size=4))
def test_stage_options(items):
    only_input_errors(parse_stage_options, items)


@settings(max_examples=300, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=40) | JSON_VALUES.map(json.dumps), min_size=1, max_size=4))
def test_prompt_file_lines(tmp_path, lines):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines))
    only_input_errors(read_prompt_file, path, True)


ARGS = ["generate", "edit", "upscale", "train", "eval", "dataset", "evalset", "shapes",
        "--n", "--steps", "--seed", "--guidance", "--region", "--box", "--scene", "--out",
        "--stages", "--precision", "--sizes", "--split", "--style", "-1", "0", "3", "x",
        "0.5,0.5,1,1", "fp32", "free", "a red circle", "--adversarial", "--selftest"]


@FUZZ
@given(st.lists(st.sampled_from(ARGS) | st.text(max_size=10), max_size=8))
def test_cli_argument_parsing(argv):
    try:
        build_parser().parse_args(argv)
    except InputError:
        pass
    except SystemExit as exit:  # --help and the like
        assert exit.code == 0


def test_the_fuzzers_reach_valid_inputs_too():
    """A sanity check of the strategies: valid specs do come out of them."""
    valid = 0

    @settings(max_examples=300, deadline=None)
    @given(st.fixed_dictionaries({"objects": st.lists(st.fixed_dictionaries(
        {"shape": st.sampled_from(vocab.SHAPES)}), min_size=1, max_size=3)}))
    def run(spec):
        nonlocal valid
        try:
            parse_spec(spec)
            valid += 1
        except InputError:
            pass

    run()
    assert valid > 100
