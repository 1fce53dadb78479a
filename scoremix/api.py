"""The public Python API: turn a trained run into samples in two calls.

    import scoremix
    sampler, meta = scoremix.load_sampler("runs/mnist")           # sampler(z, labels=None) -> x
    images = scoremix.generate("runs/mnist", 16, seed=0)          # uint8 (16, 32, 32, 1)

`path` is anything `scoremix sample --checkpoint` takes: a run folder, its generator.safetensors (or a
diffusion run's denoiser.safetensors), a checkpoints/state-*.pt file, or a folder written by
`scoremix export RUN --format folder`. Heavy modules (torch, numpy) are imported on the first call, so
`import scoremix` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, Union

if TYPE_CHECKING:
    import numpy as np
    import torch

WEIGHTS = ("ema", "raw")

__all__ = ["load_sampler", "generate"]


def _check_weights(weights: str) -> bool:
    from .errors import ConfigError

    if weights not in WEIGHTS:
        raise ConfigError(f"weights={weights!r} is unknown; use 'ema' (the default) or 'raw'")
    return weights == "ema"


def load_sampler(
    path: str, *, steps: int | None = None, weights: str = "ema", device: str = "cpu"
) -> tuple["torch.nn.Module", dict[str, Any]]:
    """The sampler of a trained run and what it is: `(sampler, metadata)`.

    `sampler(z, labels=None)` maps standard normal noise z of shape (N, *metadata["latent_shape"]) (and, for
    class-conditional runs, int64 labels of shape (N,)) to samples in the network's output space: images in
    [-1, 1] (N, C, H, W), or vectors (N, D) in the units the run trained in. One-step generators (SMT, SMD,
    DMD, GAN runs) are returned as they are and refuse `steps`; diffusion runs (method.name=edm) come inside
    the Heun sampler at `steps` steps (default: the run's eval.heun_steps).

    weights: 'ema' (default; a run trained without EMA gives its raw weights) or 'raw'. device: cpu, cuda,
    cuda:N or auto. metadata: kind ('one-step' | 'diffusion'), method, steps, evaluations (network
    evaluations per sample), weights, step, config (the resolved Config), data_shape, latent_shape,
    num_classes (0: unconditional)."""
    from .eval_protocol import resolve_device
    from .sampling import load_sampler as load

    use_ema = _check_weights(weights)
    return load(path, steps=steps, use_ema=use_ema, device=resolve_device(device))


def _labels(labels, n: int, num_classes: int):
    """None -> i % C (balanced classes, as `scoremix sample`); an int -> that class for all; else n labels."""
    import torch

    from .errors import ConfigError

    if num_classes == 0:
        if labels is not None:
            raise ConfigError("labels were given, but this generator is unconditional; pass labels=None")
        return None
    if labels is None:
        return torch.arange(n) % num_classes
    out = torch.as_tensor(labels)
    if out.dtype.is_floating_point or out.dtype == torch.bool:
        raise ConfigError(f"labels must be integers (class indices), got {out.dtype}")
    out = out.long()
    out = out.expand(n).clone() if out.ndim == 0 else out
    if out.shape != (n,):
        raise ConfigError(f"labels must be one class or {n} classes, got shape {tuple(out.shape)}")
    if bool(((out < 0) | (out >= num_classes)).any()):
        raise ConfigError(f"labels must lie in 0..{num_classes - 1} (this generator has {num_classes} classes)")
    return out


def generate(
    path: str,
    n: int,
    seed: int = 0,
    labels: Union[int, Sequence[int], None] = None,
    device: str = "cpu",
    precision: str = "fp32",
    *,
    weights: str = "ema",
    steps: int | None = None,
    batch_size: int = 250,
) -> "np.ndarray":
    """n samples of a trained run in the data's own form, exactly what `scoremix sample --out FILE.npz`
    writes; for data.source=points runs in the data file's units.

    Images: uint8 (n, H, W, C) (EDM's quantisation of [-1, 1]); sample i draws its noise from its own seed
    (seed * 2654435761 + i) mod 2**32, so a sample never depends on n or batch_size. Vector data: float32
    (n, D), in the units of the data file for data.source=points runs (the run's standardisation undone,
    from its data_transform.json) and as generated for the 2-D toys; the noise is one stream seeded by
    `seed` (the same samples as `scoremix sample --seed`).

    labels: for class-conditional runs, None (sample i gets class i % C), one class for all, or n classes;
    unconditional runs take None. precision: fp32, or bf16 (bfloat16 autocast; weights stay fp32).
    weights, steps, device: as in load_sampler."""
    import torch

    from .errors import ConfigError
    from .precision import check_precision

    if int(n) != n or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    n, batch_size = int(n), int(batch_size)
    check_precision(precision, "precision")
    sampler, meta = load_sampler(path, steps=steps, weights=weights, device=device)
    device = next(sampler.parameters()).device
    shape, classes = meta["data_shape"], meta["num_classes"]
    label_tensor = _labels(labels, n, classes)
    if len(shape) == 3:
        from .eval_protocol import quantize_uint8, sample_noise
        from .precision import autocast

        out = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                idx = range(start, min(start + batch_size, n))
                z = sample_noise(idx, shape, seed).to(device)
                lab = None if label_tensor is None else label_tensor[start : start + len(idx)].to(device)
                with autocast(device, precision):
                    x = sampler(z, labels=lab).float()
                out.append(quantize_uint8(x).cpu())
        return torch.cat(out).permute(0, 2, 3, 1).contiguous().numpy()
    from .sampling import sample

    x = sample(sampler, n, shape, classes, seed=seed, labels=label_tensor, device=device, precision=precision)
    return in_data_units(x, path, meta["config"]).float().numpy()


def in_data_units(x: "torch.Tensor", path: str, cfg) -> "torch.Tensor":
    """Vector samples of the run at `path` (resolved config `cfg`) in the data's own units: for a
    data.source=points run its standardisation undone (from the run's data_transform.json, an exported
    folder's config.json, or the data file), as `generate` and `scoremix sample` return them; samples of
    any other run as they are."""
    if cfg.data.source != "points":
        return x
    from .checkpoint import export_folder_of
    from .errors import CheckpointError
    from .sampling import points_to_data_units, points_transform

    record = points_transform(path, cfg)
    if record is None:
        where = "its exported config.json" if export_folder_of(path) else "a data_transform.json beside it"
        raise CheckpointError(
            f"'{path}' is a data.source=points run but neither {where} nor the data file "
            f"'{cfg.data.path}' says how its points were standardised; put the run's "
            "data_transform.json (or the data file) back"
        )
    return points_to_data_units(x, record)
