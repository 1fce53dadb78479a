"""The analytic toy teacher: the exact noisy denoiser of ring8/grid25, a stated approximation for the swiss roll."""

import pytest
import torch

from scoremix.analytic import GaussianMixture
from scoremix.config import DataConfig
from scoremix.data.toy import SwissRoll, make_toy
from scoremix.errors import TeacherError
from scoremix.teachers import load_teacher
from scoremix.teachers.analytic import load_analytic_teacher, swissroll_mixture


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_exact_mixture_denoiser_float64_inside(name):
    teacher = load_teacher("analytic", data_cfg=DataConfig(source=name))
    assert teacher.info["kind"] == "analytic" and teacher.info["parameters"] == 0 and teacher.info["exact"]
    assert teacher.info["data_shape"] == [2] and teacher.info["num_classes"] == 0
    toy = make_toy(name)
    mix = GaussianMixture(toy.means.double(), toy.stds.double(), toy.weights.double())
    g = torch.Generator().manual_seed(0)
    x = toy.sample(64, g).double() + torch.randn(64, 2, generator=g, dtype=torch.float64)
    sigma = torch.rand(64, generator=g, dtype=torch.float64) * 3 + 0.01
    # by hand: posterior-weighted Wiener estimates of the components
    var = toy.stds.double() ** 2 + sigma[:, None] ** 2
    logits = -((x[:, None, :] - mix.means) ** 2).sum(-1) / (2 * var) - torch.log(var)
    r = torch.softmax(logits, 1)
    shrink = (toy.stds.double() ** 2 / var)[..., None]
    want = (r[..., None] * (mix.means + shrink * (x[:, None, :] - mix.means))).sum(1)
    torch.testing.assert_close(teacher(x, sigma), want, rtol=1e-12, atol=1e-12)
    out32 = teacher(x.float(), sigma.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(teacher(x[:3], 0.5), mix.denoiser(x[:3], 0.5))  # scalar sigma
    assert load_teacher(f"analytic:{name}").info["name"] == name


def test_swissroll_approximation_error_is_bounded():
    """1500 components vs 6000 (4x finer) on noisy roll samples: below 1e-3 at every noise level."""
    teacher = load_analytic_teacher("swissroll")
    assert not teacher.info["exact"] and teacher.info["components"] == 1500
    fine = swissroll_mixture(6000)
    g = torch.Generator().manual_seed(1)
    clean = SwissRoll().sample(300, g).double()
    worst = 0.0
    for sigma in (0.002, 0.05, 0.1, 0.3, 1.0, 5.0):
        x = clean + sigma * torch.randn(300, 2, generator=g, dtype=torch.float64)
        worst = max(worst, (teacher(x, sigma) - fine.denoiser(x, sigma)).abs().max().item())
    assert worst < 1e-3, worst


def test_refusals():
    with pytest.raises(TeacherError, match="ring8, grid25, swissroll"):
        load_analytic_teacher("mnist")
    teacher = load_analytic_teacher("ring8")
    with pytest.raises(TeacherError, match="no network features"):
        teacher(torch.zeros(2, 2), 1.0, return_features=True)
    with pytest.raises(TeacherError, match="shape"):
        teacher(torch.zeros(2, 3), 1.0)
    assert not list(teacher.parameters()) and not teacher.training
