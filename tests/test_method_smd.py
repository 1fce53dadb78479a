"""SMD and DMD methods: initialisation from the teacher, which networks a step changes, and the values of
their losses against the same quantities assembled by hand (so slicing, offsets and targets are pinned)."""

import math

import pytest
import torch
from torch.nn import functional as F

from scoremix.config_loader import load_config
from scoremix.errors import ConfigError, TeacherError
from scoremix.methods import build_method
from scoremix.nets.build import build_backbone
from scoremix.precond import Denoiser
from scoremix.teachers import freeze
from scoremix.trainer import Trainer
from tests.distill_helpers import IMAGES as DIGITS, TOY

IMAGES = [*DIGITS, "train.ema=0.9"]


def tiny_network_teacher(num_classes=0, seed=0):
    """A random 8x8 U-Net denoiser with the teacher contract's info (what teachers/run.py returns)."""
    from scoremix.config import NetConfig

    net = NetConfig(arch="unet", channels=8, channel_mult=[1, 2], blocks=1)
    torch.manual_seed(seed)
    teacher = freeze(Denoiser(build_backbone(net, (1, 8, 8), num_classes), 0.5))
    teacher.info = {
        "kind": "scoremix",
        "arch": "unet",
        "precond": "edm",
        "resolution": 8,
        "channels": 1,
        "num_classes": num_classes,
        "parameters": sum(p.numel() for p in teacher.parameters()),
        "sigma_data": 0.5,
        "data_shape": [1, 8, 8],
        "net_config": {
            "arch": "unet",
            "channels": 8,
            "channel_mult": [1, 2],
            "blocks": 1,
            "attention": [],
            "dropout": 0.0,
            "label_dropout": 0.0,
        },
    }
    return teacher


