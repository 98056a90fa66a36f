import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fineimagen.cli import main
from fineimagen.control.guidance import Composition, KnownRegion, Term
from fineimagen.control.prompts import PromptSyntaxError, parse_prompt, weight_tokens
from fineimagen.control.regions import (
    MAX_REGIONS,
    Region,
    box_mask,
    check_regions,
    image_mask,
    named_box,
    parse_region,
)
from fineimagen.diffusion.denoiser import Denoiser, TextCondition
from fineimagen.domains import compile_scene
from fineimagen.domains.shapes import vocab
from fineimagen.domains.shapes.captions import POSITION_PHRASES
from fineimagen.domains.shapes.regions import fill_share, sketch
from fineimagen.errors import InputError
from fineimagen.models.text_encoders import HashTokenizer
from fineimagen.pipeline import TextToImagePipeline


# ----------------------------------------------------------------------------- prompt language
def test_weights_composition_and_negation():
    [c] = parse_prompt("a (red:1.5) circle")
    assert c.text == "a red circle" and c.weight == 1.0
    assert c.spans == [(2, 5, 1.5)]
    [c] = parse_prompt("[striped] ((big)) star")
    assert c.text == "striped big star"
    assert c.spans[0] == (0, 7, pytest.approx(1 / 1.1))
    assert c.spans[1] == (8, 11, pytest.approx(1.21))
    clauses = parse_prompt("a red circle AND a blue square :0.8 NOT green")
    assert [(c.text, c.weight) for c in clauses] == [("a red circle", 1.0),
                                                     ("a blue square", 0.8), ("green", -1.0)]
    assert [c.text for c in parse_prompt("ANDROID NOTE")] == ["ANDROID NOTE"]
    [c] = parse_prompt("(a red circle:-2)")
    assert {f for _, _, f in c.spans} == {-2.0}


@pytest.mark.parametrize("prompt, column, words", [
    ("a (red circle", 14, "expected ')'"),
    ("a red) circle", 6, "unbalanced"),
    ("a (red:12) circle", 8, "outside [-10, 10]"),
    ("a (red:x) circle", 8, "expected a number"),
    ("a red circle :nan", 15, "expected a number"),
    ("a () circle", 4, "empty ()"),
    ("AND a circle", 1, "expected words"),
    ("a circle AND", 13, "expected words"),
    ("[red:2] circle", 5, "a weight belongs in (word:weight)"),
    ("top left: a circle", 11, "expected a number"),
])
def test_syntax_errors_name_the_column(prompt, column, words):
    with pytest.raises(PromptSyntaxError) as err:
        parse_prompt(prompt)
    assert f"column {column}:" in str(err.value) and words in str(err.value)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ()[]:.-+0123456789eANDOTNOT\t")), max_size=40))
def test_parser_raises_nothing_but_its_own_error(text):
    try:
        clauses = parse_prompt(text)
    except PromptSyntaxError:
        return
    for c in clauses:
        assert c.text and abs(c.weight) <= 10
        assert all(0 <= s < e <= len(c.text) for s, e, _ in c.spans)


def test_weight_tokens_scales_the_word_and_keeps_the_mean():
    torch.manual_seed(0)
    embeds = torch.rand(1, 4, 8) + 0.5
    mask = torch.tensor([[True, True, True, False]])
    spans = [[(0, 1), (2, 5), (6, 12), (0, 0)]]  # "a red circle"
    out = weight_tokens(embeds, mask, spans, [[(2, 5, 2.0)]])
    ratio = (out[0, 1] / embeds[0, 1]) / (out[0, 0] / embeds[0, 0])
    assert torch.allclose(ratio, torch.full((8,), 2.0), atol=1e-5)
    assert out[0][mask[0]].mean() == pytest.approx(embeds[0][mask[0]].mean().item(), rel=1e-5)


def test_token_spans_of_the_hash_tokenizer_match_words():
    tok = HashTokenizer(64, 8)
    assert tok.spans("a red, circle") == [(0, 1), (2, 5), (5, 6), (7, 13)]


# ----------------------------------------------------------------------------- guidance
@pytest.fixture(scope="module")
def denoiser():
    from fineimagen.config import load_preset
    from fineimagen.models.unet import EfficientUNet

    torch.manual_seed(0)
    stage = load_preset("tiny").stages[0]
    stage.unet.text_dim = 8
    d = Denoiser(EfficientUNet(stage.unet), stage.diffusion).eval()
    for p in d.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return d


