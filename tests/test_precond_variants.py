"""VP / VE preconditioning and discrete-schedule maps (scoremix.precond_variants), closed forms in float64."""

from __future__ import annotations

import math

import pytest
import torch

from scoremix.precond import Denoiser
from scoremix.precond_variants import (
    PreconditionedDenoiser,
    VPSchedule,
    make_denoiser,
    precond_coefficients,
    timestep_from_sigma,
    vp_sigma,
    vp_sigma_inv,
)


def test_vp_sigma_round_trip_and_endpoints_float64():
    vp = VPSchedule()
    t = torch.linspace(1e-5, 1, 2001, dtype=torch.float64)
    sigma = vp_sigma(t, vp)
    assert torch.allclose(vp_sigma_inv(sigma, vp), t, rtol=1e-12, atol=1e-14)
    s = torch.logspace(-3, 2.5, 500, dtype=torch.float64)
    assert torch.allclose(vp_sigma(vp_sigma_inv(s, vp), vp), s, rtol=1e-12)
    # sigma(t)^2 = exp(beta_d t^2/2 + beta_min t) - 1, written out at t = 1: exp(9.95 + 0.1) - 1
    assert vp.sigma_max == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 + 0.1) - 1), rel=1e-14)
    assert vp.sigma_min == pytest.approx(math.sqrt(math.expm1(0.5 * 19.9 * 1e-10 + 0.1 * 1e-5)), rel=1e-12)
    assert vp.sigma_max == pytest.approx(152.0, abs=0.2) and vp.sigma_min == pytest.approx(1e-3, rel=0.01)


def test_vp_ve_edm_coefficients_closed_form():
    sigma = torch.tensor([0.002, 0.3, 1.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = precond_coefficients("vp", sigma)
    t = (torch.sqrt(0.1**2 + 2 * 19.9 * torch.log(1 + sigma**2)) - 0.1) / 19.9
    assert torch.equal(c_skip, torch.ones_like(sigma)) and torch.equal(c_out, -sigma)
    assert torch.allclose(c_in, 1 / torch.sqrt(sigma**2 + 1), rtol=1e-15)
    assert torch.allclose(c_noise, 999 * t, rtol=1e-12)
    c_skip, c_out, c_in, c_noise = precond_coefficients("ve", sigma)
    assert torch.equal(c_out, sigma) and torch.equal(c_in, torch.ones_like(sigma))
    assert torch.allclose(c_noise, torch.log(sigma / 2), rtol=1e-15)
    c_skip, c_out, c_in, c_noise = precond_coefficients("edm", sigma, sigma_data=0.5)
    assert torch.allclose(c_skip, 0.25 / (sigma**2 + 0.25)) and torch.allclose(c_noise, sigma.log() / 4)
    with pytest.raises(ValueError, match="unknown preconditioning"):
        precond_coefficients("iddpm", sigma)


class _Linear(torch.nn.Module):
    """A backbone with a closed form: F(x_in, c_noise) = 2 x_in + c_noise."""

    bottleneck_channels = 1

    def forward(self, x, c_noise, labels=None, c_alpha=None, return_bottleneck=False):
        out = 2 * x + c_noise.reshape(-1, 1)
        return (out, x) if return_bottleneck else out


def test_preconditioned_denoiser_applies_each_formula_and_matches_denoiser_for_edm():
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    sigma = torch.tensor([0.5, 4.0])
    s = sigma.reshape(-1, 1).double()
    xd = x.double()
    vp_t = (torch.sqrt(0.01 + 2 * 19.9 * torch.log1p(s**2)) - 0.1) / 19.9
    expected = {"vp": xd - s * (2 * xd / torch.sqrt(s**2 + 1) + 999 * vp_t), "ve": xd + s * (2 * xd + torch.log(s / 2))}
    for kind, want in expected.items():
        got = PreconditionedDenoiser(_Linear(), precond=kind)(x, sigma).double()
        assert torch.allclose(got, want, rtol=1e-6), kind
    edm = PreconditionedDenoiser(_Linear(), sigma_data=0.5, precond="edm")
    assert torch.equal(edm(x, sigma), Denoiser(_Linear(), 0.5)(x, sigma))
    denoised, feats = PreconditionedDenoiser(_Linear(), precond="vp")(x, sigma, return_features=True)
    assert torch.allclose(feats, x / torch.sqrt(sigma.reshape(-1, 1) ** 2 + 1))
    assert type(make_denoiser(_Linear(), 0.5, "edm")) is Denoiser
    assert make_denoiser(_Linear(), 0.5, "ve").precond == "ve"
    with pytest.raises(ValueError, match="takes no alpha"):
        PreconditionedDenoiser(_Linear(), precond="vp")(x, sigma, alpha=0.5)


def test_build_generator_honours_net_precond(tiny_cfg):
    from scoremix.nets.build import build_generator
    from scoremix.precond_variants import PreconditionedDenoiser as PD

    cfg = tiny_cfg("ring8")
    assert type(build_generator(cfg, (2,)).denoiser) is Denoiser  # default edm: unchanged behaviour
    cfg.generator.precond = "vp"
    gen = build_generator(cfg, (2,))
    assert isinstance(gen.denoiser, PD) and gen.denoiser.precond == "vp"
    z = torch.randn(5, 2)
    sigma = gen.sigma_max
    with torch.no_grad():
        t = (math.sqrt(0.01 + 2 * 19.9 * math.log1p(sigma**2)) - 0.1) / 19.9
        F = gen.denoiser.backbone(sigma * z / math.sqrt(sigma**2 + 1), torch.full((5,), 999 * t))
        expected = sigma * z - sigma * F  # c_noise ~ 500 enters float32 sinusoids: ~1e-4 relative rounding
        assert (gen(z) - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_config_refuses_unknown_precond(tiny_cfg):
    from scoremix.config_validate import validate
    from scoremix.errors import ConfigError

    cfg = tiny_cfg("ring8")
    cfg.generator.precond = "iddpm"
    with pytest.raises(ConfigError, match="generator.precond='iddpm' is unknown"):
        validate(cfg)
    cfg.generator.precond = "vp"
    validate(cfg)
    cfg.score.precond = "ve"
    with pytest.raises(ConfigError, match="score.precond=ve"):
        validate(cfg)


def test_timestep_from_sigma_is_exact_on_the_grid_and_log_linear_between():
    sigmas = torch.tensor([0.01, 0.1, 1.0, 10.0], dtype=torch.float64)
    queries = [0.01, 0.1, 10.0, math.sqrt(0.001), 3.0, 1e-4, 1e3]
    t = timestep_from_sigma(torch.tensor(queries, dtype=torch.float64), sigmas)
    assert t[:3].tolist() == [0.0, 1.0, 3.0]
    assert t[3].item() == pytest.approx(0.5, abs=1e-12)  # geometric midpoint of 0.01 and 0.1
    assert t[4].item() == pytest.approx(2 + math.log10(3.0), abs=1e-12)
    assert t[5:].tolist() == [0.0, 3.0]  # clamped outside the schedule
