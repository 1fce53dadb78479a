"""Closed-form checks of the SMT math (method.md sections 1-6) against exact Gaussian-mixture references.

Identities are checked in float64 with tight tolerances; sampler frequencies with fixed seeds and about
four standard errors. The references come from scoremix.analytic, which is itself checked first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from scoremix.alpha import make_alpha_sampler
from scoremix.analytic import GaussianMixture, alpha_skew_jsd, kl_divergence_1d, mixture_of, quadrature_grid_1d
from scoremix.errors import ConfigError
from scoremix.noise import SigmaGrid, karras_sigmas
from scoremix.objectives.diffusion import denoising_loss
from scoremix.objectives.dmd import dmd_generator_direction
from scoremix.objectives.gan import discriminator_loss, generator_gan_loss
from scoremix.objectives.smt import (
    alpha_jsd_direction,
    generator_direction,
    mixture_denoisers,
    mixture_denoising_loss,
    surrogate_loss,
)
from scoremix.precond import Denoiser, edm_coefficients, edm_loss_weight, score_from_denoiser

F64 = torch.float64
SIGMA_DATA = 0.5


# ---------------------------------------------------------------------------------------------- helpers
def gauss_hermite(n: int):
    """Nodes and weights of an n-point rule for E[f(u)], u ~ N(0, 1) (exact for degree <= 2n - 1)."""
    u, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(u, dtype=F64), torch.tensor(w / w.sum(), dtype=F64)


def gaussian_kl(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2))."""
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def assert_frequency(hits: torch.Tensor, p: float, k: float = 4.0):
    n = hits.numel()
    f = hits.double().mean().item()
    se = math.sqrt(p * (1 - p) / n)
    assert abs(f - p) <= k * se, f"frequency {f:.5f}, expected {p:.5f} +- {k * se:.5f}"


def assert_mean(x: torch.Tensor, mean: float, var: float, k: float = 4.0):
    n = x.numel()
    m = x.double().mean().item()
    se = math.sqrt(var / n)
    assert abs(m - mean) <= k * se, f"mean {m:.5f}, expected {mean:.5f} +- {k * se:.5f}"


def rel_err(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64)
    return float((a - b).abs().max() / b.abs().max())


# 1-D data p (two components) and fake q (two other components); 2-D versions for vector checks
P1 = GaussianMixture([[-1.0], [1.5]], [0.4, 0.6], [0.3, 0.7])
Q1 = GaussianMixture([[0.2], [2.5]], [0.8, 0.3], [0.6, 0.4])
P2 = GaussianMixture([[-1.0, 0.5], [1.0, -0.5], [0.0, 1.5]], [0.3, 0.5, 0.4], [0.5, 0.3, 0.2])
Q2 = GaussianMixture([[0.5, 0.5], [-0.5, -1.0]], [0.7, 0.4], [0.6, 0.4])


