"""Mixed precision in one place: bfloat16 autocast on CPU and CUDA alike, fp32 everywhere else.

Under `autocast(device, "bf16")` convolutions and matrix products run in bfloat16 (oneDNN's AVX-512 BF16
kernels on CPU, tensor cores on CUDA) while the weights, optimiser state, EMA and every loss reduction stay
float32: the preconditioning wrapper (scoremix.precond.Denoiser) returns fp32 denoisers, and the
discriminator / density-ratio heads run in fp32 (see `fp32_region`).
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(name: str, option: str = "--precision") -> str:
    if name not in PRECISIONS:
        from .errors import ConfigError

        raise ConfigError(f"{option}={name!r} is unknown; use fp32 or bf16")
    return name


def autocast(device, precision: str):
    """bf16: torch.autocast on the device's type (cpu or cuda); fp32: no context."""
    device_type = torch.device(device).type if not isinstance(device, torch.device) else device.type
    if precision == "bf16" and device_type in ("cpu", "cuda"):
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fp32_region(tensor: torch.Tensor):
    """Autocast switched off for the block (for small, numerically fragile parts such as logit heads)."""
    return torch.autocast(tensor.device.type, enabled=False)
