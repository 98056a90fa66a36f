import numpy as np
import pytest

from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.render import render, shape_sdf
from fineimagen.domains.shapes.scene import PlacedObject


def one(shape, texture="solid", color="red", size=0.5, x=0.5, y=0.5):
    return [PlacedObject(0, shape, color, texture, x, y, size)]


@pytest.mark.parametrize("shape, area", [("circle", np.pi / 4), ("square", 1.0),
                                         ("triangle", 0.5)])
def test_rendered_area_matches_geometry(shape, area):
    side = 256
    img = render(one(shape), "white", side).astype(float)
    # red (225, 25, 40) on white: coverage from the green channel
    coverage = (255 - img[..., 1]) / (255 - vocab.COLOR_RGB["red"][1])
    assert coverage.sum() / (0.5 * side) ** 2 == pytest.approx(area, rel=0.01)


@pytest.mark.parametrize("shape", vocab.SHAPES)
def test_every_shape_spans_its_box(shape):
    u, v = np.meshgrid(np.linspace(-0.6, 0.6, 241), np.linspace(-0.6, 0.6, 241))
    inside = shape_sdf(shape, u, v) < 0
    xs, ys = u[inside], v[inside]
    extent = max(xs.max() - xs.min(), ys.max() - ys.min())
    assert extent == pytest.approx(1.0, abs=0.011)


def test_edges_are_antialiased_and_background_exact():
    img = render(one("circle", size=0.4), "gray", 64)
    assert (img[0, 0] == 128).all()
    greens = np.unique(img[..., 1])
    assert len(greens) > 5  # partial coverage on the rim


def test_textures_use_the_darker_shade_of_the_same_colour():
    img = render(one("square", "striped", "blue", size=0.8), "white", 128).astype(int)
    core = img[40:88, 40:88].reshape(-1, 3)
    light = np.array(vocab.COLOR_RGB["blue"])
    dark = np.rint(light * vocab.TEXTURE_SHADE)
    share_light = (np.abs(core - light).sum(1) < 6).mean()
    share_dark = (np.abs(core - dark).sum(1) < 6).mean()
    assert share_light > 0.3 and share_dark > 0.3
    rows = img[14:114, 64, 2]  # a column through 3 periods of horizontal stripes
    assert len(np.flatnonzero(np.diff(rows > (light[2] + dark[2]) / 2))) >= 5


def test_render_is_deterministic_and_any_size_works():
    objs = one("heart", "dotted")
    assert (render(objs, "black", 97) == render(objs, "black", 97)).all()
    for side in (16, 32, 1024):
        assert render(objs, "black", side).shape == (side, side, 3)