# ======================================================================= 0. the analytic reference itself
class TestAnalyticReference:
    @pytest.mark.parametrize("sigma", [0.0, 0.7])
    def test_density_normalised_1d(self, sigma):
        x, dx = quadrature_grid_1d(P1, sigma=sigma)
        mass = P1.log_prob(x[:, None], sigma).exp().sum() * dx
        assert abs(float(mass) - 1) < 1e-12

    def test_density_normalised_2d(self):
        g = torch.linspace(-6, 6, 481, dtype=F64)
        xx, yy = torch.meshgrid(g, g, indexing="ij")
        pts = torch.stack([xx, yy], -1).reshape(-1, 2)
        mass = P2.log_prob(pts, 0.3).exp().sum() * (g[1] - g[0]) ** 2
        assert abs(float(mass) - 1) < 1e-10

    def test_convolve_and_point_masses(self):
        x = torch.linspace(-3, 3, 41, dtype=F64)[:, None]
        assert torch.allclose(P1.convolve(0.7).log_prob(x), P1.log_prob(x, 0.7), rtol=0, atol=1e-13)
        dirac = GaussianMixture([[0.0], [2.0]], 0.0)
        # a mixture of point masses smoothed by sigma is a Gaussian mixture with std sigma
        assert torch.allclose(
            dirac.log_prob(x, 0.5), GaussianMixture([[0.0], [2.0]], 0.5).log_prob(x), rtol=0, atol=1e-13
        )
        with pytest.raises(ValueError):
            dirac.log_prob(x)
        with pytest.raises(ValueError):
            GaussianMixture([[0.0]], -1.0)
        with pytest.raises(ValueError):
            P1.log_prob(torch.zeros(3, 2))

    @pytest.mark.parametrize("sigma", [0.05, 0.6, 3.0])
    def test_denoiser_is_posterior_mean(self, sigma):
        # E[x0 | x_t] by brute-force quadrature over x0 on a fine grid
        x0, dx = quadrature_grid_1d(P1, sigma=0.0, points_per_std=400)
        prior = P1.log_prob(x0[:, None])
        xt = torch.linspace(-3, 4, 29, dtype=F64)
        logw = prior[None, :] - 0.5 * ((xt[:, None] - x0[None, :]) / sigma) ** 2
        w = torch.softmax(logw, dim=1)
        brute = (w * x0[None, :]).sum(1)
        exact = P1.denoiser(xt[:, None], sigma)[:, 0]
        assert (brute - exact).abs().max() < 1e-10

    def test_tweedie_and_autograd_score(self):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(64, 2, generator=gen, dtype=F64) * 2
        sigma = torch.exp(torch.randn(64, generator=gen, dtype=F64))  # one sigma per point
        xg = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(P2.log_prob(xg, sigma).sum(), xg)
        score = P2.score(x, sigma)
        assert rel_err(score, auto) < 1e-12
        tweedie = x + sigma[:, None] ** 2 * score
        assert rel_err(P2.denoiser(x, sigma), tweedie) < 1e-12

    def test_sample_moments(self):
        gen = torch.Generator().manual_seed(1)
        n = 200_000
        x = P1.sample(n, gen)[:, 0]
        assert x.dtype == F64 and x.shape == (n,)
        mu = float(P1.mean()[0])
        second = float((P1.weights * (P1.means[:, 0] ** 2 + P1.stds**2)).sum())
        var = second - mu**2
        assert_mean(x, mu, var)
        assert_mean(x**2, second, float(x.pow(2).var()))
        again = P1.sample(n, torch.Generator().manual_seed(1))[:, 0]
        assert torch.equal(x, again)

    def test_mixture_of(self):
        x = torch.linspace(-4, 4, 33, dtype=F64)[:, None]
        for a in [0.0, 0.3, 1.0]:
            m = mixture_of(P1, Q1, a)
            for sigma in [0.1, 1.3]:
                lp, lq = P1.log_prob(x, sigma), Q1.log_prob(x, sigma)
                expect = torch.logaddexp(
                    lp + math.log(a) if a > 0 else torch.full_like(lp, -math.inf),
                    lq + math.log1p(-a) if a < 1 else torch.full_like(lq, -math.inf),
                )
                assert torch.allclose(m.log_prob(x, sigma), expect, rtol=0, atol=1e-13)
                # the mixture's posterior mean is the posterior-weighted posterior means
                post_p = torch.exp(lp + (math.log(a) if a > 0 else -math.inf) - m.log_prob(x, sigma))[:, None]
                expect_d = post_p * P1.denoiser(x, sigma) + (1 - post_p) * Q1.denoiser(x, sigma)
                assert torch.allclose(m.denoiser(x, sigma), expect_d, rtol=0, atol=1e-13)
        assert mixture_of(P1, Q1, 1.0).num_components == P1.num_components
        assert mixture_of(P1, Q1, 0.0).num_components == Q1.num_components
        with pytest.raises(ValueError):
            mixture_of(P1, Q1, 1.5)
        with pytest.raises(ValueError):
            mixture_of(P1, Q2, 0.5)

    def test_kl_and_alpha_jsd_limits(self):
        a, b = GaussianMixture([[0.3]], 0.8), GaussianMixture([[-0.4]], 1.1)
        sigma = 0.5
        sa, sb = math.hypot(0.8, sigma), math.hypot(1.1, sigma)
        assert abs(float(kl_divergence_1d(a, b, sigma)) - gaussian_kl(0.3, sa, -0.4, sb)) < 1e-12
        # method.md sec. 2: alpha -> 0 forward KL(p||q), alpha -> 1 reverse KL(q||p), 4 JSD at 1/2
        p, q = a, b  # q wider than p so that the alpha -> 0 limit is approached linearly
        fwd = gaussian_kl(0.3, sa, -0.4, sb)
        rev = gaussian_kl(-0.4, sb, 0.3, sa)
        assert abs(float(alpha_skew_jsd(p, q, 1e-7, sigma)) - fwd) < 1e-5 * fwd
        assert abs(float(alpha_skew_jsd(p, q, 1 - 1e-7, sigma)) - rev) < 1e-3 * rev
        m = mixture_of(p, q, 0.5)
        jsd = 0.5 * kl_divergence_1d(p, m, sigma) + 0.5 * kl_divergence_1d(q, m, sigma)
        assert abs(float(alpha_skew_jsd(p, q, 0.5, sigma) - 4 * jsd)) < 1e-12
        assert float(alpha_skew_jsd(P1, Q1, 0.3, 0.2)) > 0
        assert abs(float(alpha_skew_jsd(P1, P1, 0.3, 0.2))) < 1e-13
        for bad in [0.0, 1.0]:
            with pytest.raises(ValueError):
                alpha_skew_jsd(p, q, bad, sigma)


# ======================================================================= a. preconditioning and Tweedie
class RecordingBackbone(nn.Module):
    """F(x_in, c_noise, c_alpha) = sin(3 x_in) + c_noise x_in^2 + c_alpha; records its inputs and output."""

    def forward(self, x_in, c_noise, labels=None, c_alpha=None, return_bottleneck=False):
        shape = (-1,) + (1,) * (x_in.ndim - 1)
        out = torch.sin(3 * x_in) + c_noise.reshape(shape) * x_in**2
        if c_alpha is not None:
            out = out + c_alpha.reshape(shape)
        self.seen = dict(
            x_in=x_in.detach().clone(),
            c_noise=c_noise.detach().clone(),
            c_alpha=None if c_alpha is None else c_alpha.detach().clone(),
            F=out.detach().clone(),
        )
        feats = x_in.flatten(1).sum(1, keepdim=True)
        return (out, feats) if return_bottleneck else out


