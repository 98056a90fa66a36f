"""A training run killed with SIGKILL at random moments (checkpoint writes included) and
resumed each time ends with the weights of a run never interrupted."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

# Each kill comes when the run has logged a random number of steps past where it resumed,
# after a random delay (so also inside checkpoint writes): progress per kill is bounded by
# steps, not seconds, so on a fast CPU a run cannot finish between two kills (at 300 steps
# and kills 3-6 s apart, a 2-core AVX-512 EPYC finished after 16 kills)
STEPS, EVERY = 1200, 10
ARGS = ["--preset", "tiny", "--steps", str(STEPS), "--batch-size", "4", "--warmup", "1",
        "--checkpoint-every", str(EVERY), "--mixed-precision", "no", "--seed", "3"]


def run(out, resume=False, kill_at=None, delay=0.0):
    """Train (resuming); with `kill_at`, SIGKILL `delay` s after the log reaches that step.
    True when the run finished."""
    cmd = [sys.executable, "-m", "fineimagen.cli", "train", *ARGS, "--out", str(out)]
    if resume:
        cmd.append("--resume")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if kill_at is None:
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-400:]
        return True
    deadline = time.time() + 300
    while proc.poll() is None and logged_steps(out) < kill_at and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return proc.returncode == 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return False


def logged_steps(out) -> int:
    path = out / "metrics.csv"
    if not path.exists():
        return 0
    rows = path.read_text().splitlines()[1:]
    return int(rows[-1].split(",")[0]) if rows else 0


@pytest.mark.slow
def test_twenty_sigkills_lose_at_most_one_interval_and_change_nothing(tmp_path):
    run(tmp_path / "straight")
    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills, done = 0, False
    while not done:
        before = logged_steps(out)
        resume = (out / "checkpoint.pt").exists()
        if kills < 20:
            done = run(out, resume, kill_at=before + EVERY * int(rng.integers(1, 3)),
                       delay=float(rng.uniform(0.0, 0.2)))
            kills += not done
        else:
            done = run(out, resume)
        if (out / "checkpoint.pt").exists():  # never torn: it loads, and is recent enough
            state = torch.load(out / "checkpoint.pt", weights_only=True)
            assert state["step"] >= min(logged_steps(out), before) - EVERY
    assert kills == 20
    a = load_file(str(tmp_path / "straight/model/base/model.safetensors"))
    b = load_file(str(out / "model/base/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert logged_steps(out) == STEPS
