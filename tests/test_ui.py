"""The web UI's parts without a browser: mounting and its login, the regions JSON, the
overlay. The browser drives it end to end in test_browser.py."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

import gradio as gr  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from fineimagen.pipeline import TextToImagePipeline  # noqa: E402
from fineimagen.serve.app import ServeConfig, create_app  # noqa: E402
from fineimagen.serve.ui import _overlay, _regions_or_scene  # noqa: E402


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return TextToImagePipeline.from_pretrained(tiny_model)


def test_the_ui_is_mounted_and_the_key_guards_it_by_login(pipe, tmp_path):
    open_app = TestClient(create_app(pipe, ServeConfig(files=str(tmp_path / "a"), ui=True)))
    page = open_app.get("/ui/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    config = open_app.get("/ui/config").json()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"prompt", "region-canvas", "regions-json", "generate", "images", "stages",
            "overlay", "editor", "score-prompts"} <= ids
    keyed = TestClient(create_app(pipe, ServeConfig(files=str(tmp_path / "b"), ui=True,
                                                    api_key="k")))
    assert keyed.get("/ui/config").status_code == 401  # gradio's login, not the API key
    assert keyed.post("/ui/login", data={"username": "me", "password": "wrong"}) \
        .status_code == 400
    assert keyed.post("/ui/login", data={"username": "me", "password": "k"}).status_code == 200
    assert keyed.get("/ui/config").status_code == 200  # the login's cookie
    assert keyed.get("/v1/models").status_code == 401  # the API still wants the key
    assert create_app(pipe, ServeConfig(files=str(tmp_path / "c"))).routes  # no UI: no gradio
    assert not any(getattr(r, "path", "").startswith("/ui")
                   for r in create_app(pipe, ServeConfig(files=str(tmp_path / "d"))).routes)


def test_regions_json_boxes_cells_and_scene_specs():
    text = json.dumps([{"prompt": "a red star", "box": [0.67, 0.0, 1.0, 0.33]},
                       {"prompt": "a blue circle", "cell": "bottom left"}])
    regions, scene = _regions_or_scene(text, 32)
    assert scene is None and [r.prompt for r in regions] == ["a red star", "a blue circle"]
    assert regions[0].mask.shape == (1, 1, 32, 32)
    assert regions[0].mask[0, 0, :10, 22:].min() > 0.9 and regions[0].mask[0, 0, 12:].max() == 0
    said, _ = _regions_or_scene(text, 32, say_cell=True)
    assert said[0].prompt == "a red star at the top right"
    assert said[1].prompt == "a blue circle"  # a named cell already says where
    placed = json.dumps([{"prompt": "a red star in the center", "box": [0, 0, 0.3, 0.3]}])
    assert _regions_or_scene(placed, 32, True)[0][0].prompt == "a red star in the center"
    spec = {"background": "white", "objects": [{"shape": "star"}]}
    assert _regions_or_scene(json.dumps(spec), 32) == (None, spec)
    assert _regions_or_scene("[]", 32) == (None, None)
    for bad, says in [("[{", "not valid JSON"), ('"x"', "a list of regions"),
                      ('[{"prompt": "a", "box": [0, 0, 2, 1]}]', "outside [0, 1]"),
                      ('[{"prompt": "a"}]', "exactly one"),
                      ('[{"prompt": "a", "cell": "nowhere"}]', "unknown region")]:
        with pytest.raises(gr.Error, match=says.replace("[", r"\[")):
            _regions_or_scene(bad, 32)


def test_the_overlay_draws_each_box_where_it_is():
    image = Image.new("RGB", (128, 128), "white")
    shown = np.asarray(_overlay(image, [{"prompt": "x", "box": [0.5, 0.5, 1.0, 1.0]}]))
    assert shown.shape == (256, 256, 3)
    red = (shown[..., 0] > 180) & (shown[..., 1] < 80)
    ys, xs = np.nonzero(red)
    assert xs.min() >= 126 and ys.min() >= 126  # only in the box's quarter
    assert red[128:, 128].sum() > 100  # its left edge drawn down the quarter