class TestPreconditioning:
    def test_edm_coefficients_formulas(self):
        sigma = torch.tensor([0.002, 0.1, 0.5, 3.0, 80.0], dtype=F64)
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, SIGMA_DATA)
        for i, s in enumerate(sigma.tolist()):
            v = s * s + SIGMA_DATA**2
            assert math.isclose(c_skip[i].item(), SIGMA_DATA**2 / v, rel_tol=1e-15)
            assert math.isclose(c_out[i].item(), s * SIGMA_DATA / math.sqrt(v), rel_tol=1e-15)
            assert math.isclose(c_in[i].item(), 1 / math.sqrt(v), rel_tol=1e-15)
            assert math.isclose(c_noise[i].item(), math.log(s) / 4, rel_tol=1e-15)
            assert math.isclose(edm_loss_weight(sigma[i], SIGMA_DATA).item(), s**-2 + SIGMA_DATA**-2, rel_tol=1e-15)
        # EDM's identities: c_skip + c_out^2 / sigma_d^2 = 1 and lambda * c_out^2 = 1
        assert torch.allclose(c_skip + c_out**2 / SIGMA_DATA**2, torch.ones_like(sigma), rtol=0, atol=1e-15)
        assert torch.allclose(edm_loss_weight(sigma, SIGMA_DATA) * c_out**2, torch.ones_like(sigma), rtol=1e-14, atol=0)

    @pytest.mark.parametrize("alpha_input", [False, True])
    def test_wrapper_round_trip(self, alpha_input):
        gen = torch.Generator().manual_seed(2)
        n = 16
        x = torch.randn(n, 3, 4, 4, generator=gen)
        sigma = torch.exp(torch.empty(n).uniform_(math.log(0.002), math.log(80.0), generator=gen))
        alpha = torch.rand(n, generator=gen) if alpha_input else None
        backbone = RecordingBackbone()
        net = Denoiser(backbone, sigma_data=SIGMA_DATA, alpha_input=alpha_input)
        d = net(x, sigma, alpha=alpha).double()
        seen = backbone.seen
        s64 = sigma.double().reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = edm_coefficients(s64, SIGMA_DATA)
        x64 = x.double()
        assert torch.allclose(seen["x_in"].double(), c_in * x64, rtol=1e-6, atol=1e-7)
        assert torch.allclose(seen["c_noise"].double(), c_noise.flatten(), rtol=1e-6, atol=1e-7)
        if alpha_input:
            assert torch.allclose(seen["c_alpha"], alpha - 0.5)
        else:
            assert seen["c_alpha"] is None
        f = seen["F"].double()
        expect = c_skip * x64 + c_out * f
        bound = 1e-6 * ((c_skip * x64).abs() + (c_out * f).abs()) + 1e-12
        assert ((d - expect).abs() <= bound).all()
        # inverting the preconditioning recovers F to within the float32 rounding of D
        f_hat = (d - c_skip * x64) / c_out
        assert ((f_hat - f).abs() <= bound / c_out + 1e-6).all()
        # in float64 the inversion is exact
        d64 = c_skip * x64 + c_out * f
        assert torch.allclose((d64 - c_skip * x64) / c_out, f, rtol=1e-12, atol=1e-12)
        # a scalar sigma gives the same as a broadcast per-sample sigma
        d_scalar = net(x, sigma[0], alpha=alpha)
        d_vec = net(x, sigma[0].expand(n), alpha=alpha)
        assert torch.equal(d_scalar, d_vec)
        # features pass through
        d_f, feats = net(x, sigma, alpha=alpha, return_features=True)
        assert torch.equal(d_f, net(x, sigma, alpha=alpha)) and feats.shape == (n, 1)

    def test_wrapper_alpha_argument_checks(self):
        with pytest.raises(ValueError):
            Denoiser(RecordingBackbone(), alpha_input=True)(torch.zeros(2, 1), 1.0)
        with pytest.raises(ValueError):
            Denoiser(RecordingBackbone(), alpha_input=False)(torch.zeros(2, 1), 1.0, alpha=torch.ones(2))

    @pytest.mark.parametrize("mixture", [P1, P2], ids=["1d", "2d"])
    def test_score_from_analytic_denoiser(self, mixture):
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(128, mixture.dim, generator=gen, dtype=F64) * 2
        sigma = torch.exp(torch.empty(128, dtype=F64).uniform_(math.log(0.01), math.log(20.0), generator=gen))
        d = mixture.denoiser(x, sigma)
        s = score_from_denoiser(d, x, sigma)
        assert s.dtype == F64
        assert rel_err(s, mixture.score(x, sigma)) < 1e-10
        xg = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(mixture.log_prob(xg, sigma).sum(), xg)
        assert rel_err(s, auto) < 1e-10


# ======================================================================= b. Karras grid
class TestKarrasGrid:
    def test_grid(self):
        s = karras_sigmas()
        assert s.dtype == F64 and s.shape == (1000,)
        assert s[0].item() == pytest.approx(0.002, rel=1e-14)
        assert s[-1].item() == pytest.approx(80.0, rel=1e-14)
        assert (s[1:] > s[:-1]).all()
        i, rho = 437, 7.0
        lo, hi = 0.002 ** (1 / rho), 80.0 ** (1 / rho)
        assert s[i].item() == pytest.approx((lo + i / 999 * (hi - lo)) ** rho, rel=1e-13)
        grid = SigmaGrid()
        assert grid.sigmas.shape == (1000,)
        assert torch.allclose(grid.sigmas.double(), s, rtol=1e-6, atol=0)
        with pytest.raises(ValueError):
            karras_sigmas(1)
        with pytest.raises(ValueError):
            karras_sigmas(10, sigma_min=1.0, sigma_max=0.5)

    def test_generator_range_draws(self):
        grid = SigmaGrid()
        assert grid.generator_index_range() == (20, 980)
        lo, hi = grid.generator_index_range()
        n = 200_000
        draws = grid.draw(n, generator=torch.Generator().manual_seed(4), lo=lo, hi=hi)
        idx = torch.searchsorted(grid.sigmas, draws)
        assert torch.equal(grid.sigmas[idx], draws)  # every draw is a grid point
        assert idx.min().item() == lo and idx.max().item() == hi - 1  # [lo, hi), both ends reached
        counts = torch.bincount(idx - lo, minlength=hi - lo).double()
        expect = n / (hi - lo)  # ~208 per index, sd ~14.4
        assert (counts - expect).abs().max() < 5.5 * math.sqrt(expect)
        full = grid.draw(n, generator=torch.Generator().manual_seed(5))
        assert full.min() >= grid.sigmas[0] and full.max() <= grid.sigmas[-1]
        for bad in [(-1, 10), (10, 10), (0, 1001)]:
            with pytest.raises(ValueError):
                grid.draw(4, lo=bad[0], hi=bad[1])


