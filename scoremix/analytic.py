"""Closed-form Gaussian mixtures under Gaussian noise (pure float64, no I/O).

Everything the SMT method needs from a density is available in closed form when the density is a
mixture of isotropic Gaussians, because adding noise x_t = x + sigma * eps (eps ~ N(0, I)) only widens
each component: N(mu_k, s_k^2 I) becomes N(mu_k, (s_k^2 + sigma^2) I). This module provides

  GaussianMixture       log-density, score, denoiser E[x | x_t] and sampling at any noise level
  mixture_of(p, q, a)   the mixture m_a = a p + (1 - a) q (a = 1 data end, a = 0 fake end, method.md sec. 1)
  kl_divergence_1d      KL(a_t || b_t) of two 1-D mixtures by quadrature
  alpha_skew_jsd        the alpha-skew Jensen-Shannon divergence of method.md sec. 2 for 1-D mixtures

The denoiser of mixture_of(p, q, alpha) is the exact D(x_t; sigma, alpha) that the amortized score
network learns (Prop. 3.2, Eq. 8), so these are the references for tests and exact toy metrics.

All arithmetic is float64 torch (so results can be differentiated with autograd); inputs may be
tensors, numpy arrays or Python numbers. Points are arrays of shape (..., d); log-densities, posteriors
and noise levels follow the leading shape (...). A noise level may be a scalar or a tensor that
broadcasts against that leading shape (one sigma per point).
"""

from __future__ import annotations

import math

import torch

__all__ = ["GaussianMixture", "mixture_of", "kl_divergence_1d", "alpha_skew_jsd", "quadrature_grid_1d"]

_F64 = torch.float64


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=_F64)


class GaussianMixture:
    """sum_k w_k N(mu_k, s_k^2 I_d): K isotropic Gaussian components in d dimensions.

    Args:
        means:   (K, d) component means (a (K,) array is read as K points in one dimension).
        stds:    (K,) per-component standard deviations s_k >= 0, or one scalar shared by all. A zero
                 standard deviation is a point mass; it is allowed as long as the density is only
                 evaluated at a positive noise level.
        weights: (K,) non-negative mixture weights (normalised here); uniform when omitted.
    """

    def __init__(self, means, stds, weights=None):
        means = _f64(means)
        if means.ndim == 1:
            means = means[:, None]
        if means.ndim != 2 or means.shape[0] == 0:
            raise ValueError(f"means must have shape (K, d) with K >= 1, got {tuple(means.shape)}")
        k = means.shape[0]
        stds = _f64(stds)
        stds = stds.expand(k).clone() if stds.ndim == 0 else stds.reshape(-1)
        if stds.shape != (k,):
            raise ValueError(f"stds must be a scalar or have shape ({k},), got {tuple(stds.shape)}")
        if (stds < 0).any() or not torch.isfinite(stds).all():
            raise ValueError("standard deviations must be finite and non-negative")
        weights = torch.full((k,), 1.0 / k, dtype=_F64) if weights is None else _f64(weights).reshape(-1)
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {tuple(weights.shape)}")
        if (weights < 0).any() or not torch.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        self.means = means
        self.stds = stds
        self.weights = weights / weights.sum()

    # ------------------------------------------------------------------ basic properties
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.num_components}, d={self.dim})"

    def mean(self) -> torch.Tensor:
        """E[x], shape (d,)."""
        return self.weights @ self.means

    def convolve(self, sigma: float) -> "GaussianMixture":
        """The law of x + sigma * eps: every component variance grows by sigma^2."""
        return GaussianMixture(self.means, torch.sqrt(self.stds**2 + float(sigma) ** 2), self.weights)

    # ------------------------------------------------------------------ helpers
    def _prepare(self, x, sigma):
        x = _f64(x)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"points must have shape (..., {self.dim}), got {tuple(x.shape)}")
        sigma = _f64(sigma)
        if (sigma < 0).any():
            raise ValueError("noise levels must be non-negative")
        # total per-component variance, broadcast to (..., K)
        var = self.stds**2 + sigma[..., None] ** 2
        var = var.expand(*torch.broadcast_shapes(var.shape[:-1], x.shape[:-1]), self.num_components)
        if (var <= 0).any():
            raise ValueError("a point-mass component needs a positive noise level")
        return x, var

    def _component_log_probs(self, x, var):
        """log w_k + log N(x; mu_k, var_k I), shape (..., K)."""
        sq = (x[..., None, :] - self.means).pow(2).sum(-1)  # (..., K)
        d = self.dim
        return self.weights.log() - 0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)

    # ------------------------------------------------------------------ densities
    def log_prob(self, x, sigma=0.0) -> torch.Tensor:
        """log p_t(x), the log-density of the mixture convolved with N(0, sigma^2 I); shape (...)."""
        x, var = self._prepare(x, sigma)
        return torch.logsumexp(self._component_log_probs(x, var), dim=-1)

    def posterior(self, x, sigma=0.0) -> torch.Tensor:
        """Component responsibilities P(k | x_t = x), shape (..., K)."""
        x, var = self._prepare(x, sigma)
        return torch.softmax(self._component_log_probs(x, var), dim=-1)

    def score(self, x, sigma=0.0) -> torch.Tensor:
        """grad_x log p_t(x) = sum_k r_k(x) (mu_k - x) / (s_k^2 + sigma^2); shape (..., d)."""
        x, var = self._prepare(x, sigma)
        r = torch.softmax(self._component_log_probs(x, var), dim=-1)
        return ((r / var)[..., None] * (self.means - x[..., None, :])).sum(-2)

    def denoiser(self, x, sigma) -> torch.Tensor:
        """E[x_0 | x_t = x] for x_t = x_0 + sigma eps, x_0 from this mixture; shape (..., d).

        Each component contributes its Wiener estimate mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k),
        weighted by its posterior r_k(x). Equals x + sigma^2 score(x, sigma) (Tweedie).
        """
        x, var = self._prepare(x, sigma)
        r = torch.softmax(self._component_log_probs(x, var), dim=-1)
        shrink = (self.stds**2 / var)[..., None]  # (..., K, 1)
        comp = self.means + shrink * (x[..., None, :] - self.means)  # (..., K, d)
        return (r[..., None] * comp).sum(-2)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n float64 draws, shape (n, d), reproducible with a torch.Generator."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=_F64)
        return self.means[k] + self.stds[k, None] * eps


