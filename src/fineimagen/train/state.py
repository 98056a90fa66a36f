"""What a run keeps between steps and sessions: the EMA of its weights (several decays at
once), atomic checkpoints that resume exactly, and the metrics log that a resume cuts back
to the checkpoint's step."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError


class EMA:
    """Exponential moving average of parameters, with the usual warm-up of the decay; `also`:
    more decays averaged beside it (`others`, each an EMA of its own)."""

    def __init__(self, module: nn.Module, decay: float, also: tuple[float, ...] = ()):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()}
        self.others = {d: EMA(module, d) for d in also if d != decay}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        state = {k: v.float() if v.dtype.is_floating_point else v
                 for k, v in module.state_dict().items()}  # read once for every decay
        for ema in (self, *self.others.values()):
            d = min(ema.decay, (1 + step) / (10 + step))
            for k, v in state.items():
                if v.dtype.is_floating_point:
                    ema.shadow[k].lerp_(v, 1 - d)
                else:
                    ema.shadow[k].copy_(v)

    def to(self, device: torch.device) -> EMA:
        """Keep the averages where the model trains."""
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        for other in self.others.values():
            other.to(device)
        return self

    def cpu_state(self) -> dict:
        """The averaged weights on the CPU (checkpoints and exports are device-free)."""
        return {k: v.cpu() for k, v in self.shadow.items()}


def save_checkpoint(out: Path, module, ema, optimizer, schedule, step, generator,
                skipped: int = 0) -> None:
    state = {"step": step, "model": module.state_dict(), "ema": ema.cpu_state(),
             "ema_also": {str(d): e.cpu_state() for d, e in ema.others.items()},
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "generator": generator.get_state(), "skipped": skipped}
    tmp = out / "checkpoint.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "checkpoint.pt")  # atomic: a crash never leaves half a checkpoint


def resume(out: Path, module, ema, optimizer, schedule) -> dict:
    path = out / "checkpoint.pt"
    if not path.is_file():
        raise InputError(f"--resume: no checkpoint in {out}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["model"])
    ema.shadow = {k: v.float() for k, v in state["ema"].items()}
    for decay, other in ema.others.items():
        saved = state.get("ema_also", {}).get(str(decay))
        if saved is None:
            raise InputError(f"--resume: the checkpoint in {out} keeps no EMA of decay "
                             f"{decay:g}")
        other.shadow = {k: v.float() for k, v in saved.items()}
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return state


def save_json(path: Path, payload: dict) -> None:
    from ..files import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


class MetricsLog:
    """metrics.csv: step, loss (the total), img/s, lr, and with `grounding` the grounding
    term alone (unweighted)."""

    def __init__(self, path: Path, append: bool, active: bool, after_step: int = 0,
                 grounding: bool = False):
        self.file = None
        if active:
            fresh = not (append and path.is_file())
            path.parent.mkdir(parents=True, exist_ok=True)
            if not fresh:
                drop_rows_after(path, after_step)
            self.file = path.open("w" if fresh else "a", newline="")
            self.writer = csv.writer(self.file)
            if fresh:
                self.writer.writerow(["step", "loss", "img_per_s", "lr"]
                                     + (["grounding"] if grounding else []))

    def write(self, step, loss, rate, lr, grounding=None):
        if self.file:
            self.writer.writerow([step, f"{loss:.6f}", f"{rate:.2f}", f"{lr:.3g}"]
                                 + ([] if grounding is None else [f"{grounding:.6f}"]))
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


def drop_rows_after(path: Path, step: int) -> None:
    """Drop the rows a stopped run logged after its last checkpoint: the resumed run logs
    those steps again."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    tmp.replace(path)
