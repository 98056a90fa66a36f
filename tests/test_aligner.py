import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fineimagen.cli import main
from fineimagen.config import ViTConfig, load_preset
from fineimagen.domains.shapes.captions import mention
from fineimagen.domains.shapes.contrast import (
    ContrastDataset,
    edit_one,
    make_contrast_sample,
    swap_two,
)
from fineimagen.domains.shapes.scene import Group, Scene, sample_scene
from fineimagen.domains.shapes.vocab import TEXTURES
from fineimagen.errors import InputError
from fineimagen.eval.fid import frechet_distance
from fineimagen.models.alignment import Aligner
from fineimagen.models.vit import ViT, sincos_2d
from fineimagen.pipeline import TextToImagePipeline
from fineimagen.train.trainer import TrainConfig, train


@pytest.fixture
def aligner():
    torch.manual_seed(0)
    return Aligner(load_preset("tiny").aligner).eval()


def test_vit_shapes_and_resizing():
    vit = ViT(ViTConfig(image_size=16, patch=4, width=32, depth=1, heads=2))
    assert vit(torch.zeros(3, 3, 16, 16)).shape == (3, 32)
    assert vit(torch.zeros(2, 3, 40, 40)).shape == (2, 32)  # other sizes are resized
    with pytest.raises(InputError, match="multiple of patch"):
        ViT(ViTConfig(image_size=18, patch=4))


def test_sincos_positions_tell_patches_apart_from_the_start():
    codes = sincos_2d(4, 32)
    assert codes.shape == (16, 32)
    assert torch.equal(codes[1, :16], codes[2, :16])  # one row: the row half is shared
    assert torch.equal(codes[1, 16:], codes[5, 16:])  # one column: the column half
    sim = F.cosine_similarity(codes[:, None], codes[None], dim=-1)
    assert sim[~torch.eye(16, dtype=torch.bool)].max() < 0.8  # every patch its own code
    # the codes are a buffer, not weights: the same state dict, different features
    vits = []
    for sincos in (False, True):
        torch.manual_seed(0)
        vits.append(ViT(ViTConfig(image_size=16, patch=4, width=32, depth=1, heads=2,
                                  sincos_positions=sincos)).eval())
    vits[1].load_state_dict(vits[0].state_dict())
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(vits[0](image), vits[1](image), atol=1e-3)
    with pytest.raises(InputError, match="divisible by 4"):
        sincos_2d(4, 30)


def test_conv_stem_replaces_the_patch_map_and_sees_across_patch_borders():
    cfg = dict(image_size=16, patch=4, width=32, depth=1, heads=2)
    torch.manual_seed(0)
    plain, stemmed = ViT(ViTConfig(**cfg)).eval(), ViT(ViTConfig(**cfg, conv_stem=True)).eval()
    # 3x3 convs 3 -> 24 (full size), 24 -> 48 and 48 -> 96 (stride 2), each with GroupNorm,
    # then a 1x1 map to the width
    assert stemmed.patches(torch.zeros(2, 3, 16, 16)).shape == (2, 32, 4, 4)
    assert sum(p.numel() for p in stemmed.patches.parameters()) == \
        (3 * 9 * 24 + 3 * 24) + (24 * 9 * 48 + 3 * 48) + (48 * 9 * 96 + 3 * 96) + 96 * 32 + 32
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    moved = image.clone()
    moved[..., 3, 3] += 1  # the last pixel of the first patch
    with torch.no_grad():
        change = {name: (vit.patches(image) - vit.patches(moved)).norm(dim=1)[0]
                  for name, vit in (("plain", plain), ("stem", stemmed))}
    # one linear map per patch: only the pixel's own token moves
    assert change["plain"][0, 0] > 0 and change["plain"].sum() == change["plain"][0, 0]
    # the stem: the next patch's token moves too; a far one (outside the 9 px receptive
    # field) only through the GroupNorm statistics
    assert change["stem"][1, 1] > 5 * change["stem"][3, 3] > 0
    with pytest.raises(InputError, match="power-of-two patch"):
        ViT(ViTConfig(image_size=12, patch=3, width=32, depth=1, heads=2, conv_stem=True))


