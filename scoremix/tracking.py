"""Experiment tracking: where a training run's scalars, sample pictures and resolved config go besides the
run folder. One `Tracker` wraps TensorBoard (train.tensorboard=true, scalars under RUN/tb) and Weights &
Biases (log.wandb=true: the same scalars, the sample pictures and the resolved config, to
log.wandb_project under log.wandb_name, with W&B's files under RUN/wandb). The trainer calls `scalars`,
`image` and `close`; with both off it makes no Tracker at all.

A resumed run continues its W&B run: the run's id is kept in RUN/wandb-run-id.txt.
"""

from __future__ import annotations

import os

from .errors import ConfigError

WANDB_ID_FILE = "wandb-run-id.txt"


def _open_tensorboard(run_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard=true needs TensorBoard: pip install 'scoremix[tensorboard]'") from None
    return SummaryWriter(os.path.join(run_dir, "tb"))


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return (lines[0] if lines else type(err).__name__)[:200]


def _open_wandb(cfg, run_dir: str):
    """A W&B run for this training run: project and name from the config, the resolved config attached, W&B's
    files in RUN/wandb; resumed when RUN/wandb-run-id.txt names an earlier one."""
    try:
        import wandb
    except ImportError:
        raise ConfigError(
            "log.wandb=true needs Weights & Biases: pip install 'scoremix[wandb]' (or set log.wandb=false)"
        ) from None
    log = cfg.log
    id_path = os.path.join(run_dir, WANDB_ID_FILE)
    run_id = None
    if os.path.isfile(id_path):
        with open(id_path) as fh:
            run_id = fh.read().strip() or None
    kwargs = {
        "project": log.wandb_project,
        "name": log.wandb_name or os.path.basename(os.path.abspath(run_dir)),
        "dir": run_dir,
        "config": cfg.to_dict(),
    }
    if log.wandb_mode is not None:
        kwargs["mode"] = log.wandb_mode
    if run_id is not None:
        kwargs.update(id=run_id, resume="allow")
    try:
        run = wandb.init(**kwargs)
    except Exception as err:  # not logged in, no network, a bad project name: say it before training starts
        raise ConfigError(
            f"Weights & Biases could not start a run ({_first_line(err)}); run `wandb login`, or "
            "set log.wandb_mode=offline (upload later with `wandb sync`), or log.wandb=false"
        ) from None
    if run_id is None and getattr(run, "id", None):
        from .checkpoint import atomic_write_bytes

        atomic_write_bytes(id_path, f"{run.id}\n".encode())
    return run


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Tracker:
    """The trainer's one handle on TensorBoard and W&B (either may be off)."""

    def __init__(self, tensorboard=None, wandb_run=None):
        self.tensorboard, self.wandb_run = tensorboard, wandb_run

    def scalars(self, record: dict) -> None:
        """The numbers of a stats record (the line stats.jsonl gets) at record['step']."""
        step = int(record["step"])
        values = {k: float(v) for k, v in record.items() if k != "step" and _is_number(v)}
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(key, value, step)
        if self.wandb_run is not None and values:
            self.wandb_run.log(values, step=step)

    def image(self, tag: str, path: str, step: int) -> None:
        """A sample picture the trainer saved (samples/TAG.png): to W&B as the 'samples' image at `step`."""
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({"samples": wandb.Image(path, caption=tag)}, step=int(step))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def open_tracker(cfg, run_dir: str) -> Tracker | None:
    """The run's Tracker, or None when neither TensorBoard nor W&B is on."""
    wandb_run = _open_wandb(cfg, run_dir) if cfg.log.wandb else None
    try:
        tensorboard = _open_tensorboard(run_dir) if cfg.train.tensorboard else None
    except ConfigError:
        if wandb_run is not None:
            wandb_run.finish()
        raise
    if tensorboard is None and wandb_run is None:
        return None
    return Tracker(tensorboard, wandb_run)


__all__ = ["Tracker", "open_tracker", "WANDB_ID_FILE"]
