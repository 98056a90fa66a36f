import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fineimagen.cli import main
from fineimagen.config import load_preset
from fineimagen.errors import InputError
from fineimagen.pipeline import TextToImagePipeline
from fineimagen.train.trainer import TrainConfig, export_checkpoint, train


def tiny(out, **kw):
    base = dict(preset="tiny", out=str(out), steps=6, batch_size=4, warmup=2,
                checkpoint_every=3, log_every=1, mixed_precision="no", channels_last=False)
    return TrainConfig(**{**base, **kw})


def weights(folder):
    return load_file(str(Path(folder) / "base" / "model.safetensors"))


def test_training_writes_run_folder_and_loss_falls(tmp_path):
    result = train(tiny(tmp_path / "run", steps=40, lr=2e-3), progress=False)
    run = tmp_path / "run"
    for name in ("checkpoint.pt", "metrics.csv", "loss.png", "train_config.json",
                 "model/model_index.json", "model/base/model.safetensors",
                 "model/text_encoder/model.safetensors"):
        assert (run / name).is_file(), name
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[1]) for r in rows]
    assert len(losses) == 40 and sum(losses[-10:]) < sum(losses[:10])
    assert result.step == 40


def test_resume_continues_the_same_run(tmp_path):
    straight = train(tiny(tmp_path / "a"), progress=False)
    train(tiny(tmp_path / "b", steps=3), progress=False)
    with (tmp_path / "b" / "metrics.csv").open("a") as log:  # logged, then stopped before
        log.write("4,0.5,10.00,0.001\n")                     # the next checkpoint
    resumed = train(tiny(tmp_path / "b", resume=True), progress=False)
    for k, v in straight.module.state_dict().items():
        assert torch.allclose(v, resumed.module.state_dict()[k], atol=1e-6), k
    a, b = weights(straight.folder), weights(resumed.folder)
    assert all(torch.equal(a[k], b[k]) for k in a)  # EMA too
    lines = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3, 4, 5, 6]


def test_more_ema_decays_are_kept_resumed_and_exported_with_snapshots(tmp_path):
    kw = dict(ema_decay=0.9, ema_also=(0.2,), snapshot_every=3)
    straight = train(tiny(tmp_path / "a", **kw), progress=False)
    train(tiny(tmp_path / "b", steps=3, **kw), progress=False)
    train(tiny(tmp_path / "b", resume=True, **kw), progress=False)
    for run in ("a", "b"):
        root = tmp_path / run
        assert sorted(p.name for p in (root / "snapshots").iterdir()) == [
            "step-000003", "step-000003-ema-0.2", "step-000006", "step-000006-ema-0.2"]
        assert (root / "model-ema-0.2" / "model_index.json").is_file()
    main_ema, fast_ema = weights(straight.folder), weights(tmp_path / "a" / "model-ema-0.2")
    assert any(not torch.equal(main_ema[k], fast_ema[k]) for k in main_ema)  # other decays
    resumed = weights(tmp_path / "b" / "model-ema-0.2")
    assert all(torch.equal(fast_ema[k], resumed[k]) for k in fast_ema)  # exact resume
    last = weights(tmp_path / "a" / "snapshots" / "step-000006")
    assert all(torch.equal(main_ema[k], last[k]) for k in main_ema)
    with pytest.raises(InputError, match="no EMA of decay 0.7"):
        train(tiny(tmp_path / "b", resume=True, steps=7, ema_decay=0.9, ema_also=(0.7,)),
              progress=False)


