"""Region prompts carried into a regression SR stage: the training data, the model's reading
of them, the trainer (fine-tuning a stage that read none) and the pipeline's plumbing."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fineimagen.config import RegressionConfig, load_preset
from fineimagen.control.regions import box_mask, box_masks
from fineimagen.domains import compile_scene
from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.samples import (
    MAX_OBJECTS,
    NO_REGIONS,
    WHOLE_BOX,
    WHOLE_CAPTION,
    ShapesDataset,
    make_sample,
)
from fineimagen.errors import InputError
from fineimagen.images import from_pil, to_pil
from fineimagen.models.sr import RegionText, RegressionSR, pool_text, whole_image
from fineimagen.pipeline import TextToImagePipeline
from fineimagen.train.trainer import TrainConfig, train


def test_region_samples_word_each_object_as_a_scene_does():
    empty = whole = restyled = stated_textures = 0
    for i in range(300):
        plain = make_sample(i, 64, low_size=16)
        s = make_sample(i, 64, low_size=16, regions=True, whole_caption=True)
        assert make_sample(i, 64, low_size=16, regions=True).region_boxes != [WHOLE_BOX]
        assert s.caption == plain.caption and np.array_equal(s.image, plain.image)
        if not s.region_prompts:
            empty += 1
            assert np.array_equal(s.lowres, plain.lowres)
            continue
        if s.region_boxes == [WHOLE_BOX]:  # the caption over the whole image
            whole += 1
            assert s.region_prompts == [s.caption]
            if not np.array_equal(s.lowres, plain.lowres):  # only stated textures restyled
                assert _states_a_texture(s.caption)
            continue
        assert len(s.region_prompts) == sum(g.count for g in s.scene.groups)
        for prompt, box in zip(s.region_prompts, s.region_boxes, strict=True):
            x0, y0, x1, y1 = box
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            assert any(prompt.endswith(p) for p in _cell_phrases(vocab.position_at(cx, cy)))
            words = prompt.split()
            assert any(shape in words for shape in vocab.SHAPES)
            if any(t in words for t in ("solid", "striped", "dotted", "checkered")):
                stated_textures += 1
        if not np.array_equal(s.lowres, plain.lowres):
            restyled += 1
    assert abs(empty / 300 - NO_REGIONS) < 0.06 and abs(whole / 300 - WHOLE_CAPTION) < 0.08
    assert stated_textures > 100 and restyled > 20  # a stated texture is often drawn otherwise


def _states_a_texture(caption: str) -> bool:
    from fineimagen.domains.shapes.captions import TEXTURE_ADJECTIVES, TEXTURE_PHRASES

    words = [w for ws in TEXTURE_ADJECTIVES.values() for w in ws] + list(TEXTURE_PHRASES.values())
    return any(w in caption for w in words)


def _cell_phrases(cell):
    from fineimagen.domains.shapes.captions import POSITION_PHRASES

    return POSITION_PHRASES[cell][:1]


def test_region_items_are_padded_for_batching():
    item = next(iter(ShapesDataset(32, low_size=8, regions=True, start=1)))
    assert len(item["region_prompts"]) == MAX_OBJECTS
    assert item["region_boxes"].shape == (MAX_OBJECTS, 4)
    n = sum(bool(p) for p in item["region_prompts"])
    assert (item["region_boxes"][n:] == 0).all()
    assert (box_masks(item["region_boxes"], 8)[n:] == 0).all()  # padding covers nothing


def test_box_masks_match_box_mask():
    boxes = torch.tensor([[0.1, 0.2, 0.55, 0.5], [0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0]])
    masks = box_masks(boxes, 8)
    assert torch.allclose(masks[0], box_mask((0.1, 0.2, 0.55, 0.5), 8)[0, 0])
    assert masks[0].sum().item() == pytest.approx(0.45 * 0.3 * 64)
    assert masks[1].min() == 1 and masks[2].max() == 0


def test_region_prompts_start_silent_and_then_steer_the_stage():
    """A stage that reads region prompts starts as the stage without them; trained on
    targets that only the prompt tells apart (a shade inside the box or none, from the
    same low-res input), it learns them, and a stage without regions cannot."""
    torch.manual_seed(0)
    cfg = dict(channels=8, blocks=1, context_channels=8, context_levels=2, context_blocks=1)
    reading = RegressionSR(RegressionConfig(**cfg, region_dim=4))
    blind = RegressionSR(RegressionConfig(**cfg))
    low = (torch.rand(1, 3, 8, 8) * 2 - 1).expand(8, -1, -1, -1)  # one input for all
    mask = box_masks(torch.tensor([[0.25, 0.25, 0.75, 0.75]] * 8), 8)[:, None]
    says = torch.tensor([1.0, 0.0] * 4)  # the prompt says "dark" or not
    embeds = torch.stack([torch.tensor([1.0, 0, 0, 0]) if s else torch.tensor([0, 1.0, 0, 0])
                          for s in says])[:, None]
    hint = RegionText(mask, embeds)
    assert torch.equal(reading(low, (32, 32), hint), reading(low, (32, 32)))
    inside = torch.nn.functional.interpolate(mask, size=(32, 32), mode="nearest")
    from fineimagen.models.sr import upsample

    target = upsample(low, (32, 32)) + 0.5 * inside * says.view(8, 1, 1, 1)  # a darker shade
    losses = {}
    for name, model, h in (("reading", reading, hint), ("blind", blind, None)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(120):
            loss = model.loss(target, low, h)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[name] = loss.item()
    assert losses["reading"] < 0.5 * losses["blind"]  # blind: about 0.0625, half the shade
    with pytest.raises(InputError, match="region_dim needs a context U-Net"):
        RegressionSR(RegressionConfig(channels=8, region_dim=4))


def test_pool_text_averages_the_prompt_tokens_only():
    embeds = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert torch.equal(pool_text(embeds, mask), torch.tensor([[2.0, 3.0]]))


@pytest.fixture(scope="module")
def region_runs(tmp_path_factory):
    """Two tiny regression runs under the frozen MiniLM: one without region prompts, and one
    with them fine-tuned from it (at a vanishing learning rate: it starts there)."""
    root = tmp_path_factory.mktemp("sr_regions")
    cascade = load_preset("tiny").to_dict()
    cascade["text_encoder"] = {"kind": "minilm", "max_length": 16, "feature_layers": [0, -1]}
    sr = {"name": "sr", "resolution": 32, "input_resolution": 16, "kind": "regression",
          "regression": {"channels": 8, "blocks": 1, "context_channels": 8,
                         "context_levels": 2, "context_blocks": 1}}
    cascade["stages"][1] = sr
    (root / "plain.json").write_text(json.dumps(cascade))
    sr["regression"]["region_dim"] = 768
    (root / "regions.json").write_text(json.dumps(cascade))
    common = dict(stage="sr", crop=16, batch_size=4, warmup=1, log_every=1,
                  mixed_precision="no", channels_last=False)
    plain = train(TrainConfig(out=str(root / "plain"), preset=str(root / "plain.json"),
                              steps=2, lr=1e-2, **common), progress=False)
    regions = train(TrainConfig(out=str(root / "regions"), preset=str(root / "regions.json"),
                                steps=1, lr=1e-9, init=str(plain.folder), **common),
                    progress=False)
    return root, plain, regions


def test_trainer_fine_tunes_a_region_stage_to_read_the_prompt(region_runs, tmp_path):
    root, _, regions = region_runs
    cascade = json.loads((root / "regions.json").read_text())
    cascade["stages"][1]["regression"]["reads_prompt"] = True
    (tmp_path / "prompt.json").write_text(json.dumps(cascade))
    run = train(TrainConfig(out=str(tmp_path / "run"), preset=str(tmp_path / "prompt.json"),
                            stage="sr", crop=16, batch_size=4, warmup=1, log_every=1, steps=1,
                            lr=1e-9, mixed_precision="no", channels_last=False,
                            init=str(regions.folder)), progress=False)
    stage = TextToImagePipeline.from_pretrained(run.folder).stages[0]
    assert stage.cfg.reads_prompt
    before = TextToImagePipeline.from_pretrained(regions.folder).stages[0].model.state_dict()
    for name, value in stage.model.state_dict().items():
        assert torch.allclose(before[name], value, atol=1e-5), name


def test_trainer_fine_tunes_a_stage_to_read_region_prompts(region_runs):
    root, plain, regions = region_runs
    before = TextToImagePipeline.from_pretrained(plain.folder).stages[0].model
    after = TextToImagePipeline.from_pretrained(regions.folder).stages[0].model
    assert after.region_in is not None and before.region_in is None
    for name, value in before.state_dict().items():
        assert torch.allclose(after.state_dict()[name], value, atol=1e-5), name
    assert after.region_in.weight.abs().max() < 1e-5  # starts silent


def test_region_prompts_need_a_frozen_encoder_of_their_width(tmp_path):
    cascade = load_preset("tiny").to_dict()  # a trainable text encoder
    cascade["stages"][1] = {"name": "sr", "resolution": 32, "input_resolution": 16,
                            "kind": "regression",
                            "regression": {"channels": 8, "blocks": 1, "context_channels": 8,
                                           "context_levels": 2, "context_blocks": 1,
                                           "region_dim": 32}}
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps(cascade))
    with pytest.raises(InputError, match="frozen text encoder"):
        train(TrainConfig(out=str(tmp_path / "r"), preset=str(preset), stage="sr", steps=1,
                          batch_size=2, mixed_precision="no"), progress=False)
    cascade["text_encoder"] = {"kind": "minilm", "max_length": 16}
    preset.write_text(json.dumps(cascade))
    with pytest.raises(InputError, match="region_dim is 32, but the text encoder's width is 384"):
        train(TrainConfig(out=str(tmp_path / "r"), preset=str(preset), stage="sr", steps=1,
                          batch_size=2, mixed_precision="no"), progress=False)


def test_scene_control_hands_its_region_prompts_to_the_sr_stage():
    """The shipped cascade, its SR stage swapped for one that reads region prompts: a scene's
    object prompts reach it as masks at the base side and pooled embeddings, and steer it."""
    from fineimagen.cascade import StageControl
    from fineimagen.stage_controls import region_prompts_into_sr

    pipe = TextToImagePipeline.from_pretrained()
    shipped = pipe.stages[1].model
    cfg = RegressionConfig(**{**shipped.cfg.__dict__, "region_dim": pipe.text_encoder.dim,
                              "reads_prompt": True})
    reading = RegressionSR(cfg)
    reading.load_state_dict(shipped.state_dict(), strict=False)
    torch.manual_seed(0)
    torch.nn.init.normal_(reading.region_in.weight, std=0.05)
    pipe.stages[1].cfg.regression = cfg
    scene = {"objects": [{"shape": "star", "color": "red", "texture": "striped", "count": 1},
                         {"shape": "circle", "count": 2}]}
    compiled = compile_scene(scene, 32, seed=3)
    controls = {1: StageControl()}
    region_prompts_into_sr(pipe, controls, compiled.regions, 2, 2)
    hint = controls[1].regions
    assert hint.masks.shape == (2, 3, 32, 32) and hint.embeds.shape == (2, 3, 768)
    assert torch.allclose(hint.masks[0, 0], compiled.regions[0].mask[0, 0])
    cond = pipe.encode([compiled.regions[0].prompt])
    assert torch.allclose(hint.embeds[1, 0], pool_text(cond.embeds, cond.mask)[0], atol=1e-5)
    plain = pipe("a red striped star and two circles", scene=scene, seed=3, steps=4,
                 progress=False)
    pipe.stages[1].model = reading
    read = pipe("a red striped star and two circles", scene=scene, seed=3, steps=4,
                progress=False)
    diff = np.abs(np.asarray(plain[0], float) - np.asarray(read[0], float))
    assert diff.mean() > 0.5  # the prompts steer the stage
    low = plain[0].resize((32, 32))
    up, up_read = (np.asarray(pipe.upscale([low], "x", regions=r, progress=False)[0], float)
                   for r in (None, compiled.regions))
    assert np.abs(up - up_read).mean() > 0.5  # upscale hands them over too
    # without regions, the prompt itself is read, as one region over the whole image
    text = "a red striped star"
    with torch.no_grad():
        expected = reading(from_pil([low], 32, Image.BICUBIC), (128, 128),
                           whole_image(pipe.encode([text]), 32)).clamp(-1, 1)
    # fp32 on both sides (a CPU with native bf16 would run the pipeline's call in bf16)
    assert np.array_equal(np.asarray(pipe.upscale([low], text, progress=False,
                                                  bf16=False)[0]),
                          np.asarray(to_pil(expected)[0]))
    with torch.no_grad():
        blind = reading(from_pil([low], 32, Image.BICUBIC), (128, 128), None).clamp(-1, 1)
    assert np.array_equal(np.asarray(pipe.upscale([low], progress=False, bf16=False)[0]),
                          np.asarray(to_pil(blind)[0]))
    read_plain = np.asarray(pipe(text, seed=3, steps=4, progress=False)[0], float)
    cfg.reads_prompt = False  # a stage trained without whole-caption samples
    ignored = np.asarray(pipe(text, seed=3, steps=4, progress=False)[0], float)
    assert np.abs(read_plain - ignored).mean() > 0.5
    with torch.no_grad():
        reading.region_in.weight.zero_()
        reading.region_in.bias.zero_()
    cfg.reads_prompt = True
    silent = np.asarray(pipe(text, seed=3, steps=4, progress=False)[0], float)
    assert np.array_equal(ignored, silent)  # it ignores the prompt as if the words were silent


def test_upscale_refuses_region_prompts_no_stage_reads(region_runs, tmp_path, capsys):
    from PIL import Image

    from fineimagen.cli import main

    _, plain, regions = region_runs
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "--prompt", "a red square", "--stage", "0",
            "--region", "top left: a striped square", "--out"]
    code = main([*args, str(tmp_path / "out"), "--model", str(plain.folder)])
    assert code == 2 and "no stage run here reads region prompts" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main([*args, str(tmp_path / "out2"), "--model", str(regions.folder)]) == 0
    assert Image.open(tmp_path / "out2" / "a.png").size == (32, 32)


def test_train_only_freezes_every_other_parameter():
    from fineimagen.train.trainer import freeze_except

    model = RegressionSR(RegressionConfig(channels=8, blocks=1, context_channels=8,
                                          context_levels=2, context_blocks=1, region_dim=4))
    freeze_except(model, "region_in, out.bias")
    trained = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trained == ["out.bias", "region_in.bias", "region_in.weight"]
    with pytest.raises(InputError, match="no parameter starts with 'regions'"):
        freeze_except(model, "regions")
