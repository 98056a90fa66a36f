import numpy as np

from fineimagen.domains.shapes.captions import caption, mention, say_relation
from fineimagen.domains.shapes.plan import plan_scene
from fineimagen.domains.shapes.samples import make_sample
from fineimagen.domains.shapes.scene import parse_spec, relation_holds, sample_scene


def test_caption_states_exactly_the_given_attributes():
    scene = parse_spec({"objects": [{"shape": "circle", "color": "red", "count": 2,
                                     "position": "top left"}]})
    texts = {caption(scene, np.random.default_rng(i)) for i in range(40)}
    assert len(texts) > 5  # varied phrasing
    for text in texts:
        assert "circles" in text or "disks" in text
        assert "red" in text
        assert any(w in text for w in ("two", "2", "pair"))
        assert "left" in text
        assert not any(w in text for w in ("small", "large", "striped", "background"))


def test_caption_is_deterministic_per_seed():
    scene, _ = sample_scene(np.random.default_rng(3))
    assert caption(scene, np.random.default_rng(7)) == caption(scene, np.random.default_rng(7))


def test_a_relation_is_said_as_stated_or_inverted_and_only_when_stated():
    spec = {"objects": [{"shape": "star", "color": "red", "count": 1},
                        {"shape": "heart", "color": "blue", "count": 1}],
            "relations": [{"subject": 0, "relation": "left_of", "object": 1}]}
    forms = set()
    for i in range(60):
        text = caption(parse_spec(spec), np.random.default_rng(i))
        if "left of" in text:
            assert text.index("star") < text.index("left of") < text.index("heart")
        else:
            assert text.index("heart") < text.index("right of") < text.index("star")
        forms.add(("is " in text, "left of" in text))
    assert len(forms) == 4  # "A to the left of B", "A is ...", and both inverted
    del spec["relations"]
    for i in range(30):
        text = caption(parse_spec(spec), np.random.default_rng(i))
        assert not any(w in text for w in ("left", "right", "above", "below"))


def test_training_captions_state_relations_that_hold_on_the_canvas():
    stated = 0
    for i in range(300):
        rng = np.random.default_rng(i)
        scene, placed = sample_scene(rng)
        said = say_relation(mention(scene, rng), placed, rng)
        for rel in said.relations:
            stated += 1
            points = [[(o.x, o.y) for o in placed if o.group == g]
                      for g in (rel.subject, rel.object)]
            assert relation_holds(rel.relation, *points)
            assert plan_scene(caption(said, rng)).relations  # and the caption says it
    assert 20 < stated < 120
    said = sum(" left of " in make_sample(i, 32).caption for i in range(200))
    assert said > 3


def test_mention_keeps_shape_and_count_and_drops_others_sometimes():
    rng = np.random.default_rng(0)
    dropped = 0
    for _ in range(100):
        scene, _ = sample_scene(rng)
        partial = mention(scene, rng)
        for full, part in zip(scene.groups, partial.groups, strict=True):
            assert part.shape == full.shape and part.count == full.count
            assert all(getattr(full, k) == v for k, v in part.fields().items())
            dropped += len(full.fields()) - len(part.fields())
    assert dropped > 50


def test_article_agrees_with_the_next_word():
    scene = parse_spec({"objects": [{"shape": "star", "color": "orange", "count": 1}]})
    for i in range(30):
        text = caption(scene, np.random.default_rng(i))
        assert not text.startswith("a orange")


def test_varied_training_captions_frame_fill_and_keep_their_phrase_spans():
    from fineimagen.domains.shapes.captions import FILLERS, FRAMES
    from fineimagen.domains.shapes.samples import make_sample

    framed = filled = 0
    lengths = []
    for i in range(600):
        sample = make_sample(i, 16, varied=True)
        text = sample.caption
        lengths.append(len(text.split()))
        framed += any(text.startswith(f.split("{}")[0]) and f.split("{}")[0] for f in FRAMES)
        filled += any(f in text for f in FILLERS)
        for start, end, group in sample.phrases:  # each span still names its group
            assert sample.scene.groups[group].shape[:3] in text[start:end] or any(
                w in text[start:end] for w in ("disk", "round", "block", "three-cornered"))
    assert 0.15 < framed / 600 < 0.35 and 0.03 < filled / 600 < 0.1
    assert max(lengths) > 150  # long prompts: up to 24 filler sentences
    plain = [make_sample(i, 16).caption for i in range(50)]
    assert not any(f in c for c in plain for f in FILLERS)  # the default stream is unchanged
