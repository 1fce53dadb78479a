"""Published EDM network pickles (`edm-cifar10-32x32-uncond-vp.pkl`, `edm-imagenet-64x64-cond-adm.pkl`, ...)
loaded without running the code embedded in them.

A file holds a dict whose `ema` entry is EDM's preconditioning wrapper (VPPrecond | VEPrecond | EDMPrecond)
around its U-Net (`model`: SongUNet for DDPM++/NCSN++, DhariwalUNet for ADM), all pickled through EDM's
`torch_utils.persistence`. `safe_pickle` reads them as inert records (class name + state); this module then
1. reads the wrapper's constants from its recorded state (beta_d, beta_min, M, epsilon_t; sigma_data) and
   the U-Net's hyper-parameters from its recorded constructor arguments (`_init_kwargs`; EDM's defaults for
   the ones not given),
2. refuses anything this library cannot reproduce exactly (NCSN++, iDDPM preconditioning, non-default
   VP constants, other classes),
3. builds the same network from scoremix.nets (ddpmpp | adm, parameter names are EDM's), maps every
   parameter and buffer onto it by name and checks every shape (the unused augmentation embedding
   `map_augment` is dropped: EDM applies it only when augmentation labels are passed, never at sampling),
4. wraps it in the preconditioning of the file (scoremix.precond_variants) and returns it frozen.

The wrapper class is read from the file, never guessed from its name: in EDM's file names the suffix is the
architecture family (vp = DDPM++, ve = NCSN++, adm = ADM); the `edm-*` files were trained with EDM's default
--precond=edm (EDMPrecond), the `baseline-*-vp/ve` files (converted from Song et al.) use VPPrecond/VEPrecond.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..config import NetConfig
from ..errors import TeacherError
from ..nets.build import build_backbone, count_parameters
from ..precond_variants import PreconditionedDenoiser, VPSchedule
from .frozen import freeze
from .safe_pickle import PersistentRecord, RecordedObject, safe_load

# EDM's constructor defaults (training/networks.py), used for arguments a file does not record.
_SONG_UNET_DEFAULTS = dict(
    label_dim=0,
    augment_dim=0,
    model_channels=128,
    channel_mult=[1, 2, 2, 2],
    channel_mult_emb=4,
    num_blocks=4,
    attn_resolutions=[16],
    dropout=0.10,
    label_dropout=0,
    embedding_type="positional",
    channel_mult_noise=1,
    encoder_type="standard",
    decoder_type="standard",
    resample_filter=[1, 1],
)
_DHARIWAL_UNET_DEFAULTS = dict(
    label_dim=0,
    augment_dim=0,
    model_channels=192,
    channel_mult=[1, 2, 3, 4],
    channel_mult_emb=4,
    num_blocks=3,
    attn_resolutions=[32, 16, 8],
    dropout=0.10,
    label_dropout=0,
)
_MODEL_IO_KEYS = ("img_resolution", "in_channels", "out_channels")
_PRECOND_KINDS = {"VPPrecond": "vp", "VEPrecond": "ve", "EDMPrecond": "edm"}


def _fail(path: str, message: str):
    raise TeacherError(f"{path}: {message}")


def _state_value(record: PersistentRecord, key: str, default=None):
    value = record.state.get(key, default)
    return default if value is None else value


def _model_kwargs(path: str, precond: PersistentRecord, model: PersistentRecord) -> dict:
    """The U-Net's constructor arguments: its own record, else what the wrapper passed on, else defaults."""
    defaults = _SONG_UNET_DEFAULTS if model.class_name == "SongUNet" else _DHARIWAL_UNET_DEFAULTS
    if model.state.get("_init_args"):
        _fail(
            path,
            f"{model.class_name} was built with positional arguments, which EDM never records; "
            "the architecture cannot be read safely",
        )
    recorded = model.state.get("_init_kwargs")
    if not isinstance(recorded, dict):
        wrapper = precond.state.get("_init_kwargs")
        if not isinstance(wrapper, dict):
            _fail(
                path,
                f"{model.class_name} has no recorded constructor arguments (_init_kwargs), so its "
                "architecture cannot be read safely; re-export it with EDM's persistence enabled",
            )
        recorded = {
            k: v
            for k, v in wrapper.items()
            if k
            not in (
                "img_resolution",
                "img_channels",
                "label_dim",
                "use_fp16",
                "model_type",
                "beta_d",
                "beta_min",
                "M",
                "epsilon_t",
                "sigma_min",
                "sigma_max",
                "sigma_data",
            )
        }
        recorded.update(
            img_resolution=wrapper.get("img_resolution"),
            in_channels=wrapper.get("img_channels"),
            out_channels=wrapper.get("img_channels"),
            label_dim=wrapper.get("label_dim", 0),
        )
    unknown = sorted(set(recorded) - set(defaults) - set(_MODEL_IO_KEYS))
    if unknown:
        _fail(
            path, f"{model.class_name} was built with argument(s) {', '.join(unknown)} that scoremix does not reproduce"
        )
    kwargs = {**defaults, **recorded}
    for key in _MODEL_IO_KEYS:
        if not isinstance(kwargs.get(key), int):
            _fail(path, f"{model.class_name} records no integer {key}")
    return kwargs


