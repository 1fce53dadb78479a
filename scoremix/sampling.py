"""Load a trained generator (or a diffusion run's sampler) from a run folder, a generator.safetensors /
denoiser.safetensors, a training-state file or a folder written by `scoremix export --format folder`."""

from __future__ import annotations

import json
import os

import torch

from . import checkpoint as ckpt
from .config import config_from_dict
from .errors import CheckpointError, ConfigError
from .nets.build import build_generator


def resolve_checkpoint(path: str) -> str:
    """A run folder -> its generator.safetensors (or newest valid state file); an exported folder -> its
    model.safetensors; files pass through."""
    if os.path.isdir(path):
        if ckpt.is_export_folder(path):
            return os.path.join(path, ckpt.EXPORT_WEIGHTS)
        for name in ("generator.safetensors", "denoiser.safetensors"):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        found = ckpt.list_checkpoints(os.path.join(path, "checkpoints"))
        if found:
            return found[-1]  # load_generator falls back to older ones if this one is corrupt
        raise CheckpointError(
            f"'{path}' holds no generator.safetensors, no denoiser.safetensors and no checkpoints/state-*.pt; "
            "pass a run folder made by `scoremix train`"
        )
    if not os.path.exists(path):
        raise CheckpointError(
            f"checkpoint '{path}' does not exist; pass a run folder, a generator.safetensors or a state-*.pt file"
        )
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


DIFFUSION_METHODS = ("edm",)  # methods whose run holds a denoiser sampled by an ODE solver


def weights_network(method_name: str) -> str:
    """The network a run's weights file holds: 'denoiser' for diffusion runs, else 'generator'."""
    return "denoiser" if method_name in DIFFUSION_METHODS else "generator"


