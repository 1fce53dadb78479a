"""The other preconditionings published diffusion teachers use, next to EDM's (pure, no I/O).

All of them write the denoiser as D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) on x = y + sigma n
(EDM's convention, Karras et al. 2022, Table 1):

    edm  c_skip = s_d^2/(sigma^2+s_d^2), c_out = sigma s_d/sqrt(sigma^2+s_d^2), c_in = 1/sqrt(sigma^2+s_d^2),
         c_noise = log(sigma)/4                                   (scoremix.precond.edm_coefficients)
    vp   c_skip = 1, c_out = -sigma, c_in = 1/sqrt(sigma^2+1), c_noise = (M-1) t(sigma), with t(sigma) the
         inverse of the VP SDE's sigma(t) = sqrt(exp(beta_d t^2/2 + beta_min t) - 1)   (Song et al. 2021)
    ve   c_skip = 1, c_out = sigma, c_in = 1, c_noise = log(sigma/2)

The discrete DDPM schedules of diffusers models (beta schedule -> alphas_cumprod -> sigma_t) are here too,
with the map from a noise level sigma to a fractional training timestep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .precond import Denoiser, edm_coefficients

PRECONDITIONINGS = ("edm", "vp", "ve")


@dataclass(frozen=True)
class VPSchedule:
    """EDM's VPPrecond constants (the values of the published CIFAR-10 *-vp.pkl files)."""

    beta_d: float = 19.9  # extent of the noise level schedule
    beta_min: float = 0.1  # initial slope of the schedule
    M: int = 1000  # number of DDPM timesteps c_noise is scaled to
    epsilon_t: float = 1e-5  # smallest t used in training

    @property
    def sigma_min(self) -> float:
        return float(vp_sigma(torch.tensor(self.epsilon_t, dtype=torch.float64), self))

    @property
    def sigma_max(self) -> float:
        return float(vp_sigma(torch.tensor(1.0, dtype=torch.float64), self))


def vp_sigma(t: torch.Tensor, schedule: VPSchedule = VPSchedule()) -> torch.Tensor:
    """sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) of the VP SDE."""
    return torch.expm1(0.5 * schedule.beta_d * t**2 + schedule.beta_min * t).sqrt()


def vp_sigma_inv(sigma: torch.Tensor, schedule: VPSchedule = VPSchedule()) -> torch.Tensor:
    """t(sigma): the positive root of beta_d t^2 / 2 + beta_min t = log(1 + sigma^2)."""
    b_d, b_min = schedule.beta_d, schedule.beta_min
    return ((b_min**2 + 2 * b_d * torch.log1p(sigma**2)).sqrt() - b_min) / b_d


def vp_coefficients(sigma: torch.Tensor, schedule: VPSchedule = VPSchedule()):
    """(c_skip, c_out, c_in, c_noise) of EDM's VPPrecond."""
    c_skip = torch.ones_like(sigma)
    c_out = -sigma
    c_in = 1 / (sigma**2 + 1).sqrt()
    c_noise = (schedule.M - 1) * vp_sigma_inv(sigma, schedule)
    return c_skip, c_out, c_in, c_noise


def ve_coefficients(sigma: torch.Tensor):
    """(c_skip, c_out, c_in, c_noise) of EDM's VEPrecond."""
    return torch.ones_like(sigma), sigma, torch.ones_like(sigma), torch.log(0.5 * sigma)


def precond_coefficients(precond: str, sigma: torch.Tensor, sigma_data: float = 0.5, vp: VPSchedule = VPSchedule()):
    """(c_skip, c_out, c_in, c_noise) of the named preconditioning at noise level(s) sigma."""
    if precond == "edm":
        return edm_coefficients(sigma, sigma_data)
    if precond == "vp":
        return vp_coefficients(sigma, vp)
    if precond == "ve":
        return ve_coefficients(sigma)
    raise ValueError(f"unknown preconditioning {precond!r}; use one of {', '.join(PRECONDITIONINGS)}")