def _net_config(path: str, model: PersistentRecord, kwargs: dict, precond_kind: str) -> NetConfig:
    if model.class_name == "SongUNet":
        ncsnpp = (
            kwargs["embedding_type"] != "positional"
            or kwargs["encoder_type"] != "standard"
            or list(kwargs["resample_filter"]) != [1, 1]
            or kwargs["channel_mult_noise"] != 1
        )
        if ncsnpp:
            _fail(
                path,
                "NCSN++ teachers (SongUNet with Fourier embedding / residual encoder, EDM's *-ve.pkl "
                "files) are not supported: scoremix has no NCSN++ backbone; use a DDPM++ (*-vp.pkl) or "
                "ADM (*-adm.pkl) file",
            )
        if kwargs["decoder_type"] != "standard":
            _fail(path, f"SongUNet decoder_type={kwargs['decoder_type']!r} is not supported (only 'standard')")
        arch = "ddpmpp"
    elif model.class_name == "DhariwalUNet":
        arch = "adm"
    else:
        _fail(
            path,
            f"network class {model.class_name!r} is not supported; scoremix reads SongUNet (DDPM++) and "
            "DhariwalUNet (ADM)",
        )
    if kwargs["channel_mult_emb"] != 4:
        _fail(path, f"channel_mult_emb={kwargs['channel_mult_emb']} is not supported (scoremix uses 4)")
    if kwargs["in_channels"] != kwargs["out_channels"]:
        _fail(path, "in_channels and out_channels differ; a denoiser maps images to images")
    return NetConfig(
        arch=arch,
        channels=int(kwargs["model_channels"]),
        channel_mult=[int(m) for m in kwargs["channel_mult"]],
        blocks=int(kwargs["num_blocks"]),
        attention=[int(r) for r in kwargs["attn_resolutions"]],
        dropout=float(kwargs["dropout"]),
        label_dropout=float(kwargs["label_dropout"]),
        precond=precond_kind,
    )


