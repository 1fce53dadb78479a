"""One generic trainer for any Method: single process on CPU/GPU or one process per GPU under torchrun.

Run directory: config.yaml, stats.jsonl, metrics.json, generator.safetensors, checkpoints/state-*.pt,
samples/*.png (and tb/ with TensorBoard on). Diffusion runs (method.name=edm) write denoiser.safetensors
instead of generator.safetensors, and draw their samples with the Heun sampler.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import signal
import sys
import time
import zlib

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint as ckpt
from .config import Config
from .data import build_dataset, build_source, reference_samples
from .distributed import DistInfo, all_reduce_mean, any_rank, barrier
from .errors import CheckpointError, ConfigError, TrainingError
from .evaluate import Evaluator, generate_samples
from .methods import build_method
from .nets.build import count_parameters
from .plots import samples_picture, save_picture
from .precision import autocast
from .progress import Progress


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=cpu")
        device = torch.device("cuda", info.local_rank) if name == "cuda" else torch.device(name)
        torch.cuda.set_device(device)  # so that NCCL and unplaced allocations use this rank's card
        return device
    return torch.device(name)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over `warmup` optimiser steps, then constant or cosine decay to 0 at `total`."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule == "cosine":
        progress = min(1.0, step / max(1, total))
        return warm * 0.5 * (1 + math.cos(math.pi * progress))
    return warm


class EMA:
    """Exponential moving average of a module's parameters and buffers, with the usual early ramp."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_params = list(self.module.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in module.parameters()], 1 - d)  # one launch, not one per tensor
        for e, b in zip(self.module.buffers(), module.buffers()):
            e.copy_(b)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0],
             "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), None))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


REQUIRED_STATE_KEYS = ("step", "networks", "optimizers", "schedulers", "rng", "data", "skipped")


