"""Export to ONNX and OpenVINO: the exported graphs draw the PyTorch pipeline's images (within
a stated tolerance), for plain, negative and AND / NOT prompts and regions; what needs the
U-Net's attention is refused; bad exports are one-line errors."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from fineimagen.cli import main  # noqa: E402
from fineimagen.control.regions import Region, box_mask  # noqa: E402
from fineimagen.errors import InputError  # noqa: E402
from fineimagen.export import export_pipeline  # noqa: E402
from fineimagen.pipeline import TextToImagePipeline  # noqa: E402

TOLERANCE = 2  # of 255, per pixel: the runtimes' kernels sum in other orders


@pytest.fixture(scope="module")
def pipe(responsive_model):
    """A model whose images follow the text, the negative prompt, the weights and the regions
    by tens of levels (tests/test_responsive_control.py), so parity within TOLERANCE shows
    that the export carries each of them."""
    return TextToImagePipeline.from_pretrained(responsive_model)


def largest_difference(a, b) -> int:
    return max(int(np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max())
               for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("openvino", marks=pytest.mark.slow)])
def test_exported_graphs_draw_the_pytorch_images(pipe, tmp_path, fmt):
    if fmt == "openvino":
        pytest.importorskip("openvino")
    out = export_pipeline(pipe, tmp_path / fmt, fmt)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    graph = "model.onnx" if fmt == "onnx" else "model.xml"
    assert {f"{s.name}/{graph}" for s in pipe.stages} | {f"text_encoder/{graph}"} <= set(files)
    assert not any(f.endswith(".safetensors") for f in files)  # the graphs hold the weights
    exported = TextToImagePipeline.from_pretrained(out)  # the export format is recognised
    assert exported.exported == ("onnxruntime" if fmt == "onnx" else "openvino")
    region = [Region("a blue square", box_mask((0.5, 0.0, 1.0, 1.0), 16))]
    plain = pipe("a red square", n=2, seed=5, progress=False, bf16=False)
    for prompt, options in [("a red square", {}),
                            ("a blue square", {}),
                            ("a red square", {"negative_prompt": "a blue square"}),
                            ("a (red:1.4) square AND a blue square NOT a yellow square", {}),
                            ("a red square", {"regions": region})]:
        want = pipe(prompt, n=2, seed=5, progress=False, bf16=False, **options)
        got = exported(prompt, n=2, seed=5, progress=False, bf16=False, **options)
        assert [im.size for im in got] == [want[0].size] * 2
        assert largest_difference(want, got) <= TOLERANCE, (prompt, options)
        if (prompt, options) != ("a red square", {}):  # each option changes the picture
            assert largest_difference(want, plain) > 60, (prompt, options)
    with pytest.raises(InputError, match="PyTorch pipeline"):
        exported.edit_prompt("a red circle", "a blue circle")
    with pytest.raises(InputError, match="PyTorch pipeline"):
        exported("a red circle", excite=True)


def test_an_export_leaves_the_pipeline_as_it_was_and_a_bad_one_is_refused(pipe, tmp_path):
    before = pipe("a red circle", seed=1, progress=False, bf16=False)
    out = export_pipeline(pipe, tmp_path / "e")
    assert largest_difference(before, pipe("a red circle", seed=1, progress=False,
                                           bf16=False)) == 0
    with pytest.raises(InputError, match="unknown export format"):
        export_pipeline(pipe, tmp_path / "x", "tflite")
    with pytest.raises(InputError, match="exists and is not empty"):
        export_pipeline(pipe, out)
    index = json.loads((out / "model_index.json").read_text())
    (out / "model_index.json").write_text(json.dumps({**index, "format_version": 99}))
    with pytest.raises(InputError, match="newer"):
        TextToImagePipeline.from_exported(out)
    (out / "model_index.json").write_text(json.dumps(index))
    (out / "base" / "model.onnx").unlink()
    with pytest.raises(InputError, match="base/model.onnx is missing"):
        TextToImagePipeline.from_exported(out)


def test_the_export_command(tiny_model, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_model), "--out", str(tmp_path / "o")]) == 0
    assert "exported to" in capsys.readouterr().out
    assert main(["generate", "a red circle", "--model", str(tmp_path / "o"), "--out",
                 str(tmp_path / "images"), "--seed", "2"]) == 0
    assert len(list((tmp_path / "images").glob("*.png"))) == 1
    assert main(["export", "--model", str(tiny_model), "--out", str(tmp_path / "o")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_a_guidance_distilled_student_exports_with_its_guidance_input(tiny_model, tmp_path):
    from fineimagen.train.trainer import TrainConfig, train

    run = train(TrainConfig(distill_from=str(tiny_model), out=str(tmp_path / "run"), steps=1,
                            batch_size=2, warmup=1, mixed_precision="no",
                            channels_last=False), progress=False)
    student = TextToImagePipeline.from_pretrained(run.folder)
    assert student.stages[0].cfg.unet.guidance_input
    unet = student.stages[0].model.unet
    torch.manual_seed(0)  # one step leaves the output and w layers near zero: make w matter
    for layer in (unet.out, unet.guidance_mlp[2]):
        layer.weight.data.normal_(0, 0.3)
    exported = TextToImagePipeline.from_exported(export_pipeline(student, tmp_path / "e"))
    drawn = {}
    for guidance in (1.0, 4.0):
        drawn[guidance] = student("a red circle", n=2, seed=2, guidance=guidance,
                                  progress=False, bf16=False)
        got = exported("a red circle", n=2, seed=2, guidance=guidance, progress=False,
                       bf16=False)
        assert largest_difference(drawn[guidance], got) <= TOLERANCE, guidance
    assert largest_difference(drawn[1.0], drawn[4.0]) > 2 * TOLERANCE  # w is read by both
