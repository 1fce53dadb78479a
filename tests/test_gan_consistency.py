"""The GAN term's discriminator must learn l* = log p_t / q_t (Sec. 3.5, App. D.2, Eq. 11, 13).

Eq. 11 adds log(alpha / (1 - alpha)) to the logit so that sigmoid(l + log(alpha/(1-alpha))) is the
posterior of "real" in m_alpha = alpha p + (1 - alpha) q. That holds only if the discriminator's optimum
is the plain log density ratio. Here the discriminator head alone is trained, through `SMT.loss("critic")`
of a real preset, on two known Gaussians p (data) and q (a fixed fake generator). The head is a linear
layer on features in which log p_t - log q_t is exactly linear (so the loss is convex and the fit is
limited only by the finite batch), and the fitted logit is compared with `scoremix.analytic`'s exact
log-ratio on points of the noisy mixture m_{1/2, t} over the preset's sigma grid.

Tolerance: the fit uses one fixed batch of 16,384 real and fake samples; its statistical error on the
mean offset is about 0.01 and on the mean absolute error about 0.03, so the bars are 0.05 and 0.1.
The old form (class weights alpha from the `paper` score sampler, `method.gan_disc_alpha=score`) is
shown to be off by log(E[alpha] / E[1 - alpha]) = log(0.375375 / 0.624625) = -0.509.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scoremix.analytic import GaussianMixture
from scoremix.config_loader import load_config
from scoremix.methods.smt import SMT

F64 = torch.float64
MU_P, STD_P = torch.tensor([1.0, 0.0], dtype=F64), 0.5
MU_Q, STD_Q = torch.tensor([-0.5, 0.5], dtype=F64), 0.8
P = GaussianMixture(MU_P[None], STD_P)
Q = GaussianMixture(MU_Q[None], STD_Q)
N_FIT = 16384


def ratio_features(x, sigma):
    """[|x|^2/v, x/v, 1/v, log v] for v = s_p^2 + sigma^2 and for v = s_q^2 + sigma^2 (10 columns in 2-D):
    log p_t - log q_t is a fixed linear combination of them plus a constant."""
    s2 = sigma.reshape(-1, 1).to(F64) ** 2
    cols = []
    for std in (STD_P, STD_Q):
        v = std**2 + s2
        cols += [x.pow(2).sum(1, keepdim=True) / v, x / v, 1 / v, v.log()]
    return torch.cat(cols, 1)


class RatioFeatureCritic(nn.Module):
    """Stands in for the score network: returns x_t as its 'denoised' output (no parameters) and the
    exact-ratio features as its bottleneck, so only the head can learn."""

    def forward(self, x, sigma, alpha=None, labels=None, return_features=False):
        feats = ratio_features(x, sigma)
        return (x, feats) if return_features else x


class LinearHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(10, 1, dtype=F64)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, feats):
        return self.lin(feats).flatten()


class GaussianFake(nn.Module):
    """A fixed generator whose output law is Q."""

    def forward(self, z, labels=None):
        return MU_Q + STD_Q * z.to(F64)


def fit_head(preset: str, **overrides) -> tuple[SMT, LinearHead]:
    cfg = load_config(preset, [f"{k}={v}" for k, v in {"method.gan": True, **overrides}.items()])
    method = SMT(cfg, (2,))
    critic = method.networks["critic"]
    critic.denoiser, critic.head = RatioFeatureCritic(), LinearHead()
    method.networks["generator"] = method.train_networks["generator"] = GaussianFake()
    x_real = P.sample(N_FIT, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.LBFGS(
        critic.head.parameters(),
        lr=1,
        max_iter=200,
        tolerance_grad=1e-9,
        tolerance_change=1e-11,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        torch.manual_seed(2)  # the same noise, sigmas and alphas at every evaluation: one fixed batch
        loss, _ = method.loss("critic", (x_real, None), 0)
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster than two on a busy machine
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    return method, critic.head


def logit_error(method: SMT, head: LinearHead) -> tuple[float, float]:
    """Mean and mean absolute (l - log p_t/q_t) over x_t from m_{1/2,t}, sigma uniform on the grid."""
    gen = torch.Generator().manual_seed(3)
    n = 20000
    sigma = method.grid.draw(n, generator=gen).to(F64)
    x0 = torch.where(torch.rand(n, 1, generator=gen) < 0.5, P.sample(n, generator=gen), Q.sample(n, generator=gen))
    x_t = x0 + sigma[:, None] * torch.randn(n, 2, generator=gen, dtype=F64)
    with torch.no_grad():
        logit = head(ratio_features(x_t, sigma))
    exact = P.log_prob(x_t, sigma) - Q.log_prob(x_t, sigma)
    err = logit - exact
    return err.mean().item(), err.abs().mean().item()


@pytest.mark.parametrize(
    "preset,score_alpha", [("ring8", None), ("grid25", None), ("mnist-smt", None), ("ring8", "paper")]
)
def test_balanced_discriminator_learns_the_log_density_ratio(preset, score_alpha):
    """Under each preset's own samplers (score_alpha None), and under the paper's score sampler, where the
    form before issue 9 was biased."""
    overrides = {} if score_alpha is None else {"method.score_alpha": score_alpha}
    if preset == "mnist-smt":  # its sigma grid, on 2-D toy data
        overrides.update(
            {"data.source": "ring8", "generator.arch": "mlp", "score.arch": "mlp", "data.resolution": "none"}
        )
    method, head = fit_head(preset, **overrides)
    assert method.cfg.method.gan_disc_alpha == "half"
    bias, mae = logit_error(method, head)
    assert abs(bias) < 0.05 and mae < 0.1, (bias, mae)


def test_the_score_samplers_alpha_shifts_the_optimum_by_log_mean_ratio():
    """The form before issue 9: weights alpha ~ paper sampler; the optimum moves by log(E a / E(1-a))."""
    e_alpha = 0.75 * 0.5005
    shift = math.log(e_alpha / (1 - e_alpha))
    assert abs(shift - (-0.509)) < 1e-3
    method, head = fit_head("ring8", **{"method.gan_disc_alpha": "score", "method.score_alpha": "paper"})
    bias, _ = logit_error(method, head)
    assert abs(bias - shift) < 0.05, bias
    # the released code's sampler has E[alpha] = 1/2, so the same form is unbiased there
    method, head = fit_head("ring8", **{"method.gan_disc_alpha": "score", "method.score_alpha": "code"})
    bias, mae = logit_error(method, head)
    assert abs(bias) < 0.05 and mae < 0.1, (bias, mae)


def test_eq11_posterior_is_the_mixture_posterior_at_the_optimum():
    """With l = log p_t/q_t, sigmoid(l + log(a/(1-a))) = a p_t / (a p_t + (1-a) q_t) (Eq. 13), so the
    generator loss of Eq. 11 is -log P(real | x_t) in m_alpha. Exact identity in float64."""
    from scoremix.analytic import mixture_of
    from scoremix.objectives.gan import generator_gan_loss

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(64, 2, generator=gen, dtype=F64) * 1.5
    sigma = 0.7
    l_star = P.log_prob(x, sigma) - Q.log_prob(x, sigma)
    for a in (0.1, 0.5, 0.93):
        m = mixture_of(P, Q, a)
        posterior_real = m.posterior(x, sigma)[:, 0]  # P's single component comes first
        alpha = torch.full((64,), a, dtype=F64)
        per_point = torch.stack([generator_gan_loss(l_star[i : i + 1], alpha[i : i + 1]) for i in range(64)])
        torch.testing.assert_close(per_point, -posterior_real.log(), rtol=1e-12, atol=1e-12)
