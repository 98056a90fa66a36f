"""Training of one cascade stage (or the aligner) per run, through Hugging Face Accelerate.

One process on a CPU, several (DDP: gloo on CPU, NCCL on GPU) through `accelerate launch` or
`torchrun`; bf16 autocast where the hardware has it (precision.py); AdamW with linear warmup;
EMA; gradient clipping and accumulation; atomic checkpoints and exact resume (model, EMA,
optimizer, LR schedule, loss RNG and step; the data stream restarts at the next sample index);
metrics as CSV and a loss-curve PNG. The EMA weights are exported as a pipeline folder at the
end. With `init`, a stage starts from another pipeline folder's weights (fine-tuning).

What a run trains is a job (jobs.py); what it keeps, its state (state.py). This module is
TrainConfig (every option of a run, validated) and the loop, kept in one file so that one
file shows what a run does; hence its length.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import precision
from ..config import (
    CascadeConfig,
    ConfigMixin,
    load_preset,
)
from ..domains.shapes.contrast import EDITABLE
from ..errors import InputError, TrainingError
from ..models.text_encoders import EmbeddingCache
from .grounding import (
    GROUNDING_WEIGHTINGS,
)
from .jobs import Job, align_job, diffusion_job, export_aligner, init_weights, write_stage_model
from .plots import plot_loss
from .state import EMA, MetricsLog, resume, save_checkpoint, save_json


@dataclass
class TrainConfig(ConfigMixin):
    preset: str = "shapes-32-128"  # a preset name or a JSON file holding a CascadeConfig
    stage: str = "base"  # a stage of the preset, or "align" for its aligner
    data: str = "shapes"  # "shapes" (rendered on the fly) or a dataset (data/formats.py)
    out: str = "runs/base"
    steps: int = 1000
    batch_size: int = 64  # per process, per optimizer step (before accumulation)
    grad_accum: int = 1
    lr: float = 3e-4
    warmup: int = 200
    lr_schedule: str = "constant"  # after warmup: constant | cosine (down to 10% at the end)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    # more EMA decays kept beside it in the same run (e.g. [0.99, 0.995]), each exported as
    # its own model folder (OUT/model-ema-D, and beside each snapshot), to compare decays
    ema_also: tuple[float, ...] = ()
    mixed_precision: str = "auto"  # auto (bf16 where the hardware has it) | bf16 | no
    channels_last: bool = True
    checkpoint_every: int = 500
    # also export the EMA weights as a model folder OUT/snapshots/step-NNNNNN every this many
    # steps (0: never), to score a learning curve after the run
    snapshot_every: int = 0
    log_every: int = 10
    seed: int = 0
    workers: int = 0  # DataLoader worker processes
    crop: int = 0  # SR stages: train on random crops of this side (0: whole images)
    resume: bool = False
    init: str = ""  # fine-tuning: a pipeline folder holding this stage, whose weights start it
    # fine-tuning part of a stage: comma-separated name prefixes of the parameters that train
    # (e.g. "model.region_in": a regression stage learns region prompts, the rest stays)
    train_only: str = ""
    # --stage align: the chance that a sample's first hard negative swaps one attribute
    # between two of its groups ("a blue circle and a red square"), where it can
    swap_negatives: float = 0.0
    # --stage align: how much likelier each attribute's hard negatives are than the others'
    # (e.g. {"texture": 3.0}; default 1 each)
    negative_weights: dict[str, float] = field(default_factory=dict)
    # --stage align on shapes: weight of an auxiliary loss, which textures each render shows,
    # read by a training-only linear head from the pooled image features (0: none)
    texture_loss: float = 0.0
    # a base stage on shapes: weight of the attention grounding loss (train/grounding.py),
    # which makes each group's pixels attend to the words that describe it (0: none)
    grounding: float = 0.0
    # steps in a row whose loss or gradients are not finite (each is skipped: no update)
    # before the run stops with a checkpoint of the last good state
    max_bad_steps: int = 10
    # how the grounding loss weighs each sample's noise level: "uniform", or "signal", by
    # abar(t), the signal's share of x_t's variance (the layout is unknowable at high noise)
    grounding_weighting: str = "uniform"
    # shapes data: captions also in training-only wordings, sentence frames and filler
    # sentences (long prompts), not just the grammar's (domains/shapes/captions.py, `dress`)
    varied_captions: bool = False
    # --data a Hugging Face dataset (saved to disk or parquet): its image and text columns
    image_column: str = "image"
    text_column: str = "text"
    # a text-embedding store of the data's captions (`fineimagen embed`): no encoder runs
    text_store: str = ""
    # guided distillation (train/distill.py): the teacher pipeline folder whose base stage
    # is distilled (the preset is then the teacher's); 0 steps: its guidance into a
    # guidance-input student; N: progressive distillation to N sampling steps
    distill_from: str = ""
    distill_steps: int = 0
    distill_guidance: tuple[float, float] = (0.0, 8.0)  # w ~ U[low, high] in training


LR_SCHEDULES = ("constant", "cosine")
LR_FLOOR = 0.1  # the cosine schedule ends at this fraction of lr


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The multiplier of lr at optimizer step `step`: a linear warmup, then constant or a
    half-cosine from 1 down to LR_FLOOR at `cfg.steps` (Loshchilov & Hutter 2017, eq. 5)."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.lr_schedule == "constant":
        return 1.0
    done = min(1.0, (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1))
    return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * done))


def _check(cfg: TrainConfig) -> None:
    for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every",
                 "max_bad_steps"):
        if getattr(cfg, name) <= 0:
            raise InputError(f"{name} must be positive, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise InputError(f"lr must be a positive number, got {cfg.lr}")
    precision.mixed_precision(cfg.mixed_precision)  # a bad name raises
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                         f"got {cfg.lr_schedule!r}")
    if not 0 <= cfg.swap_negatives <= 1:
        raise InputError(f"swap_negatives must be a chance in [0, 1], got {cfg.swap_negatives}")
    if cfg.swap_negatives and cfg.stage != "align":
        raise InputError("swap_negatives applies to --stage align only")
    if cfg.negative_weights and cfg.stage != "align":
        raise InputError("negative_weights applies to --stage align only")
    if not isinstance(cfg.negative_weights, dict):
        raise InputError(f"negative_weights must map attributes to weights, got "
                         f"{cfg.negative_weights!r}")
    for name, weight in cfg.negative_weights.items():
        if name not in EDITABLE:
            raise InputError(f"negative_weights: unknown attribute {name!r} "
                             f"(choose from {', '.join(EDITABLE)})")
        if not (isinstance(weight, (int, float)) and weight > 0):
            raise InputError(f"negative_weights: {name} needs a weight > 0, got {weight!r}")
    for decay in (cfg.ema_decay, *cfg.ema_also):
        if not 0 <= decay < 1:
            raise InputError(f"ema decays must be in [0, 1), got {decay}")
    if not (isinstance(cfg.texture_loss, (int, float)) and cfg.texture_loss >= 0):
        raise InputError(f"texture_loss must be a weight >= 0, got {cfg.texture_loss!r}")
    if not (isinstance(cfg.grounding, (int, float)) and cfg.grounding >= 0):
        raise InputError(f"grounding must be a weight >= 0, got {cfg.grounding!r}")
    if cfg.grounding_weighting not in GROUNDING_WEIGHTINGS:
        raise InputError(f"grounding_weighting must be one of {', '.join(GROUNDING_WEIGHTINGS)}, "
                         f"got {cfg.grounding_weighting!r}")
    if cfg.grounding and (cfg.stage == "align" or cfg.data != "shapes"):
        raise InputError("grounding applies to a diffusion stage on --data shapes only (it "
                         "needs the grammar's phrases and masks)")
    if cfg.texture_loss and (cfg.stage != "align" or cfg.data != "shapes"):
        raise InputError("texture_loss applies to --stage align on --data shapes only "
                         "(it needs the grammar's textures)")


def _build_job(cfg: TrainConfig, cascade: CascadeConfig) -> Job:
    if cfg.stage == "align":
        return align_job(cascade, cfg.seed, cfg.texture_loss, cfg.swap_negatives,
                         cfg.negative_weights)
    return diffusion_job(cascade, cascade.stage(cfg.stage), cfg.seed, cfg.crop, cfg.grounding,
                          cfg.grounding_weighting, cfg.varied_captions)


def _loader(cfg: TrainConfig, job: Job, rank: int, world: int, start_index: int):
    if cfg.data == "shapes":
        dataset = job.shapes_data(rank, world, start_index)
        return DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.workers,
                          worker_init_fn=_ignore_stop_signals)
    from ..data import formats

    resolution, kind = job.resolution, formats.detect(cfg.data)
    if kind == "webdataset":
        stream = formats.ShardStream(cfg.data, resolution, rank, world, cfg.seed, start_index)
        return DataLoader(stream, batch_size=cfg.batch_size, num_workers=cfg.workers,
                          worker_init_fn=_ignore_stop_signals)
    if kind == "folder":
        from ..data.folders import ImageTextFolder

        dataset = ImageTextFolder(cfg.data, resolution)
    elif kind == "imagefolder":
        dataset = formats.ImageFolderMetadata(cfg.data, resolution)
    else:
        dataset = formats.HFDataset(cfg.data, resolution, cfg.image_column, cfg.text_column)
    sampler = formats.ResumableSampler(len(dataset), rank, world, cfg.seed, cfg.batch_size,
                                       start_index)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                      worker_init_fn=_ignore_stop_signals,
                      num_workers=cfg.workers)


def _ignore_stop_signals(worker_id: int) -> None:
    """Data workers ignore SIGTERM and SIGINT: a signal to the whole process group (a
    scheduler's stop, Ctrl-C) reaches the training process, which checkpoints at the end of
    its step and then shuts the workers down, instead of dying of a lost worker."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _batches(loader):
    """Endless iteration over a loader, advancing a DistributedSampler's epoch."""
    epoch = 0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


@dataclass
class TrainResult:
    folder: Path  # the exported pipeline folder (written by the main process)
    module: nn.Module  # this process's trained module (raw weights, not the EMA)
    step: int
    processes: int  # how many processes trained together
    skipped: int = 0  # steps skipped for a non-finite loss or gradient


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Train one stage as `cfg` says, export its EMA weights as a pipeline folder."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    _check(cfg)
    AcceleratorState._reset_state()  # a second run in one process may change mixed precision
    job = None
    if cfg.distill_from:  # the teacher's folder says the cascade
        from .distill import distill_job

        job, cascade = distill_job(cfg)
    else:
        cascade = load_preset(cfg.preset)
    if cfg.stage != "align":
        cascade.stage(cfg.stage)  # an unknown stage fails before any process group starts
    device = "cuda" if torch.cuda.is_available() else "cpu"
    accelerator = Accelerator(mixed_precision=precision.mixed_precision(cfg.mixed_precision,
                                                                        device),
                              gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not torch.cuda.is_available())  # cpu=True: DDP over gloo
    set_seed(cfg.seed, device_specific=False)  # identical initial weights on every rank
    job = job or _build_job(cfg, cascade)  # after seeding: identical weights on every rank
    frozen_text = job.text_encoder
    if frozen_text is not None:
        frozen_text.to(accelerator.device)
        # a folder repeats its captions every epoch; shapes captions are almost never repeated
        frozen_text = EmbeddingCache(frozen_text) if cfg.data != "shapes" else frozen_text
    if cfg.text_store:
        if job.text_encoder is None:
            raise InputError("--text-store needs a frozen text encoder (this preset trains "
                             "its own)")
        from ..models.text_store import TextStore

        frozen_text = TextStore(cfg.text_store, cascade.text_encoder.to_dict())
    module = job.module
    if cfg.init and not cfg.resume:  # a resumed run's checkpoint already holds its weights
        init_weights(module, cascade, cfg.stage, cfg.init, cfg.preset)
    if cfg.train_only:
        freeze_except(module, cfg.train_only)
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad],
                                  lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, cfg))
    ema = EMA(module, cfg.ema_decay, cfg.ema_also)
    out = Path(cfg.out)
    state = resume(out, module, ema, optimizer, schedule) if cfg.resume else {"step": 0}
    step = state["step"]
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + accelerator.process_index)
    if "generator" in state:
        generator.set_state(state["generator"])
    model, optimizer = accelerator.prepare(module, optimizer)
    ema.to(accelerator.device)
    per_step = cfg.batch_size * cfg.grad_accum
    loader = _loader(cfg, job, accelerator.process_index,
                     accelerator.num_processes, start_index=step * per_step)
    batches = _batches(loader)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_json(out / "train_config.json", cfg.to_dict())
        save_json(out / "cascade_config.json", cascade.to_dict())
    log = MetricsLog(out / "metrics.csv", append=cfg.resume, active=accelerator.is_main_process,
                      after_step=step, grounding=cfg.grounding > 0)
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.stage}", unit="step",
               disable=not (progress and accelerator.is_main_process))
    tick, seen = time.perf_counter(), 0
    bad_in_row, skipped = 0, state.get("skipped", 0)
    stop = _StopSignals()
    model.train()
    try:
        while step < cfg.steps:
            ok = True
            for _ in range(cfg.grad_accum):
                loss, finite = _micro_step(cfg, accelerator, model, optimizer, next(batches),
                                           frozen_text, generator)
                ok = ok and finite
                seen += cfg.batch_size * accelerator.num_processes
            if ok:
                bad_in_row = 0
                step = _after_step(cfg, accelerator, model, ema, schedule, log, bar, loss,
                                   step, seen, tick)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    tick, seen = time.perf_counter(), 0
            else:  # no update was made: the weights are the last good ones
                bad_in_row, skipped = bad_in_row + 1, skipped + 1
                bar.set_postfix(skipped=skipped)
            saved = not ok and bad_in_row >= cfg.max_bad_steps
            if saved or (ok and (step % cfg.checkpoint_every == 0 or step == cfg.steps)):
                _save_state(accelerator, out, model, ema, optimizer, schedule, step,
                            generator, skipped)
            if ok and cfg.snapshot_every and step % cfg.snapshot_every == 0 \
                    and accelerator.is_main_process:
                _export_emas(job, snapshot_folder(out, step), ema)
            if saved:
                raise TrainingError(
                    f"{bad_in_row} steps in a row had a non-finite loss or gradient (after "
                    f"step {step}); the last good state is in {out / 'checkpoint.pt'}")
            if stop.requested(accelerator):  # SIGTERM or Ctrl-C: checkpoint, then stop
                _save_state(accelerator, out, model, ema, optimizer, schedule, step,
                            generator, skipped)
                raise KeyboardInterrupt
    finally:
        stop.restore()
    bar.close()
    accelerator.wait_for_everyone()
    folder = out / "model"
    if accelerator.is_main_process:
        log.close()
        plot_loss(out / "metrics.csv", out / "loss.png")
        folder = _export_emas(job, model_folder(cfg), ema)
    processes = accelerator.num_processes
    module = accelerator.unwrap_model(model)
    accelerator.end_training()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # clean exits under torchrun (DESIGN.md)
    return TrainResult(folder, module, step, processes, skipped)


