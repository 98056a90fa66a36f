import json

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A pipeline folder of the `tiny` preset after 3 training steps (real, untrained)."""
    from fineimagen.train.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny-model")
    result = train(TrainConfig(preset="tiny", out=str(root / "run"), steps=3, batch_size=4,
                               warmup=1, mixed_precision="no", channels_last=False),
                   progress=False)
    return result.folder


# the responsive model's colours (RGB) and how many copies of each caption its data holds
RESPONSIVE_COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60),
                      "yellow": (230, 210, 40)}


def responsive_data(folder):
    """A two-colour task at 16 px: "a red square" fills the canvas red; "a red square and a
    blue circle" paints the left half red and the right half blue (shape words do not
    change the picture). 72 image-caption pairs."""
    from PIL import Image

    folder.mkdir(parents=True)
    items = []
    for a, rgb in RESPONSIVE_COLOURS.items():
        items += [(f"a {a} square", rgb, rgb)] * 6
        items += [(f"a {a} square and a {b} circle", rgb, other) for b, other in
                  RESPONSIVE_COLOURS.items() if b != a for _ in range(4)]
    for k, (caption, left, right) in enumerate(items):
        image = np.zeros((16, 16, 3), np.uint8)
        image[:, :8], image[:, 8:] = left, right
        Image.fromarray(image).save(folder / f"{k:03d}.png")
        (folder / f"{k:03d}.txt").write_text(caption)
    return folder


@pytest.fixture(scope="session")
def responsive_model(tmp_path_factory):
    """The `tiny` preset (with CoordConv channels) trained 400 steps on `responsive_data`:
    about 30 s on 2 cores, and its images follow the prompt, the negative prompt, word
    weights, AND, regions and attention edits by tens of levels of 255 (tests/test_control.py
    measures each), where the 3-step `tiny_model` moves pixels by 1/255 at most."""
    from fineimagen.config import load_preset
    from fineimagen.train.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("responsive-model")
    preset = load_preset("tiny").to_dict()
    preset["stages"][0]["unet"]["coords"] = "stem"
    (root / "preset.json").write_text(json.dumps(preset))
    result = train(TrainConfig(preset=str(root / "preset.json"), data=str(responsive_data(
        root / "data")), out=str(root / "run"), steps=400, batch_size=16, lr=3e-3, warmup=20,
        ema_decay=0.9, mixed_precision="no", channels_last=False, seed=0), progress=False)
    return result.folder