def test_mean_pooling_averages_the_patch_tokens():
    cfg = dict(image_size=16, patch=4, width=32, depth=1, heads=2)
    torch.manual_seed(0)
    by_cls = ViT(ViTConfig(**cfg)).eval()
    by_mean = ViT(ViTConfig(**cfg, pool="mean")).eval()
    by_mean.load_state_dict(by_cls.state_dict())  # the same weights
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        x = by_cls.patches(image).flatten(2).transpose(1, 2)
        x = torch.cat([by_cls.cls.expand(2, -1, -1), x], 1)
        tokens = by_cls.blocks(x + by_cls.positions + by_cls.fixed_positions)
        assert torch.allclose(by_mean(image), by_cls.norm(tokens[:, 1:].mean(1)), atol=1e-5)
        assert torch.allclose(by_cls(image), by_cls.norm(tokens[:, 0]), atol=1e-5)
        assert not torch.allclose(by_mean(image), by_cls(image), atol=1e-2)
    with pytest.raises(InputError, match="pool must be one of cls, mean"):
        ViT(ViTConfig(**cfg, pool="max"))


def test_infonce_matches_the_formula(aligner):
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    captions = ["a red circle", "two blue stars", "a green heart", "a large square"]
    negatives = ["a blue circle", "three blue stars", "a green star", "a small square"]
    loss = aligner(images, captions, negatives=negatives)
    u, w = aligner.embed_images(images), aligner.embed_texts(captions + negatives)
    s = aligner.logit_scale.exp()
    i2t = -torch.log_softmax(s * u @ w.T, 1).diagonal().mean()
    t2i = -torch.log_softmax(s * w[:4] @ u.T, 1).diagonal().mean()
    assert loss.item() == pytest.approx(((i2t + t2i) / 2).item(), rel=1e-5)
    assert torch.allclose(u.norm(dim=1), torch.ones(4), atol=1e-5)


def test_texture_loss_adds_masked_binary_cross_entropy(aligner):
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    captions = ["a red circle", "two blue stars", "a green heart"]
    textures = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])
    shown = torch.tensor([1.0, 1.0, 0.0])  # the third is an enlarged small render
    plain = aligner(images, captions).item()
    aligner.add_texture_head(0.5, len(TEXTURES))
    assert aligner(images, captions).item() == pytest.approx(plain, rel=1e-6)  # no labels
    logits = aligner.texture_head(aligner.image_features(images))[:2]
    bce = F.binary_cross_entropy_with_logits(logits, textures[:2])
    total = aligner(images, captions, textures=textures, texture_shown=shown).item()
    assert total == pytest.approx(plain + 0.5 * bce.item(), rel=1e-5)
    # the head trains but is never saved
    assert any(k.startswith("texture_head.") for k in aligner.state_dict())
    assert not any(k.startswith("texture_head.") for k in aligner.trained_state())