def _after_step(cfg, accelerator, model, ema, schedule, log, bar, loss, step, seen, tick):
    """An update was made: schedule, EMA, log and progress; returns the new step."""
    schedule.step()
    step += 1
    ema.update(accelerator.unwrap_model(model), step)
    if step % cfg.log_every == 0 or step == cfg.steps:
        rate = seen / (time.perf_counter() - tick)
        loss_value = accelerator.reduce(loss.detach().float(), "mean").item()
        term = getattr(accelerator.unwrap_model(model), "last_grounding", None)
        log.write(step, loss_value, rate, schedule.get_last_lr()[0],
                  None if term is None else accelerator.reduce(term, "mean").item())
        bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{rate:.0f}")
    bar.update(1)
    return step


def freeze_except(module: nn.Module, prefixes: str) -> None:
    """Only the parameters whose names start with one of the comma-separated `prefixes`
    train; a prefix that names none is an error."""
    wanted = [p.strip() for p in prefixes.split(",") if p.strip()]
    names = [n for n, _ in module.named_parameters()]
    for prefix in wanted:
        if not any(n.startswith(prefix) for n in names):
            raise InputError(f"--train-only: no parameter starts with {prefix!r}")
    for name, param in module.named_parameters():
        param.requires_grad_(any(name.startswith(p) for p in wanted))


