"""Guided distillation (train/distill.py) on the tiny preset: the losses' targets are what
the paper's equations say, both stages train and export pipelines that sample with one
U-Net call per step, and wrong chains are refused."""

import json

import numpy as np
import pytest
import torch

from fineimagen.cli import main
from fineimagen.diffusion.denoiser import TextCondition
from fineimagen.pipeline import TextToImagePipeline
from fineimagen.train.distill import (
    GuidanceDistill,
    ProgressiveDistill,
    _coefficients,
    ddim_grid,
    ddim_step,
    distill_job,
    one_step_x0,
)
from fineimagen.train.trainer import TrainConfig


def test_ddim_grids_nest_and_one_step_lands_where_two_did():
    assert ddim_grid(1000, 4).tolist() == [999, 749, 499, 249]
    for n in (1, 2, 4, 8):
        assert np.array_equal(ddim_grid(1000, 2 * n)[::2], ddim_grid(1000, n))
    torch.manual_seed(0)
    x_t, x_s = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    at_t, at_s = (torch.tensor(0.6), torch.tensor(0.8)), (torch.tensor(0.9), torch.tensor(0.44))
    x0 = one_step_x0(x_t, x_s, at_t, at_s)
    (a_t, s_t), (a_s, s_s) = at_t, at_s
    assert torch.allclose(a_s * x0 + s_s * (x_t - a_t * x0) / s_t, x_s, atol=1e-5)


def test_the_guidance_student_starts_as_its_teacher(tiny_model):
    job, _ = distill_job(TrainConfig(distill_from=str(tiny_model),
                                     distill_guidance=(1.0, 1.0 + 1e-6)))
    module = job.module
    assert isinstance(module, GuidanceDistill)
    torch.manual_seed(0)
    weight = torch.randn_like(module.denoiser.unet.out.weight) * 0.2  # an untrained tiny
    # model's output layer is still near its zero start: give both the same non-zero one
    for unet in (module.denoiser.unet, module.teacher[0].unet):
        unet.out.weight.data.copy_(weight)
    embeds, mask = job.text_encoder.encode(["a red circle", "two blue stars"])
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    # w = 1: the guided target is the conditional output, which the student starts as
    assert module(images, None, embeds, mask).item() < 1e-8
    module.w_range = (3.0, 3.0 + 1e-6)  # w = 3: not the conditional output any more
    assert module(images, None, embeds, mask).item() > 1e-4


def test_progressive_distillation_from_a_teacher_that_is_the_student(tiny_model, tmp_path):
    """Distil guidance (2 steps), then distil 2 DDIM steps into 1: both export pipelines that
    sample with one U-Net call of batch n per step."""
    first = tmp_path / "guidance"
    assert main(["train", "--distill-from", str(tiny_model), "--steps", "2", "--batch-size",
                 "4", "--out", str(first), "--checkpoint-every", "1"]) == 0
    config = json.loads((first / "model" / "base" / "config.json").read_text())
    assert config["unet"]["guidance_input"] is True
    second = tmp_path / "steps"
    assert main(["train", "--distill-from", str(first / "model"), "--distill-steps", "1",
                 "--steps", "2", "--batch-size", "4", "--out", str(second)]) == 0
    pipe = TextToImagePipeline.from_pretrained(second / "model")
    base = pipe.stages[0]
    assert (base.cfg.sampling.sampler, base.cfg.sampling.steps) == ("ddim", 1)
    batches = []
    base.model.unet.register_forward_hook(lambda m, a, out: batches.append(a[0].shape[0]))
    images = pipe("a red circle", n=2, seed=0, progress=False, stages=0)
    assert batches == [2] and images[0].size == (16, 16)  # one call, no 2B guidance batch
    job, _ = distill_job(TrainConfig(distill_from=str(first / "model"), distill_steps=2))
    assert isinstance(job.module, ProgressiveDistill)
    times = job.module.times.tolist()
    assert times == [[999, 749, 499], [499, 249, -1]]  # (t, teacher midpoint, next), -1 clean


def test_the_teacher_two_steps_make_the_target(tiny_model):
    """A student equal to its teacher misses the two-step target by exactly what one step
    differs from two; with the target's x0 one DDIM step lands on the teacher's x_s."""
    first_job, _ = distill_job(TrainConfig(distill_from=str(tiny_model)))
    student = first_job.module.denoiser
    torch.manual_seed(1)
    x_t = torch.randn(2, 3, 16, 16)
    embeds, mask = first_job.text_encoder.encode(["a star", "a heart"])
    cond, w = TextCondition(embeds, mask), torch.full((2,), 2.0)
    t, mid, s = torch.tensor([999, 999]), torch.tensor([749, 749]), torch.tensor([499, 499])
    with torch.no_grad():
        x_s = ddim_step(student, ddim_step(student, x_t, t, mid, cond, w), mid, s, cond, w)
        x0 = one_step_x0(x_t, x_s, _coefficients(student, t), _coefficients(student, s))
        a_t, s_t = _coefficients(student, t)
        a_s, s_s = _coefficients(student, s)
    assert torch.allclose(a_s * x0 + s_s * (x_t - a_t * x0) / s_t, x_s, atol=1e-4)


def test_wrong_chains_are_refused(tiny_model, tmp_path, capsys):
    assert main(["train", "--distill-from", str(tiny_model), "--distill-steps", "4",
                 "--steps", "1", "--out", str(tmp_path / "a")]) == 2
    assert "distil its guidance first" in capsys.readouterr().err
    assert main(["train", "--distill-from", str(tiny_model), "--init", str(tiny_model),
                 "--steps", "1", "--out", str(tmp_path / "b")]) == 2
    assert "give no --init" in capsys.readouterr().err
    assert main(["train", "--distill-from", str(tmp_path / "none"), "--steps", "1",
                 "--out", str(tmp_path / "c")]) == 2
    with pytest.raises(Exception, match="distill_guidance"):
        distill_job(TrainConfig(distill_from=str(tiny_model), distill_guidance=(3.0, 1.0)))


def test_the_distillation_recipe_chains_each_teacher_to_the_phase_before():
    from fineimagen.train.recipes import train_phases

    guidance, to8, to4 = train_phases("shapes-distill", {})
    assert guidance.distill_from == "runs/shapes-base/settle/model"
    assert (to8.distill_from, to8.distill_steps) == ("runs/shapes-distill/guidance/model", 8)
    assert (to4.distill_from, to4.distill_steps) == ("runs/shapes-distill/to8/model", 4)
    assert guidance.init == to8.init == to4.init == ""
    main_phase, ground, _ = train_phases("shapes-base", {})
    assert ground.init == f"{main_phase.out}/model" and not ground.distill_from