def test_a_few_steps_learn_to_match_a_fixed_batch(aligner):
    items = [make_contrast_sample(i, 16, negatives=2) for i in range(8)]
    images = torch.stack([torch.from_numpy(s.image.copy()).permute(2, 0, 1).float() / 127.5 - 1
                          for s in items])
    captions = [s.caption for s in items]
    negatives = [n for s in items for n in s.negatives]
    aligner.train()
    opt = torch.optim.AdamW(aligner.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = aligner(images, captions, negatives=negatives)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    aligner.eval()
    scores = aligner.embed_images(images) @ aligner.embed_texts(captions).T
    assert (scores.argmax(1) == torch.arange(8)).float().mean() >= 0.75


def test_hard_negatives_change_exactly_one_attribute(rng):
    for _ in range(50):
        scene, _ = sample_scene(rng)
        said = mention(scene, rng, keep=0.7)
        edited, name = edit_one(said, rng)
        diffs = [(a, b) for a, b in zip(said.groups, edited.groups, strict=True) if a != b]
        assert len(diffs) == 1
        before, after = diffs[0][0].fields(), diffs[0][1].fields()
        assert before.keys() == after.keys()
        assert [k for k in before if before[k] != after[k]] == [name]


def test_negative_weights_favour_an_attribute(rng):
    said = Scene((Group("circle", color="red", size="small", texture="striped"),
                  Group("square", color="blue", texture="dotted")), "gray")
    uniform = [edit_one(said, rng)[1] for _ in range(600)]
    weighted = [edit_one(said, rng, weights={"texture": 5.0})[1] for _ in range(600)]
    # 2 of the 7 (group, attribute) pairs are textures: 2/7 uniform, 10/15 weighted
    assert uniform.count("texture") / 600 == pytest.approx(2 / 7, abs=0.05)
    assert weighted.count("texture") / 600 == pytest.approx(10 / 15, abs=0.05)
    plain = [make_contrast_sample(i, 32, 4) for i in range(60)]
    favoured = [make_contrast_sample(i, 32, 4, weights={"texture": 5.0}) for i in range(60)]
    assert [s.caption for s in plain] == [s.caption for s in favoured]  # the same pairs
    count = [sum(e == "texture" for s in samples for e in s.edited)
             for samples in (plain, favoured)]
    assert count[1] > 1.5 * count[0]
    # a heavy weight on an attribute with too few distinct edits still yields 4 negatives
    for s in (make_contrast_sample(i, 32, 4, weights={"texture": 1e6}) for i in range(20)):
        assert len(set(s.negatives)) == 4 and s.caption not in s.negatives


def test_contrast_samples_are_deterministic_and_negatives_differ():
    a, b = make_contrast_sample(5, 32, 4), make_contrast_sample(5, 32, 4)
    assert a.caption == b.caption and a.negatives == b.negatives
    assert np.array_equal(a.image, b.image)
    assert len(set(a.negatives)) == 4 and a.caption not in a.negatives
    batch = next(iter(torch.utils.data.DataLoader(ContrastDataset(32, 3), batch_size=5)))
    assert batch["image"].shape == (5, 3, 32, 32)
    assert len(batch["negatives"]) == 3 and len(batch["negatives"][0]) == 5


def test_swap_negatives_exchange_one_attribute_between_two_groups():
    said = Scene((Group("circle", color="red", size="small"), Group("square", color="blue"),
                  Group("star", color="red")), "gray")
    rng = np.random.default_rng(0)
    for _ in range(20):
        swapped, name = swap_two(said, rng)
        assert name == "swap color"  # size is stated once only; red-red cannot swap
        colors = [g.color for g in swapped.groups]
        assert sorted(colors) == sorted(g.color for g in said.groups) and colors != \
            [g.color for g in said.groups]
        assert [g.shape for g in swapped.groups] == ["circle", "square", "star"]
    assert swap_two(Scene((Group("circle", color="red"),), None), rng) is None
    plain = [make_contrast_sample(i, 32, 4) for i in range(40)]
    swapping = [make_contrast_sample(i, 32, 4, swaps=1.0) for i in range(40)]
    assert not any(e.startswith("swap") for s in plain for e in s.edited)
    firsts = [s.edited[0] for s in swapping]
    assert 5 < sum(e.startswith("swap") for e in firsts) < 40  # where two groups can swap
    for s in swapping:
        assert len(set(s.negatives)) == 4 and s.caption not in s.negatives


def test_enlarged_low_res_samples_get_no_texture_negatives():
    samples = [make_contrast_sample(i, 64, 4, low_res=16) for i in range(120)]
    enlarged = [s for s in samples if s.enlarged]
    assert 30 < len(enlarged) < 90  # about half
    assert not any("texture" in s.edited for s in enlarged)
    assert any("texture" in s.edited for s in samples if not s.enlarged)
    stream = iter(ContrastDataset(64, 4, low_res=16))
    for s in samples[:12]:  # the dataset yields the same samples, with texture labels
        item = next(stream)
        assert item["caption"] == s.caption
        assert item["texture_shown"] == (0.0 if s.enlarged else 1.0)
        present = {g.texture for g in s.scene.groups}
        assert [t for t, on in zip(TEXTURES, item["textures"], strict=True) if on] == \
            [t for t in TEXTURES if t in present]


def test_frechet_distance():
    r = np.random.default_rng(0)
    a = r.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([1.0, 2.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-3)
    scaled = a * 2  # same mean; Tr(S + 4S - 2*2S) = Tr(S) ~ 3
    assert frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(InputError):
        frechet_distance(a[:1], a)


@pytest.fixture(scope="module")
def tiny_pipeline_with_aligner(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    common = dict(preset="tiny", steps=4, batch_size=4, warmup=1, log_every=1,
                  mixed_precision="no", channels_last=False)
    base = train(TrainConfig(out=str(root / "base"), **common), progress=False)
    aligned = train(TrainConfig(out=str(root / "align"), stage="align", **common),
                    progress=False)
    pipe = TextToImagePipeline.from_pretrained(base.folder)
    pipe.aligner = Aligner.from_folder(aligned.folder)
    pipe.save_pretrained(root / "model")
    return root / "model"


def test_score_round_trip_and_bad_input(tiny_pipeline_with_aligner, tmp_path):
    pipe = TextToImagePipeline.from_pretrained(tiny_pipeline_with_aligner)
    images = pipe(["a red circle", "a blue star"], seed=1, progress=False)
    scores = pipe.score(images, ["a red circle", "a blue star"])
    assert len(scores) == 2 and all(-1 <= s <= 1 for s in scores)
    x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])
    u = pipe.aligner.embed_images(x.float() / 127.5 - 1)
    w = pipe.aligner.embed_texts(["a red circle", "a blue star"])
    assert scores == pytest.approx(F.cosine_similarity(u, w).tolist(), abs=1e-5)
    pipe.save_pretrained(tmp_path / "copy")
    again = TextToImagePipeline.from_pretrained(tmp_path / "copy")
    assert again.score(images, ["a red circle", "a blue star"]) == pytest.approx(scores)
    with pytest.raises(InputError, match="2 images but 1 prompts"):
        pipe.score(images, ["a red circle"])
    with pytest.raises(InputError, match="prompt is empty"):
        pipe.score(images[:1], [" "])
    with pytest.raises(InputError, match="not RGB"):
        pipe.score([images[0].convert("L")], ["a red circle"])
    with pytest.raises(InputError, match="not a PIL image"):
        pipe.score([np.zeros((16, 16, 3))], ["a red circle"])


def test_rerank_keeps_the_best_scored_candidate(tiny_pipeline_with_aligner):
    from fineimagen.pipeline import RERANK_SEED_STRIDE

    pipe = TextToImagePipeline.from_pretrained(tiny_pipeline_with_aligner)
    prompt = "two green squares"
    best = pipe(prompt, n=2, seed=3, rerank=3, progress=False)
    candidates = [pipe(prompt, seed=3 + j + k * RERANK_SEED_STRIDE, progress=False)[0]
                  for j in range(2) for k in range(3)]
    scores = pipe.score(candidates, [prompt] * 6)
    for j in range(2):
        own = scores[3 * j: 3 * j + 3]
        chosen = candidates[3 * j + int(np.argmax(own))]
        assert np.array_equal(np.asarray(best[j]), np.asarray(chosen))
    plain = pipe(prompt, n=2, seed=3, progress=False)
    assert np.array_equal(np.asarray(plain[0]), np.asarray(candidates[0]))
    with pytest.raises(InputError, match="rerank must be"):
        pipe(prompt, rerank=0, progress=False)


def test_cli_rerank_and_fid(tiny_pipeline_with_aligner, tmp_path, capsys):
    model = str(tiny_pipeline_with_aligner)
    prompts = tmp_path / "p.jsonl"
    assert main(["dataset", "evalset", "--out", str(prompts), "--n", "4"]) == 0
    out = tmp_path / "gen"
    assert main(["generate", "--prompts", str(prompts), "--model", model, "--n", "2",
                 "--rerank", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 8
    report = tmp_path / "r.json"
    assert main(["eval", "--prompts", str(prompts), "--images", str(out), "--fid",
                 "--model", model, "--json", str(report)]) == 0
    assert "in-domain FID" in capsys.readouterr().out
    import json

    fid = json.loads(report.read_text())["fid"]
    assert fid["fid"] > 0 and fid["n_generated"] == fid["n_truth"] == 8


def test_cli_rerank_without_aligner_is_refused(tiny_pipeline_with_aligner, tmp_path, capsys):
    no_aligner = tiny_pipeline_with_aligner.parent / "base" / "model"
    code = main(["generate", "a red circle", "--model", str(no_aligner), "--rerank", "2",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "needs a model with an aligner" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
