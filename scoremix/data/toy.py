"""2-D toy distributions: Gaussian mixtures with known modes and the swiss roll (App. E.2)."""

from __future__ import annotations

import math

import torch


class ToyDistribution:
    """An infinite source of 2-D samples. Mixtures expose means/stds/weights for the mode metrics."""

    name = "toy"
    shape = (2,)
    num_classes = 0
    means: torch.Tensor | None = None
    stds: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def is_mixture(self) -> bool:
        return self.means is not None


class GaussianMixture2D(ToyDistribution):
    def __init__(self, name: str, means: torch.Tensor, std: float):
        self.name = name
        self.means = means.float()
        self.stds = torch.full((means.shape[0],), float(std))
        self.weights = torch.full((means.shape[0],), 1.0 / means.shape[0])

    def sample(self, n, generator=None):
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[comp] + self.stds[comp, None] * torch.randn(n, 2, generator=generator)


def ring8() -> GaussianMixture2D:
    """8 Gaussians evenly spaced on a circle of radius 2, std 0.1."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return GaussianMixture2D("ring8", 2.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.1)


def grid25() -> GaussianMixture2D:
    """A 5x5 grid of Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05."""
    coords = torch.arange(-2, 3, dtype=torch.float64) * 2.0
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    return GaussianMixture2D("grid25", torch.stack([gx.flatten(), gy.flatten()], 1), 0.05)


class SwissRoll(ToyDistribution):
    """Swiss roll t (cos t, sin t) / 5 with t ~ 1.5 pi (1 + 2 U) and noise 0.25 / 5 (scikit-learn's form,
    the usual toy setting)."""

    name = "swissroll"

    def sample(self, n, generator=None):
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
        x = torch.stack([t * t.cos(), t * t.sin()], 1) / 5
        return x + 0.05 * torch.randn(n, 2, generator=generator)


TOYS = {"ring8": ring8, "grid25": grid25, "swissroll": SwissRoll}


def make_toy(name: str) -> ToyDistribution:
    return TOYS[name]()
