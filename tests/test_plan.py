import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fineimagen.cli import main
from fineimagen.domains.shapes.captions import caption, mention
from fineimagen.domains.shapes.plan import PlanError, plan_scene
from fineimagen.domains.shapes.scene import Group, sample_scene
from fineimagen.errors import InputError
from fineimagen.eval import compbench
from fineimagen.pipeline import TextToImagePipeline


def test_the_planner_inverts_the_caption_grammar():
    for i in range(1500):  # every phrasing: synonyms, plurals, relations, backgrounds
        rng = np.random.default_rng(i)
        scene, _ = sample_scene(rng, "train" if i % 2 else "heldout")
        said = mention(scene, rng, keep=rng.uniform(0, 1))
        planned = plan_scene(caption(said, rng))
        assert set(planned.groups) == set(said.groups) and planned.background == said.background
    for item in compbench.make_evalset(56, "heldout", seed=3):
        assert set(plan_scene(item.prompt).groups) == set(item.scene.groups)


def test_planned_words():
    scene = plan_scene("a pair of big violet stars with stripes in the upper left corner, "
                       "red circles and an orange heart on a grey background")
    assert scene.groups == (Group("star", "purple", "large", "top left", "striped", 2),
                            Group("circle", "red"),  # a bare plural leaves the count open
                            Group("heart", "orange", count=1))
    assert scene.background == "gray"


@pytest.mark.parametrize("prompt, words", [
    ("a red dog", "prompt word 3 ('dog') is not in the shapes grammar"),
    ("with stripes a circle", "'with stripes' comes before the shape"),
    ("a red circle on white and a star", "the background is said once, at the end"),
    ("a red blue circle", "the color of one object group is said twice"),
    ("red and a star", "no shape before 'and'"),
    ("a circle at the top and a square at the top", "the planned scene is not valid"),
    ("  ", "prompt is empty"),
])
def test_prompts_outside_the_grammar(prompt, words):
    with pytest.raises(PlanError, match=re.escape(words)):
        plan_scene(prompt)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "two", "red", "big", "circle", "stars", "striped",
                                 "with dots", "at the top", "on the left", "and", ",",
                                 "above", "on white", "on a black background", "dog", "!"]),
                max_size=12))
def test_the_planner_raises_nothing_but_its_own_error(words):
    try:
        scene = plan_scene(" ".join(words))
    except PlanError:
        return
    assert 1 <= len(scene.groups) <= 3 and all(g.shape for g in scene.groups)


def test_plan_layout_draws_the_scene_of_the_prompt(tiny_model):
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    prompt = "two red circles at the top left and a blue star"
    planned = pipe(prompt, n=2, steps=3, progress=False, plan_layout=True)
    from_spec = pipe(prompt, n=2, steps=3, progress=False, scene=plan_scene(prompt).to_spec())
    plain = pipe(prompt, n=2, steps=3, progress=False)
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(planned, from_spec, strict=True))
    assert not np.array_equal(np.asarray(planned[0]), np.asarray(plain[0]))
    with pytest.raises(InputError, match="give no scene too"):
        pipe(prompt, plan_layout=True, scene=plan_scene(prompt).to_spec())
    with pytest.raises(PlanError, match="'dogs'"):
        pipe("two dogs", plan_layout=True)


def test_cli_plan_layout(tmp_path, tiny_model, capsys):
    out = tmp_path / "o"
    assert main(["generate", "a blue star at the top", "--plan-layout", "--model",
                 str(tiny_model), "--steps", "2", "--out", str(out)]) == 0
    assert (out / "00000_0.png").is_file()
    for extra, words in ((["two dogs", "--plan-layout"], "not in the shapes grammar"),
                         (["a star", "--plan-layout", "--scene", "s.json"], "not with --scene")):
        assert main(["generate", *extra, "--model", str(tiny_model),
                     "--out", str(tmp_path / "bad")]) == 2
        assert words in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_a_planned_edit_redraws_only_the_changed_object(tiny_model):
    from fineimagen.domains import compile_scene
    from fineimagen.planned_edit import changed_boxes

    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    source = "a red circle at the top left and a blue star at the bottom right"
    target = "a yellow circle at the top left and a blue star at the bottom right"
    a = compile_scene(plan_scene(source), 32, 5, source)
    b = compile_scene(plan_scene(target), 32, 5, target, like=a)
    gone, new = changed_boxes(a, b)
    assert torch.equal(gone, new) and torch.equal(gone, a.regions[0].mask)  # the circle's box
    sources, edits = pipe.edit_prompt(source, target, n=2, seed=5, steps=3, progress=False,
                                      plan_layout=True)
    side = sources[0].size[::-1]
    outside = (torch.nn.functional.interpolate(gone, size=side, mode="bilinear") == 0)[0, 0]
    for src, edit in zip(sources, edits, strict=True):
        src, edit = np.asarray(src, np.int16), np.asarray(edit, np.int16)
        assert np.abs(edit - src)[outside.numpy()].max() <= 1  # kept outside the changed box
        assert np.abs(edit - src)[~outside.numpy()].mean() > 1  # redrawn inside it
    with pytest.raises(InputError, match="plan the same scene"):
        pipe.edit_prompt(source, "a red disk at the top left and a blue star at the bottom "
                         "right", plan_layout=True)
    with pytest.raises(InputError, match="no reweight or inject"):
        pipe.edit_prompt(source, target, plan_layout=True, inject=True)


