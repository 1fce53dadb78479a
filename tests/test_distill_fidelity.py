"""Distillation fidelity at paper scale (issue 19): the students' dropout, the generator direction at the
start, the critic's mode in the generator step, joint features, the sigma ranges and DMD2's GAN draws
through the real grid, class labels through every network, the preset values, the paper's head and
EDM's training sigmas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from scoremix.config import NetConfig
from scoremix.config_loader import load_config
from scoremix.errors import ConfigError
from scoremix.methods import build_method
from scoremix.nets.build import build_backbone, build_head, count_parameters
from scoremix.noise import SigmaGrid
from scoremix.precond import Denoiser
from scoremix.teachers import freeze
from tests.distill_helpers import IMAGES, TOY


def unet_teacher(num_classes=0, dropout=0.0, label_dropout=0.0, seed=0):
    """A random 8x8 U-Net denoiser with the teacher contract's info, built with the given dropouts (the
    network settings a loader reports in info['net_config'])."""
    net = NetConfig(
        arch="unet", channels=8, channel_mult=[1, 2], blocks=1, dropout=dropout, label_dropout=label_dropout
    )
    torch.manual_seed(seed)
    teacher = freeze(Denoiser(build_backbone(net, (1, 8, 8), num_classes), 0.5))
    teacher.info = {
        "kind": "scoremix",
        "arch": "unet",
        "precond": "edm",
        "resolution": 8,
        "channels": 1,
        "num_classes": num_classes,
        "parameters": count_parameters(teacher),
        "sigma_data": 0.5,
        "data_shape": [1, 8, 8],
        "net_config": {
            "arch": "unet",
            "channels": 8,
            "channel_mult": [1, 2],
            "blocks": 1,
            "attention": [],
            "dropout": dropout,
            "label_dropout": label_dropout,
        },
    }
    return teacher


def move_away_from_the_teacher(method, scale=0.05):
    """D_fake as after some critic steps: at D_fake == D_p the mixture loss does not depend on the head."""
    torch.manual_seed(123)
    with torch.no_grad():
        for p in method.networks["critic"].fake.parameters():
            p.add_(scale * torch.randn_like(p))


def dropout_rates(module: nn.Module) -> list[float]:
    """Every dropout probability inside `module`: nn.Dropout layers and the float `dropout` /
    `label_dropout` attributes the backbones keep."""
    rates = []
    for sub in module.modules():
        if isinstance(sub, nn.Dropout):
            rates.append(float(sub.p))
        for name in ("dropout", "label_dropout"):
            value = getattr(sub, name, None)
            if isinstance(value, float):
                rates.append(value)
    return rates


# --- 1. the students' dropout and the generator direction at the start ------------------------------------
@pytest.mark.parametrize("name", ["smd", "dmd"])
def test_students_of_a_dropout_teacher_have_no_dropout_and_the_first_generator_direction_is_zero(name):
    teacher = unet_teacher(dropout=0.13, label_dropout=0.1)
    assert max(dropout_rates(teacher)) == pytest.approx(0.13)
    cfg = load_config("mnist-smd", IMAGES + [f"method.name={name}", "method.gan=false"])
    m = build_method(cfg, (1, 8, 8), 0, teacher=teacher)
    fake, gen = m.networks["critic"].fake, m.networks["generator"]
    assert cfg.score.dropout == cfg.score.label_dropout == 0.0 == cfg.generator.dropout
    assert dropout_rates(fake) and set(dropout_rates(fake)) == {0.0}
    assert set(dropout_rates(gen)) == {0.0}

    # the critic step would run in train mode; the generator step must see D_fake == D_p exactly
    modes = []
    fake.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
    for net in m.networks.values():
        net.train()
    torch.manual_seed(0)
    loss, stats = m.loss("generator", (torch.zeros(4, 1, 8, 8), None), 0)
    assert stats["gen_grad_rms"].item() == 0.0
    gen.zero_grad()
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in gen.parameters())
    assert modes == [False]  # eval mode in the generator step...
    assert m.networks["critic"].training  # ...and train mode again afterwards


def test_generator_step_can_keep_the_critic_in_train_mode():
    cfg = load_config("mnist-smd", IMAGES + ["method.critic_eval_in_gen=false"])
    m = build_method(cfg, (1, 8, 8), 0, teacher=unet_teacher())
    modes = []
    m.networks["critic"].fake.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
    m.networks["critic"].train()
    m.loss("generator", (torch.zeros(4, 1, 8, 8), None), 0)
    assert modes == [True]


# --- 2. joint features -----------------------------------------------------------------------------------
@pytest.mark.parametrize("joint", [False, True])
def test_mixture_loss_alone_trains_the_fake_encoder_only_with_joint_features(joint, monkeypatch):
    import scoremix.methods.smd as smd_method

    cfg = load_config("mnist-smd", IMAGES + [f"method.smd_joint_features={joint}"])
    m = build_method(cfg, (1, 8, 8), 0, teacher=unet_teacher())
    move_away_from_the_teacher(m)
    # the denoising loss of D_fake contributes nothing: what remains is the mixture loss (Eq. 14)
    monkeypatch.setattr(smd_method, "fake_score_loss", lambda d, x, s, sd: d.flatten(1).sum(1) * 0.0)
    torch.manual_seed(0)
    loss, stats = m.loss("critic", (torch.randn(4, 1, 8, 8), None), 0)
    assert loss.item() == pytest.approx(stats["loss_mix"].item())
    critic = m.networks["critic"]
    critic.zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.head.parameters())
    grads = {k: p.grad for k, p in critic.fake.named_parameters()}
    moved = {k for k, g in grads.items() if g is not None and g.abs().sum() > 0}
    encoder = {k for k in grads if k.split(".")[1] in ("embed", "inp", "down", "mid1", "mid_attn", "mid2")}
    assert encoder and encoder != set(grads)
    if joint:
        assert moved == encoder  # every encoder parameter, and nothing past the bottleneck
    else:
        assert moved == set()


# --- 3. sigma ranges through the real grid, and DMD2's GAN draws -------------------------------------------
class DrawSpy:
    """Wraps the real SigmaGrid.draw and records (lo, hi, sigmas) of every call."""

    def __init__(self, grid: SigmaGrid):
        self.draw = grid.draw
        self.calls = []

    def __call__(self, n, device=None, generator=None, lo=0, hi=None):
        out = self.draw(n, device, generator=generator, lo=lo, hi=hi)
        self.calls.append((lo, grid_hi(hi), out.clone()))
        return out


def grid_hi(hi):
    return 1000 if hi is None else hi


def record_critic_calls(critic):
    """(x, sigma, with_logits) of every call of the DistillCritic."""
    calls = []
    critic.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(
            (args[0].detach().clone(), args[1].detach().clone(), kwargs.get("with_logits", False))
        ),
        with_kwargs=True,
    )
    return calls


def check_within(sigmas, grid, lo, hi):
    assert sigmas.min() >= grid.sigmas[lo] and sigmas.max() <= grid.sigmas[hi - 1]


@pytest.mark.parametrize("name", ["smd", "dmd"])
def test_generator_sigmas_come_from_grid_indices_20_to_980_and_critic_sigmas_from_the_whole_grid(name):
    cfg = load_config(f"ring8-{name}", TOY + ["method.gan=true", "batch_size=512"])
    torch.manual_seed(0)
    m = build_method(cfg, (2,), 0)
    grid = m.grid
    assert m.gen_sigma_range == (20, 980)
    spy = m.grid.draw = DrawSpy(grid)
    n = 512
    m.loss("generator", (torch.zeros(n, 2), None), 0)
    gen_calls = list(spy.calls)
    lo, hi, sigma = gen_calls[0]
    assert (lo, hi) == (20, 980)
    check_within(sigma, grid, 20, 980)
    assert [c[:2] for c in gen_calls[1:]] == ([(0, 1000)] if name == "dmd" else [])  # DMD2's GAN sigma
    spy.calls.clear()
    m.loss("critic", (torch.randn(n, 2), None), 0)
    assert spy.calls and all(c[:2] == (0, 1000) for c in spy.calls)
    for _, _, sigma in spy.calls:  # the real draw honours the bounds: the whole grid is reached
        assert ((sigma < grid.sigmas[20]) | (sigma > grid.sigmas[979])).any()
        check_within(sigma, grid, 0, 1000)


def test_dmd2_gan_term_draws_fresh_sigmas_and_noise_as_dmd2_does():
    """Generator: the GAN logit's input is g(z) + sigma' eps' with sigma' a fresh draw from the whole grid and
    eps' fresh noise, not the distribution-matching x_t. Discriminator: reals and fakes at independent sigmas."""
    n = 256
    cfg = load_config("ring8-dmd", TOY + ["method.gan=true", f"batch_size={n}"])
    torch.manual_seed(1)
    m = build_method(cfg, (2,), 0)
    spy = m.grid.draw = DrawSpy(m.grid)
    calls = record_critic_calls(m.networks["critic"])
    outputs = []
    m.networks["generator"].register_forward_hook(lambda mod, args, out: outputs.append(out.detach().clone()))
    m.loss("generator", (torch.zeros(n, 2), None), 0)
    (_, _, sigma_dm), (_, _, sigma_gan) = spy.calls
    (x_dm, s_dm, logits_dm), (x_gan, s_gan, logits_gan) = calls
    x = outputs[0]
    assert not logits_dm and logits_gan
    assert torch.equal(s_dm, sigma_dm) and torch.equal(s_gan, sigma_gan)
    assert (sigma_gan != sigma_dm).float().mean() > 0.9
    eps_dm = (x_dm - x) / sigma_dm[:, None]
    eps_gan = (x_gan - x) / sigma_gan[:, None]
    assert abs(float((eps_dm * eps_gan).mean())) < 0.15  # independent noise draws
    assert float(eps_gan.std()) == pytest.approx(1.0, abs=0.1)

    spy.calls.clear()
    calls.clear()
    m.loss("critic", (torch.randn(n, 2), None), 0)
    (_, _, s_dsm), (_, _, s_real), (_, _, s_fake) = spy.calls
    ((_, s_all, with_logits),) = calls
    assert with_logits and torch.equal(s_all, torch.cat([s_dsm, s_real, s_fake]))
    assert (s_real != s_fake).float().mean() > 0.9


