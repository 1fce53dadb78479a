"""Diffusion teachers behind one interface: `load_teacher(spec)` returns a frozen module called as
`D(x, sigma, labels=None)` that gives the denoised sample in EDM's convention (images in [-1, 1]).

Every loaded teacher carries `teacher.info`, a dict with at least
    kind         analytic | scoremix | edm-pickle | diffusers
    arch         the backbone (mlp, unet, ddpmpp, ncsnpp, adm, gaussian-mixture, UNet2DModel, ...)
    precond      how sigma enters the network (edm, vp, ve, analytic, epsilon, v_prediction, ...)
    resolution   image side (None for vector data)
    channels     image channels (or the vector dimension for vector data)
    num_classes  0 when unconditional
    parameters   trainable parameter count (0 for analytic teachers)
    sigma_data   the data standard deviation of its preconditioning (0.5 for images)
and every such module is in eval mode with requires_grad off on all parameters.

Which loader a spec goes to:
    "analytic" / "analytic:NAME"      exact denoiser of a 2-D toy mixture   (teachers/analytic.py)
    FILE.pkl                          a published EDM network pickle, read without running its code
                                                                            (teachers/edm_pickle.py)
    folder with a diffusers config    a diffusers UNet2DModel               (teachers/diffusers_unet.py)
    anything else                     a scoremix diffusion run folder, state-*.pt or safetensors
                                                                            (teachers/run.py)
"""

from __future__ import annotations

import json
import os

from ..errors import TeacherError
from .frozen import freeze


def _is_diffusers_folder(path: str) -> bool:
    for config in (os.path.join(path, "config.json"), os.path.join(path, "unet", "config.json")):
        if os.path.isfile(config):
            try:
                with open(config) as f:
                    return json.load(f).get("_class_name") == "UNet2DModel"
            except (OSError, ValueError):
                return False
    return False


def load_teacher(spec: str, device="cpu", data_cfg=None):
    """The teacher named by `spec` (see the module docstring), on `device`, frozen and in eval mode.

    `data_cfg` (a DataConfig) names the toy for spec 'analytic' and lets loaders check the data shape."""
    spec = str(spec)
    if spec == "analytic" or spec.startswith("analytic:"):
        from .analytic import load_analytic_teacher

        name = spec.split(":", 1)[1] if ":" in spec else (data_cfg.source if data_cfg is not None else None)
        return load_analytic_teacher(name, device=device)
    if not os.path.exists(spec):
        raise TeacherError(
            f"teacher '{spec}' does not exist; pass a run folder, a state-*.pt, a "
            "generator/denoiser .safetensors, an EDM .pkl, a diffusers UNet2DModel folder, "
            "or 'analytic' for the toy mixtures"
        )
    if spec.endswith(".pkl"):
        from .edm_pickle import load_edm_pickle

        return load_edm_pickle(spec, device=device)
    if os.path.isdir(spec) and _is_diffusers_folder(spec):
        from .diffusers_unet import load_diffusers_unet

        return load_diffusers_unet(spec, device=device)
    from .run import load_run_teacher

    return load_run_teacher(spec, device=device)


__all__ = ["load_teacher", "freeze"]