def test_a_resumed_run_may_extend_its_steps_and_decay_from_there(tmp_path):
    """`fineimagen train ... --resume --steps N --lr-schedule cosine`: a constant run goes
    on with the cosine factor of the longer run from the step it stopped at."""
    from fineimagen.train.trainer import lr_factor

    train(tiny(tmp_path / "run", steps=3, lr=1e-3), progress=False)
    longer = tiny(tmp_path / "run", steps=8, lr=1e-3, lr_schedule="cosine", resume=True)
    train(longer, progress=False)
    log = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    rows = [r.split(",") for r in log]
    assert [int(r[0]) for r in rows] == list(range(1, 9))
    lrs = [float(r[3]) for r in rows]
    first = [1e-3 * lr_factor(tiny("x"), s) for s in range(1, 4)]
    assert lrs[:3] == pytest.approx(first, rel=1e-2)
    assert lrs[3:] == pytest.approx([1e-3 * lr_factor(longer, s) for s in range(4, 9)],
                                    rel=1e-2)
    assert lrs[-1] < lrs[3] < lrs[2]
    assert main(["train", "--lr-schedule", "step"]) == 2  # argparse's choices


def test_checkpoint_exports_the_same_model(tmp_path):
    result = train(tiny(tmp_path / "run"), progress=False)
    exported = export_checkpoint(tmp_path / "run", tmp_path / "exported")
    a, b = weights(result.folder), weights(exported)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pipeline_round_trip_gives_identical_images(tmp_path):
    result = train(tiny(tmp_path / "run"), progress=False)
    pipe = TextToImagePipeline.from_pretrained(result.folder)
    first = pipe("a red circle", n=2, seed=5, progress=False)
    pipe.save_pretrained(tmp_path / "copy")
    again = TextToImagePipeline.from_pretrained(tmp_path / "copy")("a red circle", n=2, seed=5,
                                                                    progress=False)
    assert [list(a.getdata()) for a in first] == [list(b.getdata()) for b in again]
    assert list(first[0].getdata()) != list(first[1].getdata())
    index = json.loads((tmp_path / "copy" / "model_index.json").read_text())
    assert index["format_version"] == 1 and index["stages"] == ["base"]


def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29533", str(worker), str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rank0 = load_file(str(tmp_path / "rank0_of_2.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1_of_2.safetensors"))
    initial = train(tiny(tmp_path / "init", steps=1, lr=1e-12), progress=False).module
    moved = 0
    for k, v in rank0.items():
        assert torch.equal(v, rank1[k]), k
        moved += not torch.allclose(v, initial.state_dict()[k])
    assert moved > 10  # the ranks trained, in step


@pytest.mark.parametrize("field, value, words", [
    ("steps", 0, "steps must be positive"),
    ("batch_size", -1, "batch_size must be positive"),
    ("lr", float("nan"), "lr must be a positive number"),
    ("preset", "nope", "unknown preset"),
    ("swap_negatives", 1.5, r"swap_negatives must be a chance in \[0, 1\]"),
    ("swap_negatives", 0.5, "applies to --stage align only"),
    ("negative_weights", {"texture": 3.0}, "applies to --stage align only"),
    ("texture_loss", 1.0, "applies to --stage align on --data shapes only"),
    ("texture_loss", -1.0, "texture_loss must be a weight >= 0"),
])
def test_bad_train_config(tmp_path, field, value, words):
    from fineimagen.errors import InputError

    with pytest.raises(InputError, match=words):
        train(tiny(tmp_path / "run", **{field: value}), progress=False)


def test_lr_schedules_warm_up_then_hold_or_decay():
    from fineimagen.train.trainer import LR_FLOOR, lr_factor

    const = TrainConfig(steps=100, warmup=10)
    cosine = TrainConfig(steps=100, warmup=10, lr_schedule="cosine")
    assert lr_factor(const, 0) == pytest.approx(0.1) and lr_factor(cosine, 4) == pytest.approx(0.5)
    assert lr_factor(const, 99) == 1.0
    assert lr_factor(cosine, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 55) == pytest.approx((1 + LR_FLOOR) / 2)
    assert lr_factor(cosine, 100) == pytest.approx(LR_FLOOR)
    with pytest.raises(InputError, match="lr_schedule must be one of"):
        train(TrainConfig(steps=1, lr_schedule="step", out="unused"), progress=False)


def test_a_second_run_in_one_process_may_change_mixed_precision(tmp_path):
    train(tiny(tmp_path / "a", steps=2, mixed_precision="bf16"), progress=False)
    result = train(tiny(tmp_path / "b", steps=2, mixed_precision="no"), progress=False)
    assert result.step == 2


