"""The exact noisy denoiser of the 2-D toys as a teacher: D(x_t; sigma) = E[x | x_t] in closed form.

ring8 and grid25 are Gaussian mixtures, so their denoiser is exact (scoremix.analytic.GaussianMixture).
The swiss roll is a continuous curve t (cos t, sin t) / 5, t ~ U[1.5 pi, 4.5 pi], blurred by N(0, 0.05^2 I);
it is replaced by `SWISSROLL_COMPONENTS` equal-weight Gaussians of std 0.05 centred at the midpoints of
an even partition of t (the midpoint rule for the integral over t). Their spacing along the curve is at
most 0.018, a third of the blur; on noisy roll samples the denoiser differs from one with four times as
many components by at most 2.1e-4 (at sigma near 0.1, from the ends of the roll; 5e-7 at sigma 0.002 and
at 80), which tests/test_teacher_analytic.py checks against a bound of 1e-3.

Arithmetic is float64 inside; the output has the input's dtype.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from ..analytic import GaussianMixture
from ..data.toy import TOYS, make_toy
from ..errors import TeacherError

SWISSROLL_COMPONENTS = 1500
SUPPORTED = tuple(TOYS)


def swissroll_mixture(components: int = SWISSROLL_COMPONENTS) -> GaussianMixture:
    """The dense Gaussian-mixture approximation of scoremix.data.toy.SwissRoll described above."""
    u = (torch.arange(components, dtype=torch.float64) + 0.5) / components
    t = 1.5 * math.pi * (1 + 2 * u)
    means = torch.stack([t * t.cos(), t * t.sin()], 1) / 5
    return GaussianMixture(means, 0.05)


def toy_mixture(name: str) -> GaussianMixture:
    """The float64 mixture of a toy source (exact for ring8/grid25, the approximation for swissroll)."""
    if name == "swissroll":
        return swissroll_mixture()
    dist = make_toy(name)
    return GaussianMixture(dist.means.double(), dist.stds.double(), dist.weights.double())


class AnalyticTeacher(nn.Module):
    """D(x, sigma, labels=None): the posterior mean of a Gaussian mixture under N(0, sigma^2 I) noise."""

    def __init__(self, mixture: GaussianMixture, info: dict):
        super().__init__()
        self.mixture = mixture
        self.info = info

    def forward(self, x: torch.Tensor, sigma, labels=None, return_features: bool = False):
        if return_features:
            raise TeacherError(
                "an analytic teacher has no network features; the fake denoiser and its "
                "density-ratio head come from the config's score network"
            )
        if labels is not None:
            raise TeacherError("the analytic toy teachers are unconditional; pass labels=None")
        if x.ndim != 2 or x.shape[1] != self.mixture.dim:
            raise TeacherError(
                f"the analytic teacher '{self.info['name']}' denoises points of shape "
                f"(n, {self.mixture.dim}), got {tuple(x.shape)}"
            )
        sigma = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        out = self.mixture.denoiser(x.detach().double().cpu(), sigma.reshape(-1))
        return out.to(device=x.device, dtype=x.dtype)


def mixture_sha256(mixture: GaussianMixture) -> str:
    h = hashlib.sha256()
    for t in (mixture.means, mixture.stds, mixture.weights):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def load_analytic_teacher(name, device="cpu") -> AnalyticTeacher:
    """The exact denoiser of the toy named `name` (ring8, grid25, swissroll)."""
    if name not in SUPPORTED:
        raise TeacherError(
            f"no analytic teacher for '{name}'; analytic teachers exist for the 2-D toys "
            f"{', '.join(SUPPORTED)} (set data.source to one of them or write analytic:NAME)"
        )
    with torch.device("cpu"):  # also under a meta-device context (parameter counts of --dry-run)
        mixture = toy_mixture(name)
    var = (mixture.weights[:, None] * (mixture.means - mixture.mean()) ** 2).sum(0) + (
        mixture.weights * mixture.stds**2
    ).sum()
    info = {
        "kind": "analytic",
        "arch": "gaussian-mixture",
        "precond": "analytic",
        "resolution": None,
        "channels": mixture.dim,
        "num_classes": 0,
        "parameters": 0,
        "sigma_data": float(var.mean().sqrt()),
        "data_shape": [mixture.dim],
        "name": name,
        "components": mixture.num_components,
        "exact": name != "swissroll",
        "sha256": mixture_sha256(mixture),
    }
    del device  # computed on the CPU in float64; outputs go back to the input's device
    return AnalyticTeacher(mixture, info).eval()


__all__ = [
    "AnalyticTeacher",
    "load_analytic_teacher",
    "toy_mixture",
    "swissroll_mixture",
    "SUPPORTED",
    "SWISSROLL_COMPONENTS",
]