# ======================================================================= c. alpha samplers
N_ALPHA = 200_000
UNIFORM_GRID_VAR = (1000**2 - 1) / 12 / 1000**2  # variance of uniform on {1..1000}/1000


def draw(spec, seed=0, n=N_ALPHA):
    return make_alpha_sampler(spec)(n, generator=torch.Generator().manual_seed(seed)).double()


def on_grid(a: torch.Tensor) -> bool:
    k = torch.round(a * 1000)
    return bool(((a - k / 1000).abs() <= 1e-7).all())


class TestAlphaSamplers:
    def test_paper(self):
        a = draw("paper")
        assert a.min() >= 0 and a.max() <= 1 and on_grid(a)
        assert_frequency(a == 0, 0.25)
        nz = a[a > 0]
        assert nz.min() >= 1e-3 - 1e-9
        assert_mean(nz, 0.5005, UNIFORM_GRID_VAR)
        assert_frequency(nz <= 0.5, 0.5)
        assert_mean(a, 0.75 * 0.5005, float(a.var()))
        assert torch.equal(a, draw("paper"))  # reproducible with a seeded generator

    def test_code(self):
        a = draw("code", seed=1)
        assert on_grid(a)
        p_special = 0.5 / 3 + 0.5 / 1001
        for v in [0.0, 0.5, 1.0]:
            assert_frequency(a == v, p_special)
        assert_frequency((a > 0) & (a < 0.5), 0.5 * 499 / 1001)
        assert_frequency((a > 0.5) & (a < 1), 0.5 * 499 / 1001)
        assert_mean(a, 0.5, float(a.var()))

    def test_uniform(self):
        a = draw("uniform", seed=2)
        assert a.min() >= 1e-3 - 1e-9 and a.max() <= 1 and on_grid(a)
        assert_mean(a, 0.5005, UNIFORM_GRID_VAR)
        assert_frequency(a == 1.0, 1e-3)
        a0 = draw("uniform0", seed=3)
        assert on_grid(a0)
        assert_frequency(a0 == 0, 1 / 1001)
        assert_mean(a0, 0.5, (1001**2 - 1) / 12 / 1000**2)

    def test_range_constant_beta_endpoints(self):
        a = draw("range:0.5,1", seed=4)
        assert a.min() >= 0.5 and a.max() <= 1
        assert_mean(a, 0.75, 0.25 / 12)
        assert_frequency(a < 0.625, 0.25)
        c = draw("constant:0.3", seed=5, n=100)
        assert torch.allclose(c, torch.full((100,), 0.3, dtype=F64), atol=1e-7, rtol=0)
        b = draw("beta:2,5", seed=6)
        mean, var = 2 / 7, 2 * 5 / (7**2 * 8)
        assert b.min() > 0 and b.max() < 1
        assert_mean(b, mean, var)
        fourth = float(((b - mean) ** 4).mean())
        assert abs(float(b.var()) - var) <= 4 * math.sqrt((fourth - var**2) / b.numel())
        e = draw("endpoints", seed=7)
        assert set(e.unique().tolist()) == {0.0, 1.0}
        assert_frequency(e == 1, 0.5)

    @pytest.mark.parametrize(
        "spec",
        [
            "",
            "foo",
            "paper:1",
            "code:x",
            "uniform:2",
            "endpoints:1",
            "range:0.5",
            "range:1,0.5",
            "range:a,b",
            "range:-0.1,0.5",
            "constant:1.5",
            "constant:",
            "beta:0,1",
            "beta:2,-1",
            "beta:1",
        ],
    )
    def test_bad_specs(self, spec):
        with pytest.raises(ConfigError):
            make_alpha_sampler(spec)


# ======================================================================= d. Eq. 8 minimiser (Prop. 3.2)
def joint_nodes(mix: GaussianMixture, sigma: float, n_t: int = 320, n_c: int = 6):
    """Quadrature nodes (x, x_t, weight) for the joint law of x ~ mix, x_t = x + sigma n, n ~ N(0, 1).

    Per component k the pair (x, x_t) is bivariate Gaussian; we integrate x_t over its marginal
    N(mu_k, s_k^2 + sigma^2) and x over x | x_t (Wiener: mean mu_k + s_k^2/v_k (x_t - mu_k), variance
    s_k^2 sigma^2 / v_k), each with a Gauss-Hermite rule. The squared-error integrand is a quadratic
    polynomial in x given x_t, so the inner rule is exact; the outer one converges geometrically.
    """
    u, wu = gauss_hermite(n_t)
    c, wc = gauss_hermite(n_c)
    xs, xts, ws = [], [], []
    for k in range(mix.num_components):
        mu, s2, w = mix.means[k, 0], mix.stds[k] ** 2, mix.weights[k]
        v = s2 + sigma**2
        xt = mu + v.sqrt() * u  # (n_t,)
        cond_mean = mu + s2 / v * (xt - mu)
        cond_std = (s2 * sigma**2 / v).sqrt()
        x = cond_mean[:, None] + cond_std * c[None, :]
        xs.append(x.reshape(-1))
        xts.append(xt[:, None].expand(-1, n_c).reshape(-1))
        ws.append((w * wu[:, None] * wc[None, :]).reshape(-1))
    return torch.cat(xs)[:, None], torch.cat(xts)[:, None], torch.cat(ws)


