"""Attention grounding: the caption's group phrases, their masks, and the loss on the maps."""

import numpy as np
import pytest
import torch

from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.captions import caption, caption_spans, mention
from fineimagen.domains.shapes.plan import plan_scene
from fineimagen.domains.shapes.samples import MAX_GROUPS, ShapesDataset, make_sample, phrase_targets
from fineimagen.domains.shapes.scene import sample_scene
from fineimagen.errors import InputError
from fineimagen.models.text_encoders import HashTokenizer
from fineimagen.train.grounding import grounding_loss, sample_weights, token_phrases
from fineimagen.train.trainer import TrainConfig, train


def test_each_phrase_span_states_exactly_its_group():
    checked = 0
    for i in range(300):
        rng = np.random.default_rng(i)
        scene, _ = sample_scene(rng, "train")
        said = mention(scene, rng, keep=float(rng.uniform()))
        text, spans = caption_spans(said, np.random.default_rng([i, 1]))
        assert text == caption(said, np.random.default_rng([i, 1]))
        assert sorted(g for _, _, g in spans) == list(range(len(said.groups)))
        for start, end, group in spans:
            assert plan_scene(text[start:end]).groups == (said.groups[group],)
            checked += 1
    assert checked > 400


def test_phrase_masks_cover_their_groups_pixels():
    sample = next(make_sample(i, 32) for i in range(100)
                  if len({o.group for o in make_sample(i, 32).placed}) == 3)
    spans, masks = phrase_targets(sample, 32)
    assert masks.shape == (MAX_GROUPS, 32, 32) and spans.shape == (MAX_GROUPS, 2)
    image = sample.image.astype(float)
    for k, (start, end, group) in enumerate(sample.phrases):
        assert spans[k].tolist() == [start, end]
        solid = masks[k].numpy() > 0.99
        assert solid.sum() > 0
        colour = np.array(vocab.COLOR_RGB[sample.scene.groups[group].color])
        # inside the mask: the group's colour, or its darker texture shade
        ratio = image[solid] / np.maximum(colour, 1)
        assert np.all(ratio.max(1) <= 1.02) and np.all(ratio.min(1) >= vocab.TEXTURE_SHADE - 0.02)
    assert float(masks.sum(0).max()) <= 1.0 + 1e-5  # later objects cover earlier ones


def test_dataset_yields_phrase_targets_only_when_asked():
    item = next(iter(ShapesDataset(16, grounding=True)))
    assert item["phrase_spans"].shape == (MAX_GROUPS, 2)
    assert item["phrase_masks"].shape == (MAX_GROUPS, 16, 16)
    assert "phrase_spans" not in next(iter(ShapesDataset(16)))


def test_tokens_take_the_phrase_they_lie_in():
    prompt = "a red circle and two blue squares on a white background"
    spans = [HashTokenizer(512, 16).spans(prompt)]
    phrase_spans = torch.tensor([[[0, 12], [17, 33], [0, 0]]])
    assert token_phrases(spans, phrase_spans).tolist() == [
        [0, 0, 0, -1, 1, 1, 1, -1, -1, -1, -1]]


def maps_for(own_share: float):
    """One image of 4x4 positions: group 0 fills the left half, group 1 the right; tokens
    0-1 describe group 0, tokens 2-3 group 1. Each pixel gives `own_share` of its text
    attention to its group's tokens."""
    masks = torch.zeros(1, MAX_GROUPS, 4, 4)
    masks[0, 0, :, :2] = 1
    masks[0, 1, :, 2:] = 1
    left = masks[0, 0].flatten().bool()
    probs = torch.zeros(1, 16, 5)
    probs[..., 0] = 0.5  # the null token
    own, other = own_share / 2 * 0.5, (1 - own_share) / 2 * 0.5
    probs[0, left, 1:] = torch.tensor([own, own, other, other])
    probs[0, ~left, 1:] = torch.tensor([other, other, own, own])
    return [probs], torch.tensor([[0, 0, 1, 1]]), masks


def test_loss_is_low_for_grounded_maps_and_high_for_swapped_ones():
    grounded = grounding_loss(*maps_for(0.99)).item()
    mixed = grounding_loss(*maps_for(0.5)).item()
    swapped = grounding_loss(*maps_for(0.01)).item()
    # token side (1 - share)^2, pixel side -log(share), halved
    assert grounded == pytest.approx(((0.01) ** 2 - np.log(0.99)) / 2, abs=1e-4)
    assert mixed == pytest.approx((0.25 + np.log(2)) / 2, abs=1e-4)
    assert swapped == pytest.approx((0.99 ** 2 - np.log(0.01)) / 2, abs=1e-3)