def _flatten(record, prefix: str, out: dict, path: str) -> None:
    """Parameters and buffers of a recorded module tree, keyed like a state_dict."""
    for group in ("_parameters", "_buffers"):
        for name, value in (record.state.get(group) or {}).items():
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                _fail(path, f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            out[prefix + name] = value
    for name, child in (record.state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, (PersistentRecord, RecordedObject)):
            _fail(path, f"submodule {prefix}{name} is a {type(child).__name__}, not a recorded network module")
        _flatten(child, f"{prefix}{name}.", out, path)


def _map_state(path: str, file_state: dict, backbone: torch.nn.Module, arch: str) -> dict:
    """file_state (keys relative to the U-Net) checked key by key and shape by shape against `backbone`."""
    file_state = {k: v for k, v in file_state.items() if not k.startswith("map_augment.")}
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in file_state]
    extra = [k for k in file_state if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        _fail(path, f"the file lacks model.{missing[0]}{more} that a {arch} with the recorded settings has")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        _fail(path, f"the file has model.{extra[0]}{more} that a {arch} with the recorded settings does not have")
    mapped = {}
    for key, ref in expected.items():
        value = file_state[key]
        if tuple(value.shape) != tuple(ref.shape):
            _fail(
                path,
                f"model.{key} has shape {tuple(value.shape)} but a {arch} with the recorded settings "
                f"expects {tuple(ref.shape)}",
            )
        if not (value.is_floating_point()):
            _fail(path, f"model.{key} holds {value.dtype}, not floating-point values")
        value = value.to(torch.float32)
        if key.endswith("resample_filter") and not torch.allclose(value, ref.float()):
            _fail(path, f"model.{key} is not the [1, 1] resampling filter scoremix uses")
        mapped[key] = value
    return mapped


def load_edm_pickle(path: str, device="cpu") -> PreconditionedDenoiser:
    """The `ema` network of a published EDM pickle as a frozen denoiser D(x, sigma, labels=None) in EDM's
    convention, with `.info` (see scoremix.teachers). Integer class labels are turned into EDM's one-hot
    vectors; one-hot (B, classes) float labels are used as given."""
    path = str(path)
    data = safe_load(path)
    if not isinstance(data, dict) or "ema" not in data:
        _fail(path, "expected EDM's network pickle layout, a dict with an 'ema' entry")
    precond = data["ema"]
    if not isinstance(precond, PersistentRecord):
        _fail(path, "the 'ema' entry is not an EDM network record")
    if precond.class_name not in _PRECOND_KINDS:
        hint = (
            " (iDDPM's discretised preconditioning is not reproduced)" if precond.class_name == "iDDPMPrecond" else ""
        )
        _fail(
            path,
            f"preconditioning class {precond.class_name!r} is not supported{hint}; scoremix reads "
            "VPPrecond, VEPrecond and EDMPrecond",
        )
    kind = _PRECOND_KINDS[precond.class_name]
    model = (precond.state.get("_modules") or {}).get("model")
    if not isinstance(model, PersistentRecord):
        _fail(path, f"{precond.class_name} holds no recorded 'model' network")

    if model.class_name not in ("SongUNet", "DhariwalUNet"):
        _fail(
            path,
            f"network class {model.class_name!r} is not supported; scoremix reads SongUNet (DDPM++) and "
            "DhariwalUNet (ADM)",
        )

    vp = VPSchedule()
    if kind == "vp":
        recorded = {f.name: _state_value(precond, f.name, getattr(vp, f.name)) for f in dataclasses.fields(vp)}
        if any(not math.isclose(float(recorded[k]), float(getattr(vp, k)), rel_tol=1e-9) for k in recorded):
            _fail(
                path,
                f"VP constants {recorded} differ from EDM's published ones {dataclasses.asdict(vp)}; "
                "scoremix reproduces only those",
            )
    sigma_data = float(_state_value(precond, "sigma_data", 0.5)) if kind == "edm" else 0.5

    kwargs = _model_kwargs(path, precond, model)
    net_cfg = _net_config(path, model, kwargs, kind)
    label_dim = int(kwargs["label_dim"] or 0)
    wrapper_labels = int(_state_value(precond, "label_dim", label_dim))
    if wrapper_labels != label_dim:
        _fail(path, f"{precond.class_name} has label_dim {wrapper_labels} but its model {label_dim}")
    channels, resolution = int(kwargs["in_channels"]), int(kwargs["img_resolution"])
    data_shape = (channels, resolution, resolution)
    try:
        backbone = build_backbone(net_cfg, data_shape, num_classes=label_dim)
    except ValueError as exc:
        _fail(path, f"cannot build a {net_cfg.arch} with the recorded settings ({exc})")

    file_state: dict = {}
    _flatten(model, "", file_state, path)
    wrapper_tensors: dict = {}
    _flatten(
        PersistentRecord(precond.class_name, {**precond.state, "_modules": {}}, None, 0), "", wrapper_tensors, path
    )
    if wrapper_tensors:
        _fail(path, f"{precond.class_name} holds tensor {next(iter(wrapper_tensors))} that scoremix does not use")
    backbone.load_state_dict(_map_state(path, file_state, backbone, net_cfg.arch), strict=True)

    if kind == "vp":
        sigma_min, sigma_max = vp.sigma_min, vp.sigma_max
    else:
        sigma_min = float(_state_value(precond, "sigma_min", 0.02 if kind == "ve" else 0.0))
        sigma_max = float(_state_value(precond, "sigma_max", 100.0 if kind == "ve" else math.inf))
    denoiser = PreconditionedDenoiser(backbone, sigma_data=sigma_data, precond=kind, vp=vp)
    denoiser.info = {
        "kind": "edm-pickle",
        "arch": net_cfg.arch,
        "precond": kind,
        "resolution": resolution,
        "channels": channels,
        "num_classes": label_dim,
        "parameters": count_parameters(backbone),
        "sigma_data": sigma_data,
        "net_config": dataclasses.asdict(net_cfg),
        "data_shape": list(data_shape),
        "sigma_min": sigma_min,
        "sigma_max": sigma_max if math.isfinite(sigma_max) else None,
        "source": f"{precond.class_name}({model.class_name})",
        "vp_schedule": dataclasses.asdict(vp) if kind == "vp" else None,
        "dropped": ["map_augment"] if int(kwargs["augment_dim"] or 0) else [],
        "path": path,
    }
    return freeze(denoiser.to(device))


__all__ = ["load_edm_pickle"]
