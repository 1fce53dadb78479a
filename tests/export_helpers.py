"""Run folders for the export and API tests, made in well under a second: a generator (or a diffusion run's
denoiser) of the size a config names, with every weight perturbed so that the network's own term shows in
the samples (the output layers of DDPM++ / ADM start at zero, which would leave only the c_skip leak of the
noise), saved as `scoremix train` saves it: RUN/generator.safetensors (or denoiser.safetensors) with raw and
EMA weights that differ."""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from scoremix import checkpoint as ckpt
from scoremix.config_loader import load_config
from scoremix.nets.build import build_diffusion_denoiser, build_generator

IMAGE_NETS = ["channels=16", "channel_mult=[1,2]", "blocks=1", "attention=[4]"]
TINY_SCORE = ["score.channels=8", "score.channel_mult=[1,2]"]
MLP = ["generator.hidden=32", "generator.depth=2", "score.hidden=32", "score.depth=2"]


def image_overrides(arch: str, conditional: bool) -> list[str]:
    return (
        [f"generator.arch={arch}"]
        + [f"generator.{o}" for o in IMAGE_NETS]
        + TINY_SCORE
        + [f"data.conditional={str(conditional).lower()}"]
    )


def points_file(folder: str, labelled: bool = False) -> str:
    """An (N, 3) points file far from standardised units (mean ~ (10, -5, 3), scale ~ 4), with 3 classes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)) * 4.0 + np.array([10.0, -5.0, 3.0])
    path = os.path.join(folder, "points.npz")
    arrays = {"x": x}
    if labelled:
        arrays["y"] = np.arange(300) % 3
    np.savez(path, **arrays)
    return path


# name -> (preset, overrides, data shape, classes, diffusion)
KINDS = {
    "mlp": ("ring8", MLP, (2,), 0, False),
    "mlp-cond": ("ring8", MLP + ["data.source=points", "data.conditional=true"], (3,), 3, False),
    "unet": ("digits", image_overrides("unet", False), (1, 8, 8), 0, False),
    "unet-cond": ("digits", image_overrides("unet", True), (1, 8, 8), 10, False),
    "ddpmpp": ("digits", image_overrides("ddpmpp", False), (1, 8, 8), 0, False),
    "ddpmpp-cond": ("digits", image_overrides("ddpmpp", True), (1, 8, 8), 10, False),
    "adm": ("digits", image_overrides("adm", False), (1, 8, 8), 0, False),
    "adm-cond": ("digits", image_overrides("adm", True), (1, 8, 8), 10, False),
    "edm-mlp": ("ring8-edm", ["score.hidden=32", "score.depth=2"], (2,), 0, True),
    "edm-unet-cond": ("digits-edm", TINY_SCORE + ["data.conditional=true"], (1, 8, 8), 10, True),
}


def make_run(folder: str, kind: str, seed: int = 0, step: int = 5) -> tuple[str, object]:
    """RUN folder of `kind` (see KINDS) in `folder`; (path, resolved Config). Points runs get their data file
    and data_transform.json as training writes them."""
    preset, overrides, shape, classes, diffusion = KINDS[kind]
    os.makedirs(folder, exist_ok=True)
    overrides = list(overrides)
    transform = None
    if "data.source=points" in overrides:
        from scoremix.data.points import PointsDataset

        data = points_file(folder, labelled=classes > 0)
        overrides.append(f"data.path={data}")
        transform = PointsDataset(data, "global", use_labels=classes > 0).transform_record()
    cfg = load_config(preset, overrides)
    torch.manual_seed(seed)
    network = (build_diffusion_denoiser if diffusion else build_generator)(cfg, shape, classes)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    raw = {k: v.clone() for k, v in network.state_dict().items()}
    ema = {k: (v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v.clone()) for k, v in raw.items()}
    name = "denoiser" if diffusion else "generator"
    ckpt.save_generator(
        os.path.join(folder, f"{name}.safetensors"), raw, ema, cfg.to_dict(), step, shape, classes, kind=name
    )
    if transform is not None:
        with open(os.path.join(folder, "data_transform.json"), "w") as fh:
            json.dump(transform, fh)
    return folder, cfg
