"""The pipeline's per-step callback."""

import numpy as np
import pytest

from fineimagen.pipeline import TextToImagePipeline


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return TextToImagePipeline.from_pretrained(tiny_model)


def test_the_step_callback_sees_every_step_of_every_stage(pipe):
    seen = []
    images = pipe("a red circle", n=2, seed=1, progress=False,
                  callback=lambda stage, step, steps, x: seen.append((stage, step, steps,
                                                                      x.clone())))
    steps = pipe.stages[0].cfg.sampling.steps
    assert [(s, k, n) for s, k, n, _ in seen] == [("base", k, steps) for k in range(steps)]
    last = ((seen[-1][3].clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for k in range(2):  # the last step's sample is the image
        assert np.array_equal(last[k], np.asarray(images[k]))
    seen.clear()
    pipe("a red circle", n=1, progress=False, negative_prompt="a star",
         callback=lambda *a: seen.append(a[:3]))
    assert len(seen) == steps  # the controlled path reports too
