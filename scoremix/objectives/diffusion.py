"""Plain denoising score matching with the EDM weight (teachers, generator warm-up, Eq. 8's two halves)."""

from __future__ import annotations

import torch

from ..precond import edm_loss_weight


def per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(dim=1)


def denoising_loss(denoised: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """Per-sample lambda(sigma) * mean (D(x + sigma n; sigma) - x)^2."""
    return edm_loss_weight(sigma, sigma_data) * per_sample_mse(denoised, clean)


def add_noise(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + sigma * n with n ~ N(0, I) drawn on x's device (no host copy); a CPU `generator` draws on the CPU."""
    if generator is None or generator.device == x.device:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    else:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x + sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype) * noise


def lognormal_sigmas(
    n: int, p_mean: float = -1.2, p_std: float = 1.2, device=None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """EDM training noise levels (Karras et al. 2022, Table 1): ln sigma ~ N(P_mean, P_std^2)."""
    if p_std < 0:
        raise ValueError(f"p_std must be >= 0, got {p_std}")
    return (p_mean + p_std * torch.randn(n, generator=generator)).exp().to(device)
