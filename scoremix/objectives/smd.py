"""Score-of-Mixture Distillation objectives (method.md section 7, paper Sec. 4, Eq. 12-15).

A frozen teacher denoiser D_p (score s_p), a trainable fake denoiser D_fake (score s_fake) and a
density-ratio head l(x_t; sigma) on D_fake's bottleneck. alpha = 1 is the data (teacher) end, alpha = 0
the fake end. Every function is pure; per-sample tensors (logits, alpha, sigma) have shape (n,).
"""

from __future__ import annotations

import torch

from ..precond import log_snr_like
from .diffusion import denoising_loss
from .gan import generator_gan_loss
from .smt import _mean


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def density_ratio_posterior(logit: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 13: D_psi(x_t; alpha) = sigmoid(l(x_t) + log(alpha / (1 - alpha))), the posterior that x_t came
    from p_t in the mixture alpha p_t + (1 - alpha) q_t when l = log p_t / q_t. alpha is clamped to
    [1e-6, 1 - 1e-6] (the released code takes the raw log, which is +-inf at the ends)."""
    return torch.sigmoid(logit + log_snr_like(alpha).to(logit.dtype))


def interpolated_denoiser(posterior: torch.Tensor, d_teacher: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 12 in denoiser form: D_psi D_p + (1 - D_psi) D_fake, whose score D_psi s_p + (1 - D_psi) s_fake
    is the score of the mixture alpha p_t + (1 - alpha) q_t when D_psi is the exact posterior."""
    w = _per_sample(posterior, d_teacher)
    return w * d_teacher + (1 - w) * d_fake


def mixture_loss(
    logit_real, d_teacher_real, d_fake_real, logit_fake, d_teacher_fake, d_fake_fake, alpha, sigma, sigma_data
):
    """Eq. 14 as in the released code, per sample: alpha lambda(sigma) ||Dhat(x_real,t) - sg(D_p(x_real,t))||^2
    + (1 - alpha) lambda(sigma) ||Dhat(x_fake,t) - sg(D_fake(x_fake,t))||^2, where Dhat is the interpolated
    denoiser of sg(D_p) and sg(D_fake). Only the logits carry gradients: at a point x_t its minimiser over
    the posterior is alpha p_t / (alpha p_t + (1 - alpha) q_t), i.e. l = log p_t / q_t (a density-ratio
    estimator). x_real,t and x_fake,t share sigma and the noise draw."""
    d_teacher_real, d_fake_real = d_teacher_real.detach(), d_fake_real.detach()
    d_teacher_fake, d_fake_fake = d_teacher_fake.detach(), d_fake_fake.detach()
    mix_real = interpolated_denoiser(density_ratio_posterior(logit_real, alpha), d_teacher_real, d_fake_real)
    mix_fake = interpolated_denoiser(density_ratio_posterior(logit_fake, alpha), d_teacher_fake, d_fake_fake)
    real = denoising_loss(mix_real, d_teacher_real, sigma, sigma_data)
    fake = denoising_loss(mix_fake, d_fake_fake, sigma, sigma_data)
    return alpha * real + (1 - alpha) * fake


def generator_direction(x, d_fake, d_teacher, logit, alpha):
    """Eq. 15: D_psi(x_t; alpha) (D_fake(x_t) - D_p(x_t)) / (alpha mean|x - D_p(x_t)|), per sample.

    D_psi (D_fake - D_p) = D_fake - Dhat_alpha, so this is the alpha-skew JSD gradient (1/alpha)(s_0 - s_alpha)
    of Prop. 3.1 with the DMD weight sigma^2 / ||x - D_p||_1; at alpha -> 1 it is DMD's direction."""
    post = _per_sample(density_ratio_posterior(logit, alpha), x)
    grad = post * (d_fake - d_teacher) / (_per_sample(alpha, x) * _mean((x - d_teacher).abs()))
    return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def gan_generator_loss(logit_fake, alpha):
    """Eq. 11 with the density-ratio head as the discriminator: mean softplus(-l(x_t) - log(alpha/(1-alpha)))."""
    return generator_gan_loss(logit_fake, alpha, offset=True)