def _micro_step(cfg, accelerator, model, optimizer, batch, frozen_text, generator):
    """Forward and backward on one batch; the optimizer steps when accumulation is done."""
    images = batch["image"].to(accelerator.device)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    embeds = mask = None
    if frozen_text is not None:
        embeds, mask = frozen_text.encode(batch["caption"])
        embeds, mask = embeds.to(accelerator.device), mask.to(accelerator.device)
    extra = {}
    if "lowres" in batch:
        extra["lowres"] = batch["lowres"].to(accelerator.device)
    if "negatives" in batch:  # collated as K tuples of B captions
        extra["negatives"] = [c for group in batch["negatives"] for c in group]
    if cfg.texture_loss:
        extra["textures"] = batch["textures"].to(accelerator.device)
        extra["texture_shown"] = batch["texture_shown"].to(accelerator.device)
    if "phrase_spans" in batch:
        extra["phrase_spans"] = batch["phrase_spans"]
        extra["phrase_masks"] = batch["phrase_masks"].to(accelerator.device)
    if "region_prompts" in batch:  # collated as K tuples of B prompts: row by row here
        extra["region_prompts"] = [p for row in zip(*batch["region_prompts"], strict=True)
                                   for p in row]
        extra["region_boxes"] = batch["region_boxes"].to(accelerator.device)
    with accelerator.accumulate(model):
        loss = model(images, batch["caption"], embeds, mask, generator=generator, **extra)
        accelerator.backward(loss)  # on every rank, finite or not, so DDP stays in step
        finite = _all_finite(accelerator, loss, model)
        if finite:
            if accelerator.sync_gradients and cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, finite


