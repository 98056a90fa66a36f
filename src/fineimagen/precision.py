"""Which arithmetic runs fast where: bf16 autocast only on hardware that computes bf16
natively. On a CPU with AVX-512 BF16 or AMX (Sapphire Rapids and later) bf16 convolutions
ran ~7x faster than fp32 (DESIGN.md); on an AVX2-only CPU bf16 is emulated and the shipped
cascade ran ~5x slower than in fp32, so "auto" picks fp32 there."""

from __future__ import annotations

import torch

from .errors import InputError

MIXED_PRECISION = ("auto", "bf16", "no")  # the trainer's choices


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """True where `device` computes bf16 in hardware: a CUDA device that supports it, a CPU
    with AVX-512 BF16 or AMX tiles."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = [getattr(torch.cpu, name, None) for name in
              ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def use_bf16(bf16: bool | None, device: torch.device | str = "cpu") -> bool:
    """The sampling choice: `bf16` as given, or (None) where it is native."""
    return native_bf16(device) if bf16 is None else bool(bf16)


def mixed_precision(name: str, device: torch.device | str = "cpu") -> str:
    """The trainer's setting for Accelerate: "auto" becomes "bf16" where native, else "no"."""
    if name not in MIXED_PRECISION:
        raise InputError(f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                         f"got {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "no"
    return name