# --- 4. preset values ------------------------------------------------------------------------------------
SMD_DMD_PRESETS = {
    # preset: {dotted config key: value}; add a row per new distillation preset
    "ring8-smd": {
        "method.name": "smd",
        "method.teacher": "analytic",
        "method.score_alpha": "paper",
        "method.gen_alpha": "range:0.5,1",
        "method.gan": True,
        "method.gan_gen_weight": 0.1,
        "method.gan_disc_weight": 0.3,
        "method.gen_every": 2,
        "optim.lr_gen": 6e-4,
        "optim.lr_score": 1e-3,
        "data.batch_size": 256,
        "method.head": "small",
        "method.head_hidden": 64,
        "method.smd_joint_features": True,
        "method.teacher_dtype": "fp32",
    },
    "ring8-dmd": {
        "method.name": "dmd",
        "method.teacher": "analytic",
        "method.score_alpha": "paper",
        "method.gen_alpha": "range:0.5,1",
        "method.gan": False,
        "method.gen_every": 2,
        "optim.lr_gen": 6e-4,
        "optim.lr_score": 1e-3,
        "data.batch_size": 256,
        "method.head": "small",
        "method.teacher_dtype": "fp32",
    },
    "mnist-smd": {
        "method.name": "smd",
        "method.teacher": None,
        "method.score_alpha": "paper",
        "method.gen_alpha": "range:0.5,1",
        "method.gan": True,
        "method.gan_gen_weight": 3e-3,
        "method.gan_disc_weight": 1e-2,
        "method.gen_every": 5,
        "optim.lr_gen": 1e-4,
        "optim.lr_score": 1e-4,
        "data.batch_size": 32,
        "method.head": "small",
        "method.head_hidden": 64,
        "method.smd_joint_features": True,
        "method.teacher_dtype": "fp32",
        "noise.generator_sigma": 2.5,
    },
    "mnist-dmd": {
        "method.name": "dmd",
        "method.teacher": None,
        "method.score_alpha": "paper",
        "method.gen_alpha": "range:0.5,1",
        "method.gan": False,
        "method.gen_every": 5,
        "optim.lr_gen": 1e-4,
        "optim.lr_score": 1e-4,
        "data.batch_size": 32,
        "method.head": "small",
        "method.teacher_dtype": "fp32",
        "noise.generator_sigma": 2.5,
    },
    "cifar10-smd": {
        "method.name": "smd",
        "method.teacher": None,
        "method.score_alpha": "paper",
        "method.gen_alpha": "range:0.5,1",
        "method.gan": True,
        "method.gan_gen_weight": 3e-3,
        "method.gan_disc_weight": 1e-2,
        "method.gen_every": 5,
        "optim.lr_gen": 5e-5,
        "optim.lr_score": 5e-5,
        "data.batch_size": 280,
        "method.head": "paper",
        "method.smd_joint_features": True,
        "method.teacher_dtype": "fp32",
        "score.dropout": 0.0,
        "generator.dropout": 0.0,
        "train.precision": "bf16",
        "optim.grad_clip": 10.0,
    },
    "imagenet64-smd": {
        "method.name": "smd",
        "method.teacher": None,
        "method.score_alpha": "paper",
        "method.gen_alpha": "range:0.5,1",
        "method.gan": True,
        "method.gan_gen_weight": 3e-3,
        "method.gan_disc_weight": 1e-2,
        "method.gen_every": 5,
        "optim.lr_gen": 2e-6,
        "optim.lr_score": 2e-6,
        "data.batch_size": 280,
        "method.head": "paper",
        "method.smd_joint_features": True,
        "method.teacher_dtype": "bf16",
        "score.dropout": 0.0,
        "generator.dropout": 0.0,
        "data.conditional": True,
        "train.precision": "bf16",
    },
}
# the MNIST quality ladder's students: mnist-smd / mnist-dmd's settings on the larger U-Net, with a holdout
for _method in ("smd", "dmd"):
    SMD_DMD_PRESETS[f"mnist-{_method}-base"] = {
        **SMD_DMD_PRESETS[f"mnist-{_method}"],
        "train.steps": 3000,
        "data.holdout": 500,
        "score.blocks": 2,
        "train.precision": "bf16",
    }


