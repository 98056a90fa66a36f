import numpy as np
import pytest

from fineimagen.domains.shapes.parser import parse_image
from fineimagen.domains.shapes.render import render
from fineimagen.domains.shapes.scene import complete, parse_spec
from fineimagen.domains.shapes.selftest import agreement, darken_rims, perturb


def test_parses_a_known_scene_exactly(rng):
    spec = {"background": "gray", "objects": [
        {"shape": "heart", "color": "blue", "size": "large", "position": "top left",
         "texture": "striped", "count": 1},
        {"shape": "star", "color": "yellow", "size": "small", "position": "bottom right",
         "texture": "solid", "count": 3}]}
    scene, placed = complete(parse_spec(spec), rng)
    parsed = parse_image(render(placed, scene.background, 128))
    assert parsed.background == "gray"
    found = sorted((g.attributes() for g in parsed.groups), key=lambda a: a["shape"])
    assert found == sorted(spec["objects"], key=lambda a: a["shape"])


@pytest.mark.parametrize("texture", ["solid", "striped", "dotted", "checkered"])
def test_a_dark_rim_is_not_a_texture(texture):
    """Generated objects ring darker along their edges; the texture reading skips that band
    (one pixel deep, it read 2 px rims of solid squares as checkered)."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        spec = {"background": "black", "objects": [
            {"shape": "square", "color": "green", "size": "medium", "texture": texture,
             "count": 1}]}
        scene, placed = complete(parse_spec(spec), rng)
        image = darken_rims(render(placed, scene.background, 128), scene.background, rng)
        [obj] = parse_image(image).objects
        assert obj.texture == texture, seed


def test_blank_image_has_no_objects():
    assert parse_image(np.full((64, 64, 3), 255, np.uint8)).groups == []


def test_noise_blobs_alone_are_not_objects(rng):
    image = perturb(np.full((128, 128, 3), 255, np.uint8), rng)
    assert parse_image(image).objects == []


def test_centroids_are_subpixel_accurate(rng):
    spec = {"objects": [{"shape": "triangle", "texture": "solid", "count": 1}]}
    scene, placed = complete(parse_spec(spec), rng)
    obj = parse_image(render(placed, scene.background, 32)).objects[0]
    true_x, true_y = placed[0].x, placed[0].y + placed[0].size / 6  # a triangle's centroid
    assert abs(obj.x - true_x) * 32 < 0.15 and abs(obj.y - true_y) * 32 < 0.15
    assert obj.extent == pytest.approx(placed[0].size, rel=0.05)


# Small versions of `fineimagen eval --selftest` (the full table runs 2,000 scenes a row).
@pytest.mark.parametrize("size, perturbed, floor", [
    (32, False, 0.98), (64, False, 0.98), (128, False, 0.99),
    (64, True, 0.95), (128, True, 0.97), (128, "rimmed", 0.98),
])
def test_selftest_agreement(size, perturbed, floor):
    result = agreement(size, 120, seed=11, perturbed=bool(perturbed),
                       rimmed=perturbed == "rimmed")
    assert result.all_attributes >= floor, result.per_attribute
    assert ("texture" in result.per_attribute) == (size >= 64)


def test_pure_noise_images_parse_without_error(rng):
    for side in (32, 64):
        image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        parsed = parse_image(image)
        assert all(np.isfinite(o.x) and np.isfinite(o.extent) for o in parsed.objects)
