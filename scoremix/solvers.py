"""The EDM Heun sampler (Karras et al. 2022, Algorithm 1 without churn): deterministic, 2nd order (pure).

The probability-flow ODE of the variance-exploding process x_t = x + sigma eps, in EDM's sigma(t) = t
parameterisation, is dx/dsigma = (x - D(x; sigma)) / sigma. Starting from x_0 = sigma_max z, Heun's method
takes an Euler step to the next noise level and corrects it with the slope there (the trapezoid rule);
the last step, to sigma = 0, is a plain Euler step, which lands exactly on D(x; sigma_min).

Network evaluations: N steps cost 2N - 1 (one per step plus one correction for all but the last), so
EDM's 18 steps are 35 evaluations and 35 steps are 69. N = 1 is the single evaluation D(sigma_max z;
sigma_max), i.e. the denoiser used as a one-step generator.
"""

from __future__ import annotations

import torch
from torch import nn


def heun_sigmas(
    steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The N+1 noise levels t_0 = sigma_max > ... > t_{N-1} = sigma_min > t_N = 0 of EDM Eq. 5 (descending).

    For N = 1 the only level is sigma_max (one evaluation, then t_1 = 0)."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"the Heun sampler needs at least 1 step, got {steps}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    steps = int(steps)
    if steps == 1:
        levels = torch.tensor([float(sigma_max)], dtype=torch.float64)
    else:
        ramp = torch.arange(steps, dtype=torch.float64) / (steps - 1)
        hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
        levels = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([levels, torch.zeros(1, dtype=torch.float64)]).to(dtype)


def heun_evaluations(steps: int) -> int:
    """Network evaluations of `steps` Heun steps: 2N - 1."""
    return 2 * int(steps) - 1


@torch.no_grad()
def heun_sample(
    denoiser,
    z: torch.Tensor,
    steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    labels=None,
) -> torch.Tensor:
    """Integrate the probability-flow ODE from sigma_max to 0 with Heun's method (EDM Alg. 1, S_churn = 0).

    `denoiser(x, sigma, labels=...)` returns D(x; sigma) with sigma a (batch,) tensor; `z` is standard
    normal noise (batch, ...). The state is kept in float64 (as in EDM's sampler); the denoiser gets it
    as it is and its output is promoted back to float64. Returns float64 samples."""
    sigmas = heun_sigmas(steps, sigma_min, sigma_max, rho)
    x = z.to(torch.float64) * sigmas[0]
    n = x.shape[0]

    def slope(x_cur, t):
        t_batch = torch.full((n,), float(t), dtype=torch.float64, device=x.device)
        denoised = denoiser(x_cur, t_batch, labels=labels).to(torch.float64)
        return (x_cur - denoised) / t

    for i in range(len(sigmas) - 1):
        t_cur, t_next = float(sigmas[i]), float(sigmas[i + 1])
        d_cur = slope(x, t_cur)
        x_next = x + (t_next - t_cur) * d_cur  # Euler step
        if t_next > 0:  # 2nd-order correction (Alg. 1, lines 9-11)
            x_next = x + (t_next - t_cur) * 0.5 * (d_cur + slope(x_next, t_next))
        x = x_next
    return x


class HeunSampler(nn.Module):
    """A denoiser turned into a sampler called like a one-step generator: `sampler(z, labels=None)`.

    It holds the denoiser as a submodule (so `.eval()` and `.to()` reach it) and returns float32 samples."""

    def __init__(
        self, denoiser: nn.Module, steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
    ):
        super().__init__()
        heun_sigmas(steps, sigma_min, sigma_max, rho)  # validates the arguments now
        self.denoiser = denoiser
        self.steps = int(steps)
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.train(denoiser.training)  # wrapping leaves the denoiser's mode as it was

    @property
    def evaluations(self) -> int:
        return heun_evaluations(self.steps)

    def forward(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        return heun_sample(
            self.denoiser, z, self.steps, self.sigma_min, self.sigma_max, self.rho, labels=labels
        ).float()


__all__ = ["heun_sigmas", "heun_evaluations", "heun_sample", "HeunSampler"]