def _all_finite(accelerator, loss: torch.Tensor, model: nn.Module) -> bool:
    """Whether the loss and every gradient are finite on every process (one sync: a
    non-finite value makes its tensor's norm non-finite)."""
    norms = [loss.detach().float().reshape(1)] + \
        [p.grad.detach().float().norm().reshape(1) for p in model.parameters()
         if p.grad is not None]
    flag = (~torch.isfinite(torch.cat(norms))).any().float()
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, "sum")
    return flag.item() == 0


class _StopSignals:
    """SIGTERM and SIGINT (Ctrl-C) during training set a flag; the loop checkpoints at the
    end of the step and stops (every process, once any has been signalled)."""

    def __init__(self):
        self.flag = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._set)

    def _set(self, signum, frame):
        self.flag = True

    def requested(self, accelerator) -> bool:
        flag = torch.tensor(float(self.flag), device=accelerator.device)
        if accelerator.num_processes > 1:
            flag = accelerator.reduce(flag, "sum")
        return flag.item() > 0

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def _save_state(accelerator, out, model, ema, optimizer, schedule, step, generator,
                skipped) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(out, accelerator.unwrap_model(model), ema, optimizer, schedule, step,
                    generator, skipped)


def model_folder(cfg: TrainConfig) -> Path:
    """Where a run writes what it trained: OUT/model, or OUT/aligner for the aligner."""
    return Path(cfg.out) / ("aligner" if cfg.stage == "align" else "model")


