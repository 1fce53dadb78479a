"""One generic trainer for any Method: single process on CPU/GPU or one process per GPU under torchrun.

Run directory: config.yaml, stats.jsonl, metrics.json, generator.safetensors, checkpoints/state-*.pt,
samples/*.png (and tb/ with TensorBoard on). Diffusion runs (method.name=edm) write denoiser.safetensors
instead of generator.safetensors, and draw their samples with the Heun sampler.

The trainer owns the loop (micro-batches, optimiser steps, non-finite steps, signals, stats.jsonl); the
saved state and resume are TrainingState's (training_state.py), the pictures, metrics and tracker are
Monitor's (monitor.py), the optimisers, schedules and EMA come from optim.py, and the device, the batch
split into micro-batches, DDP and the micro-batch RNG keys from data_parallel.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import torch

from . import checkpoint as ckpt
from .config import Config
from .data import build_dataset, build_source
from .data_parallel import (
    batch_layout,
    gradient_sync,
    resolve_device,
    seed_micro_batch,
    split_micro_batches,
    wrap_in_ddp,
)
from .distributed import DistInfo, all_reduce_mean, any_rank, barrier
from .errors import ConfigError, TrainingError
from .methods import build_method
from .monitor import Monitor, flatten
from .nets.build import count_parameters
from .optim import EMA, build_optimizers, lr_factor
from .precision import autocast
from .progress import Progress
from .training_state import TrainingState, check_run_folder, prepare_run_folder, seed_everything

__all__ = ["Trainer", "EMA", "lr_factor"]  # EMA, lr_factor: importable here as before


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _counter(name: str) -> property:
    """A counter of the training state (step, skipped, elapsed), read and set through the trainer."""
    return property(
        lambda self: getattr(self.state, name),
        lambda self, value: setattr(self.state, name, value),
        doc=f"TrainingState.{name}",
    )


class Trainer:
    """`echo` prints progress (stdout); `warn` reports problems the run survives (stderr by default).

    Nothing is written to `run_dir` until the data, the method (and its teacher) and a resumed state are
    built: a run refused on the way leaves no new folder or file behind."""

    step = _counter("step")
    skipped = _counter("skipped")
    elapsed = _counter("elapsed")

    def __init__(
        self,
        cfg: Config,
        run_dir: str,
        resume: str | None = None,
        info: DistInfo | None = None,
        echo=print,
        warn=_print_warning,
        teacher=None,
    ):
        self.cfg = cfg
        self.run_dir = run_dir
        self.info = info or DistInfo()
        self.echo = echo if self.info.is_main else (lambda *a, **k: None)
        self.warn = warn if self.info.is_main else (lambda *a, **k: None)
        self.device = resolve_device(cfg.train.device, self.info)
        self._stop_signal: int | None = None
        t = cfg.train
        self.local_batch, self.micro_batch, self.accum_steps = batch_layout(
            cfg.data.batch_size, t.batch_gpu, self.info.world_size
        )
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = t.tf32
            torch.backends.cudnn.allow_tf32 = t.tf32
        if self.info.is_main:
            check_run_folder(run_dir)  # a bad --out fails now; the probe leaves nothing behind

        self.dataset = build_dataset(cfg.data)
        self._fit_image_size()
        self.source = build_source(
            cfg.data, self.local_batch, t.seed, self.info.rank, self.info.world_size, dataset=self.dataset
        )
        seed_everything(t.seed)  # identical initial weights on every rank
        self.method = build_method(cfg, self.source.shape, self.source.num_classes, teacher=teacher).to(self.device)
        if t.channels_last and len(self.source.shape) == 3:
            for net in self.method.networks.values():
                net.to(memory_format=torch.channels_last)
        if t.compile:
            from .nets.compile import compile_blocks

            self.compiled_blocks = sum(compile_blocks(net) for net in self.method.networks.values())
        self.param_counts = {k: count_parameters(v) for k, v in self.method.networks.items()}
        if self.info.enabled:
            wrap_in_ddp(self.method, self.device)
        self.optimizers, self.schedulers, self.params = build_optimizers(self.method, cfg)
        self.ema_optimizer = self.method.ema_optimizer
        self.ema = EMA(self.method.networks[self.method.ema_network], t.ema) if t.ema > 0 else None
        seed_everything(t.seed * 1009 + 1 + self.info.rank)  # ranks draw different noise
        self.consecutive_skips: dict[str, int] = {}  # phase -> non-finite steps in a row
        self.state = TrainingState(
            cfg,
            run_dir,
            self.info,
            self.method,
            self.ema,
            self.optimizers,
            self.schedulers,
            self.source,
            echo=self.echo,
            warn=self.warn,
        )
        self.monitor = Monitor(
            cfg, run_dir, self.method, self.ema, self.source, self.dataset, self.device, echo=self.echo
        )
        if resume:
            self.state.resume(resume)
        if self.info.is_main:
            # config.yaml says the fitted image size and a teacher's network settings and digest
            prepare_run_folder(run_dir, [self.state.folder, self.monitor.folder], cfg.to_yaml())
            if hasattr(self.dataset, "transform_record"):  # points: how they were standardised
                ckpt.atomic_write_bytes(
                    os.path.join(run_dir, "data_transform.json"),
                    json.dumps(self.dataset.transform_record(), indent=1).encode(),
                )

    def _fit_image_size(self) -> None:
        """Images whose side the networks cannot take (a skip connection of 26 against 25) are resized to the
        next size they take, with a one-line notice and the size recorded in config.yaml; an explicit
        data.resolution the networks cannot take is refused before training."""
        from .nets.build import size_multiple

        if self.dataset is None or len(self.dataset.shape) != 3:  # toys and points: no image sides
            return
        m = max(size_multiple(self.cfg.generator), size_multiple(self.cfg.score))
        h, w = self.dataset.shape[-2:]
        if h % m == 0 and w % m == 0:
            return
        arch = "/".join(sorted({self.cfg.generator.arch, self.cfg.score.arch}))
        down, up = max(m, max(h, w) // m * m), -(-max(h, w) // m) * m
        if self.cfg.data.resolution is not None:
            raise ConfigError(
                f"data.resolution={self.cfg.data.resolution}: the {arch} networks need image sides "
                f"divisible by {m}; use data.resolution={down} or {up}"
            )
        self.echo(
            f"notice: the images are {h}x{w} but the {arch} networks need sides divisible by {m}; "
            f"resizing them to {up}x{up} (set data.resolution to choose the size)"
        )
        self.cfg.data.resolution = up
        self.dataset = build_dataset(self.cfg.data)

    # -- saved state, pictures and metrics (TrainingState and Monitor do the work) ----------------------
    def save_checkpoint(self) -> str | None:
        return self.state.save()

    def write_samples(self, tag: str) -> str:
        return self.monitor.write_samples(tag, self.step)

    def evaluate(self) -> dict:
        return self.monitor.evaluate()

    # -- signals --------------------------------------------------------------------------------------
    def _install_signal_handlers(self):
        """SIGTERM/SIGINT: finish the current step, save a checkpoint and stop; a second one exits at once.

        The handler only sets a flag (printing from a signal handler can hit a reentrant write on stdout);
        the loop reports the signal at the next step boundary."""
        previous = {}

        def handler(signum, frame):
            if self._stop_signal is not None:  # second signal: leave at once
                raise SystemExit(128 + signum)
            self._stop_signal = signum

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        return previous

    # -- one iteration --------------------------------------------------------------------------------
    def _autocast(self):
        return autocast(self.device, self.cfg.train.precision)

    def micro_batches(self, batch) -> list:
        """The per-process batch cut into accum_steps micro-batches of batch_gpu samples (tensors along dim 0)."""
        return split_micro_batches(batch, self.accum_steps, self.micro_batch)

    def _seed_micro_batch(self, phase: str, micro: int) -> None:
        """Seed the global RNG for this process's micro-batch `micro` (data_parallel.seed_micro_batch)."""
        seed_micro_batch(self.cfg.train.seed, self.step, phase, self.info.rank * self.accum_steps + micro)

    def train_step(self, batch) -> dict:
        """One iteration: for each phase of the plan, accumulate the gradient of the mean loss over the
        micro-batches (each micro-batch's loss scaled by 1/accum_steps, so the update is the full batch's),
        then one optimiser step."""
        stats: dict[str, torch.Tensor] = {}
        clip = self.cfg.optim.grad_clip
        micro = self.micro_batches(batch)
        scale = 1.0 / len(micro)
        for phase in self.method.plan(self.step):
            opt = self.optimizers[phase.optimizer]
            opt.zero_grad(set_to_none=True)
            phase_stats: dict[str, torch.Tensor] = {}
            loss_sum = None
            for i, part in enumerate(micro):
                self._seed_micro_batch(phase.name, i)
                with gradient_sync(self.method.train_networks.values(), i == len(micro) - 1):
                    with self._autocast():
                        loss, part_stats = self.method.loss(phase.name, part, self.step)
                    (loss * scale if len(micro) > 1 else loss).backward()
                loss_sum = loss.detach() * scale if loss_sum is None else loss_sum + loss.detach() * scale
                for k, v in part_stats.items():
                    phase_stats[k] = v * scale if k not in phase_stats else phase_stats[k] + v * scale
            loss = loss_sum
            norm = torch.nn.utils.clip_grad_norm_(self.params[phase.optimizer], clip if clip > 0 else float("inf"))
            bad = not torch.isfinite(torch.stack([loss.detach().float(), norm.float()])).all().item()  # one sync
            if any_rank(bad, self.info, self.device):
                opt.zero_grad(set_to_none=True)
                self._nonfinite(phase.name, loss, norm)
                stats[f"skipped_{phase.name}"] = torch.tensor(1.0)
                continue
            self.consecutive_skips[phase.name] = 0
            opt.step()
            self.schedulers[phase.optimizer].step()
            if self.ema is not None and phase.optimizer == self.ema_optimizer:
                self.ema.update(self.method.networks[self.method.ema_network])
            stats.update(phase_stats)
            stats[f"grad_norm_{phase.name}"] = norm.detach()
        return stats

    def _nonfinite(self, phase: str, loss, norm) -> None:
        """Count a non-finite loss or gradient; stop (nonfinite=stop, or max_skips in a row of one phase).

        Nothing is written here: the weights still hold the last finite update and the checkpoints on disk
        are left as they are."""
        self.skipped += 1
        run = self.consecutive_skips[phase] = self.consecutive_skips.get(phase, 0) + 1
        what = (
            f"non-finite {'loss' if not torch.isfinite(loss).item() else 'gradient'} in the {phase} phase "
            f"at step {self.step + 1}"
        )
        last = self.state.saved()
        keep = f"; the last good checkpoint is {last[-1]}" if last else "; no checkpoint was written yet"
        resume = f"scoremix train --out {self.run_dir} --resume latest"
        if self.cfg.train.nonfinite == "stop":
            raise TrainingError(
                f"{what} (train.nonfinite=stop){keep}; lower the learning rate or use "
                f"train.precision=fp32, then resume with: {resume}"
            )
        self.warn(f"{what}; step skipped ({run} in a row, {self.skipped} in total)")
        if run >= self.cfg.train.max_skips:
            raise TrainingError(
                f"{run} consecutive non-finite {phase} steps (train.max_skips="
                f"{self.cfg.train.max_skips}){keep}; the run is diverging: lower the learning "
                f"rates, then resume with: {resume}"
            )

    # -- main loop ------------------------------------------------------------------------------------
    def _log(self, record: dict, writer) -> None:
        if not self.info.is_main:
            return
        with open(os.path.join(self.run_dir, "stats.jsonl"), "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if writer is not None:
            writer.scalars(record)

    def fit(self) -> dict:
        writer = self.monitor.open_tracker() if self.info.is_main else None  # TensorBoard / W&B, or None
        previous_handlers = self._install_signal_handlers()
        try:  # signals stay deferred until the last checkpoint is on disk
            preempted = self._loop(writer)
            self.save_checkpoint()
            barrier(self.info)
        except OSError as err:  # stats line, sample picture, ...: the disk or folder went bad mid-run
            raise self._write_failure(err) from None
        finally:
            for sig, h in previous_handlers.items():
                signal.signal(sig, h)
        if preempted:
            name = signal.Signals(self._stop_signal).name if self._stop_signal else "signal"
            self.echo(
                f"stopped by {name} at step {self.step}; checkpoint saved. Resume with:\n"
                f"  scoremix train --out {self.run_dir} --resume latest"
            )
            self.monitor.close_tracker()
            return {"preempted": True, "step": self.step}
        result = self.monitor.finish(self.step, self.elapsed) if self.info.is_main else {}
        self.monitor.close_tracker()
        barrier(self.info)
        return result

    def _loop(self, writer) -> bool:
        """Train until cfg.train.steps; True when a signal stopped it early."""
        t = self.cfg.train
        self.echo(f"run folder: {self.run_dir}")
        self.echo("parameters: " + ", ".join(f"{k} {v:,}" for k, v in self.param_counts.items()))
        self.echo(
            f"batch: global {self.cfg.data.batch_size} = {self.info.world_size} process(es) x "
            f"{self.accum_steps} accumulation step(s) x micro-batch {self.micro_batch}"
        )
        if self.info.is_main and self.step == 0:
            self.write_samples("init")
        bar = Progress(
            t.progress,
            total=t.steps,
            initial=self.step,
            desc=self.cfg.name,
            every=t.progress_every,
            enabled=self.info.is_main,
        )
        window: dict[str, torch.Tensor] = {}
        window_n, window_start = 0, time.time()
        try:
            while self.step < t.steps:
                if any_rank(self._stop_signal is not None, self.info, self.device):
                    name = signal.Signals(self._stop_signal).name if self._stop_signal else "a signal"
                    self.echo(
                        f"\n{name} received: saving a checkpoint at step {self.step} and stopping "
                        "(send it again to exit at once)"
                    )
                    return True
                start = time.time()
                x, labels = self.source.next_batch()
                batch = (x.to(self.device, non_blocking=True), None if labels is None else labels.to(self.device))
                stats = self.train_step(batch)
                self.step += 1
                self.elapsed += time.time() - start
                for k, v in stats.items():
                    window[k] = window.get(k, 0) + v.detach().float()
                window_n += 1
                bar.update(1)
                if t.log_every and self.step % t.log_every == 0 or self.step == t.steps:
                    means = all_reduce_mean(window, self.info)
                    record = {"step": self.step, **{k: v / window_n for k, v in means.items()}}
                    record.update(
                        {
                            "it_per_s": window_n / max(1e-9, time.time() - window_start),
                            "skipped_total": self.skipped,
                            **{f"lr_{k}": s.get_last_lr()[0] for k, s in self.schedulers.items()},
                        }
                    )
                    for k in list(record):
                        if k.startswith("skipped_") and k != "skipped_total":
                            record[k] = record[k] * window_n
                    self._log(record, writer)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k.startswith("loss")})
                    window, window_n, window_start = {}, 0, time.time()
                if self.info.is_main and t.sample_every and self.step % t.sample_every == 0 and self.step < t.steps:
                    self.write_samples(f"step-{self.step:07d}")
                if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps and self.info.is_main:
                    self._log({"step": self.step, **flatten(self.evaluate(), "eval")}, writer)
                if t.ckpt_every and self.step % t.ckpt_every == 0 and self.step < t.steps:
                    self.save_checkpoint()
                    barrier(self.info)
        finally:
            bar.close()
        return False

    def _write_failure(self, err: OSError) -> TrainingError:
        last = self.state.saved()
        keep = f"; the last checkpoint {last[-1]} is intact" if last else "; no checkpoint was written yet"
        where = f" '{err.filename}'" if err.filename else ""
        return TrainingError(
            f"cannot write{where} at step {self.step} ({err.strerror or err}){keep}; free disk "
            f"space or fix the folder, then resume with: scoremix train --out {self.run_dir} "
            "--resume latest"
        )