def mixture_of(p: GaussianMixture, q: GaussianMixture, alpha: float) -> GaussianMixture:
    """m_alpha = alpha p + (1 - alpha) q (alpha = 1: the data p, alpha = 0: the fake q).

    Components are concatenated (p's first); components with zero weight are dropped, so the two
    endpoints return exactly p and q. Its denoiser is the exact D(x_t; sigma, alpha) of Prop. 3.2.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if p.dim != q.dim:
        raise ValueError(f"dimension mismatch: {p.dim} vs {q.dim}")
    means = torch.cat([p.means, q.means])
    stds = torch.cat([p.stds, q.stds])
    weights = torch.cat([alpha * p.weights, (1.0 - alpha) * q.weights])
    keep = weights > 0
    return GaussianMixture(means[keep], stds[keep], weights[keep])


# ---------------------------------------------------------------------- 1-D divergences
def quadrature_grid_1d(
    *mixtures: GaussianMixture,
    sigma: float = 0.0,
    width: float = 12.0,
    points_per_std: float = 16.0,
    min_points: int = 2001,
):
    """A uniform grid (x, dx) covering every noisy component of 1-D mixtures to +-width stds.

    The spacing is at most (smallest noisy std) / points_per_std. On such a grid the trapezoid rule
    (here: a plain sum, the integrands vanish at both ends) is spectrally accurate for the smooth,
    Gaussian-tailed integrands of this module.
    """
    if not mixtures:
        raise ValueError("need at least one mixture")
    if any(m.dim != 1 for m in mixtures):
        raise ValueError("quadrature_grid_1d works on 1-D mixtures only")
    mu = torch.cat([m.means[:, 0] for m in mixtures])
    std = torch.sqrt(torch.cat([m.stds for m in mixtures]) ** 2 + float(sigma) ** 2)
    if (std <= 0).any():
        raise ValueError("a point-mass component needs a positive noise level")
    lo = float((mu - width * std).min())
    hi = float((mu + width * std).max())
    num = max(min_points, int(math.ceil((hi - lo) / float(std.min()) * points_per_std)) + 1)
    x = torch.linspace(lo, hi, num, dtype=_F64)
    return x, (hi - lo) / (num - 1)


def kl_divergence_1d(a: GaussianMixture, b: GaussianMixture, sigma: float = 0.0, **grid_kw) -> torch.Tensor:
    """KL(a_t || b_t) = int a_t log(a_t / b_t) for 1-D mixtures at noise level sigma (float64 scalar)."""
    x, dx = quadrature_grid_1d(a, b, sigma=sigma, **grid_kw)
    la = a.log_prob(x[:, None], sigma)
    lb = b.log_prob(x[:, None], sigma)
    return (la.exp() * (la - lb)).sum() * dx


def alpha_skew_jsd(p: GaussianMixture, q: GaussianMixture, alpha: float, sigma: float = 0.0, **grid_kw) -> torch.Tensor:
    """D_alpha(q_t, p_t) = (1/alpha) KL(q_t || m_t) + (1/(1-alpha)) KL(p_t || m_t), m = alpha p + (1-alpha) q.

    method.md section 2 (paper Sec. 3.1) for 1-D mixtures, by quadrature on one fine grid; alpha in
    (0, 1). Tends to KL(p || q) as alpha -> 0, equals 4 JSD at 1/2, tends to KL(q || p) as alpha -> 1.
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in the open interval (0, 1), got {alpha}")
    if p.dim != 1 or q.dim != 1:
        raise ValueError("alpha_skew_jsd works on 1-D mixtures only")
    x, dx = quadrature_grid_1d(p, q, sigma=sigma, **grid_kw)
    x = x[:, None]
    lp = p.log_prob(x, sigma)
    lq = q.log_prob(x, sigma)
    # log m_t = logaddexp(log alpha + log p_t, log(1 - alpha) + log q_t), stable in the tails
    lm = torch.logaddexp(math.log(alpha) + lp, math.log1p(-alpha) + lq)
    kl_q = (lq.exp() * (lq - lm)).sum() * dx
    kl_p = (lp.exp() * (lp - lm)).sum() * dx
    return kl_q / alpha + kl_p / (1.0 - alpha)
