"""Named presets. Each is a function returning a fresh Config; `scoremix presets` lists them."""

from __future__ import annotations

from typing import Callable

from .config import Config, NetConfig


def _toy(name: str, source: str, steps: int, sigma_data: float) -> Config:
    cfg = Config(name=name)
    cfg.data.source = source
    cfg.data.batch_size = 256
    cfg.data.sigma_data = sigma_data
    cfg.generator = NetConfig(arch="mlp", hidden=256, depth=3)
    cfg.score = NetConfig(arch="mlp", hidden=256, depth=3)
    cfg.noise.sigma_max = 20.0
    cfg.optim.lr_gen = 1e-4
    cfg.optim.lr_score = 5e-4
    cfg.optim.lr_warmup = 200
    cfg.train.steps = steps
    cfg.train.sample_every = steps // 4
    cfg.train.ckpt_every = steps // 4
    cfg.train.log_every = 200
    return cfg


def ring8() -> Config:
    """8 Gaussians on a circle of radius 2 (std 0.1)."""
    return _toy("ring8", "ring8", 20000, sigma_data=1.4)


def grid25() -> Config:
    """5x5 Gaussians with spacing 2 (std 0.05)."""
    return _toy("grid25", "grid25", 20000, sigma_data=2.8)


def swissroll() -> Config:
    """The swiss roll of App. E.2."""
    return _toy("swissroll", "swissroll", 20000, sigma_data=1.5)


def digits() -> Config:
    """scikit-learn's 8x8 handwritten digits with small U-Nets."""
    cfg = Config(name="digits")
    cfg.data.source = "digits"
    cfg.data.batch_size = 128
    cfg.generator = NetConfig(arch="unet", channels=32, channel_mult=[1, 2], blocks=1)
    cfg.score = NetConfig(arch="unet", channels=32, channel_mult=[1, 2], blocks=1)
    cfg.noise.sigma_max = 80.0
    cfg.optim.lr_gen = 1e-4
    cfg.optim.lr_score = 5e-4
    cfg.optim.lr_warmup = 200
    cfg.train.steps = 4000
    cfg.train.sample_every = 1000
    cfg.train.ckpt_every = 1000
    cfg.train.log_every = 100
    cfg.eval.samples = 2000
    return cfg


def quickstart() -> Config:
    """The default: a few minutes on 2 CPU cores."""
    cfg = ring8()
    cfg.name = "quickstart"
    cfg.train.steps = 6000
    cfg.train.sample_every = 2000
    cfg.train.ckpt_every = 2000
    return cfg


PRESETS: dict[str, Callable[[], Config]] = {
    "quickstart": quickstart,
    "ring8": ring8,
    "grid25": grid25,
    "swissroll": swissroll,
    "digits": digits,
}


def get_preset(name: str) -> Config:
    from .errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (presets: {', '.join(PRESETS)})")
    return PRESETS[name]()