def cond(seed, length=3):
    g = torch.Generator().manual_seed(seed)
    return TextCondition(torch.randn(1, length, 8, generator=g), torch.ones(1, length).bool())


def test_one_term_composition_is_classifier_free_guidance(denoiser):
    x, t = torch.randn(2, 3, 16, 16), torch.tensor(600)
    c = cond(1)
    comp = Composition([Term(c)], c.null(), guidance=3.0)
    both = TextCondition(c.embeds.expand(2, -1, -1), c.mask.expand(2, -1))
    with torch.no_grad():
        assert torch.allclose(comp(denoiser, x, t), denoiser.guided(x, t, both, 3.0), atol=1e-5)


def test_composition_and_regions_follow_the_formula(denoiser):
    x, t = torch.randn(1, 3, 16, 16), torch.tensor(400)
    a, b, neg = cond(1), cond(2, 5), cond(3, 2)
    box = box_mask((0.0, 0.0, 0.5, 0.5), 16)
    with torch.no_grad():
        def raw(c):
            return denoiser(x, t.expand(1).float(), c).float()

        out_a, out_b, out_u = raw(a), raw(b), raw(neg)
        comp = Composition([Term(a, 1.0), Term(b, -0.5)], neg, guidance=2.0)
        expected = out_u + 2.0 * ((out_a - out_u) - 0.5 * (out_b - out_u))
        v = comp(denoiser, x, t)
        x0 = denoiser.to_x0(expected, x, t.expand(1)).clamp(-1, 1)
        assert torch.allclose(v, denoiser.from_x0(x0, x, t.expand(1)), atol=1e-4)
        regional = Composition([Term(a), Term(b, 1.0, box)], neg, guidance=2.0)(denoiser, x, t)
        inside = out_u + 2.0 * (out_b - out_u)
        outside = out_u + 2.0 * (out_a - out_u)
        mixed = box * inside + (1 - box) * outside
        x0 = denoiser.to_x0(mixed, x, t.expand(1)).clamp(-1, 1)
        assert torch.allclose(regional, denoiser.from_x0(x0, x, t.expand(1)), atol=1e-4)


def test_a_term_that_hides_part_of_the_canvas_sees_the_noised_backdrop(denoiser):
    seen = []

    class Recording:  # the denoiser, its batched input recorded
        def __call__(self, x, t, c, **extra):
            seen.append(x.clone())
            return denoiser(x, t, c, **extra)

        def __getattr__(self, name):
            return getattr(denoiser, name)

    x, t = torch.randn(2, 3, 16, 16), torch.tensor(400)
    backdrop = torch.full((1, 3, 16, 16), 0.6)
    hide = torch.zeros(1, 1, 16, 16)
    hide[..., 8:] = 1  # the right half
    terms = [Term(cond(1)), Term(cond(2), 1.0, box_mask((0, 0, 0.5, 1), 16), hide)]
    comp = Composition(terms, cond(3).null(), guidance=2.0, backdrop=backdrop)
    with torch.no_grad():
        both = comp(Recording(), x, t)
        alone = comp(denoiser, x[1:], t)
    first, second, uncond, own_uncond = seen[0].view(4, 2, 3, 16, 16)
    assert torch.equal(first, x) and torch.equal(uncond, x)  # only the region sees a view
    assert torch.equal(own_uncond, second) and torch.equal(second[..., :8], x[..., :8])
    alpha, sigma = denoiser.coefficients(t.view(1))
    shown = second[..., 8:] - alpha.flatten() * 0.6  # the backdrop diffused to step t
    assert abs(shown.mean()) < 4 * sigma.item() / shown.numel() ** 0.5
    assert shown.std().item() == pytest.approx(sigma.item(), rel=0.2)
    assert torch.allclose(both[1:], alone, atol=1e-5)  # each image depends on itself only
    with torch.no_grad():  # inside the region: the view's own guidance, u_k + g (c_k - u_k)
        tt = t.expand(2).float()
        c_k, u_k = (denoiser(second, tt, TextCondition(c.embeds.expand(2, -1, -1),
                                                        c.mask.expand(2, -1))).float()
                    for c in (cond(2), cond(3).null()))
        x0 = denoiser.to_x0(u_k + 2.0 * (c_k - u_k), x, t.expand(2)).clamp(-1, 1)
        expected = denoiser.from_x0(x0, x, t.expand(2))
    assert torch.allclose(both[..., :7], expected[..., :7], atol=1e-4)
    with pytest.raises(ValueError, match="need a backdrop"):
        Composition(terms, cond(3).null(), guidance=2.0)


