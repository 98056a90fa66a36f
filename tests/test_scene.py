import numpy as np
import pytest

from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.scene import GAP, MARGIN, complete, parse_spec, sample_scene
from fineimagen.errors import InputError


def test_parse_spec_round_trip():
    spec = {"background": "white", "objects": [
        {"shape": "circle", "color": "red", "size": "small", "position": "top left",
         "texture": "solid", "count": 2}]}
    scene = parse_spec(spec)
    assert scene.to_spec() == spec
    assert scene.is_complete()
    assert parse_spec('{"objects": [{"shape": "star"}]}').groups[0].color is None


@pytest.mark.parametrize("spec, words", [
    ({"objects": [{"shape": "hexagon"}]}, "unknown shape 'hexagon'"),
    ({"objects": [{"shape": "star", "color": "magenta"}]}, "unknown color 'magenta'"),
    ({"objects": [{"shape": "star", "position": "middle"}]}, "unknown position 'middle'"),
    ({"objects": [{"shape": "star", "count": 5}]}, "unknown count 5"),
    ({"objects": [{"shape": "star", "count": "2"}]}, "count must be an integer"),
    ({"objects": [{"color": "red"}]}, "'shape' is required"),
    ({"objects": []}, "1 to 3"),
    ({"objects": [{"shape": "star"}] * 4}, "1 to 3"),
    ({"objects": [{"shape": "star", "hue": 3}]}, "unknown key 'hue'"),
    ({"objects": [{"shape": "star"}], "fog": 1}, "unknown scene key 'fog'"),
    ({"objects": [{"shape": "star", "position": "top"}, {"shape": "heart", "position": "top"}]},
     "both take position"),
    ({"objects": [{"shape": "star", "color": "red"}, {"shape": "star", "color": "red"}]},
     "differ in shape or colour"),
    ("{not json", "malformed JSON"),
    ([1, 2], "JSON object"),
])
def test_bad_specs_name_the_problem(spec, words):
    with pytest.raises(InputError, match=words):
        parse_spec(spec)


def test_complete_fills_every_field_and_keeps_given_ones(rng):
    scene = parse_spec({"objects": [{"shape": "heart", "color": "blue", "count": 3},
                                    {"shape": "star"}]})
    for _ in range(20):
        full, placed = complete(scene, rng)
        assert full.is_complete()
        assert full.groups[0].color == "blue" and full.groups[0].count == 3
        assert len(placed) == sum(g.count for g in full.groups)


def test_layout_respects_cells_margins_and_gaps(rng):
    for _ in range(300):
        scene, placed = sample_scene(rng)
        for obj in placed:
            half = obj.size / 2
            for centre in (obj.x, obj.y):
                assert MARGIN - 1e-6 <= centre - half < centre + half <= 1 - MARGIN + 1e-6
        for i, a in enumerate(placed):
            for b in placed[:i]:
                reach = (a.size + b.size) / 2 + GAP - 1e-6
                assert abs(a.x - b.x) >= reach or abs(a.y - b.y) >= reach
        for index, g in enumerate(scene.groups):
            xs = [o.x for o in placed if o.group == index]
            ys = [o.y for o in placed if o.group == index]
            row, col = vocab.cell_of(g.position)
            assert int(np.mean(ys) * 3) == row and int(np.mean(xs) * 3) == col
            lo, hi = (vocab.SIZE_FRACTION[g.size] * (1 + s * vocab.SIZE_JITTER) for s in (-1, 1))
            assert all(lo - 1e-9 <= o.size <= hi + 1e-9 for o in placed if o.group == index)


def test_train_split_never_uses_heldout_combinations_and_heldout_always_does(rng):
    for _ in range(400):
        scene, _ = sample_scene(rng, "train")
        assert not any(vocab.heldout_combinations(g.fields()) for g in scene.groups)
        scene, _ = sample_scene(rng, "heldout")
        assert any(vocab.heldout_combinations(g.fields()) for g in scene.groups)


def test_sampling_covers_the_vocabulary(rng):
    seen = {k: set() for k in vocab.ATTRIBUTES}
    for _ in range(600):
        scene, _ = sample_scene(rng)
        for g in scene.groups:
            for k, v in g.fields().items():
                seen[k].add(v)
    for k in vocab.ATTRIBUTES:
        assert seen[k] == set(vocab.VOCAB[k]), k


def test_a_spec_that_cannot_fit_is_an_input_error(rng):
    big = {"objects": [{"shape": s, "size": "large", "count": 4} for s in ("star", "heart")]}
    with pytest.raises(InputError, match="does not fit"):
        complete(parse_spec(big), rng, tries=20)