def test_init_fine_tunes_from_a_model_folder(tmp_path):
    first = train(tiny(tmp_path / "a", steps=3, lr=2e-3), progress=False)
    tuned = train(tiny(tmp_path / "b", steps=1, lr=1e-9, seed=5, init=str(first.folder)),
                  progress=False)
    fresh = train(tiny(tmp_path / "c", steps=1, lr=1e-9, seed=5), progress=False)
    for part in ("base", "text_encoder"):  # the tiny preset trains its text encoder jointly
        start, b, c = (load_file(str(Path(r.folder) / part / "model.safetensors"))
                       for r in (first, tuned, fresh))
        assert max((start[k].float() - b[k].float()).abs().max() for k in start) < 1e-3
        assert max((start[k].float() - c[k].float()).abs().max() for k in start) > 0.05


def test_init_fine_tunes_the_aligner(tmp_path):
    first = train(tiny(tmp_path / "a", stage="align", steps=3, lr=2e-3), progress=False)
    root = str(Path(first.folder).parent)  # holds aligner/
    tuned = train(tiny(tmp_path / "b", stage="align", steps=1, lr=1e-9, seed=5, init=root),
                  progress=False)
    fresh = train(tiny(tmp_path / "c", stage="align", steps=1, lr=1e-9, seed=5),
                  progress=False)
    start, b, c = (load_file(str(Path(r.folder) / "model.safetensors"))
                   for r in (first, tuned, fresh))
    assert max((start[k].float() - b[k].float()).abs().max() for k in start) < 1e-3
    assert max((start[k].float() - c[k].float()).abs().max() for k in start) > 0.05


def test_init_refuses_an_aligner_whose_vit_has_another_patch_map(tmp_path):
    first = train(tiny(tmp_path / "a", stage="align", steps=1), progress=False)
    preset = load_preset("tiny").to_dict()
    preset["aligner"]["vit"]["conv_stem"] = True
    (tmp_path / "stem.json").write_text(json.dumps(preset))
    with pytest.raises(InputError, match="another aligner config"):
        train(tiny(tmp_path / "b", preset=str(tmp_path / "stem.json"), stage="align",
                   init=str(Path(first.folder).parent)), progress=False)


@pytest.mark.parametrize("weights, words", [
    ({"hue": 2.0}, "unknown attribute 'hue'"),
    ({"texture": 0.0}, "texture needs a weight > 0"),
    (["texture"], "negative_weights must map attributes to weights"),
])
def test_bad_negative_weights(tmp_path, weights, words):
    with pytest.raises(InputError, match=words):
        train(tiny(tmp_path / "run", stage="align", negative_weights=weights), progress=False)
    args = ["train", "--preset", "tiny", "--stage", "align", "--out", str(tmp_path / "cli")]
    assert main(args + ["--negative-weight", "texture"]) == 2  # not ATTRIBUTE=WEIGHT
    if isinstance(weights, dict):
        assert main(args + [f"--negative-weight={k}={v}" for k, v in weights.items()]) == 2
    assert not (tmp_path / "cli").exists()


def test_init_may_change_the_vit_pooling(tmp_path):
    first = train(tiny(tmp_path / "a", stage="align", steps=1), progress=False)
    preset = load_preset("tiny").to_dict()
    preset["aligner"]["vit"]["pool"] = "mean"
    (tmp_path / "mean.json").write_text(json.dumps(preset))
    tuned = train(tiny(tmp_path / "b", preset=str(tmp_path / "mean.json"), stage="align",
                       steps=1, lr=1e-9, init=str(Path(first.folder).parent),
                       negative_weights={"texture": 3.0}, texture_loss=1.0), progress=False)
    start, b = (load_file(str(Path(r.folder) / "model.safetensors")) for r in (first, tuned))
    assert start.keys() == b.keys()  # the texture head is not exported
    assert max((start[k].float() - b[k].float()).abs().max() for k in start) < 1e-3
    saved = json.loads((Path(tuned.folder) / "config.json").read_text())
    assert saved["vit"]["pool"] == "mean"


