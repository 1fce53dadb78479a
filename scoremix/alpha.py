"""Samplers of the mixture weight alpha (method.md section 5). alpha = 1 is the data end, 0 the fake end.

Each sampler is described by a short spec string so it can be set from a config or the command line:

  paper            score-model default: P(alpha=0) = 0.25, otherwise uniform on {1/N, ..., 1}
  code             released code: half uniform on {0, 0.5, 1}, half uniform on {0, 1/N, ..., 1}
  uniform          uniform on {1/N, ..., 1} (zero excluded; the generator default)
  uniform0         uniform on {0, 1/N, ..., 1}
  range:a,b        continuous uniform on [a, b]
  constant:c       always c
  beta:a,b         Beta(a, b)
  endpoints        uniform on {0, 1} (the alpha in {0, 1} ablation)
"""

from __future__ import annotations

import torch

from .errors import ConfigError

GRID = 1000


class AlphaSampler:
    """`sampler(n, generator=None, device=None)`: n draws on `device` from the global RNG, or from `generator` (then on its device)."""

    spec: str = ""

    def __call__(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"AlphaSampler({self.spec!r})"


class GridAlpha(AlphaSampler):
    """Uniform on {k/N : k = lo..N}, with an optional extra point mass at zero."""

    def __init__(self, spec: str, include_zero: bool, zero_mass: float = 0.0, grid: int = GRID):
        self.spec, self.grid, self.zero_mass = spec, grid, zero_mass
        self.lo = 0 if include_zero else 1

    def __call__(self, n, generator=None, device=None):
        alpha = torch.randint(self.lo, self.grid + 1, (n,), generator=generator, device=device).float() / self.grid
        if self.zero_mass > 0:
            zero = torch.rand(n, generator=generator, device=device) < self.zero_mass
            alpha = torch.where(zero, torch.zeros_like(alpha), alpha)
        return alpha


class CodeAlpha(AlphaSampler):
    """Released code: half of the draws from {0, 0.5, 1}, the other half from the full grid."""

    def __init__(self, grid: int = GRID):
        self.spec, self.grid = "code", grid

    def __call__(self, n, generator=None, device=None):
        grid = torch.randint(0, self.grid + 1, (n,), generator=generator, device=device).float() / self.grid
        special = torch.randint(0, 3, (n,), generator=generator, device=device).float() / 2
        pick = torch.rand(n, generator=generator, device=device) < 0.5
        return torch.where(pick, special, grid)


class RangeAlpha(AlphaSampler):
    def __init__(self, lo: float, hi: float, spec: str):
        self.lo, self.hi, self.spec = lo, hi, spec

    def __call__(self, n, generator=None, device=None):
        return self.lo + (self.hi - self.lo) * torch.rand(n, generator=generator, device=device)


class ConstantAlpha(AlphaSampler):
    def __init__(self, value: float, spec: str):
        self.value, self.spec = value, spec

    def __call__(self, n, generator=None, device=None):
        return torch.full((n,), self.value, device=device)


class BetaAlpha(AlphaSampler):
    def __init__(self, a: float, b: float, spec: str):
        self.a, self.b, self.spec = a, b, spec

    def __call__(self, n, generator=None, device=None):
        # Beta via two Gammas would need torch.distributions (no generator argument); use inverse
        # transform on a fine grid instead so draws follow the given generator.
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        x = torch.linspace(0, 1, 20001, dtype=torch.float64, device=u.device)[1:-1]
        log_pdf = (self.a - 1) * x.log() + (self.b - 1) * torch.log1p(-x)
        cdf = torch.cumsum((log_pdf - log_pdf.max()).exp(), 0)
        cdf = cdf / cdf[-1]
        idx = torch.searchsorted(cdf, u).clamp(max=x.numel() - 1)
        return x[idx].float()


class EndpointAlpha(AlphaSampler):
    spec = "endpoints"

    def __call__(self, n, generator=None, device=None):
        return torch.randint(0, 2, (n,), generator=generator, device=device).float()


def _numbers(spec: str, arg: str, count: int) -> list[float]:
    try:
        values = [float(v) for v in arg.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise ConfigError(
            f"alpha sampler {spec!r}: expected {count} number(s) after ':', e.g. "
            + {1: "'constant:0.5'", 2: "'range:0.5,1' or 'beta:2,2'"}[count]
        )
    return values


def make_alpha_sampler(spec: str) -> AlphaSampler:
    """Build a sampler from its spec string (see the module docstring)."""
    name, _, arg = str(spec).partition(":")
    if name == "paper" and not arg:
        return GridAlpha(spec, include_zero=False, zero_mass=0.25)
    if name == "code" and not arg:
        return CodeAlpha()
    if name == "uniform" and not arg:
        return GridAlpha(spec, include_zero=False)
    if name == "uniform0" and not arg:
        return GridAlpha(spec, include_zero=True)
    if name == "endpoints" and not arg:
        return EndpointAlpha()
    if name == "range":
        lo, hi = _numbers(spec, arg, 2)
        if not 0 <= lo <= hi <= 1:
            raise ConfigError(f"alpha sampler {spec!r}: need 0 <= a <= b <= 1")
        return RangeAlpha(lo, hi, spec)
    if name == "constant":
        (value,) = _numbers(spec, arg, 1)
        if not 0 <= value <= 1:
            raise ConfigError(f"alpha sampler {spec!r}: the constant must lie in [0, 1]")
        return ConstantAlpha(value, spec)
    if name == "beta":
        a, b = _numbers(spec, arg, 2)
        if a <= 0 or b <= 0:
            raise ConfigError(f"alpha sampler {spec!r}: Beta parameters must be positive")
        return BetaAlpha(a, b, spec)
    raise ConfigError(
        f"unknown alpha sampler {spec!r}; use one of paper, code, uniform, uniform0, "
        "endpoints, range:a,b, constant:c, beta:a,b"
    )