def read_weights(path: str) -> dict:
    """The saved model of a run, read once and verified: {'raw', 'ema' (None without EMA), 'config' (a
    validated Config), 'step', 'data_shape', 'num_classes', 'path' (the file actually read)}.

    `path` is a run folder (its generator/denoiser .safetensors, else its newest training state that loads
    and verifies its checksum), a .safetensors file, a state-*.pt file or an exported folder (which holds
    one set of weights: 'raw' or 'ema' is None); an exported folder also gives 'export' (its config.json)."""
    folder = path if os.path.isdir(path) else None
    path = resolve_checkpoint(path)
    exported = ckpt.export_folder_of(path)
    if exported is not None:
        weights, description = ckpt.read_export_folder(exported)
        which = description["weights"]
        raw, ema = (weights, None) if which == "raw" else (None, weights)
        config, step = description["config"], int(description.get("step", -1))
        shape, classes = description["data_shape"], int(description["num_classes"])
    elif path.endswith(".safetensors"):
        raw, ema, config, info = ckpt.load_generator(path)
        step, shape, classes = info["step"], info["data_shape"], info["num_classes"]
    else:
        if folder is not None:
            found = ckpt.load_latest_valid(os.path.join(folder, "checkpoints"), map_location="cpu")
            if found is None:
                raise CheckpointError(
                    f"no checkpoint in '{folder}/checkpoints' loads and verifies; they are all corrupt"
                )
            path, state = found
        else:
            state = ckpt.load_training_state(path)
        try:
            config = state["config"]
            network = weights_network(config.get("method", {}).get("name", "smt"))
            raw, ema = state["networks"][network], state.get("ema")
            step, shape, classes = int(state["step"]), tuple(state["data_shape"]), int(state["num_classes"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(
                f"'{path}' is not a complete training state (missing {err}); "
                "pass a state-*.pt written by `scoremix train`"
            ) from None
    try:
        cfg = config_from_dict(config)
    except ConfigError as err:
        raise CheckpointError(f"'{path}' carries an invalid config ({err})") from None
    out = {
        "raw": raw,
        "ema": ema,
        "config": cfg,
        "step": step,
        "data_shape": tuple(shape),
        "num_classes": classes,
        "path": path,
    }
    if exported is not None:
        out["export"] = description
    return out


def load_generators(path: str, variants=("raw", "ema"), device="cpu", steps: int | None = None):
    """({variant: sampler module in eval mode}, Config, data_shape, num_classes, step), reading the
    checkpoint once; a variant the file lacks (EMA off) is left out.

    Each module is called as `module(z, labels=None)` with z standard normal noise: the one-step generator
    itself, or for a diffusion run (method.name=edm) its denoiser inside the Heun sampler with `steps`
    steps (default: the run's eval.heun_steps). `steps` is refused for one-step generators.
    A run folder without a weights file gives its newest training state that loads and verifies."""
    from .solvers import HeunSampler

    device = check_device(str(device))
    saved = read_weights(path)
    cfg, shape, classes, path = saved["config"], saved["data_shape"], saved["num_classes"], saved["path"]
    diffusion = cfg.method.name in DIFFUSION_METHODS
    if steps is not None:
        if not diffusion:
            raise ConfigError(
                f"--steps applies to diffusion runs only; '{path}' is a one-step generator "
                f"(method {cfg.method.name}), which always samples in one network evaluation"
            )
        if int(steps) != steps or steps < 1:
            raise ConfigError(f"--steps must be a positive integer, got {steps}")
    generators = {}
    for which in ("raw", "ema"):
        weights = saved[which]
        if which not in variants or weights is None:
            continue
        if diffusion:
            from .nets.build import build_diffusion_denoiser

            network = build_diffusion_denoiser(cfg, shape, classes)
        else:
            network = build_generator(cfg, shape, classes)
        try:
            network.load_state_dict(weights)
        except RuntimeError as err:
            raise CheckpointError(
                f"'{path}': weights do not match the {weights_network(cfg.method.name)} its "
                f"config describes ({str(err).splitlines()[0][:160]})"
            ) from None
        if diffusion:
            n = cfg.noise
            network = HeunSampler(network, int(steps or cfg.eval.heun_steps), n.sigma_min, n.sigma_max, n.rho)
        generators[which] = network.to(device).eval()
    if not generators:  # only an exported folder lacks a variant: it keeps the one it was exported with
        held = "raw" if saved["raw"] is not None else "ema"
        raise CheckpointError(
            f"'{path}' holds {held} weights only (an exported folder keeps one set); ask for "
            f"{held} weights{' (drop --raw)' if held == 'ema' else ''}, or export the run "
            f"again with --{'raw' if held == 'ema' else 'ema'}"
        )
    return generators, cfg, shape, classes, saved["step"]


def load_generator(path: str, use_ema: bool = True, device="cpu", steps: int | None = None):
    """(generator module in eval mode, Config, data_shape, num_classes, step, which) where which is 'ema'
    or 'raw'; EMA weights fall back to raw ones when the run had no EMA. Diffusion runs give their Heun
    sampler (see load_generators)."""
    generators, cfg, shape, classes, step = load_generators(
        path, ("raw", "ema") if use_ema else ("raw",), device, steps=steps
    )
    which = "ema" if "ema" in generators else "raw"
    return generators[which], cfg, shape, classes, step, which


def load_sampler(path: str, steps: int | None = None, use_ema: bool = True, device="cpu"):
    """(sampler, metadata): the one function that turns any scoremix run into `sampler(z, labels=None) -> x`.

    One-step generators (SMT, SMD, DMD runs) are returned as they are and refuse `steps`; diffusion runs
    (method.name=edm) sample with the Heun sampler at `steps` steps (default: the run's eval.heun_steps).
    metadata: kind ('one-step' | 'diffusion'), method, steps, evaluations (network evaluations per sample:
    1, or 2N-1 for N Heun steps), weights ('ema' | 'raw'), step, config, data_shape, latent_shape (the shape
    of one z: the data's), num_classes."""
    sampler, cfg, shape, classes, step, which = load_generator(path, use_ema=use_ema, device=device, steps=steps)
    diffusion = cfg.method.name in DIFFUSION_METHODS
    n_steps = sampler.steps if diffusion else 1
    meta = {
        "kind": "diffusion" if diffusion else "one-step",
        "method": cfg.method.name,
        "steps": n_steps,
        "evaluations": sampler.evaluations if diffusion else 1,
        "weights": which,
        "step": step,
        "config": cfg,
        "data_shape": shape,
        "latent_shape": tuple(shape),
        "num_classes": classes,
    }
    return sampler, meta


def points_transform(path: str, cfg) -> dict | None:
    """How a data.source=points run standardised its points (standardised = (x - mean) / scale): the
    data_transform.json of its run folder (beside generator.safetensors, or above checkpoints/), the record
    an exported folder carries, or the data file itself when it is still at data.path; None when the run is
    not on points or nothing says it."""
    if cfg.data.source != "points":
        return None
    exported = ckpt.export_folder_of(path)
    if exported is not None:
        with open(os.path.join(exported, ckpt.EXPORT_CONFIG)) as fh:
            return json.load(fh).get("data_transform")
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(path) and os.path.basename(folder) == "checkpoints":
        folder = os.path.dirname(folder)
    record_path = os.path.join(folder, "data_transform.json")
    if os.path.isfile(record_path):
        with open(record_path) as fh:
            return json.load(fh)
    if cfg.data.standardize == "none":
        return {"source": "points", "standardize": "none"}
    if cfg.data.path and os.path.isfile(cfg.data.path):
        from .data.points import PointsDataset

        return PointsDataset(cfg.data.path, cfg.data.standardize).transform_record()
    return None


@torch.no_grad()
def sample(
    generator,
    n: int,
    shape: tuple,
    num_classes: int,
    seed: int = 0,
    labels=None,
    device="cpu",
    batch_size: int = 1000,
    precision: str = "fp32",
) -> torch.Tensor:
    from .evaluate import generate_samples

    if labels is not None:
        labels = (
            torch.as_tensor(labels).long().expand(n) if torch.as_tensor(labels).ndim == 0 else torch.as_tensor(labels)
        )
    return generate_samples(
        generator, n, shape, num_classes, device, seed, batch_size, labels=labels, precision=precision
    )


def points_to_data_units(x: torch.Tensor, record: dict) -> torch.Tensor:
    """Standardised points back in the data file's units, x * scale + mean (PointsDataset.to_original),
    computed in float64; the record of data.standardize=none is the identity."""
    if record.get("standardize") == "none":
        return x
    scale = torch.as_tensor(record["scale"], dtype=torch.float64)
    mean = torch.as_tensor(record["mean"], dtype=torch.float64)
    return (x.double() * scale + mean).to(x.dtype)