def test_init_may_change_how_a_frozen_encoder_binds_the_prompt(tmp_path):
    def preset(binding):
        cascade = load_preset("tiny").to_dict()
        cascade["text_encoder"] = {"kind": "minilm", "max_length": 16, "binding": binding}
        path = tmp_path / f"{binding}.json"
        path.write_text(json.dumps(cascade))
        return str(path)

    first = train(tiny(tmp_path / "a", preset=preset("prompt"), steps=1), progress=False)
    tuned = train(tiny(tmp_path / "b", preset=preset("conjuncts"), steps=1, lr=1e-9,
                       init=str(first.folder)), progress=False)
    start, b = weights(first.folder), weights(tuned.folder)
    assert max((start[k].float() - b[k].float()).abs().max() for k in start) < 1e-3
    saved = json.loads((Path(tuned.folder) / "text_encoder" / "config.json").read_text())
    assert saved["binding"] == "conjuncts"  # what the pipeline will read prompts with
    pipe = TextToImagePipeline.from_pretrained(tuned.folder)
    assert pipe.text_encoder.binding == "conjuncts"


def test_init_refuses_what_does_not_fit(tmp_path):
    first = train(tiny(tmp_path / "a", steps=1), progress=False)
    with pytest.raises(InputError, match="no model folder"):
        train(tiny(tmp_path / "b", init=str(tmp_path / "nothing")), progress=False)
    with pytest.raises(InputError, match="aligner/config.json"):  # a folder without one
        train(tiny(tmp_path / "b", stage="align", init=str(first.folder)), progress=False)
    config = Path(first.folder) / "base" / "config.json"
    saved = json.loads(config.read_text())
    saved["unet"]["channels"] *= 2
    config.write_text(json.dumps(saved))
    with pytest.raises(InputError, match="another base config"):
        train(tiny(tmp_path / "b", init=str(first.folder)), progress=False)
    assert not (tmp_path / "b" / "model").exists()


def test_the_readme_multiprocess_command_starts_two_ranks(tmp_path):
    """README's `torchrun --nproc_per_node 2 -m fineimagen.cli train ...` trains with two
    processes, and says so once."""
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29534", "-m", "fineimagen.cli", "train", "--preset", "tiny",
         "--steps", "2", "--batch-size", "2", "--mixed-precision", "no",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [x for x in result.stdout.splitlines() if x.startswith("model written")]
    assert lines == [f"model written to {tmp_path / 'run' / 'model'} (2 processes)"]


def test_a_recipe_of_phases_chains_them_and_resumes_the_whole_chain(tmp_path, capsys):
    from fineimagen.cli import main
    from fineimagen.train.recipes import finished, train_phases

    recipe = tmp_path / "two.json"
    recipe.write_text(json.dumps({
        "machine": "documentation only", "preset": "tiny", "batch_size": 4, "warmup": 1,
        "checkpoint_every": 2, "log_every": 1, "workers": 0,
        "phases": [{"name": "first", "steps": 2, "lr": 2e-3},
                   {"name": "second", "steps": 3, "lr": 1e-9, "seed": 4}]}))
    out = tmp_path / "run"
    phases = train_phases(str(recipe), {"out": str(out)})
    assert [p.out for p in phases] == [str(out / "first"), str(out / "second")]
    assert phases[1].init == str(out / "first" / "model") and phases[1].lr == 1e-9
    assert not any(p.resume for p in phases)
    main(["train", "--recipe", str(recipe), "--out", str(out)])
    assert all(finished(p) for p in phases)
    # the second phase starts from the first one's model (lr 1e-9: it barely moves)
    first = load_file(out / "first" / "model" / "base" / "model.safetensors")
    second = load_file(out / "second" / "model" / "base" / "model.safetensors")
    assert max((first[k] - second[k]).abs().max().item() for k in first) < 1e-3
    capsys.readouterr()
    main(["train", "--recipe", str(recipe), "--out", str(out), "--resume"])
    said = capsys.readouterr().out
    assert said.count("finished before: skipped") == 2 and "every phase had finished" in said
    # an interrupted phase resumes from its checkpoint, a finished one is skipped
    (out / "second" / "model" / "model_index.json").unlink()
    resumed = train_phases(str(recipe), {"out": str(out), "resume": True})
    assert finished(resumed[0]) and not finished(resumed[1]) and resumed[1].resume