def test_known_region_puts_the_image_back(denoiser):
    known = torch.rand(2, 3, 8, 8) * 2 - 1
    keep = torch.zeros(1, 1, 8, 8)
    keep[..., :4] = 1
    step = KnownRegion(denoiser, known, keep, seeds=[1, 2])
    x = torch.randn(2, 3, 8, 8)
    final = step(19, torch.tensor(10), x, None)
    assert torch.equal(final[..., :4], known[..., :4]) and torch.equal(final[..., 4:], x[..., 4:])
    mid = step(5, torch.tensor(600), x, torch.tensor(550))
    assert torch.equal(mid[..., 4:], x[..., 4:])
    assert not torch.allclose(mid[..., :4], known[..., :4], atol=0.05)  # noised to t = 550


# ----------------------------------------------------------------------------- regions
def test_boxes_and_named_regions():
    assert named_box("top-left") == (0.0, 0.0, 1 / 3, 1 / 3)
    assert named_box("Middle") == (1 / 3, 1 / 3, 2 / 3, 2 / 3)
    assert named_box("right half") == (0.5, 0.0, 1.0, 1.0)
    with pytest.raises(InputError, match="unknown region 'upper middle left'"):
        named_box("upper middle left")
    m = box_mask((0.1, 0.2, 0.6, 0.5), 20)
    assert m.shape == (1, 1, 20, 20) and m.sum().item() == pytest.approx(0.5 * 0.3 * 400)
    assert m[0, 0, 6, 5].item() == pytest.approx(1.0) and m[0, 0, 0, 0] == 0
    for box, words in [((0, 0, 1.2, 1), "outside [0, 1]"), ((0.5, 0, 0.5, 1), "empty"),
                       ((0, 0, 1), "four numbers")]:
        with pytest.raises(InputError) as err:
            box_mask(box, 8)
        assert words in str(err.value)
    with pytest.raises(InputError, match="must be 32x32"):
        image_mask(Image.new("L", (30, 30)), 32, (32,))
    with pytest.raises(InputError, match=f"at most {MAX_REGIONS}"):
        check_regions([Region("a star", m)] * (MAX_REGIONS + 1))


def test_scene_compiles_to_one_box_per_object():
    spec = {"objects": [{"shape": "circle", "color": "red", "count": 3},
                        {"shape": "star", "size": "large", "position": "bottom right"}]}
    compiled = compile_scene(spec, 32, seed=3)
    assert len(compiled.regions) == 4  # an open count is drawn (1 here)
    masks = torch.stack([r.mask for r in compiled.regions])
    assert (masks.sum(0) <= 1 + 1e-6).all()  # objects never overlap
    assert all(r.prompt.startswith("a red circle") for r in compiled.regions[:3])
    assert compiled.regions[3].prompt.startswith("a large star")
    assert compiled.background in ("white", "black", "gray")
    assert compile_scene(spec, 32, seed=3).regions[0].prompt == compiled.regions[0].prompt
    for region in compiled.regions:  # each region names the cell of its own box's centre
        ys, xs = torch.nonzero(region.mask[0, 0], as_tuple=True)
        cell = vocab.position_of(int((ys.float().mean() + 0.5) / 32 * 3),
                                 int((xs.float().mean() + 0.5) / 32 * 3))
        assert region.prompt.endswith(POSITION_PHRASES[cell][0])
    assert compiled.regions[3].prompt.endswith(POSITION_PHRASES["bottom right"][0])


