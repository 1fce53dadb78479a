"""Load a trained generator from a run folder, a generator.safetensors or a training-state file."""

from __future__ import annotations

import os

import torch

from . import checkpoint as ckpt
from .config import config_from_dict
from .errors import CheckpointError, ConfigError
from .nets.build import build_generator


def resolve_checkpoint(path: str) -> str:
    """A run folder -> its generator.safetensors (or newest valid state file); files pass through."""
    if os.path.isdir(path):
        gen = os.path.join(path, "generator.safetensors")
        if os.path.isfile(gen):
            return gen
        found = ckpt.list_checkpoints(os.path.join(path, "checkpoints"))
        if found:
            return found[-1]  # load_generator falls back to older ones if this one is corrupt
        raise CheckpointError(f"'{path}' holds no generator.safetensors and no checkpoints/state-*.pt; "
                              "pass a run folder made by `scoremix train`")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist; pass a run folder, a generator.safetensors "
                              "or a state-*.pt file")
    return path


def check_device(name: str) -> torch.device:
    """A torch.device for a --device option, or ConfigError when it is malformed or absent here."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device '{name}' is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name} but no CUDA device is visible; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {name} but MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise ConfigError(f"--device '{name}' is not supported; use cpu, cuda or cuda:N")
    return device


def load_generators(path: str, variants=("raw", "ema"), device="cpu"):
    """({variant: generator module in eval mode}, Config, data_shape, num_classes, step), reading the
    checkpoint once; a variant the file lacks (EMA off) is left out.

    A run folder without generator.safetensors gives its newest training state that loads and verifies."""
    device = check_device(str(device))
    folder = path if os.path.isdir(path) else None
    path = resolve_checkpoint(path)
    if path.endswith(".safetensors"):
        raw, ema, config, info = ckpt.load_generator(path)
        step, shape, classes = info["step"], info["data_shape"], info["num_classes"]
    else:
        if folder is not None:
            found = ckpt.load_latest_valid(os.path.join(folder, "checkpoints"), map_location="cpu")
            if found is None:
                raise CheckpointError(f"no checkpoint in '{folder}/checkpoints' loads and verifies; "
                                      "they are all corrupt")
            path, state = found
        else:
            state = ckpt.load_training_state(path)
        try:
            raw, ema, config = state["networks"]["generator"], state.get("ema"), state["config"]
            step, shape, classes = int(state["step"]), tuple(state["data_shape"]), int(state["num_classes"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"'{path}' is not a complete training state (missing {err}); "
                                  "pass a state-*.pt written by `scoremix train`") from None
    try:
        cfg = config_from_dict(config)
    except ConfigError as err:
        raise CheckpointError(f"'{path}' carries an invalid config ({err})") from None
    generators = {}
    for which, weights in (("raw", raw), ("ema", ema)):
        if which not in variants or weights is None:
            continue
        generator = build_generator(cfg, tuple(shape), classes)
        try:
            generator.load_state_dict(weights)
        except RuntimeError as err:
            raise CheckpointError(f"'{path}': weights do not match the generator its config describes "
                                  f"({str(err).splitlines()[0][:160]})") from None
        generators[which] = generator.to(device).eval()
    return generators, cfg, tuple(shape), classes, step


def load_generator(path: str, use_ema: bool = True, device="cpu"):
    """(generator module in eval mode, Config, data_shape, num_classes, step, which) where which is 'ema'
    or 'raw'; EMA weights fall back to raw ones when the run had no EMA."""
    generators, cfg, shape, classes, step = load_generators(path, ("raw", "ema") if use_ema else ("raw",), device)
    which = "ema" if "ema" in generators else "raw"
    return generators[which], cfg, shape, classes, step, which


@torch.no_grad()
def sample(generator, n: int, shape: tuple, num_classes: int, seed: int = 0, labels=None, device="cpu",
           batch_size: int = 1000) -> torch.Tensor:
    from .evaluate import generate_samples

    if labels is not None:
        labels = torch.as_tensor(labels).long().expand(n) if torch.as_tensor(labels).ndim == 0 else torch.as_tensor(labels)
    return generate_samples(generator, n, shape, num_classes, device, seed, batch_size, labels=labels)
