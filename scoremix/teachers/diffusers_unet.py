"""A diffusers `UNet2DModel` (a DDPM-family epsilon / v / sample predictor) as an EDM-convention denoiser.

Needs the optional extra `pip install scoremix[diffusers]`. Weights are read from safetensors only (no
pickle). The folder is either the UNet's own (config.json + weights) or a pipeline root with `unet/`; the
noise schedule comes from `scheduler_config.json` in that folder, in `scheduler/`, or in the pipeline root
next to `unet/`.

Conversion to D(x; sigma) on x = y + sigma n (images in [-1, 1], EDM's convention):
    discrete schedule  alpha_bar_t = prod_{s<=t} (1 - beta_s) (float32, as diffusers trains), sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)
    network input      x_vp = x / sqrt(1 + sigma^2)  (= sqrt(alpha_bar) y + sqrt(1 - alpha_bar) n)
    timestep           fractional t with sigma_t = sigma: the timestep index interpolated linearly in
                       log(sigma) between its integer neighbours (exact at every sigma_t), clamped to
                       [0, N-1] outside [sigma_0, sigma_{N-1}]; the positional time embedding of UNet2DModel
                       takes fractional timesteps
    epsilon            D = x - sigma eps
    v_prediction       v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) y  =>  D = x_vp / sqrt(1 + sigma^2)
                       - sigma / sqrt(1 + sigma^2) v
    sample             D = the network output
`return_features=True` also returns the output of the UNet's middle block (the bottleneck).

`info["net_config"]` is None: a diffusers network has no scoremix NetConfig. SMD and DMD build their
students from the teacher's network settings and rebuild the generator from the run's config for
checkpoints and `scoremix sample`, so they refuse a diffusers teacher (scoremix.methods.distill); such a
teacher serves `scoremix teacher inspect` and Python code (a frozen D(x, sigma), e.g. inside
scoremix.solvers.HeunSampler).

Refused: score-SDE time embeddings, class embeddings other than integer labels, and
`center_input_sample=True` (the UNet maps its input s to 2 s - 1, i.e. expects images in [0, 1]; which data
scale it was trained on is not recorded, so no conversion from EDM's [-1, 1] can be known to be right).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

from ..errors import TeacherError
from ..precond import _expand
from ..precond_variants import BETA_SCHEDULES, ddpm_alphas_cumprod, ddpm_betas, ddpm_sigmas, timestep_from_sigma
from .frozen import freeze

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _fail(path: str, message: str):
    raise TeacherError(f"{path}: {message}")


def _unet_folder(path: str) -> str:
    if os.path.isfile(os.path.join(path, "unet", "config.json")):
        return os.path.join(path, "unet")
    return path


def _scheduler_config(path: str, unet_dir: str) -> tuple[dict, str]:
    candidates = [
        os.path.join(unet_dir, "scheduler_config.json"),
        os.path.join(path, "scheduler_config.json"),
        os.path.join(path, "scheduler", "scheduler_config.json"),
        os.path.join(os.path.dirname(os.path.abspath(unet_dir)), "scheduler", "scheduler_config.json"),
    ]
    for candidate in candidates:
        if os.path.isfile(candidate):
            try:
                with open(candidate) as f:
                    return json.load(f), candidate
            except (OSError, ValueError) as exc:
                _fail(path, f"cannot read {candidate} ({exc})")
    _fail(
        path,
        "no scheduler_config.json found (looked in the folder, scheduler/ and ../scheduler/); the noise "
        "schedule and prediction type are needed to convert the UNet into a denoiser",
    )


def _alphas_cumprod(path: str, cfg: dict) -> np.ndarray:
    name = str(cfg.get("_class_name", ""))
    if "ScoreSdeVe" in name or "KarrasVe" in name:
        _fail(path, f"{name} is a variance-exploding scheduler; only DDPM-family (beta schedule) models are supported")
    if cfg.get("rescale_betas_zero_snr"):
        _fail(
            path, "rescale_betas_zero_snr=true gives alpha_bar = 0 (infinite sigma) at the last timestep; not supported"
        )
    schedule = cfg.get("beta_schedule", "linear")
    if cfg.get("trained_betas") is None and schedule not in BETA_SCHEDULES:
        _fail(path, f"beta_schedule {schedule!r} is not supported; use one of {', '.join(BETA_SCHEDULES)}")
    try:
        betas = ddpm_betas(
            int(cfg.get("num_train_timesteps", 1000)),
            float(cfg.get("beta_start", 1e-4)),
            float(cfg.get("beta_end", 0.02)),
            schedule,
            cfg.get("trained_betas"),
        )
    except (TypeError, ValueError) as exc:
        _fail(path, f"scheduler config: {exc}")
    return ddpm_alphas_cumprod(betas)


class DiffusersDenoiser(nn.Module):
    """D(x, sigma, labels=None) from a UNet2DModel trained on a discrete DDPM schedule (module docstring)."""

    def __init__(self, unet: nn.Module, alphas_cumprod: np.ndarray, prediction_type: str, num_classes: int = 0):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type {prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}")
        self.backbone = unet
        self.prediction_type = prediction_type
        self.num_classes = num_classes
        self.sigma_data = 0.5
        self.alpha_input = False
        self.register_buffer("sigmas", torch.from_numpy(ddpm_sigmas(alphas_cumprod)), persistent=False)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The (fractional) training timestep of noise level sigma."""
        return timestep_from_sigma(sigma, self.sigmas.to(sigma.device))

    def _class_labels(self, labels, batch: int, device):
        if not self.num_classes:
            if labels is not None:
                raise ValueError("this teacher is unconditional: pass no labels")
            return None
        if labels is None:
            raise ValueError("this teacher is class-conditional: pass labels")
        labels = torch.as_tensor(labels, device=device)
        if labels.is_floating_point() and labels.ndim == 2:  # one-hot rows
            labels = labels.argmax(dim=1)
        labels = labels.long().reshape(-1)
        if labels.shape[0] != batch:
            raise ValueError(f"got {labels.shape[0]} labels for a batch of {batch}")
        return labels

    def forward(self, x: torch.Tensor, sigma, alpha=None, labels=None, return_features: bool = False):
        if alpha is not None:
            raise ValueError("this denoiser takes no alpha input")
        x = x.float()
        sigma_b = _expand(sigma, x).float()
        scale = 1 / (1 + sigma_b**2).sqrt()  # sqrt(alpha_bar)
        timesteps = self.timestep(sigma_b.flatten()).to(torch.float32)
        features = []
        hook = None
        if return_features:
            if getattr(self.backbone, "mid_block", None) is None:
                raise ValueError("this UNet2DModel has no middle block to return features from")
            hook = self.backbone.mid_block.register_forward_hook(lambda m, i, out: features.append(out))
        try:
            out = self.backbone(
                scale * x, timesteps, class_labels=self._class_labels(labels, x.shape[0], x.device)
            ).sample
        finally:
            if hook is not None:
                hook.remove()
        out = out[:, : x.shape[1]].float()  # learned-variance models append variance channels
        if self.prediction_type == "epsilon":
            denoised = x - sigma_b * out
        elif self.prediction_type == "v_prediction":
            denoised = scale * (scale * x) - sigma_b * scale * out
        else:
            denoised = out
        return (denoised, features[-1]) if return_features else denoised