class PreconditionedDenoiser(Denoiser):
    """scoremix.precond.Denoiser with a choice of preconditioning: D(x; sigma) = c_skip x + c_out F(c_in x,
    c_noise) with the coefficients of `precond` (edm | vp | ve). Same call signature and outputs as
    Denoiser; with precond='edm' it computes exactly what Denoiser computes."""

    def __init__(
        self,
        backbone,
        sigma_data: float = 0.5,
        precond: str = "edm",
        alpha_input: bool = False,
        vp: VPSchedule = VPSchedule(),
    ):
        super().__init__(backbone, sigma_data=sigma_data, alpha_input=alpha_input)
        if precond not in PRECONDITIONINGS:
            raise ValueError(f"unknown preconditioning {precond!r}; use one of {', '.join(PRECONDITIONINGS)}")
        self.precond = precond
        self.vp = vp

    def coefficients(self, sigma: torch.Tensor):
        return precond_coefficients(self.precond, sigma, self.sigma_data, self.vp)


def make_denoiser(backbone, sigma_data: float = 0.5, precond: str = "edm", alpha_input: bool = False):
    """A Denoiser for precond='edm' (today's behaviour), a PreconditionedDenoiser for vp / ve."""
    if precond == "edm":
        return Denoiser(backbone, sigma_data, alpha_input=alpha_input)
    return PreconditionedDenoiser(backbone, sigma_data, precond=precond, alpha_input=alpha_input)


# ----------------------------------------------------------------------------------------------------------
# Discrete DDPM schedules (diffusers scheduler configs)

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


def ddpm_betas(
    num_train_timesteps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    beta_schedule: str = "linear",
    trained_betas=None,
) -> torch.Tensor:
    """beta_1..beta_N of a discrete DDPM schedule as diffusers' schedulers define it, in float32 as they
    compute it (the values the model was trained with): linear: evenly spaced; scaled_linear: evenly
    spaced in sqrt(beta), squared; squaredcos_cap_v2: the cosine schedule of Nichol & Dhariwal (2021),
    alpha_bar(t) = cos^2((t + 0.008)/1.008 pi/2), each beta capped at 0.999; sigmoid:
    sigmoid(linspace(-6, 6)) rescaled to [beta_start, beta_end]."""
    n = int(num_train_timesteps)
    if trained_betas is not None:
        betas = torch.tensor(trained_betas, dtype=torch.float32)
        if betas.ndim != 1 or len(betas) != n:
            raise ValueError(f"trained_betas has {betas.numel()} entries, num_train_timesteps is {n}")
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
    elif beta_schedule == "squaredcos_cap_v2":

        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor(
            [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], dtype=torch.float32
        )
    elif beta_schedule == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6, 6, n)) * (beta_end - beta_start) + beta_start
    else:
        raise ValueError(f"beta_schedule {beta_schedule!r} is not supported; use one of {', '.join(BETA_SCHEDULES)}")
    if not (bool((betas > 0).all()) and bool((betas < 1).all())):
        raise ValueError("every beta must lie in (0, 1)")
    return betas


def ddpm_alphas_cumprod(betas: torch.Tensor) -> np.ndarray:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), accumulated in float32 as diffusers does; returned as float64."""
    return torch.cumprod(1.0 - betas.float(), dim=0).double().numpy()


def ddpm_sigmas(alphas_cumprod: np.ndarray) -> np.ndarray:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t): the EDM noise level of DDPM timestep t, since
    x_t = sqrt(alpha_bar_t) (y + sigma_t n)."""
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    return np.sqrt((1 - abar) / abar)


def timestep_from_sigma(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The fractional timestep at which a discrete schedule reaches `sigma`: linear interpolation of the
    timestep index in log(sigma) between the two neighbouring integer timesteps (exact at every
    sigmas[t]); clamped to [0, N-1] outside the schedule's range. `sigmas` must increase."""
    log_sigmas = sigmas.double().log()
    log_sigma = sigma.double().clamp(min=float(sigmas[0]), max=float(sigmas[-1])).log()
    upper = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(sigmas) - 1)
    lower = upper - 1
    frac = (log_sigma - log_sigmas[lower]) / (log_sigmas[upper] - log_sigmas[lower])
    return lower.double() + frac.clamp(0, 1)


__all__ = [
    "PRECONDITIONINGS",
    "VPSchedule",
    "vp_sigma",
    "vp_sigma_inv",
    "vp_coefficients",
    "ve_coefficients",
    "precond_coefficients",
    "PreconditionedDenoiser",
    "make_denoiser",
    "BETA_SCHEDULES",
    "ddpm_betas",
    "ddpm_alphas_cumprod",
    "ddpm_sigmas",
    "timestep_from_sigma",
]
