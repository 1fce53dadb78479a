"""`scoremix export`: a trained run as one ONNX graph or as a self-describing folder.

onnx    One graph with a dynamic batch axis. One-step generators: `noise` (float32, (N, *latent_shape)) and,
        for class-conditional runs, `labels` (int64, (N,)) -> `samples` (float32): what the sampler of
        `scoremix.load_sampler` returns for the same noise and labels (images in [-1, 1], NCHW; vectors in
        the run's training units). Diffusion runs (method.name=edm) export their denoiser alone: `x`, `sigma`
        (float32, (N,)) and, when class-conditional, `labels` -> `denoised`, D(x; sigma); the Heun sampler
        (scoremix.solvers) runs around it. Written by torch.onnx's exporter (`dynamo=True`, torch.export +
        onnxscript); the graph is run with ONNX Runtime on a fixed batch before anything is written, and
        refused when its largest absolute difference from PyTorch exceeds 1e-4. The model's metadata_props
        say what the graph is (kind, shapes, classes, sampler settings, library version).
folder  config.json (format, library version, kind, network, weights, step, data and latent shapes, classes,
        the sampler's settings, the points standardisation of data.source=points runs, the resolved config)
        and model.safetensors (the network's state dict under its own parameter names). `scoremix.load_sampler`,
        `scoremix.generate` and `scoremix sample --checkpoint FOLDER` read it without the run's other files.

Nothing is left half-written at --out: the file or folder is built under a temporary name beside it and
renamed into place once it is complete and checked.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile

import torch
from torch import nn

from . import __version__, checkpoint as ckpt
from .errors import ConfigError
from .onnx_graph import (
    DEFAULT_OPSET,
    ExportError,
    OnnxRuntimeSampler,
    check_opset,
    onnx_bytes,
    onnx_check,
    onnx_missing,
    opset_range,
)

FORMATS = ("onnx", "folder")
TOLERANCE = 1e-4  # largest |ONNX Runtime - PyTorch| an exported graph may show on the check batch
TRACE_BATCH = 2  # batch the graph is traced with
CHECK_BATCH = 5  # another batch size, so the check also exercises the dynamic batch axis
EXPORT_EXTRA = "pip install 'scoremix[export]'"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FOLDER_MODE = 0o777 & ~_UMASK


class GeneratorGraph(nn.Module):
    """The one-step generator as the ONNX graph sees it: (noise[, labels]) -> samples."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(noise, labels=labels)


