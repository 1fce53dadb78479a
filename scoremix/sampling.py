"""Load a trained generator from a run folder, a generator.safetensors or a training-state file."""

from __future__ import annotations

import os

import torch

from . import checkpoint as ckpt
from .config import config_from_dict
from .errors import CheckpointError, ConfigError
from .nets.build import build_backbone
from .precond import Denoiser, OneStepGenerator


def resolve_checkpoint(path: str) -> str:
    """A run folder -> its generator.safetensors (or newest valid state file); files pass through."""
    if os.path.isdir(path):
        gen = os.path.join(path, "generator.safetensors")
        if os.path.isfile(gen):
            return gen
        found = ckpt.list_checkpoints(os.path.join(path, "checkpoints"))
        if found:
            return found[-1]
        raise CheckpointError(f"'{path}' holds no generator.safetensors and no checkpoints/state-*.pt; "
                              "pass a run folder made by `scoremix train`")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist; pass a run folder, a generator.safetensors "
                              "or a state-*.pt file")
    return path


def build_generator(cfg, data_shape: tuple, num_classes: int) -> OneStepGenerator:
    backbone = build_backbone(cfg.generator, data_shape, num_classes, alpha_input=False)
    return OneStepGenerator(Denoiser(backbone, cfg.data.sigma_data, alpha_input=False), cfg.noise.sigma_max)


def load_generator(path: str, use_ema: bool = True, device="cpu"):
    """(generator module in eval mode, Config, data_shape, num_classes, step, which) where which is 'ema' or 'raw'."""
    path = resolve_checkpoint(path)
    if path.endswith(".safetensors"):
        raw, ema, config, info = ckpt.load_generator(path)
        step, shape, classes = info["step"], info["data_shape"], info["num_classes"]
    else:
        state = ckpt.load_training_state(path)
        raw, ema, config = state["networks"]["generator"], state.get("ema"), state["config"]
        step, shape, classes = state["step"], tuple(state["data_shape"]), state["num_classes"]
    try:
        cfg = config_from_dict(config)
    except ConfigError as err:
        raise CheckpointError(f"'{path}' carries an invalid config ({err})") from None
    weights, which = (ema, "ema") if (use_ema and ema is not None) else (raw, "raw")
    generator = build_generator(cfg, tuple(shape), classes)
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"'{path}': weights do not match the generator its config describes "
                              f"({str(err).splitlines()[0][:160]})") from None
    return generator.to(device).eval(), cfg, tuple(shape), classes, step, which


@torch.no_grad()
def sample(generator, n: int, shape: tuple, num_classes: int, seed: int = 0, labels=None, device="cpu",
           batch_size: int = 1000) -> torch.Tensor:
    from .evaluate import generate_samples

    if labels is not None:
        labels = torch.as_tensor(labels).long().expand(n) if torch.as_tensor(labels).ndim == 0 else torch.as_tensor(labels)
    return generate_samples(generator, n, shape, num_classes, device, seed, batch_size, labels=labels)
