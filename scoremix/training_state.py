"""A run's folder and its saved training state.

The run folder is checked writable before anything is built and written only once the run is built (and
resumed): a run refused on the way (a bad teacher, data or checkpoint) leaves nothing new behind.
`TrainingState` holds everything a checkpoint restores and owns RUN/checkpoints."""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import torch

from . import checkpoint as ckpt
from .errors import CheckpointError, TrainingError

REQUIRED_STATE_KEYS = ("step", "networks", "optimizers", "schedulers", "rng", "data", "skipped")
MIN_FREE_BYTES = 50 * 2**20


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
    }
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


# -- the run folder -----------------------------------------------------------------------------------
def _unwritable(run_dir: str, err: OSError) -> TrainingError:
    return TrainingError(
        f"cannot write to the output folder '{run_dir}' "
        f"({ckpt.folder_error(run_dir, err)}); pass --out to a writable folder"
    )


def check_run_folder(run_dir: str) -> None:
    """Refuse an output folder that cannot be created or written, or has under 50 MiB free, before any data
    or network is built; the folders this probe creates are removed again."""
    created, folder = [], os.path.abspath(run_dir)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        created.append(folder)  # deepest first
        folder = os.path.dirname(folder)
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write-test")
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        os.unlink(probe)
        free = shutil.disk_usage(run_dir).free
    except OSError as err:
        raise _unwritable(run_dir, err) from None
    finally:
        for path in created:
            try:
                os.rmdir(path)
            except OSError:
                pass
    if free < MIN_FREE_BYTES:
        raise TrainingError(f"only {free // 2**20} MiB free in '{run_dir}'; free some space or pass --out elsewhere")


def prepare_run_folder(run_dir: str, folders: list[str], config_yaml: str) -> None:
    """Create the run folder and its sub-folders, clear the debris of killed writes, write config.yaml."""
    try:
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
        for folder in (run_dir, *folders):
            ckpt.remove_stale_temp_files(folder)
    except OSError as err:
        raise _unwritable(run_dir, err) from None
    try:
        ckpt.atomic_write_bytes(os.path.join(run_dir, "config.yaml"), config_yaml.encode())
    except OSError as err:
        raise TrainingError(
            f"cannot write '{run_dir}/config.yaml' ({err.strerror}); free disk space or pass --out to a writable folder"
        ) from None


# -- the training state -------------------------------------------------------------------------------
class TrainingState:
    """Everything a checkpoint restores: the method's networks, the EMA, the optimisers and their schedules,
    the data position, the random-number streams and the counters (step, skipped steps, training seconds).

    Owns RUN/checkpoints: `save` writes state-STEP.pt and the sampled network's weights file beside the run,
    then prunes old states; `resume` restores the newest state that loads (or a named one) and cuts
    stats.jsonl back to the step it resumed at. Only the main process writes."""

    def __init__(self, cfg, run_dir: str, info, method, ema, optimizers: dict, schedulers: dict, source, echo, warn):
        self.cfg, self.run_dir, self.info = cfg, run_dir, info
        self.folder = os.path.join(run_dir, "checkpoints")
        self.method, self.ema, self.source = method, ema, source
        self.optimizers, self.schedulers = optimizers, schedulers
        self.echo, self.warn = echo, warn
        self.step = 0
        self.skipped = 0
        self.elapsed = 0.0

    def saved(self) -> list[str]:
        """The states on disk, oldest first (none on the other processes)."""
        return ckpt.list_checkpoints(self.folder) if self.info.is_main else []

    def state_dict(self) -> dict:
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

    def save(self) -> str | None:
        if not self.info.is_main:
            return None
        path = os.path.join(self.folder, f"state-{self.step:07d}.pt")
        previous = [p for p in ckpt.list_checkpoints(self.folder) if p != path]
        try:
            ckpt.save_training_state(self.state_dict(), path)
            gen = self.method.networks[self.method.ema_network]
            ckpt.save_generator(
                os.path.join(self.run_dir, self.method.weights_file),
                gen.state_dict(),
                self.ema.module.state_dict() if self.ema else None,
                self.cfg.to_dict(),
                self.step,
                data_shape=self.source.shape,
                num_classes=self.source.num_classes,
                kind=self.method.weights_kind,
            )
        except OSError as err:
            keep = (
                f"; the previous checkpoint {previous[-1]} is intact" if previous else "; no earlier checkpoint exists"
            )
            raise TrainingError(
                f"could not write checkpoint {path} ({err.strerror or err}){keep}; free disk space, "
                f"then resume with: scoremix train --out {self.run_dir} --resume latest"
            ) from None
        ckpt.prune_checkpoints(self.folder, self.cfg.train.keep_last, self.cfg.train.keep_every)
        return path

    def resume(self, resume: str) -> None:
        """`resume`: 'latest' (the newest state in the folder that loads; none at all starts from step 0) or
        the path of a state-*.pt file."""
        if resume == "latest":
            skipped: list[str] = []
            found = ckpt.load_latest_valid(self.folder, map_location="cpu", report=skipped.append)
            if found is None:
                if skipped:  # never silently restart a run whose checkpoints are all damaged
                    newest = skipped[0].split(": ", 1)[1].split("; ")[0]
                    raise CheckpointError(
                        f"none of the {len(skipped)} checkpoints in {self.folder} loads (newest: "
                        f"{newest}); restore one from a backup, or delete them to start the run "
                        "again from step 0"
                    )
                self.echo(f"no checkpoint in {self.folder}: starting from step 0")
                self.truncate_stats(0)
                return
            for message in skipped:
                self.warn(message)
            path, state = found
        else:
            path = resume
            state = ckpt.load_training_state(path, map_location="cpu")
        missing = [k for k in REQUIRED_STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(
                f"checkpoint '{path}' is not a complete training state (missing "
                f"{', '.join(missing)}); resume from a state-*.pt written by `scoremix train`"
            )
        self._load_weights(path, state)
        try:
            if self.info.world_size == 1:
                set_rng_state(state["rng"])
                self.source.load_state_dict(state["data"])
            else:  # per-rank streams cannot be restored from rank 0's state; re-seed deterministically
                seed_everything(self.cfg.train.seed * 1009 + 1 + self.info.rank + 7919 * state["step"])
                self.source.load_state_dict(state["data"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint '{path}': its random-number or data-position state does not fit "
                f"this run ({type(err).__name__}: {str(err)[:120]}); resume with the config "
                "the run was started with"
            ) from None
        self.step = int(state["step"])
        self.skipped = int(state["skipped"])
        self.elapsed = state.get("elapsed", 0.0)
        self.truncate_stats(self.step)
        self.echo(f"resumed from {path} at step {self.step}")

    def _load_weights(self, path: str, state: dict) -> None:
        """Networks, EMA, optimisers and schedulers from `state`; a mismatch is one clear error."""
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
            raise CheckpointError(
                f"checkpoint '{path}' does not match this config's networks ({first}); "
                "resume with the config the run was started with"
            ) from None

    def truncate_stats(self, step: int) -> None:
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
