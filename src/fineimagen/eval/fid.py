"""In-domain FID and CLIP-score: the aligner's ViT features of generated images against
ground-truth renders of the same prompts.

Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, sec. 3):
  d^2 = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from .compbench import EvalItem, image_paths, load_rgb, truth_renders


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """d^2 between N(mean, cov) of feature rows `a` [N, D] and `b` [M, D]."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        raise InputError("the Fréchet distance needs at least 2 images on each side")
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # nearly singular product: regularize (as pytorch-fid)
        eps = np.eye(len(mu_a)) * 1e-6
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    d2 = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(root))
    return float(max(d2, 0.0))


@torch.no_grad()
def _features_and_scores(aligner, images: list[np.ndarray], prompts: list[str],
                         batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    from ..images import from_pil

    feats, scores = [], []
    for i in range(0, len(images), batch):
        x = from_pil([Image.fromarray(a) for a in images[i:i + batch]],
                     aligner.cfg.vit.image_size).to(aligner.device)
        f = aligner.image_features(x)
        u = aligner.project_images(f)
        w = aligner.embed_texts(prompts[i:i + batch])
        feats.append(f.float().cpu().numpy())
        scores.append((u * w).sum(-1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(scores)


def in_domain_fid(aligner, items: list[EvalItem], folder: str | Path, seed: int = 0) -> dict:
    """FID of a generated folder (`{index:05d}_{k}.png`) against as many truth renders of the
    same prompts, and the mean aligner score of generated and of true images."""
    folder = Path(folder)
    generated, prompts = [], []
    for index, item in enumerate(items):
        for path in image_paths(folder, index):
            generated.append(load_rgb(path))
            prompts.append(item.prompt)
    if not generated:
        raise InputError(f"no images in {folder}")
    side = generated[0].shape[0]
    per_prompt = max(1, round(len(generated) / len(items)))
    real, real_prompts = [], []
    for _, _, item, image in truth_renders(items, side, per_prompt, seed + 1):
        real.append(image)
        real_prompts.append(item.prompt)
    return fid_against(aligner, generated, prompts, real, real_prompts)


def fid_against(aligner, generated: list[np.ndarray], prompts: list[str],
                real: list[np.ndarray], real_prompts: list[str]) -> dict:
    """FID of `generated` images against `real` ones on the aligner's image features, and
    each side's mean aligner score against its prompts."""
    f_gen, s_gen = _features_and_scores(aligner, generated, prompts)
    f_real, s_real = _features_and_scores(aligner, real, real_prompts)
    return {"fid": frechet_distance(f_gen, f_real), "score_generated": float(s_gen.mean()),
            "score_truth": float(s_real.mean()), "n_generated": len(generated),
            "n_truth": len(real)}
