"""Pins the shipped models' fp32 images for fixed seeds (tests/data/pinned_images.npz):
plain prompts, a negative prompt, word weights, a scene, regions, and the SR stage.
Run it only when a change is meant to alter the images; `tests/test_pinned_images.py`
regenerates the same calls and compares. `python tools/pin_images.py`."""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch

from fineimagen import TextToImagePipeline
from fineimagen.control.regions import parse_region

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"

# (model, call keyword arguments); every call is fp32 (bf16=False), seed 3
CALLS: list[tuple[str, dict]] = [
    ("shapes", dict(prompt=["two red circles at the top left", "a blue square"], steps=6,
                    stages="base")),
    ("shapes", dict(prompt="a green triangle", negative_prompt="red", steps=6, stages="base")),
    ("shapes", dict(prompt="a (yellow:1.5) star and a blue circle", steps=6, stages="base")),
    ("shapes", dict(prompt="", scene={"background": "white", "objects": [
        {"shape": "square", "color": "red", "position": "bottom right"}]}, steps=6,
        stages="base")),
    ("shapes", dict(prompt="a gray background", steps=6, stages="base",
                    regions=[parse_region("top left: a red circle", 32)])),
    ("shapes", dict(prompt="a purple heart", steps=4, stage_options={"sr": {"steps": 3}})),
    ("openmoji", dict(prompt="a red apple at the top left", steps=4, stages="base")),
]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path(
            "/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_calls() -> list[np.ndarray]:
    """Each call's images as one uint8 array (n, H, W, 3), on one thread (a CPU's
    reductions split by thread count change the last bits)."""
    pipes: dict[str, TextToImagePipeline] = {}
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for model, kwargs in CALLS:
            pipe = pipes.setdefault(model, TextToImagePipeline.from_pretrained(model))
            images = pipe(seed=3, bf16=False, progress=False, **kwargs)
            out.append(np.stack([np.asarray(im.convert("RGB")) for im in images]))
    finally:
        torch.set_num_threads(threads)
    return out


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def machine() -> dict:
    return {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def main() -> None:
    arrays = run_calls()
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "pinned_images.npz", *arrays)
    (OUT / "pinned_images.json").write_text(json.dumps(
        {"machine": machine(), "sha256": [digest(a) for a in arrays]}, indent=2) + "\n")
    print(json.dumps(machine()), [a.shape for a in arrays])


if __name__ == "__main__":
    main()
