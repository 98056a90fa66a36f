"""Training of one cascade stage (or the aligner) per run, through Hugging Face Accelerate.

One process on a CPU, several (DDP: gloo on CPU, NCCL on GPU) through `accelerate launch` or
`torchrun`; bf16 autocast where the hardware has it (precision.py); AdamW with linear warmup;
EMA; gradient clipping and accumulation; atomic checkpoints and exact resume (model, EMA,
optimizer, LR schedule, loss RNG and step; the data stream restarts at the next sample index);
metrics as CSV and a loss-curve PNG. The EMA weights are exported as a pipeline folder at the
end. With `init`, a stage starts from another pipeline folder's weights (fine-tuning).
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .. import precision
from ..config import (
    AlignerConfig,
    CascadeConfig,
    ConfigMixin,
    StageConfig,
    TextEncoderConfig,
    load_preset,
)
from ..diffusion.denoiser import Denoiser, TextCondition
from ..domains.shapes.contrast import EDITABLE
from ..errors import InputError, TrainingError
from ..models.sr import RegionText, RegressionSR, pool_text
from ..models.text_encoders import EmbeddingCache, TextEncoder, build_text_encoder
from ..models.unet import EfficientUNet
from .grounding import (
    GROUNDING_WEIGHTINGS,
    grounding_loss,
    install_recorder,
    sample_weights,
    token_phrases,
)
from .plots import plot_loss


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


class StageModule(nn.Module):
    """What DDP wraps: the denoiser and, when it trains jointly, the text encoder. SR stages
    get `lowres` (the previous stage's resolution), enlarged and cropped with the target.
    With `grounding` > 0 its cross-attention maps are also supervised by the caption's
    phrase masks (train/grounding.py), each sample weighed by `grounding_weighting`;
    `token_spans` is the text encoder's."""

    def __init__(self, denoiser: Denoiser, text_encoder: TextEncoder | None,
                 sr: SRInput | None = None, grounding: float = 0.0, token_spans=None,
                 grounding_weighting: str = "uniform"):
        super().__init__()
        self.denoiser = denoiser
        self.text_encoder = text_encoder  # only a trainable encoder lives here
        self.sr = sr
        self.grounding, self.token_spans = grounding, token_spans
        self.grounding_weighting = grounding_weighting
        self.recorder = install_recorder(denoiser.unet) if grounding else None
        self.last_grounding = None  # the grounding term of the last batch, for the log

    def forward(self, images, captions, embeds=None, mask=None, generator=None, lowres=None,
                phrase_spans=None, phrase_masks=None):
        if self.text_encoder is not None:
            embeds, mask = self.text_encoder.encode(captions)
        if self.sr is not None:
            images, lowres = self.sr(images, lowres, generator)
        if self.recorder is not None:
            self.recorder.maps.clear()
        loss, t = self.denoiser.loss(images, TextCondition(embeds, mask), generator, lowres,
                                     with_t=True)
        if self.recorder is None or phrase_spans is None:
            return loss
        phrases = token_phrases(self.token_spans(captions), phrase_spans).to(images.device)
        weights = sample_weights(self.grounding_weighting, self.denoiser.abar[t])
        term = grounding_loss(self.recorder.maps, phrases[:, : mask.shape[1]], phrase_masks,
                              weights)
        self.recorder.maps.clear()
        self.last_grounding = term.detach()
        return loss + self.grounding * term


class RegressionModule(nn.Module):
    """A regression SR stage under training: L1 on (cropped) targets; with `regions`, it
    reads the samples' region prompts (masks cropped with the low-res input)."""

    def __init__(self, model: RegressionSR, sr: SRInput, regions: RegionPrompts | None = None):
        super().__init__()
        self.model, self.sr, self.regions = model, sr, regions

    def forward(self, images, captions, embeds=None, mask=None, generator=None, lowres=None,
                region_prompts=None, region_boxes=None):
        hint = None
        if self.regions is not None and region_prompts is not None:
            hint = self.regions(region_prompts, region_boxes, lowres.shape[-1])
            k = hint.masks.shape[1]
            images, low = self.sr(images, torch.cat([lowres, hint.masks], 1), generator,
                                  enlarge=False)
            lowres, hint = low[:, :-k], RegionText(low[:, -k:], hint.embeds)
        else:
            images, lowres = self.sr(images, lowres, generator, enlarge=False)
        return self.model.loss(images, lowres, hint)


class RegionPrompts:
    """Region prompts to `RegionText`: pooled embeddings of a frozen text encoder (each
    distinct prompt encoded once) and box masks. Not a module: its weights stay out of the
    stage's state, EMA and checkpoints."""

    def __init__(self, encoder: TextEncoder):
        self.cache = EmbeddingCache(encoder)

    def __call__(self, prompts: list[str], boxes: torch.Tensor, side: int) -> RegionText:
        """`prompts` B*K strings, row by row ("" for no region); `boxes` [B, K, 4]."""
        from ..control.regions import box_masks

        b, k = boxes.shape[:2]
        embeds, mask = self.cache.encode([p or "." for p in prompts])
        pooled = pool_text(embeds, mask).view(b, k, -1)
        present = torch.tensor([bool(p) for p in prompts]).view(b, k, 1)
        pooled = torch.where(present, pooled, torch.zeros_like(pooled))
        masks = box_masks(boxes.reshape(b * k, 4).cpu(), side).view(b, k, side, side)
        return RegionText(masks, pooled).to(boxes.device)


@dataclass
class SRInput:
    """Pairs an SR target with its low-res input: the given low-res image (else the target
    reduced to `low_size`), enlarged to the target's size, and the same random crop of both
    (offsets on the low-res pixel grid, so a crop sees the phase of a whole image). With
    `enlarge=False` the input stays at its own side, cropped to the same area. With
    `degrade_*`, the whole low-res input is degraded first (`models.sr.degrade`)."""

    low_size: int
    crop: int = 0
    degrade_blur: float = 0.0  # RegressionConfig.degrade_*: the low-res input degraded
    degrade_noise: float = 0.0

    def __call__(self, images, lowres, generator, enlarge: bool = True):
        from ..models.sr import degrade, upsample

        size = images.shape[-1]
        if lowres is None:
            lowres = F.interpolate(images, size=(self.low_size,) * 2, mode="bilinear",
                                   antialias=True, align_corners=False)
        if self.degrade_blur or self.degrade_noise:
            lowres = degrade(lowres, self.degrade_blur, self.degrade_noise, generator)
        up = upsample(lowres, images.shape[-2:]) if enlarge else lowres
        if not self.crop or self.crop >= size:
            return images, up
        step = size // self.low_size
        offsets = torch.randint(0, (size - self.crop) // step + 1, (images.shape[0], 2),
                                generator=generator)
        scale, side = (step, self.crop) if enlarge else (1, self.crop // step)
        return (_crop(images, offsets * step, self.crop), _crop(up, offsets * scale, side))


def _crop(images: torch.Tensor, offsets: torch.Tensor, side: int) -> torch.Tensor:
    """images[i, :, y:y + side, x:x + side] for each row (y, x) of `offsets`."""
    return torch.stack([im[:, y:y + side, x:x + side]
                        for im, (y, x) in zip(images, offsets.tolist(), strict=True)])


def build_stage(cascade: CascadeConfig, stage: StageConfig, text_dim: int) -> Denoiser:
    stage.unet.text_dim = text_dim  # the U-Net's keys take the encoder's width
    return Denoiser(EfficientUNet(stage.unet), stage.diffusion)


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


@dataclass
class _Job:
    """What differs between a diffusion stage and the aligner."""

    module: nn.Module  # forward(images, captions, embeds, mask, generator, **batch extras)
    text_encoder: TextEncoder | None  # frozen encoder run outside the module, if any
    resolution: int
    export: object  # (folder, EMA state dict) -> Path
    shapes_data: object  # (rank, world, start) -> IterableDataset


def _diffusion_job(cascade: CascadeConfig, stage: StageConfig, seed: int, crop: int,
                   grounding: float = 0.0, grounding_weighting: str = "uniform",
                   varied: bool = False) -> _Job:
    from ..domains.shapes.samples import ShapesDataset

    if grounding and (stage.kind == "regression" or stage.input_resolution):
        raise InputError("grounding applies to a base (diffusion, not super-resolution) stage")
    if grounding and not stage.unet.cross_attention_levels:
        raise InputError(f"grounding: stage {stage.name!r} has no cross-attention to ground")
    low = stage.input_resolution or None
    degradation = ((stage.regression.degrade_blur, stage.regression.degrade_noise)
                   if stage.kind == "regression" else ())  # a regression stage's setting
    sr = SRInput(low, crop, *degradation) if low else None

    def data(rank, world, start):
        return ShapesDataset(stage.resolution, "train", seed, rank=rank, world_size=world,
                             start=start, low_size=low, regions=stage.reads_regions,
                             whole_caption=stage.reads_prompt, grounding=grounding > 0,
                             varied=varied)

    if stage.kind == "regression":
        text_weights = _untrained_text(cascade)  # once, not at every export
        regions = (_region_prompts(cascade, stage.regression.region_dim)
                   if stage.reads_regions else None)
        return _Job(RegressionModule(RegressionSR(stage.regression), sr, regions), None,
                    stage.resolution,
                    lambda folder, shadow: export_pipeline(folder, cascade, stage, shadow, True,
                                                           text_weights),
                    data)
    text_encoder = build_text_encoder(cascade.text_encoder)
    denoiser = build_stage(cascade, stage, text_encoder.dim)
    module = StageModule(denoiser, None if text_encoder.frozen else text_encoder, sr,
                         grounding, text_encoder.token_spans, grounding_weighting)
    return _Job(
        module, text_encoder if text_encoder.frozen else None, stage.resolution,
        lambda folder, shadow: export_pipeline(folder, cascade, stage, shadow,
                                               text_encoder.frozen), data)


def _region_prompts(cascade: CascadeConfig, region_dim: int) -> RegionPrompts:
    """The frozen text encoder that a regression stage's region prompts are read with."""
    encoder = build_text_encoder(cascade.text_encoder)
    if not encoder.frozen:
        raise InputError("a regression stage reads region prompts through a frozen text "
                         f"encoder; the preset's is {cascade.text_encoder.kind!r}")
    if encoder.dim != region_dim:
        raise InputError(f"regression region_dim is {region_dim}, but the text encoder's "
                         f"width is {encoder.dim}")
    return RegionPrompts(encoder)


def _align_job(cascade: CascadeConfig, train_cfg: TrainConfig) -> _Job:
    from ..domains.shapes.contrast import ContrastDataset
    from ..models.alignment import Aligner

    if cascade.aligner is None:
        raise InputError("the preset has no aligner section (needed by --stage align)")
    cfg = cascade.aligner
    size, low = cfg.vit.image_size, cascade.stages[0].resolution
    aligner = Aligner(cfg)
    if train_cfg.texture_loss:
        aligner.add_texture_head(train_cfg.texture_loss)
    return _Job(
        aligner, None, size,
        lambda folder, shadow: export_aligner(folder, cfg, shadow),
        lambda rank, world, start: ContrastDataset(
            size, cfg.hard_negatives, "train", train_cfg.seed, rank, world, start,
            low_res=low if low < size else None, swaps=train_cfg.swap_negatives,
            weights=train_cfg.negative_weights))


def _build_job(cfg: TrainConfig, cascade: CascadeConfig) -> _Job:
    if cfg.stage == "align":
        return _align_job(cascade, cfg)
    return _diffusion_job(cascade, cascade.stage(cfg.stage), cfg.seed, cfg.crop, cfg.grounding,
                          cfg.grounding_weighting, cfg.varied_captions)


def _loader(cfg: TrainConfig, job: _Job, rank: int, world: int, start_index: int):
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


@dataclass
class TrainResult:
    folder: Path  # the exported pipeline folder (written by the main process)
    module: StageModule  # this process's trained module (raw weights, not the EMA)
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
        init_weights(module, cascade, cfg)
    if cfg.train_only:
        freeze_except(module, cfg.train_only)
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad],
                                  lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, cfg))
    ema = EMA(module, cfg.ema_decay, cfg.ema_also)
    out = Path(cfg.out)
    state = _resume(out, module, ema, optimizer, schedule) if cfg.resume else {"step": 0}
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
        _save_json(out / "train_config.json", cfg.to_dict())
        _save_json(out / "cascade_config.json", cascade.to_dict())
    log = _MetricsLog(out / "metrics.csv", append=cfg.resume, active=accelerator.is_main_process,
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
        _checkpoint(out, accelerator.unwrap_model(model), ema, optimizer, schedule, step,
                    generator, skipped)


def export_pipeline(folder: Path, cascade: CascadeConfig, stage: StageConfig, shadow: dict,
                    frozen_text: bool, text_weights: dict | None = None) -> Path:
    """Write EMA weights (a StageModule state dict) as a pipeline folder (see pipeline.py);
    `text_weights` stand in for a text encoder the run did not train."""
    from ..pipeline import save_stage_folder

    prefix = "model." if stage.kind == "regression" else "denoiser.unet."
    unet_weights = {k[len(prefix):]: v for k, v in shadow.items() if k.startswith(prefix)}
    if not frozen_text:
        text_weights = {k[len("text_encoder."):]: v for k, v in shadow.items()
                        if k.startswith("text_encoder.")}
    return save_stage_folder(folder, cascade, stage, unet_weights, text_weights)


def _untrained_text(cascade: CascadeConfig) -> dict | None:
    """A regression SR run reads no text, but its folder must load: under a trainable text
    encoder it holds that encoder's seeded initial weights (assemble() keeps the base's)."""
    if cascade.text_encoder.kind != "trainable":
        return None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_text_encoder(cascade.text_encoder).state_dict()


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


def export_aligner(folder: Path, cfg, shadow: dict) -> Path:
    """Write EMA weights of an Aligner as an aligner folder (config.json + safetensors)."""
    from ..files import atomic_folder
    from ..models.alignment import save_aligner_folder, saved_weights

    with atomic_folder(Path(folder), replace=True) as tmp:
        save_aligner_folder(tmp, cfg, saved_weights(shadow, cfg))
    return Path(folder)


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
    return export_pipeline(Path(folder), cascade, cascade.stage(cfg.stage), state["ema"], frozen)


def init_weights(module: nn.Module, cascade: CascadeConfig, cfg: TrainConfig) -> None:
    """Start `module` from the stage `cfg.stage` (or the aligner) of the pipeline folder
    `cfg.init`; its configs must equal the preset's (else the weights mean something else)."""
    from ..files import load_weights, read_json
    from ..pipeline import WEIGHTS

    root = Path(cfg.init)
    if not root.is_dir():
        raise InputError(f"--init: no model folder at {root}")
    if cfg.stage == "align":
        _init_aligner(module, cascade, root)
        return
    stage = cascade.stage(cfg.stage)
    saved = StageConfig.from_dict(
        read_json(root / stage.name / "config.json", f"--init: {stage.name}/config.json"),
        stage.name)
    # a regression stage may learn to read region prompts on top of one that read none, and
    # the prompt on top of one that read regions only (that changes its data, not weights)
    adds_regions = stage.reads_regions and not saved.reads_regions
    if stage.reads_regions:
        saved.regression.region_dim = stage.regression.region_dim
        saved.regression.reads_prompt = stage.regression.reads_prompt
    if saved.to_dict() != stage.to_dict():
        raise InputError(f"--init: {root / stage.name} was trained with another "
                         f"{stage.name} config than the preset {cfg.preset}'s")
    if stage.kind == "regression":
        expected = None  # all of the stage's weights, unless it adds the region projection
        if adds_regions:
            expected = {k: v for k, v in module.model.state_dict().items()
                        if not k.startswith("region_in.")}
        load_weights(module.model, root / stage.name / WEIGHTS, f"--init {stage.name}",
                     expected)
        return
    text = TextEncoderConfig.from_dict(
        read_json(root / "text_encoder/config.json", "--init: text_encoder/config.json"),
        "text_encoder")
    if not text.same_encoder(cascade.text_encoder):
        raise InputError(f"--init: {root} has another text encoder than the preset {cfg.preset}")
    load_weights(module.denoiser.unet, root / stage.name / WEIGHTS, f"--init {stage.name}")
    if module.text_encoder is not None:
        load_weights(module.text_encoder, root / "text_encoder" / WEIGHTS,
                     "--init text_encoder")


def _init_aligner(module: nn.Module, cascade: CascadeConfig, root: Path) -> None:
    """Start an Aligner from the aligner/ folder of the pipeline folder `root`."""
    from ..files import load_weights, read_json
    from ..models.alignment import WEIGHTS as ALIGNER_WEIGHTS

    saved = AlignerConfig.from_dict(
        read_json(root / "aligner/config.json", "--init: aligner/config.json"), "aligner")
    if _without_pool(saved.to_dict()) != _without_pool(cascade.aligner.to_dict()):
        raise InputError(f"--init: {root / 'aligner'} was trained with another aligner "
                         f"config than the preset's")
    load_weights(module, root / "aligner" / ALIGNER_WEIGHTS, "--init aligner",
                 module.trained_state())


def _without_pool(aligner: dict) -> dict:
    """An aligner config without the ViT's pooling, which a fine-tune may change (the
    weights are the same)."""
    return {**aligner, "vit": {k: v for k, v in aligner["vit"].items() if k != "pool"}}


# ---------------------------------------------------------------------- checkpoints
def _checkpoint(out: Path, module, ema, optimizer, schedule, step, generator,
                skipped: int = 0) -> None:
    state = {"step": step, "model": module.state_dict(), "ema": ema.cpu_state(),
             "ema_also": {str(d): e.cpu_state() for d, e in ema.others.items()},
             "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "generator": generator.get_state(), "skipped": skipped}
    tmp = out / "checkpoint.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "checkpoint.pt")  # atomic: a crash never leaves half a checkpoint


def _resume(out: Path, module, ema, optimizer, schedule) -> dict:
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


def _save_json(path: Path, payload: dict) -> None:
    from ..files import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


class _MetricsLog:
    """metrics.csv: step, loss (the total), img/s, lr, and with `grounding` the grounding
    term alone (unweighted)."""

    def __init__(self, path: Path, append: bool, active: bool, after_step: int = 0,
                 grounding: bool = False):
        self.file = None
        if active:
            fresh = not (append and path.is_file())
            path.parent.mkdir(parents=True, exist_ok=True)
            if not fresh:
                _drop_rows_after(path, after_step)
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


def _drop_rows_after(path: Path, step: int) -> None:
    """Drop the rows a stopped run logged after its last checkpoint: the resumed run logs
    those steps again."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    tmp.replace(path)