def test_sketch_discs_have_the_shapes_area_where_the_size_is_stated():
    from fineimagen.domains.shapes.scene import PlacedObject

    assert fill_share("square") == 1.0 and abs(fill_share("circle") - np.pi / 4) < 0.005
    assert 0.2 < fill_share("star") < fill_share("triangle") < fill_share("circle")
    side, extent = 128, 0.25
    red = torch.tensor(vocab.COLOR_RGB["red"]) / 127.5 - 1
    gray = torch.tensor(vocab.BACKGROUND_RGB["gray"]) / 127.5 - 1

    def disc_area(shape: str, stated: bool) -> float:  # in px^2, from the blend weights
        obj = PlacedObject(0, shape, "red", "solid", 0.5, 0.5, extent)
        image = sketch("gray", [obj], [stated], side)[0]
        return float(((image[0] - gray[0]) / (red[0] - gray[0])).sum())

    px = extent * side
    for shape in ("square", "star", "circle"):
        assert disc_area(shape, True) == pytest.approx(fill_share(shape) * px**2, rel=0.02)
        assert disc_area(shape, False) == pytest.approx(np.pi * (0.4 * px) ** 2, rel=0.02)


def test_sketch_discs_carry_a_stated_texture():
    from fineimagen.domains.shapes.parser import parse_image
    from fineimagen.domains.shapes.scene import PlacedObject

    for texture in vocab.TEXTURES:
        obj = PlacedObject(0, "square", "blue", texture, 0.5, 0.5, 0.3)
        for stated in (True, False):
            image = sketch("white", [obj], [True], 128, [stated])[0]
            pixels = ((image.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
            (found,) = parse_image(pixels).groups
            assert found.texture == (texture if stated else "solid")
            assert found.color == "blue"


# ----------------------------------------------------------------------------- pipeline, CLI
def test_scene_control_keeps_the_background_outside_the_boxes(tiny_model):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    spec = {"background": "gray", "objects": [{"shape": "circle", "color": "red", "count": 2}]}
    images = pipe("two red circles", n=2, seed=1, scene=spec, progress=False)
    inside = torch.stack([r.mask for r in compile_scene(spec, 16, 1).regions]).sum(0)[0, 0]
    outside = (inside == 0).numpy()
    for im in images:
        assert np.abs(np.asarray(im, int)[outside] - 128).max() <= 1
    again = pipe("two red circles", n=2, seed=1, scene=spec, progress=False)
    assert np.array_equal(np.asarray(again[1]), np.asarray(images[1]))


def test_a_scene_with_a_count_gets_layout_guidance_unless_asked_otherwise(tiny_model,
                                                                        monkeypatch):
    from fineimagen import stage_controls as build
    from fineimagen.control import attention_guidance

    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    steps = []

    def spy(pipe, prompt, regions, excite, layout, n_steps):
        steps.append(layout)
        return None

    monkeypatch.setattr(build, "attention_guidance", spy)
    two = {"objects": [{"shape": "circle", "color": "red", "count": 2}]}
    one = {"objects": [{"shape": "circle", "color": "red"}, {"shape": "star", "count": 1}]}
    for spec, layout in ((two, 0.0), (one, 0.0), (two, 0.2)):
        pipe("a scene", scene=spec, layout_guidance=layout, steps=2, progress=False)
    pipe.scene_count_layout = 0.0
    pipe("a scene", scene=two, steps=2, progress=False)
    assert steps == [attention_guidance.COUNT_LAYOUT_STEP, 0.0, 0.2, 0.0]


def test_a_scene_with_a_count_starts_later_from_its_sketch(tiny_model, monkeypatch):
    from fineimagen import stage_controls as build

    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    starts = []
    real = build.img2img_start

    def spy(pipe, control, x0, strength, settings, seeds):
        real(pipe, control, x0, strength, settings, seeds)
        starts.append((strength, control.start_step))

    monkeypatch.setattr(build, "img2img_start", spy)
    two = {"objects": [{"shape": "circle", "color": "red", "count": 2}]}
    one = {"objects": [{"shape": "circle", "color": "red"}, {"shape": "star", "count": 1}]}
    for spec in (two, one):
        pipe("a scene", scene=spec, steps=10, progress=False)
    pipe.scene_count_sketch_strength = 1.0  # from pure noise: no sketch start
    pipe("a scene", scene=two, steps=10, progress=False)
    assert starts == [(0.2, 8), (0.3, 7)]


def test_each_scene_region_hides_the_other_regions(tiny_model):
    from fineimagen.control.regions import background_image
    from fineimagen.stage_controls import composition

    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    spec = {"background": "gray", "objects": [{"shape": "circle", "count": 1},
                                              {"shape": "star", "count": 2}]}
    regions = compile_scene(spec, 16, 1).regions
    comp = composition(pipe, "a circle and two stars", regions, None, 3.0, 0.0,
                       background_image((128, 128, 128), 16))
    assert comp.terms[0].hide is None  # the global prompt sees everything
    masks = [r.mask for r in regions]
    for i, term in enumerate(comp.terms[1:]):
        others = sum(m for j, m in enumerate(masks) if j != i).clamp(max=1)
        assert torch.allclose(term.hide, others * (1 - masks[i]))
        assert term.hide.sum() > 0 and (term.hide * masks[i]).max() < 1
    plain = composition(pipe, "a circle and two stars", regions, None, 3.0, 0.0)
    assert all(t.hide is None for t in plain.terms)


def test_inpainting_keeps_the_unmasked_pixels_and_img2img_stays_close(tiny_model):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8))
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 8))
    [painted] = pipe.edit(source, "a blue star", mask=mask, seed=2, progress=False)
    a, b = np.asarray(painted, int), np.asarray(source, int)
    assert np.abs(a[8:, :] - b[8:, :]).max() <= 1 and np.abs(a[:, 8:] - b[:, 8:]).max() <= 1
    assert np.abs(a[:8, :8] - b[:8, :8]).mean() > 10
    light = pipe.edit(source, "a blue star", strength=0.2, seed=2, progress=False)[0]
    heavy = pipe.edit(source, "a blue star", strength=1.0, seed=2, progress=False)[0]
    assert np.abs(np.asarray(light, int) - b).mean() < np.abs(np.asarray(heavy, int) - b).mean()
    with pytest.raises(InputError, match="strength must be in"):
        pipe.edit(source, "x", strength=0, progress=False)
    with pytest.raises(InputError, match="mask must be an image of the image's size"):
        pipe.edit(source, "x", mask=Image.new("L", (8, 8)), progress=False)