class Eq8:
    """The expected Eq. 8 loss L(D) = alpha E_p[lambda (D(x_t) - x)^2] + (1-alpha) E_q[...] for 1-D D.

    Each quadrature node enters the library's per-sample mixture_denoising_loss once: real nodes with a
    zero-error fake partner, fake nodes with a zero-error real partner, then weighted and summed.
    """

    def __init__(self, p, q, alpha, sigma):
        self.alpha, self.sigma = alpha, sigma
        self.xr, self.xrt, self.wr = joint_nodes(p, sigma)
        self.xf, self.xft, self.wf = joint_nodes(q, sigma)

    def loss(self, D) -> torch.Tensor:
        zr, zf = torch.zeros_like(self.xr), torch.zeros_like(self.xf)
        a = torch.tensor(self.alpha, dtype=F64)
        s_r = torch.full((self.xr.shape[0],), self.sigma, dtype=F64)
        s_f = torch.full((self.xf.shape[0],), self.sigma, dtype=F64)
        real = mixture_denoising_loss(D(self.xrt), self.xr, zr, zr, a, s_r, SIGMA_DATA)
        fake = mixture_denoising_loss(zf, zf, D(self.xft), self.xf, a, s_f, SIGMA_DATA)
        return (self.wr * real).sum() + (self.wf * fake).sum()

    def mixture_expectation(self, f) -> torch.Tensor:
        """E_{m_alpha, t}[f(x_t)] on the same nodes."""
        return self.alpha * (self.wr * f(self.xrt)[:, 0]).sum() + (1 - self.alpha) * (self.wf * f(self.xft)[:, 0]).sum()

    def slope(self, D, h) -> torch.Tensor:
        """dL/d eps at eps = 0 for D + eps h, by autograd."""
        eps = torch.zeros((), dtype=F64, requires_grad=True)
        (g,) = torch.autograd.grad(self.loss(lambda x: D(x) + eps * h(x)), eps)
        return g


DIRECTIONS = {
    "one": lambda x: torch.ones_like(x),
    "x": lambda x: x,
    "sin": lambda x: torch.sin(2 * x),
    "bump": lambda x: torch.exp(-((x - 0.5) ** 2)),
}


class TestEq8Minimiser:
    SIGMA = 0.6

    @pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
    def test_analytic_mixture_denoiser_is_stationary_and_minimal(self, alpha):
        sigma = self.SIGMA
        lam = SIGMA_DATA**-2 + sigma**-2
        eq8 = Eq8(P1, Q1, alpha, sigma)
        m = mixture_of(P1, Q1, alpha)
        d_star = lambda x: m.denoiser(x, sigma)  # noqa: E731
        wrong_alpha = 0.65
        d_wrong = lambda x: mixture_of(P1, Q1, wrong_alpha).denoiser(x, sigma)  # noqa: E731
        bump = DIRECTIONS["bump"]
        l_star = eq8.loss(d_star)
        for name, h in DIRECTIONS.items():
            delta = 0.1
            # at a perturbed D = D* + delta g the slope is 2 lambda delta E_m[g h] (L is quadratic)
            slope_pert = eq8.slope(lambda x: d_star(x) + delta * bump(x), h)
            expect_pert = 2 * lam * delta * eq8.mixture_expectation(lambda x: bump(x) * h(x))
            assert abs(float(slope_pert - expect_pert)) < 1e-9 * abs(float(expect_pert)), name
            # at D* the slope vanishes in every direction
            slope = eq8.slope(d_star, h)
            assert abs(float(slope)) < 1e-9 * abs(float(slope_pert)), (name, float(slope), float(slope_pert))
            # exact second order: L(D* + eps h) - L(D*) = eps^2 lambda E_m[h^2] > 0
            curv = lam * eq8.mixture_expectation(lambda x: h(x) ** 2)
            for eps in [0.05, -0.05]:
                gap = eq8.loss(lambda x: d_star(x) + eps * h(x)) - l_star
                assert gap > 0
                assert abs(float(gap - eps**2 * curv)) < 1e-8 * float(eps**2 * curv), name
        # the denoiser of another alpha is not stationary and has a larger loss
        diff = lambda x: d_wrong(x) - d_star(x)  # noqa: E731
        slope_wrong = eq8.slope(d_wrong, diff)
        expect_wrong = 2 * lam * eq8.mixture_expectation(lambda x: diff(x) ** 2)
        assert float(expect_wrong) > 1e-3
        assert abs(float(slope_wrong - expect_wrong)) < 1e-9 * float(expect_wrong)
        assert eq8.loss(d_wrong) - l_star > 0.4 * float(expect_wrong)  # = lambda E_m[diff^2] = expect / 2
        # the data and fake denoisers are the alpha = 1 and alpha = 0 minimisers
        if alpha in (0.0, 1.0):
            end = P1 if alpha == 1.0 else Q1
            x = torch.linspace(-3, 4, 15, dtype=F64)[:, None]
            assert torch.allclose(m.denoiser(x, sigma), end.denoiser(x, sigma), rtol=0, atol=1e-14)

    def test_endpoints_are_plain_dsm_per_sample(self):
        gen = torch.Generator().manual_seed(7)
        n = 64
        xr, xf = P1.sample(n, gen), Q1.sample(n, gen)
        sigma = torch.exp(torch.randn(n, generator=gen, dtype=F64))
        dr = xr + torch.randn(n, 1, generator=gen, dtype=F64)
        df = xf + torch.randn(n, 1, generator=gen, dtype=F64)
        ones, zeros = torch.ones(n, dtype=F64), torch.zeros(n, dtype=F64)
        at_one = mixture_denoising_loss(dr, xr, df, xf, ones, sigma, SIGMA_DATA)
        at_zero = mixture_denoising_loss(dr, xr, df, xf, zeros, sigma, SIGMA_DATA)
        assert torch.equal(at_one, denoising_loss(dr, xr, sigma, SIGMA_DATA))
        assert torch.equal(at_zero, denoising_loss(df, xf, sigma, SIGMA_DATA))
        lam = sigma**-2 + SIGMA_DATA**-2
        assert torch.allclose(denoising_loss(dr, xr, sigma, SIGMA_DATA), lam * (dr - xr)[:, 0] ** 2, rtol=1e-15, atol=0)
        a = torch.rand(n, generator=gen, dtype=F64)
        mid = mixture_denoising_loss(dr, xr, df, xf, a, sigma, SIGMA_DATA)
        assert torch.allclose(mid, a * at_one + (1 - a) * at_zero, rtol=1e-14, atol=0)


