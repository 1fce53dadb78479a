"""EDM preconditioning (Karras et al. 2022, Table 1) as one wrapper around any backbone (pure, no I/O).

D(x; sigma, alpha) = c_skip x + c_out F(c_in x, c_noise, c_alpha),  method.md section 1.
"""

from __future__ import annotations

import torch
from torch import nn


def edm_coefficients(sigma: torch.Tensor, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) for noise level(s) sigma."""
    var = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / var
    c_out = sigma * sigma_data / var.sqrt()
    c_in = 1 / var.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = sigma^-2 + sigma_data^-2, the EDM weight that makes the F-target unit variance."""
    return sigma**-2 + sigma_data**-2


def score_from_denoiser(denoised: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Tweedie: s(x_t; sigma) = (D(x_t; sigma) - x_t) / sigma^2."""
    return (denoised - x_t) / _expand(sigma, x_t) ** 2


def _expand(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(like.shape[0])
    return sigma.reshape(-1, *([1] * (like.ndim - 1)))


class Denoiser(nn.Module):
    """Wraps a backbone F(x_in, c_noise, labels, c_alpha) into a denoiser D(x; sigma[, alpha])."""

    def __init__(self, backbone: nn.Module, sigma_data: float = 0.5, alpha_input: bool = False):
        super().__init__()
        self.backbone = backbone
        self.sigma_data = float(sigma_data)
        self.alpha_input = alpha_input

    def coefficients(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) at per-sample sigma; EDM's here, other preconditionings override."""
        return edm_coefficients(sigma, self.sigma_data)

    def forward(self, x: torch.Tensor, sigma, alpha=None, labels=None, return_features: bool = False):
        if self.alpha_input and alpha is None:
            raise ValueError("this denoiser is alpha-conditional: pass alpha")
        if not self.alpha_input and alpha is not None:
            raise ValueError("this denoiser takes no alpha input")
        x = x.float()
        sigma_b = _expand(sigma, x)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma_b)
        c_alpha = None
        if alpha is not None:
            c_alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).expand(x.shape[0]) - 0.5
        out = self.backbone(
            c_in * x, c_noise.flatten(), labels=labels, c_alpha=c_alpha, return_bottleneck=return_features
        )
        F, feats = out if return_features else (out, None)
        denoised = c_skip * x + c_out * F.float()
        return (denoised, feats) if return_features else denoised


class OneStepGenerator(nn.Module):
    """The generator of the paper: a preconditioned denoiser evaluated at sigma_max on sigma_max * z."""

    def __init__(self, denoiser: Denoiser, sigma_max: float):
        super().__init__()
        self.denoiser = denoiser
        self.sigma_max = float(sigma_max)

    def forward(self, z: torch.Tensor, labels=None, sigma=None) -> torch.Tensor:
        """g(z) = D(sigma_max z; sigma_max). With `sigma` given, the same network denoises z as a noisy
        sample at that level instead (the generator warm-up of App. E.1)."""
        if sigma is None:
            return self.denoiser(self.sigma_max * z, self.sigma_max, labels=labels)
        return self.denoiser(z, sigma, labels=labels)


def generator_sigma(cfg) -> float:
    """The noise level at which the one-step generator runs: noise.generator_sigma, else sigma_max.

    g(z) = c_skip sigma z + c_out F with c_skip sigma = sigma_data^2 sigma / (sigma^2 + sigma_data^2): a
    linear leak of z into every sample that is small only when sigma >> sigma_data (0.003 for images at
    sigma 80, but 0.36 for ring8 at sigma 5), so data with a small sigma_max want a larger generator sigma.
    """
    return float(cfg.noise.generator_sigma or cfg.noise.sigma_max)


def log_snr_like(alpha: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """log(alpha / (1 - alpha)), clamped away from 0 and 1."""
    a = alpha.clamp(eps, 1 - eps)
    return torch.log(a) - torch.log1p(-a)


__all__ = ["edm_coefficients", "edm_loss_weight", "score_from_denoiser", "Denoiser", "OneStepGenerator", "log_snr_like"]
