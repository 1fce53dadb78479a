"""The non-saturating GAN baseline: closed-form optimum of its discriminator, exact loss values, and an
iteration that updates exactly the networks it should."""

import math

import pytest
import torch

from scoremix.objectives.gan_baseline import discriminator_loss, generator_loss, r1_penalty
from scoremix.trainer import Trainer


def test_discriminator_optimum_is_the_log_density_ratio():
    """For p = N(1, 1), q = N(-1, 1) the log-ratio is linear, l*(x) = 2x: a linear logit trained on samples
    with the baseline's loss recovers slope 2 and intercept 0."""
    g = torch.Generator().manual_seed(0)
    real = torch.randn(20000, generator=g, dtype=torch.float64) + 1
    fake = torch.randn(20000, generator=g, dtype=torch.float64) - 1
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = discriminator_loss(w[0] * real + w[1], w[0] * fake + w[1])
        loss.backward()
        return loss

    opt.step(closure)
    assert w[0].item() == pytest.approx(2.0, abs=0.06)
    assert w[1].item() == pytest.approx(0.0, abs=0.03)


def test_loss_values_and_r1_closed_form():
    lr, lf = torch.tensor([0.0, 2.0], dtype=torch.float64), torch.tensor([-1.0, 1.0], dtype=torch.float64)
    expected = 0.5 * (math.log(2) + math.log1p(math.exp(-2))) + 0.5 * (
        math.log1p(math.exp(-1)) + math.log1p(math.exp(1))
    )
    assert discriminator_loss(lr, lf).item() == pytest.approx(expected, rel=1e-12)
    assert generator_loss(lf).item() == pytest.approx(
        0.5 * (math.log1p(math.exp(1)) + math.log1p(math.exp(-1))), rel=1e-12
    )
    # l(x) = a . x has gradient a everywhere: the penalty is ||a||^2
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert r1_penalty(x @ a, x).item() == pytest.approx(5.25, rel=1e-12)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize("extra", [{}, {"method.disc_noise": "grid", "method.r1_gamma": 1.0}])
def test_one_iteration_updates_the_right_networks(tiny_cfg, tmp_path, extra):
    cfg = tiny_cfg("ring8-gan", **{"method.gen_every": 2, **extra})
    tr = Trainer(cfg, str(tmp_path / "run"))
    gen, disc = tr.method.networks["generator"], tr.method.networks["critic"]
    for step in range(4):
        g0, d0 = _snapshot(gen), _snapshot(disc)
        stats = tr.train_step(tr.source.next_batch())
        assert _changed(g0, gen) == (step % 2 == 0)
        assert _changed(d0, disc)
        assert ("r1" in stats) == bool(extra)
        tr.step += 1


def test_generator_gradient_is_the_non_saturating_one(tiny_cfg, tmp_path):
    """The generator phase's loss is -mean log sigmoid(D(g(z))) for the discriminator as it stands."""
    cfg = tiny_cfg("ring8-gan")
    tr = Trainer(cfg, str(tmp_path / "run"))
    method = tr.method
    batch = tr.source.next_batch()
    torch.manual_seed(5)
    loss, _ = method.loss("generator", batch, 0)
    torch.manual_seed(5)
    z = torch.randn(batch[0].shape[0], 2)
    x = method.networks["generator"](z)
    sigma = torch.full((z.shape[0],), cfg.noise.sigma_min)
    by_hand = torch.nn.functional.softplus(-method.networks["critic"](x, sigma)).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
