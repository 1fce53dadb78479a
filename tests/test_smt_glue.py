"""What `SMT.loss` computes, pinned in float64 against the paper's equations assembled by hand.

The tests in test_math_closed_form.py check each objective function; these check the method's glue:
which network output goes into which term. Each test runs `SMT.loss(phase, ...)` on tiny float64
networks with a fixed seed, then replays the same random draws in the same order (the generator's z,
grid sigmas, alphas, Gaussian noises) and builds the loss from the equations with one separate network
call per term (D_0, D_alpha, D_1, the real and fake branches, the logits). Loss values AND parameter
gradients must agree to float64 rounding (rtol 1e-10): the gradient comparison is what catches a sign
flip of the generator direction, which leaves the surrogate loss's value unchanged.

The draws are replayed in the order SMT's loss functions make them; if that order is changed on
purpose, change `replay_*` below with it.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from scoremix.methods.smt import SMT

F64 = torch.float64
N = 7
SIGMA_DATA = 1.4  # the ring8 preset's


class TinyScoreNet(nn.Module):
    """An alpha-conditional denoiser D(x; sigma, alpha) with a bottleneck, all float64."""

    def __init__(self, hidden: int = 5, dropout: float = 0.0):
        super().__init__()
        self.inp = nn.Linear(4, hidden, dtype=F64)
        self.out = nn.Linear(hidden, 2, dtype=F64)
        self.drop = nn.Dropout(dropout)
        self.modes_seen = []  # self.training at each call

    def forward(self, x, sigma, alpha=None, labels=None, return_features=False):
        self.modes_seen.append(self.training)
        sigma = torch.as_tensor(sigma, dtype=F64).expand(x.shape[0])[:, None]
        alpha = torch.as_tensor(alpha, dtype=F64).expand(x.shape[0])[:, None]
        h = torch.tanh(self.inp(torch.cat([x / (1 + sigma), sigma.log() / 4, alpha - 0.5], 1)))
        denoised = x / (1 + sigma**2) + sigma * self.out(self.drop(h))
        return (denoised, h) if return_features else denoised


class TinyHead(nn.Module):
    def __init__(self, hidden: int = 5):
        super().__init__()
        self.lin = nn.Linear(hidden, 1, dtype=F64)

    def forward(self, feats):
        return self.lin(feats).flatten()


class TinyGenerator(nn.Module):
    """g(z) = net(z, log sigma_max); with sigma given it denoises its input at that level (warm-up)."""

    sigma_max = 3.0

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 6, dtype=F64)
        self.out = nn.Linear(6, 2, dtype=F64)
        self.labels_seen = []

    def forward(self, z, labels=None, sigma=None):
        self.labels_seen.append(labels)
        z = z.to(F64)
        s = torch.full((z.shape[0], 1), self.sigma_max, dtype=F64) if sigma is None else sigma.to(F64)[:, None]
        return self.out(torch.tanh(self.inp(torch.cat([z, s.log()], 1)))) + 0.1 * z


def build(tiny_cfg, **overrides) -> SMT:
    torch.manual_seed(0)
    settings = {"method.gan": True, "method.gan_gen_weight": 0.3, "method.gan_disc_weight": 0.7}
    settings.update(overrides)
    method = SMT(tiny_cfg(**settings), (2,))
    critic = method.networks["critic"]
    critic.denoiser, critic.head = TinyScoreNet(), TinyHead()
    method.networks["generator"] = method.train_networks["generator"] = TinyGenerator()
    assert method.train_networks["critic"] is critic
    return method


def real_batch():
    return torch.randn(N, 2, generator=torch.Generator().manual_seed(42), dtype=F64) * 1.3 + 0.2


def edm_weight(sigma):
    return 1 / sigma**2 + 1 / SIGMA_DATA**2


def row_mean(v):
    return v.mean(dim=1)


def method_loss_and_grads(method, phase, x_real, params, seed=11, labels=None):
    torch.manual_seed(seed)
    loss, _ = method.loss(phase, (x_real, labels), 0)
    return loss, torch.autograd.grad(loss, params, allow_unused=True)


def assert_same(got, expected):
    loss, grads = got
    loss_ref, grads_ref = expected
    torch.testing.assert_close(loss, loss_ref, rtol=1e-10, atol=1e-14)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------- critic
def replay_critic(method, x_real, seed=11):
    """Eq. 8 + the discriminator loss of Sec. 3.5 with balanced classes, from the equations."""
    m = method.cfg.method
    net, head, gen = method.networks["critic"].denoiser, method.networks["critic"].head, method.networks["generator"]
    torch.manual_seed(seed)
    with torch.no_grad():
        x_fake = gen(torch.randn(N, 2))
    sigma = method.grid.draw(N).to(F64)
    alpha = method.score_alpha(N).to(F64)
    xr_t = x_real + sigma[:, None] * torch.randn(N, 2, dtype=F64)
    xf_t = x_fake + sigma[:, None] * torch.randn(N, 2, dtype=F64)
    sigma_gan = method.grid.draw(N).to(F64)
    xr_gan = x_real + sigma_gan[:, None] * torch.randn(N, 2, dtype=F64)
    xf_gan = x_fake + sigma_gan[:, None] * torch.randn(N, 2, dtype=F64)
    lam = edm_weight(sigma)
    # Eq. 8: alpha lambda ||D(x_real,t; sigma, alpha) - x_real||^2 + (1 - alpha) lambda ||D(x_fake,t) - x_fake||^2
    real_term = alpha * lam * row_mean((net(xr_t, sigma, alpha) - x_real) ** 2)
    fake_term = (1 - alpha) * lam * row_mean((net(xf_t, sigma, alpha) - x_fake) ** 2)
    loss = (real_term + fake_term).mean()
    half = torch.full((N,), 0.5, dtype=F64)
    logit_real = head(net(xr_gan, sigma_gan, half, return_features=True)[1])
    logit_fake = head(net(xf_gan, sigma_gan, half, return_features=True)[1])
    w = half if m.gan_disc_alpha == "half" else alpha  # real class weight, fake gets 1 - w
    disc = ((1 - w) * F.softplus(logit_fake)).mean() + (w * F.softplus(-logit_real)).mean()
    return loss + m.gan_disc_weight * disc


@pytest.mark.parametrize("gan_disc_alpha", ["half", "score"])
def test_critic_loss_and_gradients_match_eq8_and_the_discriminator_loss(tiny_cfg, gan_disc_alpha):
    method = build(tiny_cfg, **{"method.gan_disc_alpha": gan_disc_alpha})
    params = list(method.networks["critic"].parameters())
    x_real = real_batch()
    got = method_loss_and_grads(method, "critic", x_real, params)
    expected_loss = replay_critic(method, x_real)
    assert_same(got, (expected_loss, torch.autograd.grad(expected_loss, params)))
    assert all(g is not None and g.abs().sum() > 0 for g in got[1])  # both score net and head are trained


def test_critic_loss_without_gan_is_eq8_alone(tiny_cfg):
    method = build(tiny_cfg, **{"method.gan": False})
    method.networks["critic"].head = None
    params = list(method.networks["critic"].denoiser.parameters())
    x_real = real_batch()
    got = method_loss_and_grads(method, "critic", x_real, params)
    net, gen = method.networks["critic"].denoiser, method.networks["generator"]
    torch.manual_seed(11)
    with torch.no_grad():
        x_fake = gen(torch.randn(N, 2))
    sigma, alpha = method.grid.draw(N).to(F64), method.score_alpha(N).to(F64)
    xr_t = x_real + sigma[:, None] * torch.randn(N, 2, dtype=F64)
    xf_t = x_fake + sigma[:, None] * torch.randn(N, 2, dtype=F64)
    lam = edm_weight(sigma)
    expected = (
        alpha * lam * row_mean((net(xr_t, sigma, alpha) - x_real) ** 2)
        + (1 - alpha) * lam * row_mean((net(xf_t, sigma, alpha) - x_fake) ** 2)
    ).mean()
    assert_same(got, (expected, torch.autograd.grad(expected, params)))


# ------------------------------------------------------------------------------------------ generator
def replay_generator(method, seed=11):
    """Eq. 6, 9, 10 (adaptive weighting) + Eq. 11. Returns (loss value, the function whose parameter
    gradient is the generator's: sum(x * direction) / numel + w_gan * L_gan)."""
    m = method.cfg.method
    net, head, gen = method.networks["critic"].denoiser, method.networks["critic"].head, method.networks["generator"]
    torch.manual_seed(seed)
    x = gen(torch.randn(N, 2))
    lo, hi = method.gen_sigma_range
    sigma = method.grid.draw(N, lo=lo, hi=hi).to(F64)
    alpha = method.gen_alpha(N).to(F64)
    x_t = x.detach() + sigma[:, None] * torch.randn(N, 2, dtype=F64)
    with torch.no_grad():
        d_0 = net(x_t, sigma, torch.zeros(N, dtype=F64))  # fake end
        d_a = net(x_t, sigma, alpha)  # mixture
        d_1 = net(x_t, sigma, torch.ones(N, dtype=F64))  # data end
    xd = x.detach()
    # Eq. 10 in denoiser form: weight = mean|x - D_1| sqrt(mean (D_a - D_0)^2 / (mean (D_1 - D_0)^2 + 1e-6))
    weight = row_mean((xd - d_1).abs()) * torch.sqrt(row_mean((d_a - d_0) ** 2) / (row_mean((d_1 - d_0) ** 2) + 1e-6))
    direction = (d_0 - d_a) / weight[:, None]  # d loss / dx; x moves along D_a - D_0
    value = 0.5 * (direction**2).mean()
    surrogate = (x * direction).sum() / x.numel()
    sigma_gan = method.grid.draw(N).to(F64)
    x_gan = x + sigma_gan[:, None] * torch.randn(N, 2, dtype=F64)
    logit = head(net(x_gan, sigma_gan, torch.full((N,), 0.5, dtype=F64), return_features=True)[1])
    offset = torch.log(alpha / (1 - alpha)) if m.gan_offset else torch.zeros_like(alpha)
    gan = F.softplus(-logit - offset).mean()  # Eq. 11
    return value + m.gan_gen_weight * gan, surrogate + m.gan_gen_weight * gan, direction


def test_generator_loss_and_gradients_match_eq10_and_eq11(tiny_cfg):
    method = build(tiny_cfg)
    params = list(method.networks["generator"].parameters())
    got = method_loss_and_grads(method, "generator", real_batch(), params)
    value, for_grad, direction = replay_generator(method)
    assert_same(got, (value.detach(), torch.autograd.grad(for_grad, params)))
    assert direction.abs().min() > 1e-6  # a nondegenerate case


def test_generator_offset_follows_the_config(tiny_cfg):
    """method.gan_offset=false drops Eq. 11's log(alpha/(1-alpha)) (the released code); the default keeps it."""
    on, off = build(tiny_cfg), build(tiny_cfg, **{"method.gan_offset": False})
    params_on = list(on.networks["generator"].parameters())
    params_off = list(off.networks["generator"].parameters())
    off.networks["generator"].load_state_dict(on.networks["generator"].state_dict())
    off.networks["critic"].load_state_dict(on.networks["critic"].state_dict())
    got_on = method_loss_and_grads(on, "generator", real_batch(), params_on)
    got_off = method_loss_and_grads(off, "generator", real_batch(), params_off)
    assert_same(got_off, (replay_generator(off)[0].detach(), torch.autograd.grad(replay_generator(off)[1], params_off)))
    assert abs(got_on[0].item() - got_off[0].item()) > 1e-4


def test_generator_without_gan_is_the_weighted_direction(tiny_cfg):
    method = build(tiny_cfg, **{"method.gan": False})
    method.networks["critic"].head = None
    params = list(method.networks["generator"].parameters())
    got = method_loss_and_grads(method, "generator", real_batch(), params)
    net, gen = method.networks["critic"].denoiser, method.networks["generator"]
    torch.manual_seed(11)
    x = gen(torch.randn(N, 2))
    lo, hi = method.gen_sigma_range
    sigma, alpha = method.grid.draw(N, lo=lo, hi=hi).to(F64), method.gen_alpha(N).to(F64)
    x_t = x.detach() + sigma[:, None] * torch.randn(N, 2, dtype=F64)
    with torch.no_grad():
        d_0, d_a, d_1 = (net(x_t, sigma, a) for a in (torch.zeros(N, dtype=F64), alpha, torch.ones(N, dtype=F64)))
    xd = x.detach()
    weight = row_mean((xd - d_1).abs()) * torch.sqrt(row_mean((d_a - d_0) ** 2) / (row_mean((d_1 - d_0) ** 2) + 1e-6))
    direction = (d_0 - d_a) / weight[:, None]
    assert_same(got, (0.5 * (direction**2).mean(), torch.autograd.grad((x * direction).sum() / x.numel(), params)))


def test_generator_moves_samples_towards_the_mixture_denoiser(tiny_cfg):
    """One plain gradient step on the generator's output moves x along D_alpha - D_0 (Eq. 6 sign)."""
    method = build(tiny_cfg, **{"method.gan": False})
    method.networks["critic"].head = None
    gen = method.networks["generator"]
    captured = {}
    original = gen.forward

    def forward(z, labels=None, sigma=None):
        out = original(z, labels=labels, sigma=sigma)
        if sigma is None and out.requires_grad:
            out.retain_grad()
            captured["x"] = out
        return out

    gen.forward = forward
    torch.manual_seed(11)
    loss, _ = method.loss("generator", (real_batch(), None), 0)
    loss.backward()
    _, _, direction = replay_generator(build(tiny_cfg, **{"method.gan": False}))
    torch.testing.assert_close(captured["x"].grad, direction.detach() / direction.numel(), rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------- warm-up
@pytest.mark.parametrize("warmup_sigma", ["grid", "generator"])
def test_warmup_loss_and_gradients_are_plain_edm_dsm(tiny_cfg, warmup_sigma):
    method = build(tiny_cfg, **{"method.warmup_steps": 3, "method.warmup_sigma": warmup_sigma})
    gen = method.networks["generator"]
    params = list(gen.parameters())
    x_real = real_batch()
    got = method_loss_and_grads(method, "warmup", x_real, params)
    torch.manual_seed(11)
    if warmup_sigma == "grid":
        sigma = method.grid.draw(N).to(F64)
    else:
        sigma = torch.full((N,), gen.sigma_max, dtype=F64)
    x_t = x_real + sigma[:, None] * torch.randn(N, 2, dtype=F64)
    expected = (edm_weight(sigma) * row_mean((gen(x_t, sigma=sigma) - x_real) ** 2)).mean()
    assert_same(got, (expected, torch.autograd.grad(expected, params)))
    assert [p.name for p in method.plan(0)] == ["warmup"]


# ---------------------------------------------------------------------- labels and the critic's mode
def test_generator_step_uses_the_real_batchs_labels(tiny_cfg):
    method = build(tiny_cfg, **{"method.gan": False})
    method.networks["critic"].head = None
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    method.loss("generator", (real_batch(), labels), 0)
    assert torch.equal(method.networks["generator"].labels_seen[-1], labels)


@pytest.mark.parametrize("eval_in_gen", [True, False])
def test_critic_mode_during_the_generator_step(tiny_cfg, eval_in_gen):
    """critic_eval_in_gen=true: D_0, D_alpha, D_1 come from the critic in eval mode (no dropout masks),
    and the critic is back in train mode afterwards; the critic phase always trains in train mode."""
    method = build(tiny_cfg, **{"method.gan": False, "method.critic_eval_in_gen": eval_in_gen})
    critic = method.networks["critic"]
    critic.head = None
    critic.denoiser = net = TinyScoreNet(dropout=0.5)
    critic.train()
    torch.manual_seed(1)
    first, _ = method.loss("generator", (real_batch(), None), 0)
    assert net.modes_seen == [not eval_in_gen] and critic.training and net.training
    method.loss("critic", (real_batch(), None), 0)
    assert net.modes_seen[-1] is True
    # the same draws but a different dropout stream: equal in eval mode, different in train mode
    outs = []
    for dropout_seed in (5, 6):
        torch.manual_seed(1)
        calls = {"n": 0}
        original = net.drop.forward

        def reseeded(h, _orig=original, _seed=dropout_seed):
            if calls["n"] == 0:
                torch.manual_seed(_seed)
            calls["n"] += 1
            return _orig(h)

        net.drop.forward = reseeded
        outs.append(method.loss("generator", (real_batch(), None), 0)[0])
        net.drop.forward = original
    assert torch.equal(outs[0], outs[1]) == eval_in_gen
    assert math.isfinite(outs[0].item())


# ------------------------------------------------------------------------------------ preset settings
@pytest.mark.parametrize("preset", ["cifar10-smt", "imagenet64-smt"])
def test_image_presets_train_the_critic_alone_after_the_generator_warmup(preset):
    from scoremix.config_loader import load_config

    m = load_config(preset).method
    assert m.warmup_steps > 0 and m.critic_warmup_steps == 2000
    assert m.gan_disc_alpha == "half" and m.critic_eval_in_gen and m.gan_offset


def test_unknown_gan_disc_alpha_is_a_config_error():
    from scoremix.config_loader import load_config
    from scoremix.errors import ConfigError

    with pytest.raises(ConfigError, match="gan_disc_alpha"):
        load_config("ring8", ["method.gan_disc_alpha=paper"])