def test_a_cascade_recipe_trains_each_stage_apart_and_assembles_them(tmp_path, capsys):
    from fineimagen.cli import main
    from fineimagen.pipeline import TextToImagePipeline
    from fineimagen.train.recipes import train_phases

    recipe = tmp_path / "cascade.json"
    recipe.write_text(json.dumps({
        "preset": "tiny", "batch_size": 4, "warmup": 1, "checkpoint_every": 2,
        "log_every": 1, "workers": 0, "steps": 2,
        "phases": [{"name": "base", "stage": "base", "lr": 2e-3},
                   {"name": "more", "stage": "base", "lr": 1e-9},
                   {"name": "sr", "stage": "sr"},
                   {"name": "align", "stage": "align", "batch_size": 8}],
        "assemble": ["more", "sr", "align"]}))
    out = tmp_path / "run"
    phases = train_phases(str(recipe), {"out": str(out)})
    # a phase continues the one before only when it trains the same stage
    assert phases[1].init == str(out / "base" / "model")
    assert phases[2].init == "" and phases[3].init == ""
    main(["train", "--recipe", str(recipe), "--out", str(out)])
    assert "cascade assembled" in capsys.readouterr().out
    pipe = TextToImagePipeline.from_pretrained(out / "model")
    more = TextToImagePipeline.from_pretrained(out / "more" / "model")
    assert [s.cfg.name for s in pipe.stages] == ["base", "sr"]
    assert all(torch.equal(a, b) for a, b in zip(pipe.stages[0].weights().values(),
                                                   more.stages[0].weights().values(),
                                                   strict=True))
    trained = load_file(out / "align" / "aligner" / "model.safetensors")
    assert pipe.aligner is not None and all(
        torch.equal(v, trained[k]) for k, v in pipe.aligner.trained_state().items())
    # resumed: every phase (the aligner too) counts as finished, nothing trains again
    main(["train", "--recipe", str(recipe), "--out", str(out), "--resume"])
    said = capsys.readouterr().out
    assert said.count("finished before: skipped") == 4 and "every phase had finished" in said
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"phases": [{"name": "base"}], "assemble": ["sr"]}))
    with pytest.raises(InputError, match="'assemble' must list phase names"):
        train_phases(str(bad), {})


def test_a_bad_recipe_file_is_refused(tmp_path):
    from fineimagen.train.recipes import train_phases

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"phases": [{"steps": 2}]}))
    with pytest.raises(InputError, match="'name'"):
        train_phases(str(bad), {})
    bad.write_text("{")
    with pytest.raises(InputError, match="malformed JSON"):
        train_phases(str(bad), {})


def test_a_recipe_resumes_only_where_a_checkpoint_is(tmp_path):
    # `--recipe NAME --resume` is the one command that starts a recipe and continues it
    from fineimagen.train.recipes import train_phases

    for name in ("openmoji-text-frozen", "openmoji"):
        first = train_phases(name, {"resume": True, "out": str(tmp_path / name)})
        assert [cfg.resume for cfg in first] == [False] * len(first)
        (Path(first[0].out)).mkdir(parents=True, exist_ok=True)
        (Path(first[0].out) / "checkpoint.pt").write_bytes(b"")
        again = train_phases(name, {"resume": True, "out": str(tmp_path / name)})
        assert [cfg.resume for cfg in again] == [True] + [False] * (len(again) - 1)
    # a plain run asked to resume with nothing to resume from still says so (exit 2)
    assert main(["train", "--stage", "base", "--preset", "tiny", "--steps", "1", "--resume",
                 "--out", str(tmp_path / "plain")]) == 2
    assert not (tmp_path / "plain" / "checkpoint.pt").exists()
