import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def tiny_overrides(**extra):
    """A ring8 config small enough for sub-second steps."""
    base = {
        "generator.hidden": 32,
        "score.hidden": 32,
        "generator.depth": 2,
        "score.depth": 2,
        "batch_size": 64,
        "log_every": 5,
        "sample_every": 0,
        "ckpt_every": 0,
        "eval.samples": 200,
        "progress": False,
        "optim.lr_warmup": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def tiny_cfg():
    from scoremix.config_loader import load_config

    def make(preset="ring8", **extra):
        return load_config(preset, tiny_overrides(**extra))

    return make