def load_diffusers_unet(path: str, device="cpu") -> DiffusersDenoiser:
    """The UNet2DModel in folder `path` as a frozen EDM-convention denoiser with `.info`."""
    path = str(path)
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise TeacherError(
            f"{path} is a diffusers model: install the optional extra with pip install 'scoremix[diffusers]'"
        ) from None
    unet_dir = _unet_folder(path)
    with open(os.path.join(unet_dir, "config.json")) as f:
        unet_cfg = json.load(f)
    if unet_cfg.get("_class_name") != "UNet2DModel":
        _fail(path, f"{unet_cfg.get('_class_name')!r} is not a UNet2DModel")
    if unet_cfg.get("time_embedding_type", "positional") != "positional":
        _fail(
            path,
            f"time_embedding_type={unet_cfg['time_embedding_type']!r} (score-SDE style) is not supported; "
            "only positional timestep embeddings of DDPM-family models",
        )
    if unet_cfg.get("center_input_sample"):
        _fail(
            path,
            "center_input_sample=true (the UNet rescales its input as for images in [0, 1]) is not "
            "supported: the data scale it was trained on is not recorded, so EDM's [-1, 1] inputs "
            "cannot be converted reliably",
        )
    if unet_cfg.get("class_embed_type") not in (None,):
        _fail(
            path,
            f"class_embed_type={unet_cfg['class_embed_type']!r} is not supported (only integer class "
            "embeddings, num_class_embeds)",
        )
    sched_cfg, _ = _scheduler_config(path, unet_dir)
    prediction_type = sched_cfg.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        _fail(path, f"prediction_type {prediction_type!r} is not supported; use one of {', '.join(PREDICTION_TYPES)}")
    alphas_cumprod = _alphas_cumprod(path, sched_cfg)
    try:
        unet = UNet2DModel.from_pretrained(
            unet_dir, use_safetensors=True, local_files_only=True, torch_dtype=torch.float32, low_cpu_mem_usage=False
        )
    except (OSError, ValueError, EnvironmentError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _fail(path, f"cannot load the UNet2DModel weights from safetensors ({first})")
    channels_in, channels_out = unet.config.in_channels, unet.config.out_channels
    if channels_out not in (channels_in, 2 * channels_in):
        _fail(path, f"out_channels={channels_out} for in_channels={channels_in}: not a denoising UNet")
    num_classes = int(unet.config.num_class_embeds or 0)
    denoiser = DiffusersDenoiser(unet, alphas_cumprod, prediction_type, num_classes)
    size = unet.config.sample_size
    resolution = int(size if isinstance(size, int) else size[0])
    sigmas = denoiser.sigmas
    denoiser.info = {
        "kind": "diffusers",
        "arch": "UNet2DModel",
        "precond": prediction_type,
        "resolution": resolution,
        "channels": int(channels_in),
        "num_classes": num_classes,
        "parameters": sum(p.numel() for p in unet.parameters()),
        "sigma_data": 0.5,
        "net_config": None,
        "data_shape": [int(channels_in), resolution, resolution],
        "sigma_min": float(sigmas[0]),
        "sigma_max": float(sigmas[-1]),
        "num_train_timesteps": int(len(sigmas)),
        "beta_schedule": "trained_betas"
        if sched_cfg.get("trained_betas") is not None
        else sched_cfg.get("beta_schedule", "linear"),
        "timestep_from_sigma": "fractional, log-sigma interpolation between integer timesteps",
        "path": path,
    }
    return freeze(denoiser.to(device))


__all__ = ["DiffusersDenoiser", "load_diffusers_unet", "PREDICTION_TYPES"]
