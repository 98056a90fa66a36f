"""Training under faults: non-finite losses, SIGTERM and Ctrl-C, a failing disk."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fineimagen.diffusion.denoiser import Denoiser
from fineimagen.errors import TrainingError
from fineimagen.train.state import EMA
from fineimagen.train.state import save_checkpoint as _checkpoint
from fineimagen.train.trainer import TrainConfig, train


def tiny(out, **kw):
    base = dict(preset="tiny", out=str(out), steps=6, batch_size=4, warmup=1,
                mixed_precision="no", channels_last=False, log_every=1)
    return TrainConfig(**{**base, **kw})


def poison(monkeypatch, bad_calls):
    """Denoiser.loss returns NaN on the listed calls (counted from 0)."""
    real, calls = Denoiser.loss, [0]

    def loss(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        bad = calls[0] in bad_calls
        calls[0] += 1
        if bad:
            value, t = out
            return value * float("nan"), t
        return out

    monkeypatch.setattr(Denoiser, "loss", loss)


def test_a_nan_step_is_skipped_and_counted(tmp_path, monkeypatch):
    poison(monkeypatch, {2, 4})
    result = train(tiny(tmp_path / "run"), progress=False)
    assert result.step == 6 and result.skipped == 2
    assert all(torch.isfinite(p).all() for p in result.module.parameters())
    state = torch.load(tmp_path / "run/checkpoint.pt", weights_only=True)
    assert state["skipped"] == 2


def test_k_bad_steps_in_a_row_stop_with_the_last_good_state(tmp_path, monkeypatch):
    poison(monkeypatch, set(range(3, 100)))
    with pytest.raises(TrainingError, match="3 steps in a row"):
        train(tiny(tmp_path / "run", max_bad_steps=3), progress=False)
    state = torch.load(tmp_path / "run/checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["skipped"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_disk_error_while_checkpointing_keeps_the_previous_checkpoint(tmp_path,
                                                                          monkeypatch):
    train(tiny(tmp_path / "run", steps=2), progress=False)
    before = (tmp_path / "run/checkpoint.pt").read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="No space left"):
        layer = torch.nn.Linear(2, 2)
        _checkpoint(tmp_path / "run", layer, EMA(layer, 0.9), torch.optim.SGD(
            [torch.zeros(1)], 0.1),
            torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([torch.zeros(1)], 0.1),
                                              lambda s: 1.0), 3, torch.Generator())
    assert (tmp_path / "run/checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_write_a_checkpoint_before_exit(tmp_path, sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fineimagen.cli", "train", "--preset", "tiny", "--steps",
           "100000", "--batch-size", "4", "--checkpoint-every", "100000",
           "--mixed-precision", "no", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.csv").exists():
        time.sleep(0.2)
    time.sleep(2)  # some steps
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-500:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] > 0


def test_a_stop_sent_to_the_whole_process_group_still_checkpoints(tmp_path):
    """What a scheduler or Ctrl-C in a terminal does: every process of the group, the data
    workers too, gets the signal; the run checkpoints and exits 130 all the same."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fineimagen.cli", "train", "--preset", "tiny", "--steps",
           "100000", "--batch-size", "4", "--checkpoint-every", "100000", "--workers", "1",
           "--mixed-precision", "no", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.csv").exists():
        time.sleep(0.2)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-500:]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] > 0