def _export_emas(job, folder: Path, ema: EMA) -> Path:
    """The EMA weights at `folder`, each other decay's at `folder`-ema-D."""
    for decay, other in ema.others.items():
        job.export(folder.with_name(f"{folder.name}-ema-{decay:g}"), other.cpu_state())
    return job.export(folder, ema.cpu_state())


def snapshot_folder(out: Path, step: int) -> Path:
    """Where `snapshot_every` puts the EMA weights after `step` steps."""
    return Path(out) / "snapshots" / f"step-{step:06d}"


def export_checkpoint(run: str | Path, folder: str | Path) -> Path:
    """Export the EMA weights of a run's latest checkpoint (e.g. while it still trains)."""
    run = Path(run)
    if not (run / "checkpoint.pt").is_file():
        raise InputError(f"no checkpoint in {run}")
    cascade = load_preset(str(run / "cascade_config.json"))
    cfg = TrainConfig.from_dict(json.loads((run / "train_config.json").read_text()))
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    if cfg.stage == "align":
        return export_aligner(Path(folder), cascade.aligner, state["ema"])
    frozen = not any(k.startswith("text_encoder.") for k in state["ema"])
    return write_stage_model(Path(folder), cascade, cascade.stage(cfg.stage), state["ema"], frozen)


# ---------------------------------------------------------------------- checkpoints
