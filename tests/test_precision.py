"""bfloat16 autocast on the CPU (train.precision=bf16, sample/eval --precision bf16): the convolutions and
matrix products run in bf16, while the weights, optimiser state, EMA, losses, denoiser outputs and the small
numerically fragile parts (logit heads, input Fourier features) stay float32."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from scoremix.config_loader import load_config
from scoremix.errors import ConfigError
from scoremix.evaluate import generate_samples
from scoremix.nets.embeddings import InputFourierFeatures
from scoremix.nets.mlp import MLPHead
from scoremix.nets.unet import ConvHead, SmallUNet
from scoremix.precision import autocast, check_precision

BF16 = torch.bfloat16


def _digits_cfg(tmp_path, precision, **extra):
    path = tmp_path / "imgs.npz"
    if not path.exists():
        np.savez(path, x=np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8))
    overrides = {
        "data.source": "npz",
        "data.path": str(path),
        "batch_size": 8,
        "generator.channels": 8,
        "score.channels": 8,
        "generator.channel_mult": "[1,2]",
        "score.channel_mult": "[1,2]",
        "method.warmup_steps": 0,
        "method.critic_warmup_steps": 0,
        "gen_every": 1,
        "progress": "off",
        "sample_every": 0,
        "ckpt_every": 0,
        "eval.samples": 16,
        "optim.lr_warmup": 0,
        "train.precision": precision,
        **extra,
    }
    return load_config("digits-smt", [f"{k}={v}" for k, v in overrides.items()])


def test_training_step_runs_convolutions_in_bf16_and_keeps_fp32_state(tmp_path):
    from scoremix.trainer import Trainer

    trainer = Trainer(
        _digits_cfg(tmp_path, "bf16", **{"method.gan": "true"}), str(tmp_path / "run"), echo=lambda *a, **k: None
    )
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)

        return hook

    for name, net in trainer.method.networks.items():
        next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(record(name))
    trainer.method.networks["critic"].head.register_forward_hook(record("head"))
    x = trainer.source.next_batch()[0]
    stats = trainer.train_step((x, None))
    trainer.step += 1
    assert seen["generator"] == BF16 and seen["critic"] == BF16  # the autocast reached the backbones
    assert seen["head"] == torch.float32  # the logit head did not run in bf16
    for key in ("loss_gen", "loss_score", "loss_disc"):
        assert stats[key].dtype == torch.float32 and torch.isfinite(stats[key])
    for net in trainer.method.networks.values():
        assert all(p.dtype == torch.float32 for p in net.parameters())
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in net.parameters())
    assert all(p.dtype == torch.float32 for p in trainer.ema.module.parameters())
    for opt in trainer.optimizers.values():
        for state in opt.state.values():
            assert state["exp_avg"].dtype == torch.float32


def test_bf16_step_stays_close_to_the_fp32_step(tmp_path):
    """The same first step in both precisions: losses agree to bf16 accuracy, but not bit for bit (so bf16
    is really on)."""
    from scoremix.trainer import Trainer

    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = Trainer(_digits_cfg(tmp_path, precision), str(tmp_path / precision), echo=lambda *a, **k: None)
        x = trainer.source.next_batch()[0]
        losses[precision] = float(trainer.train_step((x, None))["loss_score"])
    assert losses["bf16"] != losses["fp32"]
    assert abs(losses["bf16"] - losses["fp32"]) < 0.05 * abs(losses["fp32"])


def test_generate_samples_in_bf16_are_float32_and_close_to_fp32():
    torch.manual_seed(0)

    class Sampler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SmallUNet(1, 8, (1, 2), 1)

        def forward(self, z, labels=None):
            return self.net(z, torch.zeros(z.shape[0]))

    sampler = Sampler()
    exact = generate_samples(sampler, 16, (1, 8, 8), 0, "cpu", seed=3)
    fast = generate_samples(sampler, 16, (1, 8, 8), 0, "cpu", seed=3, precision="bf16")
    assert fast.dtype == torch.float32
    diff = (fast - exact).abs().max().item()
    assert 0 < diff < 0.05 * exact.abs().max().item()


@pytest.mark.parametrize("make_head", [lambda: ConvHead(16, 8), lambda: MLPHead(16, 8)])
def test_heads_ignore_autocast(make_head):
    torch.manual_seed(0)
    head = make_head()
    feats = torch.randn(4, 16, 3, 3) if isinstance(head, ConvHead) else torch.randn(4, 16)
    exact = head(feats)
    with autocast("cpu", "bf16"):
        inside = head(feats.to(BF16))
    assert inside.dtype == torch.float32
    assert torch.allclose(inside, head(feats.to(BF16).float()), rtol=0, atol=0)  # bf16 features, fp32 maths
    assert torch.allclose(exact, inside, atol=0.05)


def test_input_fourier_features_keep_fp32_phases():
    torch.manual_seed(0)
    features = InputFourierFeatures(2, 64, scale=3.0)
    x = torch.randn(32, 2) * 4
    with autocast("cpu", "bf16"):
        inside = features(x)
    assert inside.dtype == torch.float32 and torch.equal(inside, features(x))


def test_precision_names_are_checked():
    assert check_precision("bf16") == "bf16"
    with pytest.raises(ConfigError, match="fp32 or bf16"):
        check_precision("fp16")
    with pytest.raises(ConfigError, match="train.precision"):
        load_config("ring8", ["train.precision=fp16"])


def test_sample_command_takes_precision(tmp_path, tiny_cfg):
    from scoremix.trainer import Trainer

    run = tmp_path / "run"
    Trainer(tiny_cfg(steps=2), str(run), echo=lambda *a, **k: None).fit()
    outs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.npz"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "scoremix",
                "sample",
                "--checkpoint",
                str(run),
                "--n",
                "50",
                "--out",
                str(out),
                "--precision",
                precision,
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        outs[precision] = np.load(out)["x"]
    diff = np.abs(outs["bf16"] - outs["fp32"]).max()
    assert 0 < diff < 0.1 * np.abs(outs["fp32"]).max()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "scoremix",
            "sample",
            "--checkpoint",
            str(run),
            "--n",
            "5",
            "--out",
            str(tmp_path / "x.npz"),
            "--precision",
            "fp16",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "fp16" in bad.stderr