def test_generate_with_controls_cli(tiny_model, tmp_path):
    model = str(tiny_model)
    spec = tmp_path / "scene.json"
    spec.write_text(json.dumps({"objects": [{"shape": "star", "color": "blue"}]}))
    out = tmp_path / "o"
    assert main(["generate", "a (blue:1.3) star AND a circle :0.5", "--model", model,
                 "--negative", "green", "--region", "top left: a red circle", "--box",
                 "0.5,0.5,1,1", "a star", "--n", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000_0.png", "00000_1.png"]
    assert main(["generate", "a blue star", "--model", model, "--scene", str(spec),
                 "--out", str(tmp_path / "s")]) == 0
    prompts = tmp_path / "p.jsonl"
    assert main(["dataset", "evalset", "--out", str(prompts), "--n", "3"]) == 0
    assert main(["generate", "--prompts", str(prompts), "--control", "scene", "--model", model,
                 "--out", str(tmp_path / "c")]) == 0
    assert len(list((tmp_path / "c").glob("*.png"))) == 3


@pytest.mark.parametrize("args, words", [
    (["a (red:11) star"], "outside [-10, 10]"),
    (["a red star", "--box", "0,0,1.5,1", "a star"], "outside [0, 1]"),
    (["a red star", "--box", "0.5,0,0.5,1", "a star"], "is empty"),
    (["a red star", "--region", "nowhere: a star"], "unknown region"),
    (["a red) star"], "unbalanced"),
    (["a red star"] + ["--region", "top: a star"] * (MAX_REGIONS + 1), "at most"),
    (["a red star", "--control", "scene"], "needs --prompts"),
])
def test_bad_control_input_is_one_line_exit_2(tiny_model, tmp_path, capsys, args, words):
    code = main(["generate", *args, "--model", str(tiny_model), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_bad_mask_and_edit_input(tiny_model, tmp_path, capsys):
    Image.new("L", (20, 20)).save(tmp_path / "m.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "i.png")
    cases = [["generate", "a star", "--mask-region", str(tmp_path / "m.png"), "a circle"],
             ["edit", "--image", str(tmp_path / "i.png"), "--mask", str(tmp_path / "m.png"),
              "--prompt", "a star"],
             ["edit", "--image", str(tmp_path / "m.txt"), "--prompt", "a star"]]
    for args, words in zip(cases, ["mask is 20x20", "must match", "not an image"], strict=True):
        code = main([*args, "--model", str(tiny_model), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and words in err and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists()
    assert main(["edit", "--image", str(tmp_path / "i.png"), "--prompt", "a star", "--model",
                 str(tiny_model), "--n", "2", "--out", str(tmp_path / "e")]) == 0
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["00.png", "01.png"]


# ----------------------------------------------------------------------------- prompt-to-prompt
def test_token_maps_for_swaps_and_insertions():
    from fineimagen.control.attention import map_tokens

    swap = map_tokens([101, 7, 8, 9, 102], [101, 7, 5, 9, 102])  # "a red circle" -> "a blue .."
    assert swap.sources == [[0], [1], [2], [3], [4], [5]]
    assert swap.edited_target == [3] and swap.edited_source == [3]
    longer = map_tokens([101, 7, 9, 102], [101, 7, 4, 4, 9, 102])  # a word of two tokens added
    assert longer.sources == [[0], [1], [2], [], [], [3], [4]]
    assert longer.edited_target == [3, 4] and longer.edited_source == []
    wider = map_tokens([101, 7, 8, 9, 102], [101, 7, 5, 6, 9, 102])  # one token becomes two
    assert wider.sources[3] == [3] and wider.sources[4] == [3]


def test_edits_that_cannot_be_mapped_are_refused(tiny_model):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    with pytest.raises(InputError, match="the same"):
        pipe.edit_prompt("a red circle", "a red circle", progress=False)
    with pytest.raises(InputError, match="differ in 3 of 3 words"):
        pipe.edit_prompt("a red circle", "two blue stars", progress=False)
    with pytest.raises(InputError, match="plain prompts"):
        pipe.edit_prompt("a red circle", "a (blue:2) circle", progress=False)
    with pytest.raises(InputError, match="not a word of the target"):
        pipe.edit_prompt("a red circle", "a red circle", reweight={"blue": 2.0},
                         progress=False)
    with pytest.raises(InputError, match="inject must be True, False or None"):
        pipe.edit_prompt("a red circle", "a blue circle", inject="yes", progress=False)


def test_prediction_blend_covers_where_the_predictions_differ():
    from fineimagen.control.attention import EditState, TokenMap

    state = EditState(TokenMap([[0]], [], [], {}), images=2, cross_steps=0, self_steps=0,
                      blend_from="prediction")
    x0 = torch.zeros(4, 3, 8, 8)  # rows: source 0, source 1, target 0, target 1
    x0[2, :, 1:3, 1:3] = 1.0  # target 0 moved something into the top left
    x0[3, :, 5, 6] = -0.5  # target 1 changed one pixel
    x0[:, :, 7, 7] += 0.3  # the same in every row: no difference
    state.add_difference(x0)
    state.add_difference(x0)
    mask = state.blend_mask()[:, 0]
    want0 = torch.zeros(8, 8)
    want0[0:4, 0:4] = 1  # the changed block, dilated by one pixel
    want1 = torch.zeros(8, 8)
    want1[4:7, 5:8] = 1
    assert torch.equal(mask[0], want0) and torch.equal(mask[1], want1)


@pytest.mark.parametrize("inject", [True, False])
def test_prompt_to_prompt_keeps_the_source_outside_the_blend(tiny_model, inject):
    from fineimagen.control import attention

    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    seen = {}
    original = attention.EditState.end_step

    def spy(self, size):
        original(self, size)
        seen["mask"], seen["from"] = self.blend_mask(), self.blend_from
        seen["injected"] = (self.cross_steps, self.self_steps)

    attention.EditState.end_step = spy
    try:
        src, tgt = pipe.edit_prompt("a red circle on the left", "a blue circle on the left",
                                    n=2, seed=3, inject=inject, progress=False)
    finally:
        attention.EditState.end_step = original
    assert seen["from"] == ("attention" if inject else "prediction")
    assert (seen["injected"] != (0, 0)) == inject
    outside = seen["mask"][:, 0].numpy() == 0  # [2, 16, 16]
    assert 0 < outside.mean() < 1
    for k in range(2):
        a, b = np.asarray(src[k], int), np.asarray(tgt[k], int)
        assert np.abs(a - b)[outside[k]].max() <= 1
    plain = pipe("a red circle on the left", n=2, seed=3, progress=False)
    assert np.abs(np.asarray(plain[1], int) - np.asarray(src[1], int)).max() <= 2


def test_reweighting_the_same_prompt_injects_by_default(tiny_model):
    from fineimagen.control import attention

    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    seen = []
    original = attention.EditState.end_step

    def spy(self, size):
        original(self, size)
        seen.append(self.blend_from)

    attention.EditState.end_step = spy
    try:
        same_src, same_tgt = pipe.edit_prompt("a red circle", "a red circle",
                                              reweight={"red": 1.0}, seed=1, progress=False)
        pipe.edit_prompt("a red circle", "a red square", seed=1, progress=False)
    finally:
        attention.EditState.end_step = original
    steps = len(seen) // 2
    assert seen == ["attention"] * steps + ["prediction"] * steps
    assert np.array_equal(np.asarray(same_src[0]), np.asarray(same_tgt[0]))


def test_edit_cli_prompt_to_prompt(tiny_model, tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["edit", "--from", "a red circle at the top", "--to", "a blue circle at the top",
                 "--model", str(tiny_model), "--seed", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "00_source.png"]
    for flag in ("--inject", "--no-inject"):  # the same source either way
        assert main(["edit", "--from", "a red circle at the top", "--to",
                     "a red circle at the bottom", flag, "--model", str(tiny_model),
                     "--seed", "3", "--out", str(tmp_path / flag)]) == 0
    sources = [np.asarray(Image.open(tmp_path / flag / "00_source.png"))
               for flag in ("--inject", "--no-inject")]
    assert np.array_equal(*sources)
    code = main(["edit", "--from", "a red circle", "--model", str(tiny_model),
                 "--out", str(tmp_path / "bad")])
    assert code == 2 and "needs both --from and --to" in capsys.readouterr().err


# ----------------------------------------------------------------------------- OpenMoji scenes
EMOJI_SPEC = {"domain": "openmoji", "background": "pale blue",
              "objects": [{"object": "red apple", "count": 2, "position": "top left"},
                          {"object": "rocket", "size": "large", "position": "bottom right"}]}


def test_an_openmoji_scene_compiles_to_one_named_box_per_object():
    compiled = compile_scene(EMOJI_SPEC, 64, seed=5)
    assert [r.prompt.split(" in ")[0].split(" at ")[0] for r in compiled.regions] == \
        ["a red apple", "a red apple", "a big rocket"]
    assert compiled.counted and compiled.sketch is None and compiled.background == "pale blue"
    for obj, region in zip(compiled.placed, compiled.regions, strict=True):
        cell = vocab.position_at(obj.x, obj.y)
        assert any(phrase in region.prompt for phrase in POSITION_PHRASES[cell])
        assert region.mask[0, 0, int(obj.y * 64), int(obj.x * 64)] == 1
    assert vocab.position_at(compiled.placed[2].x, compiled.placed[2].y) == "bottom right"
    assert compiled.placed[2].size == pytest.approx(0.33, abs=0.02)  # the emoji's large
    assert "two red apples" in compiled.prompt and "pale blue background" in compiled.prompt
    with pytest.raises(InputError, match="'object' must name one of"):
        compile_scene({"domain": "openmoji", "objects": [{"object": "unicorn face"}]}, 64)


def test_openmoji_scene_control_keeps_its_background_outside_the_boxes(tiny_model, tmp_path):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    images = pipe("apples and a rocket", n=2, seed=1, scene=EMOJI_SPEC, progress=False)
    inside = torch.stack([r.mask for r in compile_scene(EMOJI_SPEC, 16, 1).regions]).sum(0)
    outside = (inside[0, 0] == 0).numpy()
    assert outside.mean() > 0.3
    for im in images:  # pale blue (214, 232, 250) where no object is
        assert np.abs(np.asarray(im, int)[outside] - (214, 232, 250)).max() <= 1
    prompts = tmp_path / "emoji.jsonl"
    prompts.write_text(json.dumps({"prompt": "a rocket", "scene": EMOJI_SPEC}) + "\n")
    out = tmp_path / "out"
    assert main(["generate", "--model", str(tiny_model), "--prompts", str(prompts),
                 "--control", "scene", "--steps", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"domain": "openmoji", "objects": [{"object": "cat", "hue": 1}]}))
    assert main(["generate", "--model", str(tiny_model), "a cat", "--scene", str(bad),
                 "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


def test_a_region_given_as_text_is_refused_with_the_way_to_make_one():
    with pytest.raises(InputError, match="parse_region"):
        check_regions(["top left: a star"])
    check_regions([parse_region("top left: a star", 32)])
