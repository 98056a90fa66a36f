import math

import pytest
import torch

from fineimagen.config import load_preset
from fineimagen.control.attention_guidance import (
    AttentionGuidance,
    AttentionTarget,
    box_energy,
    excite_energy,
    subject_positions,
    word_positions,
)
from fineimagen.control.regions import Region, box_mask
from fineimagen.diffusion.denoiser import Denoiser, TextCondition
from fineimagen.domains import get_domain
from fineimagen.errors import InputError
from fineimagen.models.text_encoders import HashTokenizer
from fineimagen.models.unet import EfficientUNet
from fineimagen.pipeline import TextToImagePipeline


def test_energies_follow_the_formulas():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0] = 1.0  # subject 0: all attention on one corner pixel
    maps[0, 1] = 1 / 16  # subject 1: spread evenly
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1  # the top-left quarter
    # (1 - 1)^2 for the corner map, (1 - 1/4)^2 for the even one
    assert box_energy(maps, mask).item() == pytest.approx((0 + 0.75**2) / 2)
    # the even map is the most neglected: its smoothed peak is 1/16
    assert excite_energy(maps).item() == pytest.approx(1 - 1 / 16, abs=1e-6)
    maps[0, 1] = maps[0, 0]
    smoothed_corner = excite_energy(maps).item()
    assert 0 < smoothed_corner < 1 - 1 / 16  # a peak survives a 3x3 blur, lowered


def test_subject_positions_find_shape_nouns_and_named_words():
    tok = HashTokenizer(vocab_size=512, max_length=16)
    prompt = "two red circles and a big star"
    spans = tok.spans(prompt)
    words = word_positions(spans)
    nouns = subject_positions(prompt, spans, nouns=get_domain("shapes").subject_nouns)
    assert subject_positions(prompt, spans) == []  # no nouns given: no subjects
    assert len(nouns) == 2 and all(set(g) <= set(words) for g in nouns)
    circles = [prompt[a:b] for j, (a, b) in enumerate(spans) if j + 1 in nouns[0]]
    assert "".join(circles) == "circles"
    [red] = subject_positions(prompt, spans, ["red"])
    assert "".join(prompt[a:b] for j, (a, b) in enumerate(spans) if j + 1 in red) == "red"
    with pytest.raises(InputError, match="'blue' is not a word"):
        subject_positions(prompt, spans, ["blue"])


@pytest.fixture(scope="module")
def denoiser():
    torch.manual_seed(0)
    stage = load_preset("tiny").stages[0]
    stage.unet.text_dim = 8
    stage.unet.cross_attention_levels = (0, 1)  # maps at 16x16 and 8x8: the finest are used
    d = Denoiser(EfficientUNet(stage.unet), stage.diffusion).eval()
    for p in d.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return d


def test_a_guidance_step_lowers_the_energy(denoiser):
    g = torch.Generator().manual_seed(0)
    cond = TextCondition(torch.randn(1, 4, 8, generator=g), torch.ones(1, 4).bool())
    mask = box_mask([0.0, 0.0, 0.5, 0.5], 16)
    targets = [AttentionTarget(cond, [1, 2, 3, 4], [[2], [4]], mask),
               AttentionTarget(cond, [1, 2, 3, 4], [[2], [4]], None)]
    guide = AttentionGuidance(denoiser, targets, steps=1, layout_step=0.3, excite_step=0.3)
    x = torch.randn(6, 3, 16, 16, generator=g)
    t = torch.tensor(500)
    before = guide.energy(x, t)
    moved = guide(0, t, x)
    after = guide.energy(moved, t)
    assert before.shape == (6,) and (after < before).float().mean() >= 5 / 6
    assert after.mean() < before.mean()
    assert torch.equal(guide(1, t, moved), moved)  # only the first `steps` steps move x
    assert len(guide.energies) == 1


def test_pipeline_excite_and_layout_guidance(tiny_model):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    kw = dict(n=2, seed=3, progress=False, stages="base")
    plain = pipe("a red circle and a blue star", **kw)
    excited = pipe("a red circle and a blue star", excite=True, **kw)
    again = pipe("a red circle and a blue star", excite=True, **kw)
    # plumbing on the tiny model (how much each moves the picture:
    # test_responsive_control.py::test_attend_and_excite_and_layout_guidance_change_the_picture)
    assert [im.tobytes() for im in excited] == [im.tobytes() for im in again]
    assert len(plain) == len(excited) == 2
    region = Region("a star", box_mask([0.5, 0.5, 1.0, 1.0], 16))
    guided = pipe("a star", regions=[region], layout_guidance=1.0, **kw)
    assert [im.size for im in guided] == [(16, 16)] * 2  # the base stage alone
    with pytest.raises(InputError, match="needs regions"):
        pipe("a star", layout_guidance=1.0, **kw)
    with pytest.raises(InputError, match="layout guidance must be a number"):
        pipe("a star", regions=[region], layout_guidance=math.nan, **kw)
    with pytest.raises(InputError, match="'green' is not a word of the prompt"):
        pipe("a star", excite=["green"], **kw)
    with pytest.raises(InputError, match="names no object"):
        pipe("something red", excite=True, **kw)


def test_cli_excite_and_layout_flags(tiny_model, tmp_path, capsys):
    from fineimagen.cli import main

    model = str(tiny_model)
    assert main(["generate", "a red circle and a blue star", "--excite", "--model", model,
                 "--stages", "base", "--out", str(tmp_path / "a")]) == 0
    assert main(["generate", "a red circle", "--excite", "red,circle", "--box", "0,0,0.5,0.5",
                 "a red circle", "--layout-guidance", "2", "--model", model,
                 "--out", str(tmp_path / "b")]) == 0
    assert len(list((tmp_path / "b").glob("*.png"))) == 1
    for args, words in [(["--excite", "green"], "'green' is not a word"),
                        (["--layout-guidance", "1"], "needs regions"),
                        (["--layout-guidance", "-1", "--region", "top: a star"],
                         "must be a number in [0, 10]")]:
        code = main(["generate", "a red circle", *args, "--model", model,
                     "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and words in err and "\n" not in err
        assert not (tmp_path / "bad").exists()
