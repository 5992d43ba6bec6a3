"""``trainer.precision: auto``: bfloat16 autocast where the hardware computes it natively, else fp32.

bfloat16 keeps fp32's exponent range, so no loss scaling is needed; on CPUs without native bf16
(AVX512-BF16 or AMX) it is emulated and slower than fp32, and GPUs before Ampere lack it: there the
recipes train in fp32. The recipes' configs record the measured speed-ups.
"""

from __future__ import annotations

from pathlib import Path

import torch

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU advertises bfloat16 arithmetic (Linux ``/proc/cpuinfo`` flags; False elsewhere)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str = AUTO) -> str:
    """Lightning's precision for ``trainer.precision``: ``auto`` becomes bf16-mixed or 32-true."""
    if precision != AUTO:
        return precision
    if uses_cuda(accelerator):
        return BF16 if torch.cuda.is_bf16_supported() else FP32
    return BF16 if accelerator in ("cpu", AUTO) and cpu_has_native_bf16() else FP32
