"""What a run shows of itself besides stats.jsonl: sample pictures, metrics, and the experiment tracker."""

from __future__ import annotations

import json
import os

import torch

from . import checkpoint as ckpt
from .data import reference_samples
from .errors import TrainingError
from .evaluate import Evaluator, generate_samples
from .plots import samples_picture, save_picture


def flatten(d: dict, prefix: str) -> dict:
    """{'ema': {'w2': 1.0}} -> {'PREFIX/ema/w2': 1.0}: nested metrics as flat stats keys."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}/{k}"))
        else:
            out[f"{prefix}/{k}"] = v
    return out


class Monitor:
    """Owns RUN/samples (a picture of samples beside the data at the start, every train.sample_every steps
    and at the end), the Evaluator (metrics of the raw and EMA samplers against the data, every
    train.eval_every steps and once at the end into metrics.json) and the experiment tracker (TensorBoard /
    W&B, or None) that the stats, pictures and final metrics go to. The trainer calls it on the main
    process only."""

    def __init__(self, cfg, run_dir: str, method, ema, source, dataset, device, echo):
        self.cfg, self.run_dir = cfg, run_dir
        self.folder = os.path.join(run_dir, "samples")
        self.method, self.ema, self.source, self.dataset = method, ema, source, dataset
        self.device, self.echo = device, echo
        self.evaluator: Evaluator | None = None
        self.tracker = None
        self._reference_picture: torch.Tensor | None = None

    # -- the tracker -------------------------------------------------------------------------------------
    def open_tracker(self):
        """The run's tracker (TensorBoard / W&B), or None when both are off."""
        from .tracking import open_tracker

        self.tracker = open_tracker(self.cfg, self.run_dir)
        return self.tracker

    def close_tracker(self) -> None:
        if self.tracker is not None:
            self.tracker.close()

    # -- pictures and metrics ----------------------------------------------------------------------------
    def sampler(self, ema: bool):
        """The sampler z -> x of the EMA or raw model (diffusion methods wrap it in their ODE sampler)."""
        module = self.ema.module if (ema and self.ema is not None) else self.method.networks[self.method.ema_network]
        return self.method.as_sampler(module)

    def write_samples(self, tag: str, step: int) -> str:
        """samples/TAG.png: EMA samples (2000 points or 64 images, fixed noise, classes in turn) beside data."""
        shape, classes = self.source.shape, self.source.num_classes
        n = 2000 if len(shape) == 1 else 64
        labels = torch.arange(n) % classes if classes else None
        fake = generate_samples(
            self.sampler(True),
            n,
            shape,
            classes,
            self.device,
            seed=2024,
            labels=labels,
            precision=self.cfg.train.precision,
        )
        if self._reference_picture is None:
            self._reference_picture = reference_samples(self.cfg.data, n, seed=99, dataset=self.dataset)
        path = os.path.join(self.folder, f"{tag}.png")
        save_picture(samples_picture(fake, self._reference_picture, titles=(f"samples ({tag})", "data")), path)
        if self.tracker is not None:
            self.tracker.image(tag, path, step)
        return path

    def evaluate(self) -> dict:
        """{'raw': metrics, 'ema': metrics} (no 'ema' without an EMA), on the same noise every time."""
        if self.evaluator is None:
            self.evaluator = Evaluator(self.cfg.data, self.cfg.eval.samples, self.cfg.eval.knn_k, dataset=self.dataset)
        out = {}
        variants = ["raw"] + (["ema"] if self.ema else [])
        for variant in variants:
            fake = generate_samples(
                self.sampler(variant == "ema"),
                self.evaluator.n,
                self.source.shape,
                self.source.num_classes,
                self.device,
                seed=777,
                precision=self.cfg.train.precision,
            )
            out[variant] = self.evaluator(fake)
        return out

    def finish(self, step: int, elapsed: float) -> dict:
        """The end of a finished run: samples/final.png, the metrics into metrics.json (returned), printed and
        sent to the tracker as final/* scalars."""
        try:
            self.write_samples("final", step)
            metrics = self.evaluate()
            result = {
                "step": step,
                "train_seconds": round(elapsed, 1),
                "samples": self.evaluator.n,
                "config": self.cfg.name,
                **metrics,
            }
            ckpt.atomic_write_bytes(os.path.join(self.run_dir, "metrics.json"), json.dumps(result, indent=2).encode())
        except OSError as err:
            raise TrainingError(
                f"training finished and its checkpoint is saved, but writing the final "
                f"samples/metrics failed ({err.strerror or err}); free disk space and run "
                f"`scoremix eval --checkpoint {self.run_dir}`"
            ) from None
        self.echo("metrics: " + json.dumps(metrics))
        if self.tracker is not None:
            self.tracker.scalars({"step": step, **flatten(metrics, "final")})
        return result
