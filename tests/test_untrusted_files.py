"""Model folders from elsewhere: only safetensors and JSON are read, and every fault is a
clear error (exit 2 from the CLI), never a crash or a model that draws garbage."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from fineimagen.cli import main
from fineimagen.errors import InputError
from fineimagen.pipeline import TextToImagePipeline


@pytest.fixture
def folder(tiny_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    return copy


class Trap:
    """Unpickling this writes a marker file: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickles_are_never_loaded(folder, tmp_path):
    marker = tmp_path / "pickle-was-loaded"
    for name in ("base/model.pt", "base/pytorch_model.bin", "text_encoder/model.ckpt",
                 "model.pkl"):
        (folder / name).write_bytes(pickle.dumps(Trap(marker)))
    TextToImagePipeline.from_pretrained(folder)
    assert not marker.exists()
    (folder / "base/model.safetensors").unlink()  # a .bin beside is no stand-in
    with pytest.raises(InputError, match="weights missing"):
        TextToImagePipeline.from_pretrained(folder)
    assert not marker.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_with_the_tensor_named(folder, value):
    path = folder / "base/model.safetensors"
    state = load_file(str(path))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[3]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = value
    save_file(state, str(path))
    with pytest.raises(InputError, match=f"tensor {name} holds NaN or Inf"):
        TextToImagePipeline.from_pretrained(folder)


def test_truncated_and_bit_flipped_weights(folder):
    path = folder / "base/model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="unreadable weights"):
        TextToImagePipeline.from_pretrained(folder)
    flipped = bytearray(data)
    flipped[4] ^= 0xFF  # the header length: no longer a valid header
    path.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="unreadable weights"):
        TextToImagePipeline.from_pretrained(folder)


def test_wrong_dtype_weights_load_as_float(folder):
    path = folder / "base/model.safetensors"
    state = {k: v.half() if v.is_floating_point() else v for k, v in
             load_file(str(path)).items()}
    save_file(state, str(path))
    pipe = TextToImagePipeline.from_pretrained(folder)
    weight = next(pipe.stages[0].model.parameters())
    assert weight.dtype == torch.float32


def test_a_huge_config_is_refused_before_allocating(folder):
    path = folder / "base/config.json"
    cfg = json.loads(path.read_text())
    cfg["unet"]["channels"] = 400_000  # ~10^13 parameters
    path.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="more than the 1e\\+10"):
        TextToImagePipeline.from_pretrained(folder)


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["unet"].update(bogus=1), "bogus"),
    (lambda c: c["unet"].update(channels="wide"), "channels"),
])
def test_bad_configs_are_clear_errors(folder, edit, words):
    path = folder / "base/config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=words):
        TextToImagePipeline.from_pretrained(folder)


def test_links_and_names_that_leave_the_folder_are_refused(folder, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(folder / "base", outside)
    shutil.rmtree(folder / "base")
    (folder / "base").symlink_to(outside)
    with pytest.raises(InputError, match="leads outside the model folder"):
        TextToImagePipeline.from_pretrained(folder)
    (folder / "base").unlink()
    shutil.copytree(outside, folder / "base")
    index = json.loads((folder / "model_index.json").read_text())
    index["stages"] = ["../elsewhere"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match="leads outside the model folder"):
        TextToImagePipeline.from_pretrained(folder)


def test_a_newer_format_version_is_refused_by_the_cli(folder, tmp_path, capsys):
    index = json.loads((folder / "model_index.json").read_text())
    index["format_version"] = 99
    (folder / "model_index.json").write_text(json.dumps(index))
    assert main(["generate", "a red circle", "--model", str(folder),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "newer" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
