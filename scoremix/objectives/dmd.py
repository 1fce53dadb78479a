"""The DMD reverse-KL baseline (Yin et al. 2024): the alpha = 1 limit of SMT's generator update."""

from __future__ import annotations

from .smt import _mean


def dmd_generator_direction(x, d_fake, d_real):
    """(D_fake - D_real) / mean |x - D_real|: gradient of reverse KL with the DMD weight sigma^2/||x - D_real||_1."""
    return (d_fake - d_real) / _mean((x - d_real).abs())
