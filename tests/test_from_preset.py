"""An untrained cascade from a preset: Imagen's 64 -> 256 -> 1024 layout at reduced width, a
tiny local T5 in place of T5-XXL, sampled to 1024 px on the CPU in a few steps."""

from dataclasses import replace

import numpy as np
import torch

from fineimagen.config import load_preset
from fineimagen.models.text_encoders import minilm_path
from fineimagen.pipeline import TextToImagePipeline


def test_the_imagen_preset_builds_and_samples_a_1024_px_image(tmp_path):
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    config = T5Config(vocab_size=30522, d_model=16, d_kv=8, d_ff=32, num_layers=1,
                      num_heads=2, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(tmp_path / "t5")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "t5")
    cascade = load_preset("imagen-64-256-1024")
    small = [replace(s, unet=replace(s.unet, channels=8, blocks_per_level=(1,) * 4, heads=2,
                                     head_dim=8, groups=4),
                     sampling=replace(s.sampling, steps=2)) for s in cascade.stages]
    pipe = TextToImagePipeline.from_preset(replace(cascade, stages=small),
                                           text_encoder=tmp_path / "t5", seed=3)
    seen = []
    images = pipe("a red apple", n=1, progress=False,
                  callback=lambda stage, step, steps, x: seen.append((stage, x.shape[-1])))
    assert images[0].size == (1024, 1024)
    assert [s for s, _ in seen] == ["base"] * 2 + ["sr256"] * 2 + ["sr1024"] * 2
    assert np.asarray(images[0]).std() > 0  # random weights still draw something
    again = TextToImagePipeline.from_preset(replace(cascade, stages=small),
                                            text_encoder=tmp_path / "t5", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(pipe.stages[0].model.state_dict().values(),
                                                  again.stages[0].model.state_dict().values(),
                                                  strict=True))
