"""The machine a benchmark ran on, in words, for its JSON (numbers differ ~5x between CPUs
with and without native bf16)."""

from __future__ import annotations

import os
import platform

import torch

from fineimagen.precision import native_bf16


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The CPU's SIMD flags that decide conv and matmul speed (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def describe() -> str:
    """e.g. '2-core CPU (AMD EPYC; ISA AVX2; bf16 emulated), torch 2.13.0+cpu'."""
    isa = torch.backends.cpu.get_cpu_capability()
    bf16 = "bf16 native" if native_bf16("cpu") else "bf16 emulated"
    return (f"{os.cpu_count()}-core CPU ({cpu_name()}; ISA {isa}; flags "
            f"{' '.join(cpu_flags()) or 'none'}; {bf16}), "
            f"torch {torch.__version__}")
