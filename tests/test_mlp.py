"""The vector backbone's optional input Fourier features: the closed form, the frequency scale, that they
travel with the weights (a reloaded generator reproduces its samples) and the config checks."""

from __future__ import annotations

import math

import pytest
import torch

from scoremix.errors import ConfigError
from scoremix.nets.embeddings import InputFourierFeatures
from scoremix.nets.mlp import MLPBackbone
from scoremix.sampling import load_generator
from scoremix.trainer import Trainer


def test_features_match_the_closed_form_in_float64():
    torch.manual_seed(0)
    feats = InputFourierFeatures(dim=2, num_features=8, scale=1.5)
    x = torch.randn(5, 2, dtype=torch.float64)
    angles = 2 * math.pi * x @ feats.freqs.double()
    expected = torch.cat([angles.cos(), angles.sin()], dim=1)
    out = feats(x)
    assert out.dtype == torch.float64 and out.shape == (5, 8)
    assert torch.allclose(out, expected, atol=1e-5)
    # cos^2 + sin^2 = 1 for every frequency.
    assert torch.allclose(out[:, :4] ** 2 + out[:, 4:] ** 2, torch.ones(5, 4, dtype=torch.float64), atol=1e-5)


def test_frequency_scale():
    torch.manual_seed(0)
    feats = InputFourierFeatures(dim=2, num_features=8192, scale=3.0)
    assert feats.freqs.shape == (2, 4096)
    assert abs(feats.freqs.std().item() - 3.0) < 0.1


def test_backbone_with_features_sees_the_input_through_them():
    torch.manual_seed(0)
    net = MLPBackbone(2, hidden=16, depth=2, fourier_features=8, fourier_scale=1.0)
    assert net.inp.in_features == 2 + 8
    x, c_noise = torch.randn(4, 2), torch.zeros(4)
    # Shifting the input by a whole period of every feature leaves only the raw-input path to differ.
    with torch.no_grad():
        net.inp.weight[:, :2].zero_()
        net.fourier.freqs.copy_(torch.randint(-3, 4, net.fourier.freqs.shape).float())
        shifted = x + torch.tensor([1.0, -2.0])
        assert torch.allclose(net(x, c_noise), net(shifted, c_noise), atol=1e-4)
        net.inp.weight[:, :2].fill_(0.1)
        assert not torch.allclose(net(x, c_noise), net(shifted, c_noise), atol=1e-4)


def test_frequencies_are_saved_with_the_generator(tiny_cfg, tmp_path):
    cfg = tiny_cfg(steps=2, **{"generator.fourier_features": 16, "score.fourier_features": 16})
    trainer = Trainer(cfg, str(tmp_path / "run"))
    trainer.fit()
    z = torch.randn(64, 2)
    with torch.no_grad():
        expected = trainer.ema.module(z)
    torch.manual_seed(12345)  # a different draw of frequencies would change every sample
    generator, *_ = load_generator(str(tmp_path / "run"), use_ema=True)
    with torch.no_grad():
        assert torch.equal(generator(z), expected)


@pytest.mark.parametrize(
    "key, value", [("generator.fourier_features", 7), ("score.fourier_features", -2), ("score.fourier_scale", 0)]
)
def test_bad_feature_settings_are_config_errors(tiny_cfg, key, value):
    with pytest.raises(ConfigError, match="fourier"):
        tiny_cfg(**{key: value})


def test_module_refuses_an_odd_feature_count():
    with pytest.raises(ValueError, match="even"):
        InputFourierFeatures(dim=2, num_features=7, scale=1.0)