def test_cli_planned_edit(tmp_path, tiny_model, capsys):
    out = tmp_path / "e"
    assert main(["edit", "--from", "a red circle at the top", "--to", "a blue circle at the top",
                 "--plan-layout", "--model", str(tiny_model), "--steps", "2",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "00_source.png"]
    for extra, words in ((["--from", "a red dog", "--to", "a blue dog"], "not in the shapes"),
                         (["--image", "x.png", "--prompt", "a star"], "give --from and --to")):
        assert main(["edit", *extra, "--plan-layout", "--model", str(tiny_model),
                     "--out", str(tmp_path / "bad")]) == 2
        assert words in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_a_planned_edit_keeps_what_the_prompts_leave_open():
    from fineimagen.domains import compile_scene
    from fineimagen.planned_edit import changed_boxes

    def star_kept(source, target, seed):
        a = compile_scene(plan_scene(source), 32, seed, source)
        b = compile_scene(plan_scene(target), 32, seed, target, like=a)
        gone, new = changed_boxes(a, b)
        kept = a.filled.groups[1] == b.filled.groups[1] and a.background == b.background
        return kept and torch.equal(a.regions[-1].mask, b.regions[-1].mask) and \
            torch.equal(gone, a.regions[0].mask) and torch.equal(new, b.regions[0].mask)

    source = "a red circle at the top left and a star"  # the star's look and place are open
    assert all(star_kept(source, "a blue circle at the top left and a star", s)
               for s in range(20))
    # a move keeps the star unless the circle takes its cell or finds no room beside it
    moved = [star_kept(source, "a red circle at the top right and a star", s) for s in range(40)]
    taken = [compile_scene(plan_scene(source), 32, s).filled.groups[1].position == "top right"
             for s in range(40)]
    assert not any(m and t for m, t in zip(moved, taken, strict=True)) and sum(moved) >= 30
    # more objects of a group are placed around the others, which keep their boxes
    def star_stays(seed, target="three red circles at the top left and a star"):
        a = compile_scene(plan_scene(source), 32, seed, source)
        b = compile_scene(plan_scene(target), 32, seed, target, like=a)
        gone, new = changed_boxes(a, b)
        circles = torch.stack([r.mask for r in b.regions[:3]]).sum(0).clamp(max=1)
        return (len(b.regions) == 4 and b.placed[-1] == a.placed[-1] and torch.equal(
            gone, a.regions[0].mask) and torch.equal(new, circles))

    assert sum(star_stays(s) for s in range(40)) >= 30


def test_moved_and_added_objects_are_copies_of_the_source_object(tiny_model):
    from fineimagen.domains import compile_scene
    from fineimagen.planned_edit import copied_objects

    def copies(source, target, image, seed=2):
        a = compile_scene(plan_scene(source), 32, seed, source)
        b = compile_scene(plan_scene(target), 32, seed, target, like=a)
        return a, b, copied_objects(a, b, image)

    image = torch.rand(1, 3, 64, 64) * 2 - 1  # any stage's side: boxes scale with it
    source = "a small red circle on the left and a blue star at the top"
    a, b, (pixels, alpha) = copies(source, "a small red circle on the right and a blue star "
                                           "at the top", image)
    (old, new) = (next(o for o in s.placed if o.group == 0) for s in (a, b))
    dy, dx = round((new.y - old.y) * 64), round((new.x - old.x) * 64)
    solid = alpha[0, 0] > 0.999
    ys, xs = torch.nonzero(solid, as_tuple=True)
    assert len(ys) >= 0.8 * (old.size * 64) ** 2  # the object moves (soft box edges apart)
    assert abs(xs.float().mean() / 64 - new.x) < 0.03 and abs(ys.float().mean() / 64 - new.y) < 0.03
    assert torch.allclose(pixels[0, :, ys, xs], image[0, :, ys - dy, xs - dx])
    _, b3, (_, alpha3) = copies(source, "3 small red circles on the left and a blue star at "
                                        "the top", image)
    assert len(b3.placed) == 4 and (alpha3 > 0.999).sum() >= 2.5 * solid.sum()
    _, _, (pixels, alpha) = copies(source, "a small green circle on the left and a blue star "
                                           "at the top", image)
    assert not alpha.any() and not pixels.any()  # a new look is drawn, not copied
    pipe = TextToImagePipeline.from_pretrained(tiny_model)  # through the cascade: copied
    [src], [edit] = pipe.edit_prompt("a red circle on the left", "a red circle on the right",
                                     seed=4, steps=3, progress=False, plan_layout=True)
    a, b, (_, alpha) = copies("a red circle on the left", "a red circle on the right",
                              torch.zeros(1, 3, edit.height, edit.width), seed=4)
    (old, new) = (s.placed[0] for s in (a, b))
    dy, dx = round((new.y - old.y) * edit.height), round((new.x - old.x) * edit.width)
    ys, xs = np.nonzero(alpha[0, 0].numpy() > 0.999)
    [plain] = pipe("a red circle on the left", seed=4, steps=3, progress=False,
                   plan_layout=True)
    assert np.array_equal(np.asarray(plain), np.asarray(src))  # the source: generate's image
    src, edit = np.asarray(src, np.int16), np.asarray(edit, np.int16)
    assert len(ys) and np.abs(edit[ys, xs] - src[ys - dy, xs - dx]).max() <= 1


def canonical(scene):
    """Groups as a sorted tuple and relations by the groups they join, inverse forms
    folded (A right_of B == B left_of A)."""
    inverse = {"right_of": "left_of", "below": "above"}
    rels = set()
    for r in scene.relations:
        a, rel, b = scene.groups[r.subject], r.relation, scene.groups[r.object]
        if rel in inverse:
            a, rel, b = b, inverse[rel], a
        rels.add((a, rel, b))
    return tuple(sorted(map(repr, scene.groups))), rels, scene.background


def test_the_planner_reads_relations_back():
    from fineimagen.domains.shapes.captions import say_relation

    said_relations = 0
    for i in range(600):
        rng = np.random.default_rng(i)
        scene, placed = sample_scene(rng)
        said = say_relation(mention(scene, rng, keep=rng.uniform(0, 1)), placed, rng)
        said_relations += bool(said.relations)
        assert canonical(plan_scene(caption(said, rng))) == canonical(said)
    assert said_relations > 50


def test_show_plan_prints_what_the_prompt_was_read_as(tiny_model, tmp_path, capsys):
    from fineimagen.domains.shapes.plan import revised_prompt

    prompt = "a pair of violet stars to the left of a big disk"
    assert revised_prompt(plan_scene(prompt)) == \
        "two purple stars are to the left of a large circle"
    assert main(["generate", prompt, "--plan-layout", "--show-plan", "--model",
                 str(tiny_model), "--steps", "2", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "two purple stars are to the left of a large circle" in out
    assert '"relation": "left_of"' in out


def test_revise_prompt_draws_the_prompt_as_it_was_read(tiny_model, tmp_path, capsys):
    """--revise-prompt / revise_prompt=True: plain generation from the canonical words, so
    the images are those of the canonical prompt itself, seed for seed."""
    pipe = TextToImagePipeline.from_pretrained(tiny_model)
    free = "Please draw a couple of scarlet round shapes near the lower left."
    canonical = "a pair of red circles in the lower left corner"
    from fineimagen.domains.shapes.plan import plan_with_report, revised_prompt

    assert revised_prompt(plan_with_report(free)[0]) == canonical
    revised = pipe(free, n=2, seed=5, steps=2, revise_prompt=True, progress=False)
    direct = pipe(canonical, n=2, seed=5, steps=2, progress=False)
    as_typed = pipe(free, n=2, seed=5, steps=2, progress=False)
    pixels = [np.asarray(im, dtype=float) for im in [*revised, *direct, *as_typed]]
    assert all(np.array_equal(a, b) for a, b in zip(pixels[:2], pixels[2:4], strict=True))
    assert not np.array_equal(pixels[0], pixels[4])  # the typed words draw otherwise
    with pytest.raises(PlanError):
        pipe("a velvet teapot", steps=2, revise_prompt=True, progress=False)
    assert main(["generate", free, "--revise-prompt", "--show-plan", "--model",
                 str(tiny_model), "--steps", "2", "--out", str(tmp_path / "o")]) == 0
    assert f"as {canonical!r}" in capsys.readouterr().out
    assert main(["generate", "a velvet teapot", "--revise-prompt", "--model",
                 str(tiny_model), "--steps", "2", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
