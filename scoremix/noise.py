"""Noise levels: the Karras sigma grid and the draws of method.md section 5 (pure, no I/O)."""

from __future__ import annotations

import torch


def karras_sigmas(
    num: int = 1000,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Ascending grid sigma_0 = sigma_min ... sigma_{num-1} = sigma_max (Karras et al. 2022, Eq. 5)."""
    if num < 2:
        raise ValueError("the sigma grid needs at least 2 points")
    if not 0 < sigma_min < sigma_max:
        raise ValueError("need 0 < sigma_min < sigma_max")
    ramp = torch.linspace(0, 1, num, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + ramp * (hi - lo)).pow(rho).to(dtype)


class SigmaGrid:
    """A fixed grid of noise levels from which training draws indices uniformly."""

    def __init__(self, num: int = 1000, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
        self.sigmas = karras_sigmas(num, sigma_min, sigma_max, rho, dtype=torch.float32)
        self.num = num
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def draw(
        self, n: int, device=None, generator: torch.Generator | None = None, lo: int = 0, hi: int | None = None
    ) -> torch.Tensor:
        """n sigmas from grid indices uniform on [lo, hi) (hi defaults to the grid size)."""
        hi = self.num if hi is None else hi
        if not 0 <= lo < hi <= self.num:
            raise ValueError(f"grid index range [{lo}, {hi}) is outside [0, {self.num})")
        if generator is not None or device is None:
            return self.sigmas[torch.randint(lo, hi, (n,), generator=generator)].to(device)
        # drawn where they are used: no host-to-device copy in the training loop
        idx = torch.randint(lo, hi, (n,), device=device)
        return self._sigmas_on(torch.device(device))[idx]

    def _sigmas_on(self, device: torch.device) -> torch.Tensor:
        cache = self.__dict__.setdefault("_device_sigmas", {})
        if device not in cache:
            cache[device] = self.sigmas.to(device)
        return cache[device]

    def generator_index_range(self, fraction: float = 0.96) -> tuple[int, int]:
        """The middle `fraction` of the grid (indices 20..980 of 1000 for 0.96), used for generator updates."""
        cut = int(round(self.num * (1 - fraction) / 2))
        return cut, self.num - cut
