import numpy as np
import pytest
import torch
from PIL import Image

from fineimagen import precision
from fineimagen.cli import main
from fineimagen.errors import InputError
from fineimagen.pipeline import TextToImagePipeline


@pytest.fixture
def native(monkeypatch):
    """Make the CPU report native bf16 (True) or not (False)."""
    def set_native(value: bool):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: value)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return set_native


def test_auto_picks_bf16_only_where_the_cpu_has_it(native):
    native(True)
    assert precision.native_bf16("cpu") and precision.use_bf16(None)
    assert precision.mixed_precision("auto") == "bf16"
    native(False)
    assert not precision.use_bf16(None) and precision.use_bf16(True)
    assert precision.mixed_precision("auto") == "no"
    assert precision.mixed_precision("bf16") == "bf16"  # an explicit choice stands
    with pytest.raises(InputError, match="mixed_precision must be one of auto, bf16, no"):
        precision.mixed_precision("fp16")


def test_the_pipeline_default_follows_the_hardware(tiny_model, native):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)

    def draw(**kw):
        return np.stack([np.asarray(im, np.int16) for im in
                         pipe("a red circle", n=2, steps=3, progress=False, **kw)])
    fp32, bf16 = draw(bf16=False), draw(bf16=True)
    assert np.abs(fp32 - bf16).max() > 0  # the two paths differ, so the checks below can fail
    native(False)
    assert np.array_equal(draw(), fp32)
    native(True)
    assert np.array_equal(draw(), bf16)


def test_cli_precision_flag(tmp_path, tiny_model, native):
    native(False)
    for flag in ("auto", "fp32", "bf16"):
        assert main(["generate", "a blue star", "--model", str(tiny_model), "--steps", "2",
                     "--precision", flag, "--out", str(tmp_path / flag)]) == 0
    read = {f: np.asarray(Image.open(tmp_path / f / "00000_0.png"))
            for f in ("auto", "fp32", "bf16")}
    assert np.array_equal(read["auto"], read["fp32"])
    assert not np.array_equal(read["fp32"], read["bf16"])


def test_the_frozen_text_encoder_runs_bf16_only_where_native(native):
    from fineimagen.config import TextEncoderConfig
    from fineimagen.models.text_encoders import build_text_encoder

    encoder = build_text_encoder(TextEncoderConfig(kind="minilm", max_length=16))
    prompts = ["a red circle at the top left", "two blue stars"]
    batch = encoder.tokenizer(prompts, padding="longest", return_tensors="pt")
    with torch.no_grad():
        fp32 = encoder.model(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"]).last_hidden_state
    keep = batch["attention_mask"].bool()
    native(False)
    assert torch.equal(encoder.encode(prompts)[0][keep], fp32[keep])
    native(True)  # bf16 autocast: the same states to about 2 significant digits, not equal
    rounded = encoder.encode(prompts)[0][keep]
    assert not torch.equal(rounded, fp32[keep])
    assert torch.allclose(rounded, fp32[keep], atol=0.1)


def test_half_weights_are_for_a_gpu_and_fp16_is_refused_on_the_cpu(tiny_model, tmp_path, capsys):
    from fineimagen.cli import main
    from fineimagen.errors import InputError
    from fineimagen.pipeline import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    with pytest.raises(InputError, match="on the CPU weights stay float32"):
        pipe.to("cpu", torch.float16)
    with pytest.raises(InputError, match="dtype must be"):
        pipe.to("cpu", torch.int8)
    pipe.to("cpu", torch.float32)  # fp32 is fine anywhere
    assert main(["generate", "a red circle", "--model", str(tiny_model), "--precision", "fp16",
                 "--out", str(tmp_path / "out")]) == 2
    assert "fp16 runs on a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
