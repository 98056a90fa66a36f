"""What a training run trains, beside its objective: a job is the module whose forward
returns the loss of a batch, the data it reads and how its EMA weights are written out. A
diffusion stage (base or super-resolution, eq. 1 of Saharia et al. 2022 in denoiser.py), a
regression SR stage and the aligner (InfoNCE) each have one; distillation builds its own
(distill.py). The loop (trainer.py) knows only jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AlignerConfig, CascadeConfig, StageConfig, TextEncoderConfig
from ..diffusion.denoiser import Denoiser, TextCondition
from ..domains.shapes import vocab
from ..errors import InputError
from ..models.sr import RegionText, RegressionSR, pool_text
from ..models.text_encoders import EmbeddingCache, TextEncoder, build_text_encoder
from ..models.unet import EfficientUNet
from .grounding import grounding_loss, install_recorder, sample_weights, token_phrases


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


@dataclass
class Job:
    """What differs between a diffusion stage and the aligner."""

    module: nn.Module  # forward(images, captions, embeds, mask, generator, **batch extras)
    text_encoder: TextEncoder | None  # frozen encoder run outside the module, if any
    resolution: int
    export: object  # (folder, EMA state dict) -> Path
    shapes_data: object  # (rank, world, start) -> IterableDataset


def shapes_data(stage: StageConfig, seed: int, low: int | None = None,
                grounding: bool = False, varied: bool = False):
    """(rank, world, start) -> the shapes stream a stage trains on: its side, the low-res
    input of an SR stage, region prompts or the whole caption where the stage reads them
    (the data path of every job on shapes, distillation's too)."""
    from ..domains.shapes.samples import ShapesDataset

    def data(rank, world, start):
        return ShapesDataset(stage.resolution, "train", seed, rank=rank, world_size=world,
                             start=start, low_size=low, regions=stage.reads_regions,
                             whole_caption=stage.reads_prompt, grounding=grounding,
                             varied=varied)

    return data


def diffusion_job(cascade: CascadeConfig, stage: StageConfig, seed: int, crop: int,
                   grounding: float = 0.0, grounding_weighting: str = "uniform",
                   varied: bool = False) -> Job:

    if grounding and (stage.kind == "regression" or stage.input_resolution):
        raise InputError("grounding applies to a base (diffusion, not super-resolution) stage")
    if grounding and not stage.unet.cross_attention_levels:
        raise InputError(f"grounding: stage {stage.name!r} has no cross-attention to ground")
    low = stage.input_resolution or None
    degradation = ((stage.regression.degrade_blur, stage.regression.degrade_noise)
                   if stage.kind == "regression" else ())  # a regression stage's setting
    sr = SRInput(low, crop, *degradation) if low else None

    data = shapes_data(stage, seed, low, grounding > 0, varied)

    if stage.kind == "regression":
        text_weights = untrained_text(cascade)  # once, not at every export
        regions = (region_prompts(cascade, stage.regression.region_dim)
                   if stage.reads_regions else None)
        return Job(RegressionModule(RegressionSR(stage.regression), sr, regions), None,
                    stage.resolution,
                    lambda folder, shadow: write_stage_model(folder, cascade, stage, shadow, True,
                                                           text_weights),
                    data)
    text_encoder = build_text_encoder(cascade.text_encoder)
    denoiser = build_stage(cascade, stage, text_encoder.dim)
    module = StageModule(denoiser, None if text_encoder.frozen else text_encoder, sr,
                         grounding, text_encoder.token_spans, grounding_weighting)
    return Job(
        module, text_encoder if text_encoder.frozen else None, stage.resolution,
        lambda folder, shadow: write_stage_model(folder, cascade, stage, shadow,
                                               text_encoder.frozen), data)


def region_prompts(cascade: CascadeConfig, region_dim: int) -> RegionPrompts:
    """The frozen text encoder that a regression stage's region prompts are read with."""
    encoder = build_text_encoder(cascade.text_encoder)
    if not encoder.frozen:
        raise InputError("a regression stage reads region prompts through a frozen text "
                         f"encoder; the preset's is {cascade.text_encoder.kind!r}")
    if encoder.dim != region_dim:
        raise InputError(f"regression region_dim is {region_dim}, but the text encoder's "
                         f"width is {encoder.dim}")
    return RegionPrompts(encoder)


def align_job(cascade: CascadeConfig, seed: int, texture_loss: float = 0.0,
              swap_negatives: float = 0.0, negative_weights=None) -> Job:
    """The aligner's contrastive job on shapes scenes with hard negatives."""
    from ..domains.shapes.contrast import ContrastDataset
    from ..models.alignment import Aligner

    if cascade.aligner is None:
        raise InputError("the preset has no aligner section (needed by --stage align)")
    cfg = cascade.aligner
    size, low = cfg.vit.image_size, cascade.stages[0].resolution
    aligner = Aligner(cfg)
    if texture_loss:
        aligner.add_texture_head(texture_loss, len(vocab.TEXTURES))
    return Job(
        aligner, None, size,
        lambda folder, shadow: export_aligner(folder, cfg, shadow),
        lambda rank, world, start: ContrastDataset(
            size, cfg.hard_negatives, "train", seed, rank, world, start,
            low_res=low if low < size else None, swaps=swap_negatives,
            weights=negative_weights))


def write_stage_model(folder: Path, cascade: CascadeConfig, stage: StageConfig, shadow: dict,
                    frozen_text: bool, text_weights: dict | None = None) -> Path:
    """Write EMA weights (a StageModule state dict) as a pipeline folder (see pipeline.py);
    `text_weights` stand in for a text encoder the run did not train."""
    from ..model_folder import save_stage_folder

    prefix = "model." if stage.kind == "regression" else "denoiser.unet."
    unet_weights = {k[len(prefix):]: v for k, v in shadow.items() if k.startswith(prefix)}
    if not frozen_text:
        text_weights = {k[len("text_encoder."):]: v for k, v in shadow.items()
                        if k.startswith("text_encoder.")}
    return save_stage_folder(folder, cascade, stage, unet_weights, text_weights)


def untrained_text(cascade: CascadeConfig) -> dict | None:
    """A regression SR run reads no text, but its folder must load: under a trainable text
    encoder it holds that encoder's seeded initial weights (assemble() keeps the base's)."""
    if cascade.text_encoder.kind != "trainable":
        return None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_text_encoder(cascade.text_encoder).state_dict()


def export_aligner(folder: Path, cfg, shadow: dict) -> Path:
    """Write EMA weights of an Aligner as an aligner folder (config.json + safetensors)."""
    from ..files import atomic_folder
    from ..models.alignment import save_aligner_folder, saved_weights

    with atomic_folder(Path(folder), replace=True) as tmp:
        save_aligner_folder(tmp, cfg, saved_weights(shadow, cfg))
    return Path(folder)


def init_weights(module: nn.Module, cascade: CascadeConfig, stage_name: str, init: str,
                 preset: str) -> None:
    """Start `module` from the stage `stage_name` (or the aligner, "align") of the pipeline
    folder `init`; its configs must equal the preset's (else the weights mean something
    else)."""
    from ..files import load_weights, read_json
    from ..model_folder import WEIGHTS

    root = Path(init)
    if not root.is_dir():
        raise InputError(f"--init: no model folder at {root}")
    if stage_name == "align":
        _init_aligner(module, cascade, root)
        return
    stage = cascade.stage(stage_name)
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
                         f"{stage.name} config than the preset {preset}'s")
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
        raise InputError(f"--init: {root} has another text encoder than the preset {preset}")
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
