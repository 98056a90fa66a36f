"""Training data formats: ImageFolder, WebDataset shards, Hugging Face datasets; exact resume
for map-style formats; shards split across processes without duplicates."""

import itertools
import json

import pytest
from PIL import Image

from fineimagen.data import formats
from fineimagen.data.writers import write_samples
from fineimagen.domains.shapes.samples import make_sample
from fineimagen.errors import InputError
from fineimagen.train.trainer import TrainConfig, train


def shapes_samples(n, size=16):
    for i in range(n):
        s = make_sample(i, size)
        yield s.image, s.caption, {"scene": s.scene.to_spec()}


def tiny_train(data, out, **kw):
    fields = dict(preset="tiny", data=str(data), out=str(out), steps=2, batch_size=4,
                  warmup=1, checkpoint_every=1, log_every=1)
    cfg = TrainConfig.from_dict({**fields, **kw}, "test")
    return train(cfg, progress=False)


def test_training_runs_from_an_imagefolder_and_from_shards(tmp_path):
    folder = write_samples(tmp_path / "if", shapes_samples(12), "imagefolder")
    row = json.loads((folder / "metadata.jsonl").read_text().splitlines()[0])
    assert row["file_name"].startswith("images/") and "scene" in row
    assert formats.detect(str(folder)) == "imagefolder"
    assert tiny_train(folder, tmp_path / "a").step == 2
    shards = write_samples(tmp_path / "wds", shapes_samples(12), "webdataset")
    assert formats.detect(str(shards)) == "webdataset"
    assert tiny_train(shards, tmp_path / "b").step == 2
    # resume over shards starts past the shards already read
    assert tiny_train(shards, tmp_path / "b", steps=3, resume=True).step == 3


def test_training_runs_from_a_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.fromarray(make_sample(i, 16).image) for i in range(8)]
    captions = [make_sample(i, 16).caption for i in range(8)]
    features = datasets.Features({"picture": datasets.Image(),
                                  "caption": datasets.Value("string")})
    data = datasets.Dataset.from_dict({"picture": images, "caption": captions},
                                      features=features)
    data.save_to_disk(str(tmp_path / "hf"))
    assert formats.detect(str(tmp_path / "hf")) == "hf"
    with pytest.raises(InputError, match="no column 'image'"):
        tiny_train(tmp_path / "hf", tmp_path / "a")
    result = tiny_train(tmp_path / "hf", tmp_path / "b", image_column="picture",
                        text_column="caption")
    assert result.step == 2
    (tmp_path / "pq").mkdir()
    data.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    item = formats.HFDataset(tmp_path / "pq", 16, "picture", "caption")[3]
    assert item["caption"] == captions[3] and item["image"].shape == (3, 16, 16)
    assert float(item["image"].abs().max()) <= 1.0


def test_two_processes_read_every_sample_of_three_shards_once_a_pass(tmp_path):
    import fineimagen.data.writers as writers

    writers.SHARD_SIZE, old = 10, writers.SHARD_SIZE
    try:
        shards = write_samples(tmp_path / "wds3", shapes_samples(30), "webdataset")
    finally:
        writers.SHARD_SIZE = old
    assert len(formats.shard_urls(str(shards))) == 3
    seen = []
    for rank in range(2):
        stream = formats.ShardStream(str(shards), 16, rank=rank, world=2)
        per_pass = sum(formats._count(u) for u in stream.mine)
        seen += [item["caption"] for item in itertools.islice(iter(stream), per_pass)]
    captions = [make_sample(i, 16).caption for i in range(30)]
    assert sorted(seen) == sorted(captions)  # each once, across both ranks
    with pytest.raises(InputError, match="cannot be shared"):
        formats.ShardStream(str(shards), 16, rank=0, world=4)


def test_the_map_style_sampler_resumes_exactly():
    whole = formats.ResumableSampler(50, rank=1, world=2, seed=3, batch=4)
    assert len(whole) == 24  # 25 a rank, cut to whole batches
    first_two = list(whole)
    whole.set_epoch(1)
    stream = first_two + list(whole)
    for start in (0, 5, 24, 30):
        resumed = formats.ResumableSampler(50, rank=1, world=2, seed=3, batch=4, start=start)
        got = list(resumed)
        if start + len(got) <= 24 or start >= 24:
            assert got == stream[start: start + len(got)]
    other = list(formats.ResumableSampler(50, rank=0, world=2, seed=3, batch=4))
    assert not set(other) & set(first_two)


def test_unknown_data_is_refused_with_what_was_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="metadata.jsonl"):
        formats.detect(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.jsonl").write_text('{"file_name": "../x.png", "text": "a"}\n')
    with pytest.raises(InputError, match="no image"):
        formats.ImageFolderMetadata(tmp_path / "bad", 16)
    with pytest.raises(InputError, match="no WebDataset shard"):
        formats.shard_urls(str(tmp_path / "none-*.tar"))


def test_a_text_store_answers_as_the_encoder_does_and_refuses_a_stale_one(tmp_path):
    import torch

    from fineimagen.cli import main
    from fineimagen.config import load_preset
    from fineimagen.models.text_encoders import build_text_encoder
    from fineimagen.models.text_store import TextStore

    folder = write_samples(tmp_path / "if", shapes_samples(10), "imagefolder")
    main(["embed", "--data", str(folder), "--preset", "shapes-32-128", "--out",
          str(tmp_path / "store")])
    preset = load_preset("shapes-32-128")
    store = TextStore(tmp_path / "store", preset.text_encoder.to_dict())
    captions = formats.dataset_captions(str(folder))
    encoder = build_text_encoder(preset.text_encoder)
    with torch.no_grad():
        want, want_mask = encoder.encode(captions[:4])
    got, got_mask = store.encode(captions[:4])
    n = got.shape[1]
    assert torch.equal(got_mask, want_mask[:, :n]) and not want_mask[:, n:].any()
    assert (got - want[:, :n]).abs().max() < 2e-2 * want.abs().max()  # fp16 on disk
    with pytest.raises(InputError, match="another text encoder config"):
        TextStore(tmp_path / "store", {**preset.text_encoder.to_dict(), "max_length": 12})
    with pytest.raises(InputError, match="caption not in the text store"):
        store.encode(["a caption nobody wrote"])
    with pytest.raises(InputError, match="finite dataset"):
        formats.dataset_captions("shapes")
    # training reads the store (a preset with the same frozen encoder)
    result = tiny_train(folder, tmp_path / "run", preset="shapes-32-128",
                        text_store=str(tmp_path / "store"), steps=1, batch_size=2)
    assert result.step == 1