def test_every_distillation_preset_has_a_row():
    from scoremix.presets import PRESETS, get_preset

    distill = {name for name in PRESETS if get_preset(name).method.name in ("smd", "dmd")}
    assert distill == set(SMD_DMD_PRESETS)


@pytest.mark.parametrize("preset", sorted(SMD_DMD_PRESETS))
def test_distillation_preset_values(preset):
    from scoremix.presets import get_preset

    cfg = get_preset(preset)
    for key, want in SMD_DMD_PRESETS[preset].items():
        section, field = key.split(".")
        got = getattr(getattr(cfg, section), field)
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-12), key
        else:
            assert got == want, key


# --- 5. class labels through generator, critic and teacher ------------------------------------------------
def record_labels(module, calls, tag):
    module.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append((tag, kwargs.get("labels"))), with_kwargs=True
    )


@pytest.mark.parametrize("name", ["smd", "dmd"])
def test_each_fake_sample_keeps_its_label_through_generator_critic_and_teacher(name):
    teacher = unet_teacher(num_classes=10)
    x, sigma = torch.randn(2, 1, 8, 8), torch.full((2,), 1.0)
    by_label = [teacher(x, sigma, labels=torch.full((2,), k)) for k in (1, 7)]
    assert (by_label[0] - by_label[1]).abs().max() > 1e-3
    cfg = load_config("mnist-smd", IMAGES + [f"method.name={name}", "method.gan=true", "data.conditional=true"])
    m = build_method(cfg, (1, 8, 8), 10, teacher=teacher)
    calls = []
    record_labels(m.networks["generator"], calls, "generator")
    record_labels(m.networks["critic"].fake, calls, "fake")
    record_labels(m.teacher, calls, "teacher")
    n = 6

    torch.manual_seed(0)
    m.loss("generator", (torch.zeros(n, 1, 8, 8), None), 0)
    (tag, drawn), *rest = calls
    assert tag == "generator" and drawn is not None and drawn.shape == (n,) and len(set(drawn.tolist())) > 1
    assert {t for t, _ in rest} == {"teacher", "fake"}
    for _, labels in rest:  # the distribution-matching x_t and DMD2's GAN input are the generator's rows
        assert torch.equal(labels, drawn)

    calls.clear()
    real_labels = torch.tensor([3, 1, 4, 1, 5, 9])
    m.loss("critic", (torch.randn(n, 1, 8, 8), real_labels), 0)
    (tag, gen_labels), *rest = calls
    assert tag == "generator" and torch.equal(gen_labels, real_labels)
    for tag, labels in rest:  # every stacked block (fake DSM, reals, fakes) in the same row order
        assert labels.shape[0] % n == 0 and labels.shape[0] > 0
        assert torch.equal(labels.reshape(-1, n), real_labels.expand(labels.shape[0] // n, n)), tag
    assert {t for t, _ in rest} == ({"fake", "teacher"} if name == "smd" else {"fake"})


# --- 6. the paper's head ---------------------------------------------------------------------------------
def paper_head_parameters(c: int) -> int:
    """Two C->C 4x4 convolutions with bias, two GroupNorms, a C->1 1x1 convolution with bias."""
    return 2 * (16 * c * c + c) + 2 * 2 * c + c + 1


def test_paper_head_has_the_papers_size_on_imagenet64_adm_and_cifar10_ddpmpp():
    with torch.device("meta"):
        adm = build_backbone(
            NetConfig(arch="adm", channels=192, channel_mult=[1, 2, 3, 4], blocks=3, attention=[32, 16, 8]),
            (3, 64, 64),
            1000,
        )
        ddpmpp = build_backbone(
            NetConfig(arch="ddpmpp", channels=128, channel_mult=[2, 2, 2], blocks=4, attention=[16]), (3, 32, 32), 0
        )
        adm_head, ddpmpp_head = build_head(adm, 64, "paper"), build_head(ddpmpp, 64, "paper")
        small = build_head(adm, 64, "small")
    assert adm.bottleneck_channels == 768 and ddpmpp.bottleneck_channels == 256
    assert count_parameters(adm_head) == paper_head_parameters(768) == 18_879_745  # the paper's "18M"
    assert count_parameters(ddpmpp_head) == paper_head_parameters(256) == 2_098_945
    assert count_parameters(adm_head) > 35 * count_parameters(small)
    groups = [m.num_groups for m in adm_head.modules() if isinstance(m, nn.GroupNorm)]
    assert groups == [32, 32]


def test_paper_head_on_8x8_small_and_large_bottlenecks():
    from scoremix.nets.heads import PaperHead

    torch.manual_seed(0)
    head = PaperHead(64)
    feats = torch.randn(3, 64, 8, 8)
    # 8x8 -> 4x4 -> 1x1: one logit, written out layer by layer
    conv1, norm1, _, conv2, norm2, _, conv3 = head.body
    h = F.silu(norm1(F.conv2d(feats, conv1.weight, conv1.bias, stride=2, padding=1)))
    assert h.shape[-2:] == (4, 4)
    h = F.silu(norm2(F.conv2d(h, conv2.weight, conv2.bias, stride=4)))
    assert h.shape[-2:] == (1, 1)
    torch.testing.assert_close(head(feats), F.conv2d(h, conv3.weight, conv3.bias).flatten())
    # smaller bottlenecks (the MNIST U-Net's 7x7) are resized to 8x8 first
    small = torch.randn(3, 64, 7, 7)
    resized = F.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(head(small), head(resized))
    # larger ones leave a grid of logits, averaged
    large = torch.randn(3, 64, 16, 16)
    torch.testing.assert_close(head(large), head.body(large).mean(dim=(1, 2, 3)))
    assert head.body(large).shape == (3, 1, 2, 2)
    # fp32 logits under bf16 autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(feats.bfloat16()).dtype == torch.float32


def test_paper_head_on_the_mnist_unet_trains_in_smd():
    cfg = load_config("mnist-smd", IMAGES + ["method.head=paper"])
    m = build_method(cfg, (1, 8, 8), 0, teacher=unet_teacher())
    from scoremix.nets.heads import PaperHead

    assert isinstance(m.networks["critic"].head, PaperHead)
    move_away_from_the_teacher(m)
    torch.manual_seed(0)
    loss, stats = m.loss("critic", (torch.randn(4, 1, 8, 8), None), 0)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.networks["critic"].head.parameters())


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["method.head=big"], "method.head='big' is unknown"),
        (["method.head=paper"], "vector data uses method.head=small"),
    ],
)
def test_head_key_is_validated(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config("ring8-smd", overrides)
    assert "\n" not in str(err.value)


def test_paper_head_is_refused_outside_distillation_and_on_mlp_backbones():
    with pytest.raises(ConfigError, match="method.name=smt uses method.head=small"):
        load_config("mnist-smt", ["method.head=paper"])
    mlp = build_backbone(NetConfig(arch="mlp", hidden=16, depth=2), (2,))
    with pytest.raises(ConfigError, match="image bottlenecks"):
        build_head(mlp, 8, "paper")


# --- 7. EDM's training sigmas ----------------------------------------------------------------------------
def test_edm_training_sigmas_are_lognormal_with_mean_minus_1_2_and_std_1_2():
    """Through EDM.loss itself: the sigmas its denoiser is called with over 100k samples."""
    cfg = load_config("ring8-edm", ["score.hidden=8", "score.depth=1", "score.fourier_features=0"])
    m = build_method(cfg, (2,), 0)
    seen = []
    m.train_networks["denoiser"].register_forward_pre_hook(lambda mod, args: seen.append(args[1].detach()))
    torch.manual_seed(0)
    with torch.no_grad():
        m.loss("denoiser", (torch.zeros(100_000, 2), None), 0)
    (sigma,) = seen
    log_sigma = sigma.double().log()
    assert sigma.shape == (100_000,)
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.02)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.02)
    assert math.isclose(cfg.method.p_mean, -1.2) and math.isclose(cfg.method.p_std, 1.2)