def _snap(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("name", ["smd", "dmd"])
def test_one_step_changes_exactly_the_right_networks(name, tmp_path):
    teacher = tiny_network_teacher()
    t0 = _snap(teacher)
    gan = "true"
    cfg = load_config(
        "mnist-smd", IMAGES + [f"method.name={name}", "method.gen_every=2", f"method.gan={gan}", "steps=3"]
    )
    tr = Trainer(cfg, str(tmp_path / name), teacher=teacher)
    m = tr.method
    gen, critic = m.networks["generator"], m.networks["critic"]
    # initialisation: D_fake is the teacher, the generator is the teacher at sigma_max, config says so
    assert cfg.generator.arch == "unet" and cfg.generator.channels == 8 and cfg.score.channel_mult == [1, 2]
    assert all(torch.equal(v, t0[k]) for k, v in critic.fake.state_dict().items())
    z = torch.randn(3, 1, 8, 8)
    gen.eval()
    torch.testing.assert_close(gen(z), teacher(80.0 * z, torch.full((3,), 80.0)))
    gen.train()
    # the teacher is held outside the networks and every optimiser
    assert set(m.networks) == {"generator", "critic"}
    opt_params = {id(p) for o in tr.optimizers.values() for g in o.param_groups for p in g["params"]}
    assert not any(id(p) in opt_params for p in teacher.parameters())
    assert cfg.method.teacher_sha256 and len(cfg.method.teacher_sha256) == 64

    for step in range(2):
        g0, c0 = _snap(gen), _snap(critic)
        assert [p.name for p in m.plan(step)] == (["generator", "critic"] if step == 0 else ["critic"])
        stats = tr.train_step(tr.source.next_batch())
        assert all(torch.isfinite(v).all() for v in stats.values())
        assert bool(_changed(g0, gen)) == (step == 0)
        changed = _changed(c0, critic)
        assert any(k.startswith("fake.") for k in changed) and any(k.startswith("head.") for k in changed)
        tr.step += 1
    assert not _changed(t0, teacher) and not any(p.requires_grad for p in teacher.parameters())

    # the checkpoint holds no teacher weights; sample/eval rebuild the generator from the saved config
    tr.save_checkpoint()
    from scoremix.checkpoint import list_checkpoints, load_training_state
    from scoremix.sampling import load_generators

    state = load_training_state(list_checkpoints(str(tmp_path / name / "checkpoints"))[-1])
    assert set(state["networks"]) == {"generator", "critic"}
    gens, saved_cfg, shape, classes, _ = load_generators(str(tmp_path / name))
    gen.eval()
    torch.testing.assert_close(gens["raw"](z), gen(z))
    assert saved_cfg.method.teacher_sha256 == cfg.method.teacher_sha256


def test_resume_refuses_another_teacher_and_missing_teacher_is_explained(tmp_path):
    cfg = load_config("mnist-smd", IMAGES)
    cfg.method.teacher_sha256 = "0" * 64
    with pytest.raises(TeacherError, match="not the one this run started with"):
        build_method(cfg, (1, 8, 8), 0, teacher=tiny_network_teacher())
    with pytest.raises(ConfigError, match="mnist-edm"):
        build_method(load_config("mnist-dmd", IMAGES), (1, 8, 8), 0)
    with pytest.raises(TeacherError, match="classes"):
        build_method(load_config("mnist-smd", IMAGES), (1, 8, 8), 0, teacher=tiny_network_teacher(num_classes=10))
    with pytest.raises(ConfigError, match="2-D toys"):
        load_config("mnist-smd", IMAGES + ["method.teacher=analytic"])


def test_bf16_teacher_matches_fp32():
    cfg = load_config("mnist-smd", IMAGES + ["method.teacher_dtype=bf16"])
    m = build_method(cfg, (1, 8, 8), 0, teacher=tiny_network_teacher())
    ref = tiny_network_teacher()
    x, sigma = torch.randn(4, 1, 8, 8), torch.tensor([0.1, 1.0, 5.0, 40.0])
    assert next(m.teacher.parameters()).dtype == torch.bfloat16
    got = m.teacher_denoise(x, sigma)
    assert got.dtype == torch.float32
    want = ref(x, sigma)
    assert (got - want).abs().max() <= 0.03 * want.abs().max()
    # the generator and D_fake were copied before the cast: full precision
    assert next(m.networks["generator"].parameters()).dtype == torch.float32
    assert next(m.networks["critic"].parameters()).dtype == torch.float32


# --- glue: loss(phase) against the same quantity assembled by hand ----------------------------------------
class _Fixed:
    """Deterministic stand-ins for the sigma grid draws and the alpha samplers."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, n, *a, **k):
        return self.values.pop(0)


def _toy_method(name, gan=True):
    cfg = load_config(f"ring8-{name}", TOY + [f"method.gan={gan}", "method.gan_gen_weight=0.5"])
    torch.manual_seed(0)
    return build_method(cfg, (2,), 0), cfg


def _fake_and_logit(critic, x, sigma):
    d, feats = critic.fake(x, sigma, return_features=True)
    return d, critic.head(feats)


def test_smd_critic_loss_by_hand():
    m, cfg = _toy_method("smd")
    n = 8
    x_real = torch.randn(n, 2) + 1.0
    s_dsm, s_mix = torch.rand(n) * 2 + 0.05, torch.rand(n) * 2 + 0.05
    alpha = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.6, 0.8, 0.95, 1.0])
    m.grid.draw = _Fixed([s_dsm, s_mix])
    m.score_alpha = _Fixed([alpha])
    torch.manual_seed(5)
    loss, stats = m.loss("critic", (x_real, None), 0)

    torch.manual_seed(5)
    with torch.no_grad():
        x_fake = m.networks["generator"](torch.randn(n, 2))
    noise = torch.randn(n, 2)
    eps_dsm = torch.randn(n, 2)
    critic, sd = m.networks["critic"], cfg.data.sigma_data
    lam = lambda s: s**-2 + sd**-2  # noqa: E731
    d_dsm = critic.fake(x_fake + s_dsm[:, None] * eps_dsm, s_dsm)
    want_fake = (lam(s_dsm) * ((d_dsm - x_fake) ** 2).mean(1)).mean()
    xr_t, xf_t = x_real + s_mix[:, None] * noise, x_fake + s_mix[:, None] * noise
    a = alpha.clamp(1e-6, 1 - 1e-6)
    offset = torch.log(a / (1 - a))
    terms = []
    for x_t, target_is_teacher in ((xr_t, True), (xf_t, False)):
        d_fake, logit = _fake_and_logit(critic, x_t, s_mix)
        d_p = m.teacher(x_t, s_mix)
        post = torch.sigmoid(logit + offset)[:, None]
        mix = post * d_p + (1 - post) * d_fake
        target = d_p if target_is_teacher else d_fake
        terms.append(lam(s_mix) * ((mix - target) ** 2).mean(1))
    want_mix = (alpha * terms[0] + (1 - alpha) * terms[1]).mean()
    torch.testing.assert_close(stats["loss_fake"], want_fake.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["loss_mix"], want_mix.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss, (want_fake + want_mix).detach(), rtol=1e-5, atol=1e-6)
    critic.zero_grad()
    loss.backward()
    head_grad = [p.grad for p in critic.head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head_grad)


def test_smd_generator_loss_and_gradient_by_hand():
    m, cfg = _toy_method("smd")
    n = 8
    sigma = torch.rand(n) * 2 + 0.05
    alpha = torch.linspace(0.5, 1.0, n)
    m.grid.draw = _Fixed([sigma])
    m.gen_alpha = _Fixed([alpha])
    gen, critic = m.networks["generator"], m.networks["critic"]
    torch.manual_seed(7)
    loss, stats = m.loss("generator", (torch.zeros(n, 2), None), 0)
    gen.zero_grad()
    loss.backward()
    got = [p.grad.clone() for p in gen.parameters()]

    torch.manual_seed(7)
    x = gen(torch.randn(n, 2))
    noise = torch.randn(n, 2)
    x_t = x + sigma[:, None] * noise
    with torch.no_grad():
        d_p = m.teacher(x_t, sigma)
        d_fake, logit = _fake_and_logit(critic, x_t, sigma)
    a = alpha.clamp(1e-6, 1 - 1e-6)
    post = torch.sigmoid(logit + torch.log(a / (1 - a)))
    grad = post[:, None] * (d_fake - d_p) / (alpha[:, None] * (x - d_p).abs().mean(1, keepdim=True))
    grad = grad.detach()
    _, logit_x = _fake_and_logit(critic, x_t, sigma)
    gan = F.softplus(-logit_x - torch.log(a / (1 - a))).mean()
    # value: 0.5 mean(grad^2) + w GAN; gradient: d/dx of the surrogate is grad / numel (moves x along -grad)
    torch.testing.assert_close(loss.detach(), (0.5 * (grad**2).mean() + 0.5 * gan).detach(), rtol=1e-5, atol=1e-7)
    hand = (x * grad).sum() / x.numel() + 0.5 * gan
    gen.zero_grad()
    hand.backward()
    for g_got, p in zip(got, gen.parameters()):
        torch.testing.assert_close(g_got, p.grad, rtol=1e-4, atol=1e-7)


def test_dmd_losses_by_hand():
    """DMD2's draws: the discriminator noises reals and fakes at independent sigmas; the generator's GAN
    logit sees g(z) noised afresh at its own sigma, not the distribution-matching x_t."""
    m, cfg = _toy_method("dmd", gan=True)
    n = 8
    x_real = torch.randn(n, 2)
    s_dsm, s_real, s_fake, s_gen, s_gan = (torch.rand(n) * 2 + 0.05 for _ in range(5))
    m.grid.draw = _Fixed([s_dsm, s_real, s_fake, s_gen, s_gan])
    critic, gen, sd = m.networks["critic"], m.networks["generator"], cfg.data.sigma_data
    torch.manual_seed(3)
    loss, stats = m.loss("critic", (x_real, None), 0)
    torch.manual_seed(3)
    with torch.no_grad():
        x_fake = gen(torch.randn(n, 2))
    e1, e2, e3 = torch.randn(n, 2), torch.randn(n, 2), torch.randn(n, 2)
    d = critic.fake(x_fake + s_dsm[:, None] * e1, s_dsm)
    want_fake = ((s_dsm**-2 + sd**-2) * ((d - x_fake) ** 2).mean(1)).mean()
    _, l_real = _fake_and_logit(critic, x_real + s_real[:, None] * e2, s_real)
    _, l_fake = _fake_and_logit(critic, x_fake + s_fake[:, None] * e3, s_fake)
    disc = F.softplus(l_fake).mean() + F.softplus(-l_real).mean()
    torch.testing.assert_close(stats["loss_fake"], want_fake.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["loss_disc"], disc.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        loss.detach(), (want_fake + cfg.method.gan_disc_weight * disc).detach(), rtol=1e-5, atol=1e-6
    )

    torch.manual_seed(4)
    loss, stats = m.loss("generator", (x_real, None), 0)
    gen.zero_grad()
    loss.backward()
    got = [p.grad.clone() for p in gen.parameters()]
    torch.manual_seed(4)
    x = gen(torch.randn(n, 2))
    x_t = x + s_gen[:, None] * torch.randn(n, 2)
    x_gan = x + s_gan[:, None] * torch.randn(n, 2)
    with torch.no_grad():
        d_p = m.teacher(x_t, s_gen)
        d_fake = critic.fake(x_t, s_gen)
    grad = ((d_fake - d_p) / (x - d_p).abs().mean(1, keepdim=True)).detach()
    _, logit_x = _fake_and_logit(critic, x_gan, s_gan)
    gan = F.softplus(-logit_x).mean()
    torch.testing.assert_close(loss.detach(), (0.5 * (grad**2).mean() + 0.5 * gan).detach(), rtol=1e-5, atol=1e-7)
    gen.zero_grad()
    ((x * grad).sum() / x.numel() + 0.5 * gan).backward()
    for g_got, p in zip(got, gen.parameters()):
        torch.testing.assert_close(g_got, p.grad, rtol=1e-4, atol=1e-7)


def test_toy_warmup_regresses_the_generator_onto_the_teacher_at_its_sigma():
    m, cfg = _toy_method("smd")
    gen = m.networks["generator"]
    torch.manual_seed(2)
    loss, stats = m.loss("warmup", (torch.zeros(16, 2), None), 0)
    torch.manual_seed(2)
    z = torch.randn(16, 2)
    target = m.teacher(gen.sigma_max * z, torch.full((16,), gen.sigma_max))
    torch.testing.assert_close(loss.detach(), ((gen(z) - target) ** 2).mean().detach())
    assert math.isclose(gen.sigma_max, cfg.noise.sigma_max)


def test_cli_train_resume_sample_eval_with_the_analytic_teacher(tmp_path, capsys):
    from scoremix.cli import main

    run = str(tmp_path / "run")
    args = (
        ["train", "--config", "ring8-smd", "--out", run]
        + TOY
        + ["steps=4", "method.warmup_steps=1", "method.critic_warmup_steps=1", "ckpt_every=2"]
    )
    assert main(args[:-1] + ["ckpt_every=2", "steps=2"]) == 0
    saved = load_config(run + "/config.yaml")
    assert saved.method.name == "smd" and saved.method.teacher == "analytic" and len(saved.method.teacher_sha256) == 64
    assert main(["train", "--out", run, "--resume", "latest", "steps=4"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert main(["sample", "--checkpoint", run, "--n", "10", "--out", str(tmp_path / "s.npz")]) == 0
    assert main(["eval", "--checkpoint", run, "--samples", "50"]) == 0
    assert main(["train", "--config", "ring8-dmd", "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["train", "--config", "mnist-smd", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "method.teacher=PATH" in err and "mnist-edm" in err and len(err.strip().splitlines()) == 1