# ======================================================================= e. generator gradient (Prop. 3.1)
class TestAlphaJsdGradient:
    @pytest.mark.parametrize("data", ["gauss", "mixture"])
    @pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
    def test_direction_matches_finite_differences(self, alpha, data):
        p = GaussianMixture([[-0.5]], 0.7) if data == "gauss" else P1
        mu, s, sigma = 0.3, 0.8, 0.5

        def jsd(mu_, s_):
            return float(alpha_skew_jsd(p, GaussianMixture([[mu_]], s_), alpha, sigma))

        h = 1e-4
        fd_mu = (jsd(mu + h, s) - jsd(mu - h, s)) / (2 * h)
        fd_s = (jsd(mu, s + h) - jsd(mu, s - h)) / (2 * h)

        # E_{z, eps}[dg/dtheta * direction(x_t)], x_t = mu + s z + sigma eps, by Gauss-Hermite
        u, w = gauss_hermite(60)
        z = u[:, None].expand(-1, u.numel()).reshape(-1)
        e = u[None, :].expand(u.numel(), -1).reshape(-1)
        wz = (w[:, None] * w[None, :]).reshape(-1)
        x_t = (mu + s * z + sigma * e)[:, None]
        q = GaussianMixture([[mu]], s)
        d0 = q.denoiser(x_t, sigma)
        da = mixture_of(p, q, alpha).denoiser(x_t, sigma)
        n = x_t.shape[0]
        direction = alpha_jsd_direction(d0, da, torch.full((n,), sigma, dtype=F64), torch.full((n,), alpha, dtype=F64))[
            :, 0
        ]
        g_mu = float((wz * direction).sum())  # dg/dmu = 1
        g_s = float((wz * z * direction).sum())  # dg/ds = z
        assert abs(g_mu - fd_mu) < 1e-4 * abs(fd_mu), (g_mu, fd_mu)
        assert abs(g_s - fd_s) < 1e-4 * abs(fd_s), (g_s, fd_s)
        # the same direction in score form, (1/alpha)(s_0 - s_alpha) (Eq. 4, 6)
        s0 = q.score(x_t, sigma)
        sa = mixture_of(p, q, alpha).score(x_t, sigma)
        assert rel_err(direction[:, None], (s0 - sa) / alpha) < 1e-10


# ======================================================================= f. weighted generator update
def random_denoisers(seed, shape=(8, 3, 4, 4)):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=F64) for _ in range(4)]


def per_sample(t):
    return t.flatten(1)


