"""Contrastive text-image alignment (CLIP, Radford et al. 2021): a ViT and a text tower
projected into one space, trained with a symmetric InfoNCE loss and a learned temperature.

With unit vectors u_i (images) and w_j (texts) and scale s = exp(logit_scale) = 1/tau:
  L = 1/2 [ CE(s U W^T, I) + CE(s W U^T, I) ]       (van den Oord et al. 2018, eq. 4)
Hard negatives (captions with one attribute changed) join the texts of the image->text term.
In training, an optional linear head on the pooled image features may add the binary cross-
entropy of which textures the image shows (ground truth of the shapes grammar), weighted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AlignerConfig
from ..errors import InputError
from .text_encoders import build_text_encoder
from .vit import ViT

WEIGHTS = "model.safetensors"
TEXTURE_HEAD = "texture_head."  # training only: never saved
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp of 1/tau


class Aligner(nn.Module):
    def __init__(self, cfg: AlignerConfig):
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ViT(cfg.vit)
        self.text_encoder = build_text_encoder(cfg.text)
        self.image_proj = nn.Linear(cfg.vit.width, cfg.embed_dim, bias=False)
        self.text_proj = nn.Linear(self.text_encoder.dim, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))
        self.texture_head: nn.Linear | None = None
        self.texture_weight = 0.0

    def add_texture_head(self, weight: float, textures: int) -> None:
        """Train with the auxiliary texture loss (`forward(textures=...)`) at `weight`: a
        linear head on the pooled ViT features says which of `textures` textures (the
        domain's) the image shows."""
        self.texture_head = nn.Linear(self.cfg.vit.width, textures)
        self.texture_weight = weight

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The ViT's pooled features [B, width] (used for the Fréchet distance)."""
        return self.image_encoder(images)

    def project_images(self, features: torch.Tensor) -> torch.Tensor:
        """ViT features [B, width] -> unit vectors in the shared space [B, E]."""
        return F.normalize(self.image_proj(features).float(), dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.project_images(self.image_features(images))

    def embed_texts(self, prompts: list[str]) -> torch.Tensor:
        tokens, mask = self.text_encoder.encode(prompts)  # [B, L, D], [B, L]
        m = mask[..., None].to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1)  # mean over the prompt's tokens
        return F.normalize(self.text_proj(pooled.to(self.text_proj.weight.dtype)).float(),
                           dim=-1)

    def forward(self, images, captions, embeds=None, mask=None, generator=None,
                negatives: list[str] | None = None, textures: torch.Tensor | None = None,
                texture_shown: torch.Tensor | None = None) -> torch.Tensor:
        """Symmetric InfoNCE over the batch; `negatives` are extra texts for every image.
        With a texture head, `textures` ([B, T] multi-hot over the head's textures) and
        `texture_shown` ([B], 0 for renders drawn small and enlarged) add its loss."""
        features = self.image_features(images)
        u = self.project_images(features)  # [B, E]
        w = self.embed_texts(list(captions) + list(negatives or []))  # [B + BK, E]
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        target = torch.arange(u.shape[0], device=u.device)
        image_to_text = F.cross_entropy(scale * u @ w.T, target)
        text_to_image = F.cross_entropy(scale * w[: u.shape[0]] @ u.T, target)
        loss = (image_to_text + text_to_image) / 2
        if self.texture_head is not None and textures is not None:
            loss = loss + self.texture_weight * self._texture_loss(features, textures,
                                                                   texture_shown)
        return loss

    def _texture_loss(self, features, textures, shown) -> torch.Tensor:
        """Mean binary cross-entropy over the images that show texture (0 if none does)."""
        logits = self.texture_head(features).float()
        each = F.binary_cross_entropy_with_logits(logits, textures.float(), reduction="none")
        shown = shown.float()[:, None]
        return (each * shown).sum() / (shown.sum() * logits.shape[1]).clamp(min=1)

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Cosine similarity of each (image, prompt) pair: [B] in [-1, 1] (a CLIP-score)."""
        if images.shape[0] != len(prompts):
            raise InputError(f"{images.shape[0]} images but {len(prompts)} prompts")
        return (self.embed_images(images) * self.embed_texts(prompts)).sum(-1)

    # ------------------------------------------------------------------ folders
    def trained_state(self) -> dict:
        """The weights to save: everything but a frozen pretrained text encoder."""
        return saved_weights(self.state_dict(), self.cfg)

    @classmethod
    def from_folder(cls, folder: str | Path) -> Aligner:
        from ..files import check_size, load_weights, read_json

        folder = Path(folder)
        cfg = AlignerConfig.from_dict(read_json(folder / "config.json", "aligner/config.json"),
                                      "aligner")
        check_size((lambda: cls(cfg)) if cfg.text.kind == "trainable" else
                   (lambda: ViT(cfg.vit)), "aligner")
        model = cls(cfg)
        load_weights(model, folder / WEIGHTS, "aligner", expected=model.trained_state())
        return model.eval()


def saved_weights(state: dict, cfg: AlignerConfig) -> dict:
    """An Aligner state dict without a frozen pretrained text encoder (never shipped) and
    without the training-only texture head."""
    dropped = (TEXTURE_HEAD,) if cfg.text.kind == "trainable" else (TEXTURE_HEAD, "text_encoder.")
    return {k: v for k, v in state.items() if not k.startswith(dropped)}


def save_aligner_folder(folder: Path, cfg: AlignerConfig, weights: dict) -> None:
    """config.json + fp16 safetensors into an existing (temporary) folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    weights = {k: v.detach().cpu().to(torch.float16 if v.is_floating_point() else v.dtype)
               .contiguous() for k, v in weights.items()}
    save_file(weights, str(folder / WEIGHTS))