def test_masked_tokens_and_missing_groups_are_not_grounded():
    _, phrases, masks = maps_for(0.01)
    dropped = torch.zeros(1, 16, 5)
    dropped[..., 0] = 1.0  # the text dropped (CFG): all attention on the null token
    assert grounding_loss([dropped], phrases, masks).item() == 0.0


def test_sample_weights_weigh_each_samples_terms():
    good, phrases, masks = maps_for(0.99)
    bad, _, _ = maps_for(0.01)
    pair = [torch.cat([good[0], bad[0]])]
    phrases, masks = phrases.repeat(2, 1), masks.repeat(2, 1, 1, 1)
    alone_good = grounding_loss(good, phrases[:1], masks[:1]).item()
    alone_bad = grounding_loss(bad, phrases[:1], masks[:1]).item()

    def weighted(w):
        return grounding_loss(pair, phrases, masks, torch.tensor(w)).item()

    assert weighted([1.0, 0.0]) == pytest.approx(alone_good, rel=1e-5)
    assert weighted([0.0, 1.0]) == pytest.approx(alone_bad, rel=1e-5)
    assert weighted([1.0, 1.0]) == pytest.approx(grounding_loss(pair, phrases, masks).item())
    # both samples have the same token and pixel counts: the weighted mean of the two
    assert weighted([0.75, 0.25]) == pytest.approx(0.75 * alone_good + 0.25 * alone_bad,
                                                   rel=1e-5)


def test_signal_weighting_is_abar():
    abar = torch.tensor([0.999, 0.5, 0.002])
    assert sample_weights("uniform", abar) is None
    assert torch.equal(sample_weights("signal", abar), abar)
    with pytest.raises(ValueError, match="unknown grounding weighting"):
        sample_weights("late", abar)


@pytest.mark.parametrize("weighting", ["uniform", "signal"])
def test_trainer_logs_the_grounding_term(tmp_path, weighting):
    cfg = TrainConfig(preset="tiny", out=str(tmp_path / "run"), steps=4, batch_size=4,
                      warmup=1, log_every=1, checkpoint_every=4, grounding=1.0,
                      grounding_weighting=weighting, mixed_precision="no",
                      channels_last=False)
    train(cfg, progress=False)
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",")[-1] == "grounding"
    terms = [float(r.split(",")[-1]) for r in lines[1:]]
    assert len(terms) == 4 and all(0.05 < t < 5 for t in terms)


def test_the_grounding_loss_teaches_the_cross_attention():
    """Descending on a loss that the grounding term dominates (weight 100) on one batch
    halves that term: its gradient reaches the U-Net and the text encoder."""
    from torch.utils.data import DataLoader

    from fineimagen.config import load_preset
    from fineimagen.train.jobs import diffusion_job

    torch.manual_seed(0)
    cascade = load_preset("tiny")
    module = diffusion_job(cascade, cascade.stage("base"), 0, 0, grounding=100.0).module
    batch = next(iter(DataLoader(ShapesDataset(16, grounding=True), batch_size=16)))
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    terms = []
    for _ in range(40):
        generator = torch.Generator().manual_seed(0)  # the same t and noise every step
        loss = module(batch["image"], batch["caption"], generator=generator,
                      phrase_spans=batch["phrase_spans"], phrase_masks=batch["phrase_masks"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        terms.append(module.last_grounding.item())
    assert terms[-1] < 0.5 * terms[0]


@pytest.mark.parametrize("change, words", [
    (dict(grounding=-1.0), "grounding must be a weight >= 0"),
    (dict(grounding=1.0, stage="align"), "applies to a diffusion stage on --data shapes"),
    (dict(grounding=1.0, stage="sr"), "applies to a base"),
    (dict(grounding=1.0, grounding_weighting="late"), "grounding_weighting must be one of"),
])
def test_bad_grounding(tmp_path, change, words):
    cfg = TrainConfig(preset="tiny", out=str(tmp_path / "run"), steps=1, batch_size=2,
                      **change)
    with pytest.raises(InputError, match=words):
        train(cfg, progress=False)
