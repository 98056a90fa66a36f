"""The shipped models' fp32 images for fixed seeds, pinned (tools/pin_images.py wrote them):
a refactor must not change a pixel. Float results differ between CPU instruction sets, so
the hashes must match exactly on the CPU kind that pinned them, and elsewhere every pixel
must stay within 3/255 of the pinned one."""
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
TOOL = Path(__file__).parents[1] / "tools" / "pin_images.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("pin_images", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regenerated():
    return load_tool().run_calls()


def test_shipped_models_draw_the_pinned_images(regenerated):
    tool = load_tool()
    pinned = json.loads((DATA / "pinned_images.json").read_text())
    with np.load(DATA / "pinned_images.npz") as npz:
        arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    assert len(arrays) == len(regenerated) == len(tool.CALLS)
    for i, (old, new) in enumerate(zip(arrays, regenerated, strict=True)):
        assert old.shape == new.shape, i
        assert hashlib.sha256(old.tobytes()).hexdigest() == pinned["sha256"][i]
        diff = np.abs(old.astype(int) - new.astype(int)).max()
        assert diff <= 3, f"call {i} ({tool.CALLS[i][1]}): {diff}/255 from the pinned image"
    same_kind = {k: pinned["machine"][k] for k in ("cpu", "capability", "torch")} == \
        {k: tool.machine()[k] for k in ("cpu", "capability", "torch")}
    if same_kind:
        assert [tool.digest(a) for a in regenerated] == pinned["sha256"]


def test_pinning_tells_images_apart(regenerated):
    # the calls are distinct: a control that stopped acting would collide with a plain call
    digests = [load_tool().digest(a) for a in regenerated]
    assert len(set(digests)) == len(digests)
    assert torch.backends.cpu.get_cpu_capability()  # what `machine()` records