class TestWeightedUpdate:
    EPS = 1e-6

    def test_adaptive_formula_and_norm(self):
        x, d0, da, d1 = random_denoisers(8)
        g = generator_direction(x, d0, da, d1, weighting="adaptive")
        ms = lambda t: per_sample(t).pow(2).mean(1)  # noqa: E731
        mabs = per_sample(x - d1).abs().mean(1)
        scale = (ms(d1 - d0) + self.EPS).sqrt() / (ms(da - d0).sqrt() * mabs)
        assert rel_err(g, (d0 - da) * scale.reshape(-1, 1, 1, 1)) < 1e-13
        # per-sample norm: sqrt(||D1 - D0||^2 + n eps) / mean|x - D1|, whatever D_alpha is
        n = per_sample(x).shape[1]
        norm = per_sample(g).norm(dim=1)
        expect = (per_sample(d1 - d0).pow(2).sum(1) + n * self.EPS).sqrt() / mabs
        assert rel_err(norm, expect) < 1e-13
        g0 = generator_direction(x, d0, da, d1, eps=0.0)
        assert rel_err(per_sample(g0).norm(dim=1), per_sample(d1 - d0).norm(dim=1) / mabs) < 1e-13
        # invariant to the size of D_alpha - D_0 (the alpha of Eq. 9 cancels): only its direction counts
        for c in [1e-3, 0.37, 7.0]:
            g_c = generator_direction(x, d0, d0 + c * (da - d0), d1)
            assert rel_err(g_c, g) < 1e-12

    def test_adaptive_is_paper_weights_times_prop31(self):
        # Eq. 9-10: w_alpha * w_DMD * (1/alpha)(s_0 - s_alpha), w_alpha = alpha ||s0 - s1|| / ||s0 - sa||,
        # w_DMD = sigma^2 / mean|x - D1| (the library normalises by the mean, not the sum, of |x - D1|)
        x, d0, da, d1 = random_denoisers(9)
        gen = torch.Generator().manual_seed(10)
        b = x.shape[0]
        sigma = torch.exp(torch.randn(b, generator=gen, dtype=F64))
        alpha = torch.rand(b, generator=gen, dtype=F64) * 0.9 + 0.05
        x_t = x + sigma.reshape(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen, dtype=F64)
        s0, sa, s1 = (score_from_denoiser(d, x_t, sigma) for d in (d0, da, d1))
        w_alpha = alpha * per_sample(s0 - s1).norm(dim=1) / per_sample(s0 - sa).norm(dim=1)
        w_dmd = sigma**2 / per_sample(x - d1).abs().mean(1)
        raw = alpha_jsd_direction(d0, da, sigma, alpha)
        assert rel_err(raw, (s0 - sa) / alpha.reshape(-1, 1, 1, 1)) < 1e-12
        paper = (w_alpha * w_dmd).reshape(-1, 1, 1, 1) * raw
        assert rel_err(generator_direction(x, d0, da, d1, sigma, alpha, eps=0.0), paper) < 1e-12
        # the other weightings
        dmd_w = generator_direction(x, d0, da, d1, sigma, alpha, weighting="dmd")
        assert rel_err(dmd_w, w_dmd.reshape(-1, 1, 1, 1) * raw) < 1e-12
        assert torch.equal(generator_direction(x, d0, da, d1, sigma, alpha, weighting="none"), raw)
        with pytest.raises(ValueError):
            generator_direction(x, d0, da, d1, weighting="bogus")

    def test_dmd_limit(self):
        x, d0, _, d1 = random_denoisers(11)
        adaptive = generator_direction(x, d0, d1, d1)  # alpha = 1: D_alpha = D_1
        dmd = dmd_generator_direction(x, d0, d1)
        ms = per_sample(d1 - d0).pow(2).mean(1).reshape(-1, 1, 1, 1)
        assert rel_err(adaptive, dmd * torch.sqrt(1 + self.EPS / ms)) < 1e-13
        assert float((adaptive / dmd - 1).abs().max()) <= 0.5 * self.EPS / float(ms.min()) * 1.001
        assert rel_err(generator_direction(x, d0, d1, d1, eps=0.0), dmd) < 1e-14

    @pytest.mark.parametrize("alpha", [0.05, 0.5, 1.0])
    def test_points_from_fake_towards_mixture(self, alpha):
        gen = torch.Generator().manual_seed(12)
        n, sigma = 256, 0.4
        x = Q2.sample(n, gen)
        x_t = x + sigma * torch.randn(n, 2, generator=gen, dtype=F64)
        m = mixture_of(P2, Q2, alpha)
        d0, da, d1 = Q2.denoiser(x_t, sigma), m.denoiser(x_t, sigma), P2.denoiser(x_t, sigma)
        g = generator_direction(x, d0, da, d1)
        push = m.score(x_t, sigma) - Q2.score(x_t, sigma)  # grad log(m_t / q_t)
        inner = (g * push).sum(1)
        assert (inner < 0).all()
        # moving x (hence x_t) by -eta grad increases log m_t - log q_t, to first order eta <grad, -push>
        log_ratio = lambda y: m.log_prob(y, sigma) - Q2.log_prob(y, sigma)  # noqa: E731
        eta = 1e-5
        change = log_ratio(x_t - eta * g) - log_ratio(x_t)
        assert (change > 0).all()
        assert torch.allclose(change, -eta * inner, rtol=1e-3, atol=0)

    def test_nan_to_num_when_mixture_equals_fake(self):
        x, d0, _, d1 = random_denoisers(13)
        g = generator_direction(x, d0, d0.clone(), d1)
        assert torch.isfinite(g).all() and torch.equal(g, torch.zeros_like(g))
        g_all = generator_direction(x, d0, d0.clone(), d0.clone())
        assert torch.equal(g_all, torch.zeros_like(g_all))
        # only the degenerate samples are zeroed
        da = d1.clone()
        da[0] = d0[0]
        g_mix = generator_direction(x, d0, da, d1)
        assert torch.equal(g_mix[0], torch.zeros_like(g_mix[0]))
        assert rel_err(g_mix[1:], generator_direction(x[1:], d0[1:], d1[1:], d1[1:])) < 1e-14


# ======================================================================= g. surrogate loss
def test_surrogate_loss_gradient():
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(5, 3, 4, 4, generator=gen, dtype=F64, requires_grad=True)
    grad = torch.randn(5, 3, 4, 4, generator=gen, dtype=F64)
    loss = surrogate_loss(x, grad)
    (gx,) = torch.autograd.grad(loss, x)
    assert torch.allclose(gx, grad / x.numel(), rtol=1e-12, atol=1e-18)
    assert math.isclose(loss.item(), 0.5 * grad.pow(2).mean().item(), rel_tol=1e-12)
    # the target is detached: grad itself receives no gradient path
    grad_leaf = grad.clone().requires_grad_(True)
    surrogate_loss(x, grad_leaf).backward()
    assert grad_leaf.grad is None


# ======================================================================= h. one batched network call
class CountingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.7, dtype=F64))
        self.calls = 0
        self.batch_sizes = []

    def forward(self, x, sigma, alpha=None, labels=None):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        shape = (-1,) + (1,) * (x.ndim - 1)
        out = self.w * x * torch.tanh(sigma.reshape(shape)) + alpha.reshape(shape) ** 2 - alpha.reshape(shape) * x
        if labels is not None:
            out = out + labels.reshape(shape).to(x.dtype)
        return out


