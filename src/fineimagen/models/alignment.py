"""Contrastive text-image alignment (CLIP, Radford et al. 2021): a ViT and a text tower
projected into one space, trained with a symmetric InfoNCE loss and a learned temperature.

With unit vectors u_i (images) and w_j (texts) and scale s = exp(logit_scale) = 1/tau:
  L = 1/2 [ CE(s U W^T, I) + CE(s W U^T, I) ]       (van den Oord et al. 2018, eq. 4)
Hard negatives (captions with one attribute changed) join the texts of the image->text term.
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
                negatives: list[str] | None = None) -> torch.Tensor:
        """Symmetric InfoNCE over the batch; `negatives` are extra texts for every image."""
        u = self.embed_images(images)  # [B, E]
        w = self.embed_texts(list(captions) + list(negatives or []))  # [B + BK, E]
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        target = torch.arange(u.shape[0], device=u.device)
        image_to_text = F.cross_entropy(scale * u @ w.T, target)
        text_to_image = F.cross_entropy(scale * w[: u.shape[0]] @ u.T, target)
        return (image_to_text + text_to_image) / 2

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
        from ..pipeline import load_weights, read_json

        folder = Path(folder)
        cfg = AlignerConfig.from_dict(read_json(folder / "config.json", "aligner/config.json"),
                                      "aligner")
        model = cls(cfg)
        load_weights(model, folder / WEIGHTS, "aligner", expected=model.trained_state())
        return model.eval()


def saved_weights(state: dict, cfg: AlignerConfig) -> dict:
    """An Aligner state dict without a frozen pretrained text encoder (never shipped)."""
    if cfg.text.kind == "trainable":
        return state
    return {k: v for k, v in state.items() if not k.startswith("text_encoder.")}


def save_aligner_folder(folder: Path, cfg: AlignerConfig, weights: dict) -> None:
    """config.json + fp16 safetensors into an existing (temporary) folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    weights = {k: v.detach().cpu().to(torch.float16 if v.is_floating_point() else v.dtype)
               .contiguous() for k, v in weights.items()}
    save_file(weights, str(folder / WEIGHTS))