class Trainer:
    """`echo` prints progress (stdout); `warn` reports problems the run survives (stderr by default)."""

    def __init__(self, cfg: Config, run_dir: str, resume: str | None = None, info: DistInfo | None = None,
                 echo=print, warn=_print_warning, teacher=None):
        self.cfg = cfg
        self.run_dir = run_dir
        self.info = info or DistInfo()
        self.echo = echo if self.info.is_main else (lambda *a, **k: None)
        self.warn = warn if self.info.is_main else (lambda *a, **k: None)
        self.device = resolve_device(cfg.train.device, self.info)
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.sample_dir = os.path.join(run_dir, "samples")
        self._stop_signal: int | None = None
        t = cfg.train
        if cfg.data.batch_size % self.info.world_size:
            raise ConfigError(f"data.batch_size={cfg.data.batch_size} is the global batch and must divide "
                              f"evenly over {self.info.world_size} processes")
        self.local_batch = cfg.data.batch_size // self.info.world_size
        self.micro_batch = t.batch_gpu or self.local_batch
        if self.local_batch % self.micro_batch:
            raise ConfigError(f"train.batch_gpu={t.batch_gpu} must divide the per-process batch {self.local_batch} "
                              f"(data.batch_size={cfg.data.batch_size} over {self.info.world_size} process(es)); "
                              f"try train.batch_gpu={_largest_divisor_at_most(self.local_batch, t.batch_gpu)}")
        self.accum_steps = self.local_batch // self.micro_batch
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = t.tf32
            torch.backends.cudnn.allow_tf32 = t.tf32
        if self.info.is_main:
            self._prepare_run_dir()

        written = cfg.to_yaml()  # what _prepare_run_dir wrote
        self.dataset = build_dataset(cfg.data)
        self._fit_image_size()
        if self.info.is_main and hasattr(self.dataset, "transform_record"):  # points: how they were standardised
            ckpt.atomic_write_bytes(os.path.join(run_dir, "data_transform.json"),
                                    json.dumps(self.dataset.transform_record(), indent=1).encode())
        self.source = build_source(cfg.data, self.local_batch, t.seed, self.info.rank, self.info.world_size,
                                   dataset=self.dataset)
        seed_everything(t.seed)  # identical initial weights on every rank
        self.method = build_method(cfg, self.source.shape, self.source.num_classes, teacher=teacher).to(self.device)
        if self.info.is_main and self.cfg.to_yaml() != written:
            # the fitted image size, or a teacher's network settings and digest: config.yaml must say them
            ckpt.atomic_write_bytes(os.path.join(self.run_dir, "config.yaml"), self.cfg.to_yaml().encode())
        if t.channels_last and len(self.source.shape) == 3:
            for net in self.method.networks.values():
                net.to(memory_format=torch.channels_last)
        if t.compile:
            from .nets.compile import compile_blocks

            self.compiled_blocks = sum(compile_blocks(net) for net in self.method.networks.values())
        self.param_counts = {k: count_parameters(v) for k, v in self.method.networks.items()}
        if self.info.enabled:
            for name, net in self.method.networks.items():
                if any(p.requires_grad for p in net.parameters()):
                    self.method.train_networks[name] = DistributedDataParallel(
                        net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                        broadcast_buffers=False)
        groups = self.method.optimizer_groups()
        o = cfg.optim
        self.optimizers, self.schedulers, self.params = {}, {}, {}
        for name, g in groups.items():
            opt = torch.optim.AdamW(g["params"], lr=g["lr"], betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
            total = self.method.optimizer_steps(name, t.steps)
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda k, total=total, sch=g["schedule"]: lr_factor(k, o.lr_warmup, total, sch))
            self.optimizers[name] = opt
            self.params[name] = g["params"]
        self.ema_optimizer = self.method.ema_optimizer
        self.ema = EMA(self.method.networks[self.method.ema_network], t.ema) if t.ema > 0 else None
        seed_everything(t.seed * 1009 + 1 + self.info.rank)  # ranks draw different noise
        self.step = 0
        self.skipped = 0
        self.consecutive_skips: dict[str, int] = {}  # phase -> non-finite steps in a row
        self.elapsed = 0.0
        self.evaluator = None
        if resume:
            self._resume(resume)

    # -- run directory ------------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        try:
            os.makedirs(self.ckpt_dir, exist_ok=True)
            os.makedirs(self.sample_dir, exist_ok=True)
            probe = os.path.join(self.run_dir, ".write-test")
            with open(probe, "wb") as fh:
                fh.write(b"ok")
            os.unlink(probe)
            for folder in (self.run_dir, self.ckpt_dir, self.sample_dir):  # debris of killed writes
                ckpt.remove_stale_temp_files(folder)
        except OSError as err:
            raise TrainingError(f"cannot write to the output folder '{self.run_dir}' "
                                f"({ckpt.folder_error(self.run_dir, err)}); pass --out to a writable folder") from None
        free = shutil.disk_usage(self.run_dir).free
        if free < 50 * 2**20:
            raise TrainingError(f"only {free // 2**20} MiB free in '{self.run_dir}'; free some space or pass --out elsewhere")
        try:
            ckpt.atomic_write_bytes(os.path.join(self.run_dir, "config.yaml"), self.cfg.to_yaml().encode())
        except OSError as err:
            raise TrainingError(f"cannot write '{self.run_dir}/config.yaml' ({err.strerror}); "
                                "free disk space or pass --out to a writable folder") from None

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
            raise ConfigError(f"data.resolution={self.cfg.data.resolution}: the {arch} networks need image sides "
                              f"divisible by {m}; use data.resolution={down} or {up}")
        self.echo(f"notice: the images are {h}x{w} but the {arch} networks need sides divisible by {m}; "
                  f"resizing them to {up}x{up} (set data.resolution to choose the size)")
        self.cfg.data.resolution = up
        self.dataset = build_dataset(self.cfg.data)

    def _state(self) -> dict:
        return {
            "step": self.step,
            "networks": {k: v.state_dict() for k, v in self.method.networks.items()},
            "ema": self.ema.module.state_dict() if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else 0,
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "rng": rng_state(),
            "data": self.source.state_dict(),
            "skipped": self.skipped,
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
            "data_shape": list(self.source.shape),
            "num_classes": self.source.num_classes,
        }

    def _resume(self, resume: str) -> None:
        if resume == "latest":
            skipped: list[str] = []
            found = ckpt.load_latest_valid(self.ckpt_dir, map_location="cpu", report=skipped.append)
            if found is None:
                if skipped:  # never silently restart a run whose checkpoints are all damaged
                    raise CheckpointError(f"none of the {len(skipped)} checkpoints in {self.ckpt_dir} loads (newest: "
                                          f"{skipped[0].split(': ', 1)[1].split('; ')[0]}); restore one from a backup, or delete "
                                          "them to start the run again from step 0")
                self.echo(f"no checkpoint in {self.ckpt_dir}: starting from step 0")
                self._truncate_stats(0)
                return
            for message in skipped:
                self.warn(message)
            path, state = found
        else:
            path = resume
            state = ckpt.load_training_state(path, map_location="cpu")
        missing = [k for k in REQUIRED_STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"checkpoint '{path}' is not a complete training state (missing "
                                  f"{', '.join(missing)}); resume from a state-*.pt written by `scoremix train`")
        try:
            for name, net in self.method.networks.items():
                net.load_state_dict(state["networks"][name])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.module.load_state_dict(state["ema"])
                self.ema.updates = state["ema_updates"]
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
                self.schedulers[name].load_state_dict(state["schedulers"][name])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"checkpoint '{path}' does not match this config's networks ({first}); "
                                  "resume with the config the run was started with") from None
        try:
            if self.info.world_size == 1:
                set_rng_state(state["rng"])
                self.source.load_state_dict(state["data"])
            else:  # per-rank streams cannot be restored from rank 0's state; re-seed deterministically
                seed_everything(self.cfg.train.seed * 1009 + 1 + self.info.rank + 7919 * state["step"])
                self.source.load_state_dict(state["data"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint '{path}': its random-number or data-position state does not fit "
                                  f"this run ({type(err).__name__}: {str(err)[:120]}); resume with the config "
                                  "the run was started with") from None
        self.step = int(state["step"])
        self.skipped = int(state["skipped"])
        self.elapsed = state.get("elapsed", 0.0)
        self._truncate_stats(self.step)
        self.echo(f"resumed from {path} at step {self.step}")

    def _truncate_stats(self, step: int) -> None:
        """Drop log lines written after the checkpoint so stats.jsonl reads as one run; a line that a kill cut
        short is dropped too."""
        path = os.path.join(self.run_dir, "stats.jsonl")
        if not self.info.is_main or not os.path.exists(path):
            return
        kept = []
        with open(path) as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("step", 0) <= step:
                    kept.append(json.dumps(record) + "\n")
        ckpt.atomic_write_bytes(path, "".join(kept).encode())

    def save_checkpoint(self) -> str | None:
        if not self.info.is_main:
            return None
        path = os.path.join(self.ckpt_dir, f"state-{self.step:07d}.pt")
        previous = [p for p in ckpt.list_checkpoints(self.ckpt_dir) if p != path]
        try:
            ckpt.save_training_state(self._state(), path)
            gen = self.method.networks[self.method.ema_network]
            ckpt.save_generator(os.path.join(self.run_dir, self.method.weights_file), gen.state_dict(),
                                self.ema.module.state_dict() if self.ema else None, self.cfg.to_dict(), self.step,
                                data_shape=self.source.shape, num_classes=self.source.num_classes,
                                kind=self.method.weights_kind)
        except OSError as err:
            keep = (f"; the previous checkpoint {previous[-1]} is intact" if previous
                    else "; no earlier checkpoint exists")
            raise TrainingError(f"could not write checkpoint {path} ({err.strerror or err}){keep}; free disk "
                                f"space, then resume with: scoremix train --out {self.run_dir} --resume latest") from None
        ckpt.prune_checkpoints(self.ckpt_dir, self.cfg.train.keep_last, self.cfg.train.keep_every)
        return path

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
        if self.accum_steps == 1:
            return [batch]
        m = self.micro_batch
        return [tuple(None if v is None else v[i * m:(i + 1) * m] for v in batch) for i in range(self.accum_steps)]

    def _seed_micro_batch(self, phase: str, micro: int) -> None:
        """Seed the global RNG from (seed, step, phase, global micro-batch index): every draw a method makes
        for a micro-batch is then a function of where that micro-batch sits in the global batch, not of the
        number of processes or of earlier draws, so 2 ranks x A micro-batches reproduce 1 rank x 2A and a
        checkpoint resumes exactly on any number of ranks."""
        index = self.info.rank * self.accum_steps + micro
        key = np.random.SeedSequence([self.cfg.train.seed, self.step, zlib.crc32(phase.encode()), index])
        torch.manual_seed(int(key.generate_state(1, np.uint64)[0]))

    def _sync_context(self, last: bool):
        """DDP all-reduces gradients only on the last micro-batch of a phase."""
        stack = contextlib.ExitStack()
        if not last:
            for net in self.method.train_networks.values():
                if isinstance(net, DistributedDataParallel):
                    stack.enter_context(net.no_sync())
        return stack

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
                with self._sync_context(i == len(micro) - 1):
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
        what = (f"non-finite {'loss' if not torch.isfinite(loss).item() else 'gradient'} in the {phase} phase "
                f"at step {self.step + 1}")
        last = ckpt.list_checkpoints(self.ckpt_dir) if self.info.is_main else []
        keep = (f"; the last good checkpoint is {last[-1]}" if last else "; no checkpoint was written yet")
        resume = f"scoremix train --out {self.run_dir} --resume latest"
        if self.cfg.train.nonfinite == "stop":
            raise TrainingError(f"{what} (train.nonfinite=stop){keep}; lower the learning rate or use "
                                f"train.precision=fp32, then resume with: {resume}")
        self.warn(f"{what}; step skipped ({run} in a row, {self.skipped} in total)")
        if run >= self.cfg.train.max_skips:
            raise TrainingError(f"{run} consecutive non-finite {phase} steps (train.max_skips="
                                f"{self.cfg.train.max_skips}){keep}; the run is diverging: lower the learning "
                                f"rates, then resume with: {resume}")

    # -- pictures and metrics -------------------------------------------------------------------------
    def _generator_for_eval(self, ema: bool):
        """The sampler z -> x of the EMA or raw model (diffusion methods wrap it in their ODE sampler)."""
        module = self.ema.module if (ema and self.ema is not None) else self.method.networks[self.method.ema_network]
        return self.method.as_sampler(module)

    def write_samples(self, tag: str) -> str:
        shape, classes = self.source.shape, self.source.num_classes
        n = 2000 if len(shape) == 1 else 64
        labels = torch.arange(n) % classes if classes else None
        fake = generate_samples(self._generator_for_eval(True), n, shape, classes, self.device, seed=2024,
                                labels=labels, precision=self.cfg.train.precision)
        real = self._reference_picture_data(n)
        path = os.path.join(self.sample_dir, f"{tag}.png")
        save_picture(samples_picture(fake, real, titles=(f"samples ({tag})", "data")), path)
        if getattr(self, "tracker", None) is not None:
            self.tracker.image(tag, path, self.step)
        return path

    def _reference_picture_data(self, n: int) -> torch.Tensor:
        if not hasattr(self, "_ref_pic"):
            self._ref_pic = reference_samples(self.cfg.data, n, seed=99, dataset=self.dataset)
        return self._ref_pic

    def evaluate(self) -> dict:
        if self.evaluator is None:
            self.evaluator = Evaluator(self.cfg.data, self.cfg.eval.samples, self.cfg.eval.knn_k, dataset=self.dataset)
        out = {}
        variants = ["raw"] + (["ema"] if self.ema else [])
        for variant in variants:
            fake = generate_samples(self._generator_for_eval(variant == "ema"), self.evaluator.n,
                                    self.source.shape, self.source.num_classes, self.device, seed=777,
                                    precision=self.cfg.train.precision)
            out[variant] = self.evaluator(fake)
        return out

    # -- main loop ------------------------------------------------------------------------------------
    def _log(self, record: dict, writer) -> None:
        if not self.info.is_main:
            return
        with open(os.path.join(self.run_dir, "stats.jsonl"), "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if writer is not None:
            writer.scalars(record)

    def fit(self) -> dict:
        writer = self.tracker = self._tracker() if self.info.is_main else None  # TensorBoard / W&B, or None
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
            self.echo(f"stopped by {name} at step {self.step}; checkpoint saved. Resume with:\n"
                      f"  scoremix train --out {self.run_dir} --resume latest")
            if writer is not None:
                writer.close()
            return {"preempted": True, "step": self.step}
        result = {}
        if self.info.is_main:
            try:
                self.write_samples("final")
                metrics = self.evaluate()
                result = {"step": self.step, "train_seconds": round(self.elapsed, 1), "samples": self.evaluator.n,
                          "config": self.cfg.name, **metrics}
                ckpt.atomic_write_bytes(os.path.join(self.run_dir, "metrics.json"),
                                        json.dumps(result, indent=2).encode())
            except OSError as err:
                raise TrainingError(f"training finished and its checkpoint is saved, but writing the final "
                                    f"samples/metrics failed ({err.strerror or err}); free disk space and run "
                                    f"`scoremix eval --checkpoint {self.run_dir}`") from None
            self.echo("metrics: " + json.dumps(metrics))
        if writer is not None:
            writer.scalars({"step": self.step, **_flatten(metrics, "final")})
            writer.close()
        barrier(self.info)
        return result

    def _loop(self, writer) -> bool:
        """Train until cfg.train.steps; True when a signal stopped it early."""
        t = self.cfg.train
        self.echo(f"run folder: {self.run_dir}")
        self.echo("parameters: " + ", ".join(f"{k} {v:,}" for k, v in self.param_counts.items()))
        self.echo(f"batch: global {self.cfg.data.batch_size} = {self.info.world_size} process(es) x "
                  f"{self.accum_steps} accumulation step(s) x micro-batch {self.micro_batch}")
        if self.info.is_main and self.step == 0:
            self.write_samples("init")
        bar = Progress(t.progress, total=t.steps, initial=self.step, desc=self.cfg.name, every=t.progress_every,
                       enabled=self.info.is_main)
        window: dict[str, torch.Tensor] = {}
        window_n, window_start = 0, time.time()
        try:
            while self.step < t.steps:
                if any_rank(self._stop_signal is not None, self.info, self.device):
                    name = signal.Signals(self._stop_signal).name if self._stop_signal else "a signal"
                    self.echo(f"\n{name} received: saving a checkpoint at step {self.step} and stopping "
                              "(send it again to exit at once)")
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
                    record = {"step": self.step, **{k: v / window_n for k, v in all_reduce_mean(window, self.info).items()}}
                    record.update({"it_per_s": window_n / max(1e-9, time.time() - window_start),
                                   "skipped_total": self.skipped,
                                   **{f"lr_{k}": s.get_last_lr()[0] for k, s in self.schedulers.items()}})
                    for k in list(record):
                        if k.startswith("skipped_") and k != "skipped_total":
                            record[k] = record[k] * window_n
                    self._log(record, writer)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k.startswith("loss")})
                    window, window_n, window_start = {}, 0, time.time()
                if self.info.is_main and t.sample_every and self.step % t.sample_every == 0 and self.step < t.steps:
                    self.write_samples(f"step-{self.step:07d}")
                if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps and self.info.is_main:
                    self._log({"step": self.step, **_flatten(self.evaluate(), "eval")}, writer)
                if t.ckpt_every and self.step % t.ckpt_every == 0 and self.step < t.steps:
                    self.save_checkpoint()
                    barrier(self.info)
        finally:
            bar.close()
        return False

    def _write_failure(self, err: OSError) -> TrainingError:
        last = ckpt.list_checkpoints(self.ckpt_dir) if self.info.is_main else []
        keep = f"; the last checkpoint {last[-1]} is intact" if last else "; no checkpoint was written yet"
        where = f" '{err.filename}'" if err.filename else ""
        return TrainingError(f"cannot write{where} at step {self.step} ({err.strerror or err}){keep}; free disk "
                             f"space or fix the folder, then resume with: scoremix train --out {self.run_dir} "
                             "--resume latest")

    def _tracker(self):
        from .tracking import open_tracker

        return open_tracker(self.cfg, self.run_dir)


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _flatten(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}/{k}"))
        else:
            out[f"{prefix}/{k}"] = v
    return out
