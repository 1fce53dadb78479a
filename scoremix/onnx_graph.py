"""ONNX graphs of a network: the export extra's packages and opsets, torch.onnx's exporter kept quiet, the
ONNX Runtime check of a written graph, and `OnnxRuntimeSampler`, which calls an exported graph like scoremix's
samplers. `scoremix export` (export.py) builds on it; see its docstring for what a graph holds."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings

import torch
from torch import nn

from .errors import ConfigError, ScoremixError

DEFAULT_OPSET = 18
MIN_OPSET = 18  # lower opsets come from down-conversion, which writes invalid GroupNorm / Split nodes
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


class ExportError(ScoremixError):
    """An export that cannot be made or that fails its own check; nothing was written."""


def onnx_missing() -> list[str]:
    """The ONNX packages that are not installed."""
    import importlib.util

    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def opset_range() -> tuple[int, int]:
    """(lowest, highest) ONNX opset the installed exporter writes directly."""
    import onnx

    try:
        from torch.onnx._constants import ONNX_MAX_OPSET as torch_max
    except ImportError:  # a torch without the constant: trust onnx's own
        torch_max = onnx.defs.onnx_opset_version()
    return MIN_OPSET, min(int(torch_max), onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> None:
    low, high = opset_range()
    if not low <= opset <= high:
        raise ExportError(
            f"--opset {opset}: the installed exporter (torch {torch.__version__.split('+')[0]}) writes "
            f"ONNX opsets {low} to {high}; pass --opset in that range (default {DEFAULT_OPSET})"
        )


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx and onnxscript log and warn a lot while they work; keep the command's output to its lines."""
    loggers = [
        logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def onnx_bytes(graph: nn.Module, inputs: dict, output: str, opset: int, metadata: dict) -> bytes:
    """The serialised ONNX model of `graph` traced on `inputs` (named as the graph's inputs) with a dynamic
    batch axis on every input and on `output`."""
    import onnx

    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                graph,
                tuple(inputs.values()),
                dynamo=True,
                opset_version=opset,
                input_names=list(inputs),
                output_names=[output],
                dynamic_shapes={name: {0: batch} for name in inputs},
                verbose=False,
            )
    except Exception as err:
        raise ExportError(
            f"torch.onnx could not export the network ({_first_line(err)}); report it with the run's config.yaml"
        ) from None
    model = program.model_proto
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        low, high = opset_range()
        raise ExportError(
            f"--opset {opset}: the installed exporter wrote opset {written} instead; pass --opset "
            f"between {low} and {high}"
        )
    onnx.helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    return model.SerializeToString()


def onnx_check(model: bytes, graph: nn.Module, inputs: dict, output: str) -> float:
    """Run the graph with ONNX Runtime (CPU) on `inputs` and return max |ONNX Runtime - PyTorch|."""
    import numpy as np
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        got = session.run([output], {k: v.numpy() for k, v in inputs.items()})[0]
    except Exception as err:
        raise ExportError(
            f"ONNX Runtime {onnxruntime.__version__} cannot run the exported graph "
            f"({_first_line(err)}); try another --opset (default {DEFAULT_OPSET})"
        ) from None
    with torch.no_grad():
        expected = graph(*inputs.values()).float().numpy()
    if got.shape != expected.shape:
        raise ExportError(f"ONNX Runtime returned shape {got.shape}, PyTorch {expected.shape}; nothing written")
    if not (np.isfinite(got).all() and np.isfinite(expected).all()):
        raise ExportError(
            "the check batch gave non-finite samples (NaN or inf); the weights may be diverged, nothing written"
        )
    return float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())


class OnnxRuntimeSampler:
    """An exported .onnx file called like scoremix's samplers: `sampler(z, labels=None)` -> float32 torch
    samples on the CPU, from ONNX Runtime. A generator graph is one call; a denoiser graph (diffusion runs)
    runs inside EDM's Heun sampler (scoremix.solvers.heun_sample, float64 state as in PyTorch) at `steps` steps,
    by default those its metadata records. `.metadata` is the graph's description (see scoremix.export.describe);
    `.evaluations` the network calls per sample."""

    def __init__(self, path: str, steps: int | None = None, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {
            k: (
                v
                if k
                in ("kind", "network", "method", "weights", "library", "library_version", "data", "output", "source")
                else json.loads(v)
            )
            for k, v in props.items()
        }
        self.inputs = [i.name for i in self.session.get_inputs()]
        sampler = self.metadata.get("sampler", {})
        self.diffusion = self.metadata.get("kind") == "diffusion"
        if steps is not None and not self.diffusion:
            raise ConfigError(
                "steps applies to the denoiser graphs of diffusion runs; this graph is a one-step generator"
            )
        self.steps = int(steps or sampler.get("steps", 18)) if self.diffusion else 1
        self.evaluations = 2 * self.steps - 1 if self.diffusion else 1

    def _run(self, feed: dict) -> torch.Tensor:
        feed = {k: v for k, v in feed.items() if k in self.inputs}
        return torch.from_numpy(self.session.run(None, feed)[0])

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, labels=None) -> torch.Tensor:
        """D(x; sigma) from a denoiser graph (float32 in, float32 out)."""
        feed = {"x": x.float().numpy(), "sigma": torch.as_tensor(sigma).float().expand(x.shape[0]).numpy()}
        if labels is not None:
            feed["labels"] = torch.as_tensor(labels).long().numpy()
        return self._run(feed)

    def __call__(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        if self.diffusion:
            from .solvers import heun_sample

            s = self.metadata["sampler"]
            return heun_sample(
                self.denoise, z, self.steps, s["sigma_min"], s["sigma_max"], s["rho"], labels=labels
            ).float()
        feed = {"noise": z.float().numpy()}
        if labels is not None:
            feed["labels"] = torch.as_tensor(labels).long().numpy()
        return self._run(feed)
