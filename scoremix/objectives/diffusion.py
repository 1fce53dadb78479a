"""Plain denoising score matching with the EDM weight (teachers, generator warm-up, Eq. 8's two halves)."""

from __future__ import annotations

import torch

from ..precond import edm_loss_weight


def per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(dim=1)


def denoising_loss(denoised: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor,
                   sigma_data: float) -> torch.Tensor:
    """Per-sample lambda(sigma) * mean (D(x + sigma n; sigma) - x)^2."""
    return edm_loss_weight(sigma, sigma_data) * per_sample_mse(denoised, clean)


def add_noise(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + sigma * n with n ~ N(0, I) drawn on x's device (no host copy); a CPU `generator` draws on the CPU."""
    if generator is None or generator.device == x.device:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    else:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x + sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype) * noise
