import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fineimagen.domains.shapes.samples import ShapesDataset, make_sample, write_folder
from fineimagen.errors import InputError


def test_samples_depend_only_on_seed_and_index():
    a, b = make_sample(5, 32, seed=1), make_sample(5, 32, seed=1)
    assert (a.image == b.image).all() and a.caption == b.caption
    assert not (make_sample(6, 32, seed=1).image == a.image).all()


def test_stream_yields_normalised_tensors():
    batch = next(iter(DataLoader(ShapesDataset(32, length=8), batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert len(batch["caption"]) == 4 and all(isinstance(c, str) for c in batch["caption"])


def test_workers_and_ranks_split_the_stream_without_overlap():
    def captions(ds, workers=0):
        loader = DataLoader(ds, batch_size=None, num_workers=workers)
        return [(s["caption"], float(s["image"].sum())) for s in loader]

    whole = captions(ShapesDataset(16, length=12))
    ranks = captions(ShapesDataset(16, length=12, rank=0, world_size=2)) + \
        captions(ShapesDataset(16, length=12, rank=1, world_size=2))
    assert sorted(ranks) == sorted(whole)
    assert sorted(captions(ShapesDataset(16, length=12), workers=2)) == sorted(whole)


def test_write_folder_layout(tmp_path):
    out = write_folder(tmp_path / "d", 5, 48, progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names[:2] == ["000000.png", "000000.txt"] and names[-1] == "scenes.jsonl"
    records = [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]
    assert len(records) == 5 and records[0]["caption"] == (out / "000000.txt").read_text().strip()
    from PIL import Image

    assert np.asarray(Image.open(out / "000004.png")).shape == (48, 48, 3)


@pytest.mark.parametrize("n, size, words", [(0, 32, "positive"), (3, 8, "16 to 4096"),
                                            (3, 5000, "16 to 4096")])
def test_write_folder_rejects_bad_arguments(tmp_path, n, size, words):
    with pytest.raises(InputError, match=words):
        write_folder(tmp_path / "d", n, size, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_write_folder_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    import fineimagen.domains.shapes.samples as shapes

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes, "caption_spans", boom)
    with pytest.raises(KeyboardInterrupt):
        write_folder(tmp_path / "d", 3, 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_dataset_image_matches_sample():
    sample = make_sample(0, 32)
    image = next(iter(ShapesDataset(32)))["image"]
    assert torch.allclose((image + 1) * 127.5, torch.from_numpy(sample.image).permute(2, 0, 1)
                          .float(), atol=1e-3)


def test_a_share_of_training_captions_state_every_attribute(monkeypatch):
    from fineimagen.domains.shapes import samples as shapes

    keeps, real = [], shapes.mention
    monkeypatch.setattr(shapes, "mention",
                        lambda scene, rng, keep: keeps.append(keep) or real(scene, rng, keep))
    for index in range(400):
        shapes.make_sample(index, 16)
    exhaustive = sum(k == 1.0 for k in keeps) / len(keeps)
    assert abs(exhaustive - shapes.EXHAUSTIVE_SHARE) < 0.07
    partial = [k for k in keeps if k < 1.0]
    assert min(partial) < 0.1 and max(partial) > 0.9  # bare nouns to nearly everything
