import json
import subprocess
import sys

import pytest

from fineimagen.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "fineimagen.cli", *args],
                          capture_output=True, text=True)


def test_dataset_evalset_then_truth_scoring(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    assert main(["dataset", "evalset", "--out", str(prompts), "--n", "16"]) == 0
    assert len(prompts.read_text().splitlines()) == 16
    out = tmp_path / "imgs"
    assert main(["eval", "--prompts", str(prompts), "--render-truth", "--size", "64",
                 "--save-images", str(out), "--json", str(tmp_path / "s.json")]) == 0
    assert len(list(out.glob("*.png"))) == 16
    truth = json.loads((tmp_path / "s.json").read_text())
    assert truth["overall"] >= 0.99
    capsys.readouterr()
    assert main(["eval", "--prompts", str(prompts), "--images", str(out)]) == 0
    table = capsys.readouterr().out
    assert "overall" in table and "1.000" in table


def test_dataset_shapes_cli(tmp_path):
    assert main(["dataset", "shapes", "--out", str(tmp_path / "d"), "--n", "3",
                 "--size", "32", "--split", "heldout"]) == 0
    assert len(list((tmp_path / "d").glob("*.png"))) == 3


def test_selftest_cli(tmp_path, capsys):
    assert main(["eval", "--selftest", "--n", "20", "--sizes", "64",
                 "--json", str(tmp_path / "t.json")]) == 0
    assert "64px perturbed" in capsys.readouterr().out
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows["64px clean"]["all_attributes"] > 0.9


@pytest.mark.parametrize("args, words", [
    (["dataset", "shapes", "--out", "X", "--n", "0"], "must be positive"),
    (["dataset", "shapes", "--out", "X", "--n", "2", "--size", "8"], "16 to 4096"),
    (["dataset", "evalset", "--out", "X", "--n", "-3"], "must be positive"),
    (["eval", "--prompts", "missing.jsonl", "--render-truth"], "prompts file not found"),
    (["eval"], "eval needs --selftest"),
    (["frobnicate"], "invalid choice"),
    (["generate", "a star", "--device", "tpu"], "cpu, cuda or cuda:N"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    result = subprocess.run([sys.executable, "-m", "fineimagen.cli", *args], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and words in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_jsonl_line_and_missing_images(tmp_path):
    prompts = tmp_path / "p.jsonl"
    good = json.dumps({"prompt": "a star", "scene": {"objects": [{"shape": "star"}]}})
    prompts.write_text(good + "\n" + '{"prompt": "x", "scene": {"objects": [{"shape": '
                       '"star", "color": "teal"}]}}\n')
    result = run("eval", "--prompts", str(prompts), "--render-truth")
    assert result.returncode == 2 and "line 2" in result.stderr and "teal" in result.stderr
    prompts.write_text(good + "\n")
    (tmp_path / "img").mkdir()
    result = run("eval", "--prompts", str(prompts), "--images", str(tmp_path / "img"))
    assert result.returncode == 2 and "no image for prompt line 1" in result.stderr


def test_json_output_is_not_written_on_error(tmp_path):
    result = run("eval", "--prompts", str(tmp_path / "none.jsonl"), "--render-truth",
                 "--json", str(tmp_path / "out.json"))
    assert result.returncode == 2 and not (tmp_path / "out.json").exists()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--preset", "tiny", "--steps", "3", "--batch-size", "4",
                 "--out", str(run), "--mixed-precision", "no"]) == 0
    return run / "model"


def test_generate_and_eval_end_to_end(tmp_path, tiny_model, capsys):
    prompts = tmp_path / "p.jsonl"
    assert main(["dataset", "evalset", "--out", str(prompts), "--n", "3"]) == 0
    out = tmp_path / "gen"
    assert main(["generate", "--prompts", str(prompts), "--model", str(tiny_model), "--n", "2",
                 "--steps", "2", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}_{k}.png" for i in range(3) for k in range(2)]
    assert main(["eval", "--prompts", str(prompts), "--images", str(out)]) == 0
    assert "overall" in capsys.readouterr().out
    assert main(["generate", "a blue star", "--model", str(tiny_model), "--seed", "3",
                 "--out", str(tmp_path / "one"), "--sampler", "ddpm", "--steps", "2"]) == 0
    assert (tmp_path / "one" / "00000_0.png").is_file()


@pytest.mark.parametrize("extra, words", [
    (["--steps", "0"], "steps must be positive"),
    (["--guidance", "nan"], "guidance must be a finite number"),
    (["--sampler", "euler9"], "unknown sampler"),
    (["--threshold", "1.5"], "threshold must be in"),
])
def test_bad_generate_options(tmp_path, tiny_model, extra, words):
    result = run("generate", "a star", "--model", str(tiny_model), "--out", str(tmp_path / "o"),
                 *extra)
    assert result.returncode == 2 and words in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "o").exists()


def test_bad_generate_inputs(tmp_path, tiny_model):
    result = run("generate", "  ", "--model", str(tiny_model), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "prompt is empty" in result.stderr
    result = run("generate", "a star", "--model", str(tmp_path / "missing"))
    assert result.returncode == 2 and "model folder not found" in result.stderr
    (tmp_path / "junk").mkdir()
    result = run("generate", "a star", "--model", str(tmp_path / "junk"))
    assert result.returncode == 2 and "not a fineimagen model folder" in result.stderr
    result = run("train", "--preset", "nope", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "unknown preset" in result.stderr
    result = run("train", "--recipe", "nope")
    assert result.returncode == 2 and "unknown recipe" in result.stderr


def test_weights_that_do_not_match_the_config(tmp_path, tiny_model):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model, bad)
    config = json.loads((bad / "base" / "config.json").read_text())
    config["unet"]["channels"] = 24
    (bad / "base" / "config.json").write_text(json.dumps(config))
    result = run("generate", "a star", "--model", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "weights do not match the config" in result.stderr


def test_package_import_is_light_and_exports_resolve():
    code = ("import sys, fineimagen; assert 'torch' not in sys.modules; "
            "assert fineimagen.TextToImagePipeline.__name__ == 'TextToImagePipeline'")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
