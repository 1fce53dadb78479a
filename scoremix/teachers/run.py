"""Teachers trained by this library: a diffusion run (method.name=edm) as a frozen denoiser D(x, sigma, labels).

Accepts the run folder (its denoiser.safetensors, else its newest training state that verifies), a
checkpoints/state-*.pt (SHA-256 verified by scoremix.checkpoint) or a denoiser.safetensors. The EMA weights
are used by default (the raw ones when the run had no EMA, or with use_ema=False).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, TeacherError
from .frozen import freeze


class DenoiserTeacher(nn.Module):
    """A scoremix Denoiser (EDM preconditioning around a library backbone) behind the teacher interface:
    `teacher(x, sigma, labels=None)` -> D(x; sigma), `return_features=True` adds the bottleneck features."""

    def __init__(self, denoiser: nn.Module, info: dict):
        super().__init__()
        self.denoiser = denoiser
        self.info = info

    @property
    def backbone(self) -> nn.Module:
        return self.denoiser.backbone

    @property
    def sigma_data(self) -> float:
        return self.denoiser.sigma_data

    def forward(self, x: torch.Tensor, sigma, labels=None, return_features: bool = False):
        return self.denoiser(x, sigma, labels=labels, return_features=return_features)


def load_run_teacher(path: str, device="cpu", use_ema: bool = True) -> DenoiserTeacher:
    """The denoiser of a scoremix diffusion run, frozen and in eval mode on `device`, with `.info`."""
    from ..nets.build import build_diffusion_denoiser, count_parameters
    from ..sampling import DIFFUSION_METHODS, check_device, read_weights

    device = check_device(str(device))
    try:
        saved = read_weights(str(path))
    except (CheckpointError, ConfigError) as err:
        raise TeacherError(f"cannot load teacher '{path}': {err}") from None
    cfg = saved["config"]
    if cfg.method.name not in DIFFUSION_METHODS:
        raise TeacherError(
            f"'{path}' is a scoremix {cfg.method.name} run: a one-step generator, not a diffusion "
            "model, so it has no denoiser for every noise level; train a teacher with "
            "`scoremix train --config mnist-edm` (method.name=edm) and pass that run"
        )
    which = "ema" if use_ema and saved["ema"] is not None else "raw"
    shape, classes = saved["data_shape"], saved["num_classes"]
    denoiser = build_diffusion_denoiser(cfg, shape, classes)
    try:
        denoiser.load_state_dict(saved[which])
    except RuntimeError as err:
        raise TeacherError(
            f"'{saved['path']}': weights do not match the denoiser its config describes "
            f"({str(err).splitlines()[0][:160]})"
        ) from None
    image = len(shape) == 3
    info = {
        "kind": "scoremix",
        "arch": cfg.score.arch,
        "precond": "edm",
        "resolution": shape[-1] if image else None,
        "channels": shape[0],
        "num_classes": classes,
        "parameters": count_parameters(denoiser),
        "sigma_data": float(cfg.data.sigma_data),
        "net_config": dataclasses.asdict(cfg.score),
        "data_shape": list(shape),
        "weights": which,
        "step": saved["step"],
        "source": saved["path"],
        "sigma_min": float(cfg.noise.sigma_min),
        "sigma_max": float(cfg.noise.sigma_max),
        "rho": float(cfg.noise.rho),
        "data": cfg.data.source,
    }
    teacher = DenoiserTeacher(denoiser, info)
    return freeze(teacher.to(device))


__all__ = ["DenoiserTeacher", "load_run_teacher"]
