import json

import numpy as np
import pytest
from PIL import Image

from fineimagen.domains.shapes.parser import parse_image
from fineimagen.domains.shapes.render import render
from fineimagen.domains.shapes.scene import complete, parse_spec
from fineimagen.errors import InputError
from fineimagen.eval import compbench


def write_prompts(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def test_evalset_is_balanced_and_heldout_has_unseen_items():
    items = compbench.make_evalset(72, "heldout", seed=0)
    counts = {c: sum(i.category == c for i in items) for c in compbench.CATEGORIES}
    assert set(counts.values()) == {8}
    unseen = [i for i in items if i.unseen]
    assert {i.category for i in unseen} == {"colors", "position", "texture", "color_attribution",
                                            "relation"}
    assert len(unseen) == 20
    assert not any(i.unseen for i in compbench.make_evalset(72, "train", seed=0))


def test_truth_renders_score_perfectly():
    items = compbench.make_evalset(48, "heldout", seed=3)
    scores = compbench.render_truth(items, 128, samples=2)
    assert scores["overall"] >= 0.99
    assert set(scores["categories"]) == set(compbench.CATEGORIES)


def test_wrong_images_score_zero(tmp_path, rng):
    # images of the right shapes in the wrong colour fail a colour prompt
    spec = {"objects": [{"shape": "circle", "color": "red", "count": 1}]}
    prompts = write_prompts(tmp_path / "p.jsonl", [{"prompt": "a red circle", "scene": spec}])
    wrong = {"objects": [{"shape": "circle", "color": "blue", "count": 1}]}
    scene, placed = complete(parse_spec(wrong), rng)
    (tmp_path / "img").mkdir()
    Image.fromarray(render(placed, scene.background, 64)).save(tmp_path / "img/00000_0.png")
    scores = compbench.score_folder(compbench.read_prompts(prompts), tmp_path / "img")
    assert scores["overall"] == 0.0 and scores["categories"] == {"colors": 0.0}


def test_strict_matching_rejects_extra_objects(rng):
    asked = parse_spec({"objects": [{"shape": "star", "count": 1}]})
    extra = parse_spec({"objects": [{"shape": "star", "count": 1}, {"shape": "heart"}]})
    scene, placed = complete(extra, rng)
    parsed = parse_image(render(placed, scene.background, 64))
    assert not compbench.is_correct(asked, parsed, 64)
    assert compbench.is_correct(extra, parsed, 64)


def test_texture_is_not_judged_below_64_px():
    items = compbench.make_evalset(16, "train", seed=1)
    scores = compbench.render_truth(items, 32)
    assert "texture" not in scores["categories"]


@pytest.mark.parametrize("line, words", [
    ("{bad", "line 1: malformed JSON"),
    ('{"prompt": "x"}', "needs 'prompt' and 'scene'"),
    ('{"prompt": 3, "scene": {"objects": [{"shape": "star"}]}}', "'prompt' must be a string"),
    ('{"prompt": "x", "scene": {"objects": [{"shape": "cube"}]}}', "line 1: object 0: unknown"),
])
def test_bad_prompt_lines_name_the_line(tmp_path, line, words):
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InputError, match=words):
        compbench.read_prompts(path)


def test_missing_images_are_an_input_error(tmp_path):
    items = compbench.make_evalset(3, "train")
    (tmp_path / "img").mkdir()
    with pytest.raises(InputError, match="no image for prompt line 1"):
        compbench.score_folder(items, tmp_path / "img")


def test_unseen_scores_are_reported_apart():
    items = compbench.make_evalset(16, "heldout", seed=2)
    results = [(item, not item.unseen) for item in items]  # right on seen, wrong on unseen
    table = compbench.summarize(results)
    assert table["seen"]["overall"] == 1.0 and table["unseen"]["overall"] == 0.0
    assert 0 < table["overall"] < 1
    assert np.isclose(table["overall"], np.mean(list(table["categories"].values())))


def parsed_render(spec, rng, side=64):
    scene, placed = complete(parse_spec(spec), rng)
    return parse_image(render(placed, scene.background, side))


def test_attributes_a_spec_leaves_open_are_free_per_object(rng):
    # one red and one blue circle, each at the top: "two circles" and "two circles at the
    # top" (the pair's centroid) are right, whatever else the spec asks is not
    parsed = parsed_render({"objects": [
        {"shape": "circle", "color": "red", "position": "top left", "size": "medium"},
        {"shape": "circle", "color": "blue", "position": "top right", "size": "medium"}]}, rng)
    assert len(parsed.objects) == 2 and len(parsed.groups) == 2

    def judge(*groups):
        return compbench.is_correct(parse_spec({"objects": list(groups)}), parsed, 64)

    assert judge({"shape": "circle", "count": 2})
    assert judge({"shape": "circle", "count": 2, "position": "top"})
    assert judge({"shape": "circle", "color": "blue"}, {"shape": "circle", "color": "red"})
    assert not judge({"shape": "circle", "count": 2, "color": "red"})
    assert not judge({"shape": "circle", "count": 3})
    assert not judge({"shape": "circle", "count": 2, "position": "bottom"})
    assert not judge({"shape": "circle", "count": 1})  # the other circle is unasked-for
    assert not judge({"shape": "circle", "color": "red", "position": "top right"},
                     {"shape": "circle", "color": "blue", "position": "top left"})


def test_colour_attribution_is_judged_per_object(rng):
    parsed = parsed_render({"objects": [{"shape": "circle", "color": "blue"},
                                        {"shape": "square", "color": "red"}]}, rng)
    swapped = parse_spec({"objects": [{"shape": "circle", "color": "red"},
                                      {"shape": "square", "color": "blue"}]})
    right = parse_spec({"objects": [{"shape": "square", "color": "red"},
                                    {"shape": "circle", "color": "blue"}]})
    assert not compbench.is_correct(swapped, parsed, 64)
    assert compbench.is_correct(right, parsed, 64)


@pytest.mark.parametrize("drawn, fault", [
    ([("circle", "red"), ("square", "blue")], "right"),
    ([("circle", "red"), ("square", "blue"), ("square", "red")], "bound, extra objects"),
    ([("circle", "red"), ("square", "blue"), ("star", "green")], "bound, extra objects"),
    ([("circle", "blue"), ("square", "red")], "swapped"),
    ([("circle", "red"), ("square", "red")], "one colour"),
    ([("circle", "blue"), ("square", "blue")], "one colour"),
    ([("circle", "red"), ("star", "blue")], "other"),
    ([("circle", "red")], "other"),
])
def test_attribution_faults_name_how_an_image_went(rng, drawn, fault):
    scene = parse_spec({"objects": [{"shape": "circle", "color": "red"},
                                    {"shape": "square", "color": "blue"}]})
    cells = ["top left", "bottom right", "top right"]
    parsed = parsed_render({"objects": [
        {"shape": s, "color": c, "size": "medium", "position": p}
        for (s, c), p in zip(drawn, cells[: len(drawn)], strict=True)]}, rng)
    assert sorted((o.shape, o.color) for o in parsed.objects) == sorted(drawn)
    assert compbench.attribution_fault(scene, parsed, 64) == fault
