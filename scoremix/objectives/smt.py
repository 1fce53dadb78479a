"""Score-of-Mixture Training objectives (method.md sections 3-4).

Conventions: alpha = 1 is the data end, alpha = 0 the fake end; D_a = D(x_t; sigma, a) is the amortized
mixture denoiser and s_a = (D_a - x_t) / sigma^2 its score.
"""

from __future__ import annotations

import torch

from .diffusion import denoising_loss


def mixture_denoising_loss(denoised_real, x_real, denoised_fake, x_fake, alpha, sigma, sigma_data):
    """Eq. 8 per sample: alpha * lambda ||D(x_real,t) - x_real||^2 + (1 - alpha) * lambda ||D(x_fake,t) - x_fake||^2.

    Its minimiser over D is the denoiser of the mixture alpha p + (1 - alpha) q (Prop. 3.2).
    """
    real = denoising_loss(denoised_real, x_real, sigma, sigma_data)
    fake = denoising_loss(denoised_fake, x_fake, sigma, sigma_data)
    return alpha * real + (1 - alpha) * fake


def alpha_jsd_direction(d_fake, d_mix, sigma, alpha):
    """Prop. 3.1 (Eq. 4, 6): per-sample d D_alpha / d x = (1/alpha) (s_0 - s_alpha), in denoiser terms
    (D_0 - D_alpha) / (alpha sigma^2). The generator gradient is E[dg/dtheta^T times this]."""
    shape = (-1,) + (1,) * (d_fake.ndim - 1)
    return (d_fake - d_mix) / (alpha.reshape(shape) * sigma.reshape(shape) ** 2)


def _mean(x):
    return x.flatten(1).mean(dim=1).reshape(-1, *([1] * (x.ndim - 1)))


def generator_direction(
    x, d_fake, d_mix, d_real, sigma=None, alpha=None, weighting: str = "adaptive", eps: float = 1e-6
):
    """The per-sample generator gradient w.r.t. x (its negative is where x moves).

    weighting:
      adaptive  Eq. 9-10 (default): w_alpha * w_DMD cancels 1/alpha; the step is along s_alpha - s_0
                with size ||s_0 - s_1|| sigma^2 / ||x - D_1||_1.
      dmd       Eq. 32: only the DMD weight sigma^2 / ||x - D_1||_1 on the Prop. 3.1 gradient.
      none      the raw Prop. 3.1 gradient (1/alpha)(s_0 - s_alpha).
    """
    diff = d_fake - d_mix
    if weighting == "adaptive":
        scale = _mean((x - d_real).abs()) * torch.sqrt(_mean(diff**2) / (_mean((d_real - d_fake) ** 2) + eps))
        grad = diff / scale
    elif weighting == "dmd":
        shape = (-1,) + (1,) * (x.ndim - 1)
        grad = diff / (alpha.reshape(shape) * _mean((x - d_real).abs()))
    elif weighting == "none":
        grad = alpha_jsd_direction(d_fake, d_mix, sigma, alpha)
    else:
        raise ValueError(f"unknown generator weighting {weighting!r} (adaptive, dmd, none)")
    return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def surrogate_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 mean (x - sg(x - grad))^2: its gradient w.r.t. x is grad / x.numel()."""
    target = (x - grad).detach()
    return 0.5 * (x - target).pow(2).mean()


def mixture_denoisers(score_net, x_t, sigma, alpha, labels=None):
    """D_0, D_alpha, D_1 at shared x_t and sigma in one batched network call (no gradient)."""
    n = x_t.shape[0]
    alphas = torch.cat([torch.zeros_like(alpha), alpha, torch.ones_like(alpha)])
    lab = None if labels is None else labels.repeat(3)
    with torch.no_grad():
        out = score_net(x_t.repeat(3, *([1] * (x_t.ndim - 1))), sigma.repeat(3), alpha=alphas, labels=lab)
    return out[:n], out[n : 2 * n], out[2 * n :]