@pytest.mark.parametrize("with_labels", [False, True])
def test_mixture_denoisers_one_call(with_labels):
    gen = torch.Generator().manual_seed(15)
    n = 6
    x_t = torch.randn(n, 2, 3, generator=gen, dtype=F64)
    sigma = torch.rand(n, generator=gen, dtype=F64) + 0.1
    alpha = torch.rand(n, generator=gen, dtype=F64)
    labels = torch.randint(0, 10, (n,), generator=gen) if with_labels else None
    net = CountingNet()
    d0, da, d1 = mixture_denoisers(net, x_t, sigma, alpha, labels=labels)
    assert net.calls == 1 and net.batch_sizes == [3 * n]
    assert not (d0.requires_grad or da.requires_grad or d1.requires_grad)
    for got, a in [(d0, torch.zeros_like(alpha)), (da, alpha), (d1, torch.ones_like(alpha))]:
        with torch.no_grad():
            assert torch.equal(got, net(x_t, sigma, alpha=a, labels=labels))


def test_mixture_denoisers_with_preconditioned_net():
    torch.manual_seed(16)

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x_in, c_noise, labels=None, c_alpha=None, return_bottleneck=False):
            return self.lin(torch.cat([x_in, c_noise[:, None], c_alpha[:, None]], 1))

    net = Denoiser(Backbone(), alpha_input=True)
    x_t = torch.randn(5, 2)
    sigma, alpha = torch.rand(5) + 0.1, torch.rand(5)
    outs = mixture_denoisers(net, x_t, sigma, alpha)
    with torch.no_grad():
        for got, a in zip(outs, [torch.zeros(5), alpha, torch.ones(5)]):
            assert torch.allclose(got, net(x_t, sigma, alpha=a), rtol=1e-6, atol=1e-6)


# ======================================================================= i. GAN regulariser
def softplus(v: float) -> float:
    return math.log1p(math.exp(v)) if v < 30 else v + math.log1p(math.exp(-v))


class TestGanLosses:
    LR = [0.3, -1.2, 2.0, 0.0]
    LF = [-0.5, 0.7, 1.5, -3.0]
    A = [0.2, 0.5, 0.9, 0.999]

    def test_discriminator_loss_values(self):
        lr, lf, a = (torch.tensor(v, dtype=F64) for v in (self.LR, self.LF, self.A))
        expect = (
            sum((1 - ai) * softplus(fi) for ai, fi in zip(self.A, self.LF)) / 4
            + sum(ai * softplus(-ri) for ai, ri in zip(self.A, self.LR)) / 4
        )
        assert math.isclose(discriminator_loss(lr, lf, a).item(), expect, rel_tol=1e-14)
        zero = torch.zeros(3, dtype=F64)
        assert math.isclose(discriminator_loss(zero, zero, 0.5).item(), math.log(2), rel_tol=1e-14)
        expect_scalar = 0.7 * sum(map(softplus, self.LF)) / 4 + 0.3 * sum(softplus(-v) for v in self.LR) / 4
        assert math.isclose(discriminator_loss(lr, lf, 0.3).item(), expect_scalar, rel_tol=1e-14)

    def test_generator_loss_values(self):
        lf, a = torch.tensor(self.LF, dtype=F64), torch.tensor(self.A, dtype=F64)
        expect = sum(softplus(-fi - math.log(ai / (1 - ai))) for fi, ai in zip(self.LF, self.A)) / 4
        assert math.isclose(generator_gan_loss(lf, a).item(), expect, rel_tol=1e-12)
        no_offset = sum(softplus(-fi) for fi in self.LF) / 4
        assert math.isclose(generator_gan_loss(lf, a, offset=False).item(), no_offset, rel_tol=1e-14)
        half = torch.full((4,), 0.5, dtype=F64)
        assert math.isclose(generator_gan_loss(lf, half).item(), no_offset, rel_tol=1e-14)
        # alpha at the endpoints is clamped to [1e-6, 1 - 1e-6]: finite
        ends = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=F64)
        val = generator_gan_loss(lf, ends).item()
        c = math.log(1e-6 / (1 - 1e-6))
        expect_ends = sum(softplus(-fi - (c if ai == 0 else -c)) for fi, ai in zip(self.LF, ends.tolist())) / 4
        assert math.isfinite(val) and math.isclose(val, expect_ends, rel_tol=1e-9)

    @pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
    def test_optimal_discriminator(self, alpha):
        # population loss int (1-a) q softplus(l) + a p softplus(-l) dx is minimised pointwise at
        # l* = log(a p / ((1-a) q)); the library's per-point gradients, weighted by the densities, vanish
        x, dx = quadrature_grid_1d(P1, Q1, sigma=0.3, width=6)
        lp, lq = P1.log_prob(x[:, None], 0.3), Q1.log_prob(x[:, None], 0.3)
        l_star = math.log(alpha) + lp - math.log1p(-alpha) - lq
        n = x.numel()

        def functional_grad(logit):
            lr = logit.clone().requires_grad_(True)
            lf = logit.clone().requires_grad_(True)
            gr, gf = torch.autograd.grad(discriminator_loss(lr, lf, alpha), (lr, lf))
            # d/dl(x) of the population loss = n (p(x) dL/dl_real + q(x) dL/dl_fake)
            return n * (lp.exp() * gr + lq.exp() * gf), n * (lp.exp() * gr.abs() + lq.exp() * gf.abs())

        g, size = functional_grad(l_star)
        assert ((g.abs() <= 1e-12 * size) | (size == 0)).all()
        g_up, _ = functional_grad(l_star + 0.3)
        g_down, _ = functional_grad(l_star - 0.3)
        mask = size > 1e-200
        assert (g_up[mask] > 0).all() and (g_down[mask] < 0).all()

        def population(logit):
            return (
                (1 - alpha) * lq.exp() * torch.nn.functional.softplus(logit)
                + alpha * lp.exp() * torch.nn.functional.softplus(-logit)
            ).sum() * dx

        base = population(l_star)
        for h in [torch.ones_like(x), torch.sin(x), x / 5]:
            for eps in [0.05, -0.05]:
                assert population(l_star + eps * h) > base
