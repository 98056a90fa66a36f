"""Dataclass configs with a JSON round-trip that rejects unknown keys, and named presets.

A preset (`presets/NAME.json`) holds a `CascadeConfig`: the text encoder and the stages.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, get_args, get_type_hints

from .errors import InputError


class ConfigMixin:
    """`to_dict` / `from_dict` for nested dataclasses; unknown keys raise InputError."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = ""):
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object")
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        values = {}
        for key, value in data.items():
            values[key] = _convert(hints[key], value, f"{where}.{key}")
        return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if isinstance(hint, UnionType):  # `X | None`: an optional sub-config
        if value is None:
            return None
        hint = next(a for a in get_args(hint) if a is not NoneType)
    if isinstance(hint, type) and issubclass(hint, ConfigMixin):
        return hint.from_dict(value, where)
    origin = getattr(hint, "__origin__", None)
    if origin in (list, tuple) and hint.__args__ and isinstance(hint.__args__[0], type) \
            and issubclass(hint.__args__[0], ConfigMixin):
        return [hint.__args__[0].from_dict(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{where}: expected a list, got {value!r}")
        item = hint.__args__[0] if hint.__args__ else None
        return tuple(_scalar(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    """`value` checked against a scalar type (an int is a float; a bool is no number)."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and (isinstance(value, bool) or not isinstance(value, hint)):
        raise InputError(f"{where}: expected {'an integer' if hint is int else 'a number'}, "
                         f"got {value!r}")
    if hint in (str, bool) and not isinstance(value, hint):
        raise InputError(f"{where}: expected {'text' if hint is str else 'true or false'}, "
                         f"got {value!r}")
    return value


@dataclass
class TextEncoderConfig(ConfigMixin):
    kind: str = "minilm"  # minilm | t5 | trainable
    path: str | None = None  # t5: local folder or hub id; minilm: defaults to the package's copy
    max_length: int = 32  # tokens kept per prompt
    # minilm / t5: hidden states concatenated per token, by index (0 = the input embeddings,
    # -1 = the last layer); the width is the model's times their number
    feature_layers: tuple[int, ...] = (-1,)
    # minilm / t5: "prompt" encodes the prompt whole; "conjuncts" gives each token of a
    # conjunct ("a red circle", "two blue stars at the top") its hidden states from that
    # conjunct encoded alone, so a noun carries its own attributes, not the prompt's
    binding: str = "prompt"
    # minilm / t5: False masks the special tokens ([CLS] and [SEP], T5's </s>) out, so
    # cross-attention and pooling read only the words (a [CLS] carries the prompt's bag)
    special_tokens: bool = True
    dim: int = 256  # trainable only: width of the jointly trained encoder
    layers: int = 2  # trainable only
    heads: int = 4  # trainable only
    vocab_size: int = 4096  # trainable only: hashed word buckets

    READING = ("binding", "special_tokens")  # how a frozen encoder is read, not what it is

    def same_encoder(self, other: TextEncoderConfig) -> bool:
        """True where the two configs differ at most in how the encoder is read, so the
        same weights serve both (`--init` may change the reading)."""
        return dataclasses.replace(self, **{f: getattr(other, f) for f in self.READING}) \
            == other


@dataclass
class UNetConfig(ConfigMixin):
    in_channels: int = 3
    out_channels: int = 3
    channels: int = 64  # width at the first resolution
    channel_mults: tuple[int, ...] = (1, 2, 3)  # width multiplier per resolution level
    blocks_per_level: tuple[int, ...] = (1, 2, 2)  # residual blocks per level (more when lower)
    cross_attention_levels: tuple[int, ...] = (1, 2)  # levels with per-token text attention
    self_attention_levels: tuple[int, ...] = (2,)  # levels with self-attention
    heads: int = 4
    head_dim: int = 32
    text_dim: int = 384  # width of the text encoder's token embeddings
    groups: int = 16  # GroupNorm groups
    lowres_cond: bool = False  # super-resolution: concatenate the upsampled low-res image
    dropout: float = 0.0
    # "conv": 3x3 convs at the higher resolution (stride-2 down, nearest-then-conv up);
    # "light": resolution changes cost a 1x1 conv at the lower resolution (pixel-unshuffle
    # then 1x1 down; 1x1 then nearest up), the full-resolution FLOPs go to the blocks
    resample: str = "conv"
    # a guidance-distilled student (Meng et al. 2023, sec. 4.1): the guidance weight w is an
    # input, embedded like t, and one call gives the guided prediction (no 2B batch)
    guidance_input: bool = False
    # absolute position, which convolutions (translation-equivariant) and attention (no
    # codes) otherwise infer only from zero padding at the borders (Islam et al. 2021):
    # "stem" concatenates CoordConv's x, y channels in [-1, 1] to the input (Liu et al.
    # 2018); "levels" also adds a learned 1x1 map of them to each lower level's input
    coords: str = "none"  # none | stem | levels
    # fixed 2-D sin-cos codes added to the image tokens of every attention layer's queries
    # (and self-attention's keys): layers.Attention
    attention_positions: bool = False


@dataclass
class DiffusionConfig(ConfigMixin):
    schedule: str = "cosine"  # cosine | linear
    prediction: str = "v"  # v | eps
    timesteps: int = 1000
    cond_drop: float = 0.1  # probability of dropping the text in training (for CFG)
    min_snr_gamma: float = 0.0  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = plain MSE
    # with min_snr_gamma and v prediction: the x0-space weight is min(SNR + offset, gamma),
    # so 1 keeps the noisiest steps, where the layout is decided, at weight ~1 in v-space
    # (Min-SNR alone gives them ~SNR, almost none)
    snr_offset: float = 0.0
    # input perturbation (Ning et al. 2023, eq. 8): x_t is made with eps + p * xi (xi a second
    # Gaussian), the target keeps eps, so training sees the errors sampling will feed back
    input_perturbation: float = 0.0
    noise_aug_max: float = 0.0  # SR training: augmentation level ~ U[0, max] (fraction of T)


@dataclass
class SamplerConfig(ConfigMixin):
    sampler: str = "dpm++"  # ddpm | ddim | dpm++ | unipc
    steps: int = 20
    guidance: float = 5.0
    threshold: float = 0.0  # dynamic-thresholding percentile p in (0, 1); 0 = static clip
    aug_level: float = 0.0  # SR stages: noise-augmentation level of the low-res input (0-1)


@dataclass
class RegressionConfig(ConfigMixin):
    """Regression super-resolution: bilinear upsampling plus a residual conv stack (L1)."""

    channels: int = 32
    blocks: int = 6  # residual blocks of two 3x3 convs at the output resolution
    # a small U-Net on the low-res input that sees whole objects (0 channels: none); its
    # features, enlarged, join the full-resolution stack (where a texture's period falls)
    context_channels: int = 0
    context_levels: int = 3  # input side r, r/2, r/4, ...
    context_blocks: int = 2  # residual blocks per level and path
    # region prompts: the width of the text encoder's pooled embeddings, each painted over
    # its region's mask into the context U-Net's input features (0: the stage reads none)
    region_dim: int = 0
    # with region_dim: given no regions, read the prompt as one region over the whole image
    # (a stage trained with whole-caption samples, domains.shapes.samples.WHOLE_CAPTION)
    reads_prompt: bool = False
    # training only: the low-res input degraded as a base stage's samples are (blurred,
    # noisy), so that the stage does not sharpen a half-formed object into a wrong one:
    # Gaussian blur of sigma ~ U[0, degrade_blur] low-res pixels, then Gaussian noise of
    # std ~ U[0, degrade_noise] (images in [-1, 1]), drawn per sample
    degrade_blur: float = 0.0
    degrade_noise: float = 0.0


@dataclass
class StageConfig(ConfigMixin):
    name: str = "base"
    resolution: int = 32
    kind: str = "diffusion"  # diffusion | regression (SR stages only)
    input_resolution: int = 0  # SR stages: the side they enlarge from; 0 for a base stage
    unet: UNetConfig = field(default_factory=UNetConfig)
    regression: RegressionConfig = field(default_factory=RegressionConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampling: SamplerConfig = field(default_factory=SamplerConfig)

    @property
    def reads_regions(self) -> bool:
        """A regression SR stage that reads region prompts (`regression.region_dim`)."""
        return self.kind == "regression" and self.regression.region_dim > 0

    @property
    def reads_prompt(self) -> bool:
        """A region-reading stage that reads a plain prompt over the whole image."""
        return self.reads_regions and self.regression.reads_prompt


@dataclass
class ViTConfig(ConfigMixin):
    image_size: int = 64  # inputs of other sizes are resized to this
    patch: int = 8  # side of a square patch; image_size must be a multiple
    width: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: float = 4.0
    # add fixed 2-D sine-cosine position codes (MAE) to the learned ones, so where things
    # are is legible from the first step (learned ones alone stayed unused in training)
    sincos_positions: bool = False
    # replace the linear patch map by a stack of 3x3 convolutions (Xiao et al. 2021), for
    # texture, which one linear map per 8 px patch learns slowly (README, Aligner)
    conv_stem: bool = False
    # the pooled output: "cls" (the class token) or "mean" (the mean of the patch tokens;
    # the class token stays as one more token to attend to). Mean pooling learns texture,
    # which is spread over an object's patches, faster (README, Aligner)
    pool: str = "cls"


@dataclass
class AlignerConfig(ConfigMixin):
    """The contrastive image-text pair (CLIP-style) that scores how well an image fits a text."""

    vit: ViTConfig = field(default_factory=ViTConfig)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(
        kind="trainable", max_length=48, dim=192, layers=3, heads=3))
    embed_dim: int = 128  # shared embedding space
    init_temperature: float = 0.07  # InfoNCE temperature at the start (learned)
    hard_negatives: int = 4  # training: single-attribute edits of each caption


@dataclass
class CascadeConfig(ConfigMixin):
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    aligner: AlignerConfig | None = None  # trained with `--stage align`
    domain: str = "shapes"  # the scenes its models draw (domains/): specs, scene control, eval

    def __post_init__(self):
        for i, stage in enumerate(self.stages):
            if stage.kind not in ("diffusion", "regression"):
                raise InputError(f"stage {stage.name!r}: unknown kind {stage.kind!r} "
                                 "(choose from diffusion, regression)")
            sr = stage.kind == "regression" or stage.unet.lowres_cond
            if sr != bool(stage.input_resolution):
                raise InputError(f"stage {stage.name!r}: a super-resolution stage (unet."
                                 "lowres_cond, or kind regression) needs input_resolution > 0, "
                                 "a base stage 0")
            if i and stage.input_resolution != self.stages[i - 1].resolution:
                raise InputError(f"stage {stage.name!r} enlarges from "
                                 f"{stage.input_resolution} px, but the stage before it "
                                 f"draws {self.stages[i - 1].resolution} px")

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise InputError(f"no stage {name!r} (stages: {', '.join(s.name for s in self.stages)})")


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("presets")
                  .iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> CascadeConfig:
    """A named preset (`presets/NAME.json`) or a path to a JSON file. A preset holding
    `"extends": OTHER` is OTHER with its own top-level keys in place of OTHER's."""
    return CascadeConfig.from_dict(_preset_dict(name), f"preset {name}")


def _preset_dict(name: str, seen: tuple[str, ...] = ()) -> dict:
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text()
    elif name in preset_names():
        text = resources.files(__package__).joinpath(f"presets/{name}.json").read_text()
    else:
        raise InputError(f"unknown preset {name!r} (choose from {', '.join(preset_names())})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"preset {name}: malformed JSON ({err.msg})") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if parent in (*seen, name):
        raise InputError(f"preset {name}: extends itself through {parent!r}")
    return {**_preset_dict(parent, (*seen, name)), **data}