class DenoiserGraph(nn.Module):
    """A diffusion run's denoiser as the ONNX graph sees it: (x, sigma[, labels]) -> D(x; sigma)."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.denoiser(x, sigma, labels=labels)


def _silent(message: str) -> None:
    del message


# -- what is exported ----------------------------------------------------------------------------------
def load_network(path: str, weights: str = "ema") -> dict:
    """The network a run samples with, on the CPU in eval mode, and what it is: {'network' (the one-step
    generator, or a diffusion run's denoiser), 'kind' ('one-step' | 'diffusion'), 'network_name'
    ('generator' | 'denoiser'), 'weights' ('ema' falls back to 'raw' for runs without EMA), 'step', 'config',
    'data_shape', 'num_classes', 'path' (the file read)}."""
    from .sampling import DIFFUSION_METHODS, load_generator, resolve_checkpoint

    if weights not in ("ema", "raw"):
        raise ConfigError(f"weights={weights!r} is unknown; use ema or raw")
    sampler, cfg, shape, classes, step, which = load_generator(path, use_ema=weights == "ema", device="cpu")
    diffusion = cfg.method.name in DIFFUSION_METHODS
    network = sampler.denoiser if diffusion else sampler
    return {
        "network": network.eval(),
        "kind": "diffusion" if diffusion else "one-step",
        "network_name": "denoiser" if diffusion else "generator",
        "weights": which,
        "step": step,
        "config": cfg,
        "data_shape": tuple(shape),
        "num_classes": classes,
        "path": os.path.abspath(resolve_checkpoint(path)),
    }


def describe(loaded: dict, source: str) -> dict:
    """The description an export carries (config.json of a folder; metadata_props of an ONNX graph)."""
    from .precond import generator_sigma
    from .sampling import points_transform

    cfg, shape = loaded["config"], list(loaded["data_shape"])
    images = len(shape) == 3
    if loaded["kind"] == "diffusion":
        n = cfg.noise
        sampler = {
            "solver": "heun",
            "steps": cfg.eval.heun_steps,
            "evaluations": 2 * cfg.eval.heun_steps - 1,
            "sigma_min": n.sigma_min,
            "sigma_max": n.sigma_max,
            "rho": n.rho,
            "note": "x_0 = sigma_max z, then EDM's Heun steps (Alg. 1) with this denoiser",
        }
    else:
        sampler = {
            "solver": "one-step",
            "evaluations": 1,
            "sigma": generator_sigma(cfg),
            "note": "samples = D(sigma z; sigma), z standard normal of latent_shape",
        }
    transform = points_transform(source, cfg)
    if cfg.data.source == "points" and transform is None:
        raise ExportError(
            f"'{source}' is a data.source=points run but nothing says how its points were "
            f"standardised (no data_transform.json beside the weights, and the data file "
            f"'{cfg.data.path}' is gone); put either back, then export again"
        )
    return {
        "library": "scoremix",
        "library_version": __version__,
        "kind": loaded["kind"],
        "network": loaded["network_name"],
        "method": cfg.method.name,
        "weights": loaded["weights"],
        "step": loaded["step"],
        "data": "images" if images else "vectors",
        "data_shape": shape,
        "latent_shape": shape,
        "num_classes": loaded["num_classes"],
        "output": (
            "images in [-1, 1], (N, C, H, W); uint8 as (x * 127.5 + 128).clip(0, 255)"
            if images
            else "vectors (N, D) in the run's training units (data_transform maps points back)"
        ),
        "sampler": sampler,
        "data_transform": transform,
        "source": loaded["path"],
        "config": cfg.to_dict(),
    }


def graph_signature(loaded: dict) -> tuple[dict, dict]:
    """({input name: {'shape', 'dtype'}}, {output name: {'shape', 'dtype'}}) of the ONNX graph; 'batch' is the
    dynamic batch axis (the graph's own name for it)."""
    data = ["batch", *loaded["data_shape"]]
    if loaded["kind"] == "diffusion":
        inputs = {"x": {"shape": data, "dtype": "float32"}, "sigma": {"shape": ["batch"], "dtype": "float32"}}
        outputs = {"denoised": {"shape": data, "dtype": "float32"}}
    else:
        inputs = {"noise": {"shape": data, "dtype": "float32"}}
        outputs = {"samples": {"shape": data, "dtype": "float32"}}
    if loaded["num_classes"]:
        inputs["labels"] = {"shape": ["batch"], "dtype": "int64"}
    return inputs, outputs


def example_inputs(loaded: dict, batch: int, seed: int) -> dict:
    """Named inputs of the graph for `batch` samples, drawn from a seeded generator: noise (and labels)
    for a one-step generator; x = sigma n at noise levels spread log-uniformly over the run's range (and
    labels) for a denoiser."""
    rng = torch.Generator().manual_seed(seed)
    shape, classes = loaded["data_shape"], loaded["num_classes"]
    inputs = {}
    if loaded["kind"] == "diffusion":
        n = loaded["config"].noise
        sigma = torch.linspace(math.log(n.sigma_min), math.log(n.sigma_max), batch).exp()
        inputs["x"] = torch.randn(batch, *shape, generator=rng) * sigma.view(-1, *[1] * len(shape))
        inputs["sigma"] = sigma
    else:
        inputs["noise"] = torch.randn(batch, *shape, generator=rng)
    if classes:
        inputs["labels"] = torch.randint(0, classes, (batch,), generator=rng, dtype=torch.long)
    return inputs


# -- output paths --------------------------------------------------------------------------------------
def _check_writable_parent(out: str) -> None:
    """Fail now, before any work, when --out's folder cannot be created or written; creates nothing."""
    probe = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ExportError(f"cannot write --out '{out}': '{probe}' is a file, not a folder; pick another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write --out '{out}': no permission to write in '{probe}'; pick a writable folder")


def _make_parent(out: str) -> str:
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ExportError(
            f"cannot create the folder of --out '{out}' ({ckpt.folder_error(folder, err)}); pick a writable folder"
        ) from None
    return folder


def check_out(out: str, fmt: str) -> None:
    """--out suits the format and can be written: a .onnx file name, or a folder that is new, empty or an
    earlier export (which the new one replaces)."""
    if fmt == "onnx":
        if os.path.isdir(out):
            raise ExportError(f"--out '{out}' is a folder; --format onnx writes one file: pass a name ending in .onnx")
        if not out.endswith(".onnx"):
            raise ExportError(f"--out '{out}' must end in .onnx (--format onnx writes one ONNX file)")
    else:
        if os.path.exists(out) and not os.path.isdir(out):
            raise ExportError(f"--out '{out}' is a file; --format folder writes a folder: pass a new folder name")
        if os.path.isdir(out) and os.listdir(out) and not ckpt.is_export_folder(out):
            raise ExportError(
                f"--out '{out}' is a folder with other files in it; pass a new folder name (or an "
                "earlier export, which is replaced)"
            )
    _check_writable_parent(out)


def export_onnx(path: str, out: str, weights: str = "ema", opset: int = DEFAULT_OPSET, report=_silent) -> dict:
    """Write the run at `path` as one ONNX graph to `out` (a .onnx file); see the module docstring."""
    missing = onnx_missing()
    if missing:
        raise ExportError(f"--format onnx needs {', '.join(missing)}: install the export extra, {EXPORT_EXTRA}")
    check_opset(opset)
    check_out(out, "onnx")
    report(f"loading {path}")
    loaded = load_network(path, weights)
    description = describe(loaded, path)
    diffusion = loaded["kind"] == "diffusion"
    graph = (DenoiserGraph if diffusion else GeneratorGraph)(loaded["network"]).eval()
    inputs, outputs = graph_signature(loaded)
    (output,) = outputs
    trace = example_inputs(loaded, TRACE_BATCH, seed=0)
    description.update({"inputs": inputs, "outputs": outputs})
    report(
        f"tracing the {loaded['network_name']} ({loaded['weights']} weights, step {loaded['step']}) with "
        f"torch.onnx, opset {opset}"
    )
    model = onnx_bytes(graph, trace, output, opset, description)
    report(f"checking the graph with ONNX Runtime against PyTorch on a batch of {CHECK_BATCH}")
    diff = onnx_check(model, graph, example_inputs(loaded, CHECK_BATCH, seed=1), output)
    if not diff <= TOLERANCE:
        raise ExportError(
            f"ONNX Runtime's output differs from PyTorch's by up to {diff:.3g} (> {TOLERANCE:g}); "
            f"nothing written; try another --opset (default {DEFAULT_OPSET})"
        )
    _make_parent(out)
    try:
        ckpt.atomic_write_bytes(out, model)
    except OSError as err:
        raise ExportError(
            f"cannot write --out '{out}' ({err.strerror or err}); free disk space or pick a writable folder"
        ) from None
    return {
        "format": "onnx",
        "out": out,
        "kind": loaded["kind"],
        "network": loaded["network_name"],
        "weights": loaded["weights"],
        "step": loaded["step"],
        "opset": opset,
        "inputs": inputs,
        "outputs": outputs,
        "max_abs_diff": diff,
        "check_batch": CHECK_BATCH,
        "bytes": len(model),
        "sampler": description["sampler"],
    }


# -- folder ----------------------------------------------------------------------------------------------
def export_folder(path: str, out: str, weights: str = "ema", report=_silent) -> dict:
    """Write the run at `path` as a self-describing folder (config.json + model.safetensors) to `out`."""
    from .sampling import load_generators

    check_out(out, "folder")
    report(f"loading {path}")
    loaded = load_network(path, weights)
    description = describe(loaded, path)
    parent = _make_parent(out)
    staging = tempfile.mkdtemp(prefix=".tmp-", suffix="-" + os.path.basename(os.path.abspath(out)), dir=parent)
    try:
        os.chmod(staging, _FOLDER_MODE)  # mkdtemp's 0700 -> what os.makedirs would give
        report(f"writing config.json and model.safetensors ({loaded['weights']} weights, step {loaded['step']})")
        ckpt.write_export_folder(staging, loaded["network"].state_dict(), description)
        report("checking that the folder loads and samples as the run does")
        reloaded, *_ = load_generators(staging, (loaded["weights"],), "cpu")
        network = reloaded[loaded["weights"]]
        network = network.denoiser if loaded["kind"] == "diffusion" else network
        graph_cls = DenoiserGraph if loaded["kind"] == "diffusion" else GeneratorGraph
        inputs = example_inputs(loaded, CHECK_BATCH, seed=1)
        with torch.no_grad():
            same = torch.equal(graph_cls(network)(*inputs.values()), graph_cls(loaded["network"])(*inputs.values()))
        if not same:
            raise ExportError(
                f"the exported folder does not reproduce the run's {loaded['network_name']}; nothing written"
            )
        _replace_folder(staging, out)
    except OSError as err:
        raise ExportError(
            f"cannot write --out '{out}' ({err.strerror or err}); free disk space or pick a writable folder"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "format": "folder",
        "out": out,
        "kind": loaded["kind"],
        "network": loaded["network_name"],
        "weights": loaded["weights"],
        "step": loaded["step"],
        "max_abs_diff": 0.0,
        "files": [ckpt.EXPORT_CONFIG, ckpt.EXPORT_WEIGHTS],
        "sampler": description["sampler"],
    }


def _replace_folder(staging: str, out: str) -> None:
    """Move the finished `staging` folder to `out`; an earlier export (or empty folder) there is replaced."""
    if not os.path.exists(out):
        os.rename(staging, out)
        return
    old = tempfile.mkdtemp(prefix=".tmp-old-", dir=os.path.dirname(os.path.abspath(out)))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(old, out)  # put the earlier export back
        raise
    shutil.rmtree(old, ignore_errors=True)


def export(path: str, fmt: str, out: str, weights: str = "ema", opset: int | None = None, report=_silent) -> dict:
    """`scoremix export PATH --format FMT --out OUT`: a summary dict of what was written."""
    if fmt not in FORMATS:
        raise ExportError(
            f"--format '{fmt}' is unknown; use onnx (one ONNX graph) or folder (config.json + model.safetensors)"
        )
    if not isinstance(out, str) or not out.strip():
        raise ExportError("--out is empty; pass the file (.onnx) or folder to write")
    if fmt == "folder":
        if opset is not None:
            raise ExportError("--opset applies to --format onnx only; drop it for --format folder")
        return export_folder(path, out, weights, report)
    return export_onnx(path, out, weights, DEFAULT_OPSET if opset is None else opset, report)


def summary_line(result: dict) -> str:
    """One line for the command's stdout."""
    where = result["out"]
    if result["format"] == "folder":
        return (
            f"folder: {result['network']} ({result['weights']} weights, step {result['step']}) -> {where} "
            f"(config.json, model.safetensors)"
        )

    def spec(items):
        return ", ".join(f"{k} {v['dtype']} ({', '.join(map(str, v['shape']))})" for k, v in items.items())

    text = (
        f"onnx: {spec(result['inputs'])} -> {spec(result['outputs'])}, opset {result['opset']}, "
        f"max |ONNX Runtime - PyTorch| = {result['max_abs_diff']:.2g} on a batch of {result['check_batch']} "
        f"({result['weights']} weights, step {result['step']}) -> {where}"
    )
    if result["kind"] == "diffusion":
        s = result["sampler"]
        text += (
            f"; a diffusion run: this is its denoiser alone, D(x; sigma); sample with {s['steps']} Heun steps "
            f"({s['evaluations']} evaluations) around it (scoremix.solvers.heun_sample)"
        )
    return text


def stderr_report(message: str) -> None:
    print(f"export: {message}", file=sys.stderr, flush=True)


__all__ = [
    "FORMATS",
    "DEFAULT_OPSET",
    "TOLERANCE",
    "ExportError",
    "GeneratorGraph",
    "DenoiserGraph",
    "load_network",
    "describe",
    "example_inputs",
    "export",
    "export_onnx",
    "export_folder",
    "opset_range",
    "onnx_missing",
    "summary_line",
    "OnnxRuntimeSampler",
]
