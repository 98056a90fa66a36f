"""Images users give to upscale, edit and eval: every mode handled or refused clearly."""

import numpy as np
import pytest
from PIL import Image

from fineimagen.cli import main
from fineimagen.errors import InputError
from fineimagen.images import MAX_SIDE, open_image


def save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "CMYK", "1", "I;16", "I",
                                  "F"])
def test_every_mode_reads_as_8_bit_rgb(tmp_path, mode):
    base = Image.fromarray(np.linspace(0, 255, 16 * 16 * 3).reshape(16, 16, 3)
                           .astype(np.uint8))
    if mode in ("I;16", "I", "F"):
        array = np.linspace(0, 65535 if mode != "F" else 1000, 256).reshape(16, 16)
        image = Image.fromarray(array.astype({"I;16": np.uint16, "I": np.int32,
                                              "F": np.float32}[mode]))
        if mode == "I;16":
            image = image.convert("I;16") if image.mode != "I;16" else image
    else:
        image = base.convert(mode)
    path = save(tmp_path, "x.tiff", image)
    rgb = open_image(path)
    assert rgb.mode == "RGB" and rgb.size == (16, 16)
    values = np.asarray(rgb)
    assert values.max() > 100  # scaled, not clipped to black


def test_truncated_png_and_non_images_are_clear_errors(tmp_path):
    path = save(tmp_path, "a.png", Image.new("RGB", (64, 64), (200, 10, 10)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="unreadable"):
        open_image(path)
    (tmp_path / "b.png").write_text("not a png")
    with pytest.raises(InputError, match="not an image"):
        open_image(tmp_path / "b.png")


def test_huge_images_are_refused_before_decoding(tmp_path):
    path = save(tmp_path, "big.png", Image.new("L", (MAX_SIDE + 1, 8)))
    with pytest.raises(InputError, match="larger than 4096 px"):
        open_image(path)


def test_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = save(tmp_path, "bomb.png", Image.new("L", (300, 300)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # the same check, smaller
    with pytest.raises(InputError, match="refused"):
        open_image(path)


def test_a_1x1_image_upscales(tmp_path):
    path = save(tmp_path, "one.png", Image.new("RGB", (1, 1), (10, 200, 10)))
    out = tmp_path / "out"
    assert main(["upscale", str(path), "--prompt", "a green circle", "--out", str(out)]) == 0
    assert Image.open(out / "one.png").size == (128, 128)  # the shipped SR stage's side


@pytest.mark.parametrize("command", [["upscale"], ["edit", "--prompt", "a star", "--image"]])
def test_the_cli_refuses_a_bad_image_with_exit_2(tmp_path, tiny_model, capsys, command):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    argv = ["upscale", str(path), "--prompt", "x"] if command == ["upscale"] else \
        [*command, str(path)]
    assert main([*argv, "--model", str(tiny_model), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fineimagen: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
