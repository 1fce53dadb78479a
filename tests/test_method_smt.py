"""One SMT iteration updates exactly the networks it should; the update ratio holds."""

import torch

from scoremix.trainer import Trainer


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    after = module.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before)


def _trainer(tiny_cfg, tmp_path, **extra):
    cfg = tiny_cfg(**extra)
    return Trainer(cfg, str(tmp_path / "run"))


def test_generator_step_then_critic_only_steps(tiny_cfg, tmp_path):
    tr = _trainer(tiny_cfg, tmp_path, **{"method.gen_every": 3, "train.ema": 0.9})
    gen, critic = tr.method.networks["generator"], tr.method.networks["critic"]
    for step in range(7):
        g0, c0, e0 = _snapshot(gen), _snapshot(critic), _snapshot(tr.ema.module)
        tr.train_step(tr.source.next_batch())
        gen_should_step = step % 3 == 0
        assert _changed(g0, gen) == gen_should_step, step
        assert _changed(e0, tr.ema.module) == gen_should_step, step
        assert _changed(c0, critic), step
        tr.step += 1
    gen_opt, critic_opt = tr.optimizers["generator"], tr.optimizers["critic"]
    gen_steps = next(iter(gen_opt.state.values()))["step"].item()
    critic_steps = next(iter(critic_opt.state.values()))["step"].item()
    assert (gen_steps, critic_steps) == (3, 7)  # steps 0, 3, 6
    assert tr.method.optimizer_steps("generator", 7) == 3
    assert tr.method.optimizer_steps("critic", 7) == 7


def test_warmup_phase_trains_only_the_generator_as_a_denoiser(tiny_cfg, tmp_path):
    tr = _trainer(tiny_cfg, tmp_path, **{"method.warmup_steps": 2, "method.gen_every": 5})
    assert [p.name for p in tr.method.plan(0)] == ["warmup"]
    assert [p.name for p in tr.method.plan(2)] == ["generator", "critic"]
    assert [p.name for p in tr.method.plan(3)] == ["critic"]
    critic = tr.method.networks["critic"]
    c0 = _snapshot(critic)
    stats = tr.train_step(tr.source.next_batch())
    assert "loss_warmup" in stats and not _changed(c0, critic)
    assert tr.method.optimizer_steps("generator", 12) == 2 + 2  # warm-up 2, then SMT steps 2 and 7
    assert tr.method.optimizer_steps("critic", 12) == 10


def test_critic_warmup_trains_only_the_critic_after_the_generator_warmup(tiny_cfg, tmp_path):
    tr = _trainer(
        tiny_cfg, tmp_path, **{"method.warmup_steps": 2, "method.critic_warmup_steps": 3, "method.gen_every": 2}
    )
    names = [[p.name for p in tr.method.plan(k)] for k in range(8)]
    assert names == [
        ["warmup"],
        ["warmup"],
        ["critic"],
        ["critic"],
        ["critic"],
        ["generator", "critic"],
        ["critic"],
        ["generator", "critic"],
    ]
    tr.step = 2
    gen, critic = tr.method.networks["generator"], tr.method.networks["critic"]
    g0, c0 = _snapshot(gen), _snapshot(critic)
    tr.train_step(tr.source.next_batch())
    assert not _changed(g0, gen) and _changed(c0, critic)
    assert tr.method.optimizer_steps("generator", 12) == 2 + 4  # SMT steps 5, 7, 9, 11
    assert tr.method.optimizer_steps("critic", 12) == 10
    assert tr.method.optimizer_steps("generator", 4) == 2


def test_warmup_at_the_generator_sigma_is_plain_denoising_at_that_level(tiny_cfg, tmp_path):
    from scoremix.objectives.diffusion import add_noise, denoising_loss

    tr = _trainer(
        tiny_cfg,
        tmp_path,
        **{"method.warmup_steps": 2, "method.warmup_sigma": "generator", "noise.generator_sigma": 2.5},
    )
    method, gen = tr.method, tr.method.networks["generator"]
    x = torch.randn(16, *method.data_shape)
    torch.manual_seed(3)
    loss, _ = method.loss("warmup", (x, None), 0)
    torch.manual_seed(3)
    sigma = torch.full((16,), 2.5)
    expected = denoising_loss(gen(add_noise(x, sigma), sigma=sigma), x, sigma, method.sigma_data).mean()
    assert gen.sigma_max == 2.5
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


def test_gan_head_is_trained_with_the_critic(tiny_cfg, tmp_path):
    tr = _trainer(tiny_cfg, tmp_path, **{"method.gan": True, "method.gen_every": 1})
    head = tr.method.networks["critic"].head
    h0 = _snapshot(head)
    stats = tr.train_step(tr.source.next_batch())
    assert _changed(h0, head)
    assert {"loss_gen_gan", "loss_disc", "loss_score", "loss_gen"} <= set(stats)


def test_generator_loss_gradient_is_the_weighted_direction(tiny_cfg, tmp_path):
    """d loss_G / d x equals the Eq. 9-10 direction divided by x.numel() (the surrogate of Sec. 3.3)."""
    from scoremix.objectives.smt import generator_direction, mixture_denoisers

    tr = _trainer(tiny_cfg, tmp_path)
    m = tr.method
    torch.manual_seed(5)
    z = torch.randn(16, 2)
    x = m.networks["generator"](z).detach().requires_grad_(True)
    sigma, alpha = torch.full((16,), 0.7), torch.full((16,), 0.4)
    xt = x.detach() + 0.7 * torch.randn(16, 2)
    d0, da, d1 = mixture_denoisers(m.networks["critic"].denoiser, xt, sigma, alpha)
    grad = generator_direction(x.detach(), d0, da, d1)
    from scoremix.objectives.smt import surrogate_loss

    surrogate_loss(x, grad).backward()
    torch.testing.assert_close(x.grad, grad / x.numel(), rtol=1e-6, atol=1e-9)  # float32 rounding only
