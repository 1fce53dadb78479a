"""Shared by tests/test_robustness.py and benchmarks/robustness.py: training processes that are killed,
terminated and resumed, damaged checkpoints, malicious pickles and the table of bad inputs.

Training subprocesses run `python -m scoremix train` on a tiny ring8 config with one thread
(OMP_NUM_THREADS=1, so every run does the same arithmetic) and unbuffered output (a killed process
loses nothing it printed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from scoremix import checkpoint as ckpt
from scoremix.cli import main
from tests.conftest import tiny_overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40  # iterations of the subprocess runs (about 40 ms each with a checkpoint every step)
STATE_KEYS = ("step", "networks", "ema", "ema_updates", "optimizers", "schedulers", "rng", "data", "skipped")


def run_overrides(steps: int = STEPS, **extra) -> list[str]:
    """The tiny ring8 config of every process run: a stats line and a checkpoint after every step."""
    return tiny_overrides(steps=steps, log_every=1, ckpt_every=1, **extra)


def _env() -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


# -- training subprocesses ----------------------------------------------------------------------------
class TrainProcess:
    """`python -m scoremix train --config ring8 --out RUN <tiny overrides>`, or with resume=True the command the
    trainer advertises, `python -m scoremix train --out RUN --resume latest` (the run's own config.yaml);
    output goes to log files."""

    def __init__(self, run_dir: str, steps: int = STEPS, resume: bool = False, tag: str = "run"):
        self.run_dir = run_dir
        logs = os.path.join(os.path.dirname(os.path.abspath(run_dir)), "logs")
        os.makedirs(logs, exist_ok=True)
        stem = os.path.join(logs, f"{os.path.basename(run_dir)}-{tag}")
        self.out_path, self.err_path = stem + ".out", stem + ".err"
        cmd = [sys.executable, "-m", "scoremix", "train", "--out", run_dir]
        cmd += ["--resume", "latest"] if resume else ["--config", "ring8", *run_overrides(steps)]
        self.command = cmd
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=_env())

    @property
    def stdout(self) -> str:
        return open(self.out_path, errors="replace").read()

    @property
    def stderr(self) -> str:
        return open(self.err_path, errors="replace").read()

    def wait_for_checkpoint(self, step: int, timeout: float = 180.0) -> int:
        """Block until a checkpoint of at least `step` is on disk; return its step."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            newest = newest_checkpoint_step(self.run_dir)
            if newest >= step:
                return newest
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"training exited ({self.proc.returncode}) before checkpoint {step}:\n{self.stderr[-2000:]}"
                )
            time.sleep(0.005)
        self.proc.kill()
        raise TimeoutError(f"no checkpoint {step} in {self.run_dir} after {timeout:.0f} s")

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 180.0) -> int:
        return self.proc.wait(timeout)

    def finish(self, timeout: float = 180.0) -> int:
        """Wait for a run meant to complete; raise with its stderr when it fails."""
        code = self.wait(timeout)
        if code != 0:
            raise RuntimeError(f"training failed ({code}):\n{self.stderr[-2000:]}")
        return code


def newest_checkpoint_step(run_dir: str) -> int:
    paths = ckpt.list_checkpoints(os.path.join(run_dir, "checkpoints"))
    return ckpt.checkpoint_step(paths[-1]) if paths else -1


def last_logged_step(run_dir: str) -> int:
    """The newest step in stats.jsonl (a line a kill cut short does not count)."""
    step = 0
    path = os.path.join(run_dir, "stats.jsonl")
    if os.path.exists(path):
        for line in open(path):
            with contextlib.suppress(ValueError):
                step = max(step, json.loads(line)["step"])
    return step


def resumed_step(stdout: str) -> int | None:
    for line in stdout.splitlines():
        if line.startswith("resumed from ") and " at step " in line:
            return int(line.rsplit(" ", 1)[1])
    return None


# -- comparing runs -----------------------------------------------------------------------------------
def state_differences(a, b, where: str = "") -> list[str]:
    """Paths at which two nested training states differ (tensors compared bitwise, dtype and shape included)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} (keys)"]
        return [d for k in a for d in state_differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in state_differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


def final_state(run_dir: str) -> dict:
    path = ckpt.list_checkpoints(os.path.join(run_dir, "checkpoints"))[-1]
    return ckpt.load_training_state(path)


def compare_runs(run_a: str, run_b: str) -> list[str]:
    """Differences between the final checkpoints (networks, EMA, optimisers, schedulers, RNG, data position)
    and the generator.safetensors files of two runs; [] when they are bitwise equal."""
    a, b = final_state(run_a), final_state(run_b)
    diffs = [d for k in STATE_KEYS for d in state_differences(a.get(k), b.get(k), k)]
    ga, gb = (ckpt.load_generator(os.path.join(r, "generator.safetensors")) for r in (run_a, run_b))
    diffs += state_differences(list(ga[:2]) + [ga[3]], list(gb[:2]) + [gb[3]], "generator.safetensors")
    return diffs


# -- experiments --------------------------------------------------------------------------------------
def start_reference(workdir: str, steps: int = STEPS) -> TrainProcess:
    """The uninterrupted run the interrupted ones must reproduce (runs while the others are set up)."""
    return TrainProcess(os.path.join(workdir, "reference"), steps)


def finish_and_compare(resumed: "TrainProcess", reference: "TrainProcess") -> list[str]:
    """Let both runs end, then list how the resumed run differs from the reference (empty: bitwise equal)."""
    resumed.finish()
    reference.finish()
    return compare_runs(resumed.run_dir, reference.run_dir)


def kill_resume_experiment(
    workdir: str, reference: TrainProcess, kills: int = 5, steps: int = STEPS, seed: int = 0
) -> dict:
    """SIGKILL a training process at `kills` random steps, resuming with --resume latest each time, then let
    the last one finish and compare it bitwise with the uninterrupted reference run."""
    rng = random.Random(seed)
    run = os.path.join(workdir, "killed")
    targets = sorted(rng.sample(range(2, steps - 10), kills))
    records, start = [], 0
    for i, target in enumerate(targets):
        proc = TrainProcess(run, steps, resume=i > 0, tag=f"kill{i + 1}")
        if i == 0:
            first_command = proc.command
        target = max(target, start + 1)
        seen = proc.wait_for_checkpoint(target)
        time.sleep(rng.uniform(0.0, 0.05))  # land anywhere in the next step or two, checkpoint writes included
        proc.send(signal.SIGKILL)
        code = proc.wait()
        if i > 0 and resumed_step(proc.stdout) != start:
            raise AssertionError(f"kill {i + 1}: expected a resume from step {start}: {proc.stdout[-500:]}")
        reached = last_logged_step(run)
        found = ckpt.load_latest_valid(os.path.join(run, "checkpoints"), report=lambda m: None)
        if found is None:
            raise AssertionError(f"kill {i + 1}: no valid checkpoint left in {run}")
        resume_from = int(found[1]["step"])
        records.append(
            {
                "kill": i + 1,
                "target_step": target,
                "checkpoint_seen": seen,
                "exit_code": code,
                "step_reached": reached,
                "resumed_from": resume_from,
                "steps_lost": reached - resume_from,
            }
        )
        start = resume_from
    last = TrainProcess(run, steps, resume=True, tag="final")
    diffs = finish_and_compare(last, reference)
    return {
        "kills": records,
        "kills_survived": sum(r["exit_code"] == -signal.SIGKILL for r in records),
        "steps_lost_per_resume": [r["steps_lost"] for r in records],
        "final_resumed_from": resumed_step(last.stdout),
        "final_step": newest_checkpoint_step(run),
        "bitwise_equal": not diffs,
        "differences": diffs[:20],
        "commands": {
            "start": "python " + " ".join(first_command[1:]),
            "resume": "python " + " ".join(last.command[1:]),
        },
    }


def sigterm_experiment(workdir: str, reference: TrainProcess, at_step: int = 8, steps: int = STEPS) -> dict:
    """SIGTERM during training: a checkpoint at the step boundary, exit code 0 and a resume hint; the resumed
    run must end bitwise equal to the reference."""
    run = os.path.join(workdir, "terminated")
    proc = TrainProcess(run, steps, tag="sigterm")
    proc.wait_for_checkpoint(at_step)
    proc.send(signal.SIGTERM)
    code = proc.wait()
    out = proc.stdout
    reached, saved = last_logged_step(run), newest_checkpoint_step(run)
    state = ckpt.load_training_state(ckpt.list_checkpoints(os.path.join(run, "checkpoints"))[-1])
    resumed = TrainProcess(run, steps, resume=True, tag="after-sigterm")
    diffs = finish_and_compare(resumed, reference)
    return {
        "exit_code": code,
        "resume_hint": next((ln.strip() for ln in out.splitlines() if "--resume latest" in ln), None),
        "stopped_at_step": reached,
        "checkpoint_step": saved,
        "checkpoint_loads": int(state["step"]) == saved,
        "steps_lost": reached - saved,
        "resumed_from": resumed_step(resumed.stdout),
        "bitwise_equal": not diffs,
        "differences": diffs[:20],
        "stdout_tail": out.strip().splitlines()[-3:],
    }


def damage(path: str, how: str) -> None:
    """truncate: cut the file in half; flip: invert 16 bytes in its middle; tail: zero its last 4 KiB."""
    data = bytearray(open(path, "rb").read())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "flip":
        mid = len(data) // 2
        data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    elif how == "tail":
        data[-4096:] = bytes(min(4096, len(data)))
    else:
        raise ValueError(how)
    with open(path, "wb") as fh:
        fh.write(bytes(data))


def run_cli(argv: list[str]) -> tuple[int | str, str, str]:
    """scoremix.cli.main(argv) in this process: (exit code, stdout, stderr). An exception that escapes main
    gives ('exception', stdout, stderr + its traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except Exception:
            err.write(traceback.format_exc())
            code = "exception"
    return code, out.getvalue(), err.getvalue()


def corruption_experiment(workdir: str, how: str) -> dict:
    """Damage the newest checkpoint of a finished run; `--resume latest` must warn about it (on stderr, naming
    the file) and continue from the one before."""
    run = os.path.join(workdir, f"corrupt-{how}")
    code, _, err = run_cli(["train", "--config", "ring8", "--out", run, *tiny_overrides(steps=6, ckpt_every=1)])
    if code != 0:
        raise RuntimeError(f"training for the corruption case failed: {err}")
    paths = ckpt.list_checkpoints(os.path.join(run, "checkpoints"))
    newest, previous = paths[-1], paths[-2]
    damage(newest, how)
    code, out, err = run_cli(["train", "--out", run, "--resume", "latest", "steps=8"])
    warning = next((ln for ln in err.splitlines() if ln.startswith("warning:")), "")
    return {
        "damage": how,
        "exit_code": code,
        "warning": warning,
        "warning_names_file": os.path.basename(newest) in warning,
        "resumed_from": resumed_step(out),
        "expected_resume": ckpt.checkpoint_step(previous),
        "resumed_from_previous": resumed_step(out) == ckpt.checkpoint_step(previous),
        "finished_step": newest_checkpoint_step(run),
    }


# -- malicious pickles --------------------------------------------------------------------------------
class CodeRunner:
    """Unpickling this runs `touch MARKER`: loaders must refuse it before anything is called."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_pickle(marker: str) -> bytes:
    return pickle.dumps({"networks": CodeRunner(marker)}, protocol=2)


def evil_torch_file(path: str, marker: str) -> None:
    """A torch zip file whose pickle calls os.system."""
    torch.save({"format": ckpt.STATE_FORMAT, "payload": CodeRunner(marker)}, path)


def evil_training_state(path: str, marker: str) -> None:
    """A well-formed training-state wrapper with a valid checksum around a payload that calls os.system."""
    buf = io.BytesIO()
    torch.save({"step": 1, "networks": CodeRunner(marker)}, buf)
    payload = buf.getvalue()
    wrapper = {
        "format": ckpt.STATE_FORMAT,
        "version": ckpt.STATE_VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    torch.save(wrapper, path)


# -- the table of bad inputs --------------------------------------------------------------------------
class Workspace:
    """Files the bad-input cases point at: a small finished run, broken configs, datasets and checkpoints."""

    def __init__(self, root: str):
        from PIL import Image
        from safetensors.torch import save_file

        self.root = root
        os.makedirs(root, exist_ok=True)
        self.run = self.p("run")
        code, _, err = run_cli(
            ["train", "--config", "ring8", "--out", self.run, *tiny_overrides(steps=4, ckpt_every=2)]
        )
        if code != 0:
            raise RuntimeError(f"workspace run failed: {err}")
        self.state = ckpt.list_checkpoints(os.path.join(self.run, "checkpoints"))[-1]
        with open(self.p("a_file"), "w") as fh:
            fh.write("a regular file, so nothing can be created below it\n")
        with open(self.p("broken.yaml"), "w") as fh:
            fh.write("train: [steps: 3\n")
        with open(self.p("list.yaml"), "w") as fh:
            fh.write("- steps\n- 3\n")
        with open(self.p("typo.yaml"), "w") as fh:
            fh.write("preset: ring8\ntrian:\n  steps: 3\n")
        os.makedirs(self.p("empty"), exist_ok=True)
        os.makedirs(self.p("unreadable"), exist_ok=True)
        Image.new("RGB", (8, 8)).save(self.p("unreadable/a.png"))
        with open(self.p("unreadable/b.png"), "wb") as fh:
            fh.write(b"these bytes are not a PNG")
        os.makedirs(self.p("mixed"), exist_ok=True)
        Image.new("RGB", (8, 8)).save(self.p("mixed/a.png"))
        Image.new("RGB", (16, 16)).save(self.p("mixed/b.png"))
        np.save(self.p("two_channels.npy"), np.zeros((4, 2, 8, 8), np.uint8))
        np.savez(self.p("bad_labels.npz"), x=np.zeros((4, 8, 8, 3), np.uint8), y=np.array([0, 1, -1, 2]))
        np.savez(self.p("no_images.npz"), labels=np.arange(4))
        with open(self.p("not_torch.pt"), "w") as fh:
            fh.write("hello, I am text\n")
        data = open(self.state, "rb").read()
        with open(self.p("truncated.pt"), "wb") as fh:
            fh.write(data[: len(data) // 2])
        save_file({"w": torch.zeros(2)}, self.p("plain.safetensors"))
        self.all_corrupt = self.p("all_corrupt")
        os.makedirs(os.path.join(self.all_corrupt, "checkpoints"))
        with open(os.path.join(self.all_corrupt, "checkpoints", "state-0000002.pt"), "wb") as fh:
            fh.write(data[:1000])

    def p(self, name: str) -> str:
        return os.path.join(self.root, name)


IMAGE_NETS = ["generator.arch=unet", "score.arch=unet"]


@dataclass(frozen=True)
class BadInput:
    name: str
    argv: Callable[[Workspace], list[str]]
    expect: str  # the gist every message must contain


def _train(*args: str) -> Callable[[Workspace], list[str]]:
    return lambda w: ["train", "--config", "ring8", "--out", w.p("out"), *args, "progress=false"]


BAD_INPUTS: list[BadInput] = [
    BadInput("unknown key", _train("stepz=3"), "unknown config key 'stepz'; did you mean 'steps'?"),
    BadInput("ambiguous key", _train("hidden=8"), "config key 'hidden' is ambiguous"),
    BadInput("not key=value", _train("steps"), "override 'steps' is not key=value"),
    BadInput("wrong type", _train("steps=many"), "train.steps: expected an integer, got 'many'"),
    BadInput("wrong type (bool)", _train("flip=perhaps"), "data.flip: expected true or false"),
    BadInput("out of range", _train("ema=1.5"), "train.ema is a decay in [0, 1)"),
    BadInput("batch size 0", _train("batch_size=0"), "data.batch_size must be >= 1, got 0"),
    BadInput(
        "conditional on 2-D data",
        _train("conditional=true"),
        "data.conditional=true needs labelled images; data.source=ring8 has no labels",
    ),
    BadInput("unet on 2-D data", _train("score.arch=unet"), "score.arch=unet needs images; 2-D data uses arch=mlp"),
    BadInput("alpha sampler hitting 0", _train("gen_alpha=paper"), "can draw alpha=0"),
    BadInput(
        "unknown preset", lambda w: ["train", "--config", "ring9"], "unknown preset 'ring9'; did you mean 'ring8'?"
    ),
    BadInput("missing YAML", lambda w: ["train", "--config", w.p("missing.yaml")], "missing.yaml' does not exist"),
    BadInput("invalid YAML", lambda w: ["train", "--config", w.p("broken.yaml")], "broken.yaml' is not valid YAML"),
    BadInput(
        "YAML not a mapping", lambda w: ["train", "--config", w.p("list.yaml")], "must hold a mapping of sections"
    ),
    BadInput(
        "YAML unknown section",
        lambda w: ["train", "--config", w.p("typo.yaml")],
        "typo.yaml: unknown config key 'trian'",
    ),
    BadInput(
        "missing dataset path",
        lambda w: _train("data.source=folder", f"data.path={w.p('nowhere')}", *IMAGE_NETS)(w),
        "nowhere' does not exist",
    ),
    BadInput(
        "empty image folder",
        lambda w: _train("data.source=folder", f"data.path={w.p('empty')}", *IMAGE_NETS)(w),
        "no images found in",
    ),
    BadInput(
        "unreadable image",
        lambda w: _train("data.source=folder", f"data.path={w.p('unreadable')}", *IMAGE_NETS)(w),
        "cannot read image",
    ),
    BadInput(
        "mixed image sizes",
        lambda w: _train("data.source=folder", f"data.path={w.p('mixed')}", *IMAGE_NETS)(w),
        "images have different sizes",
    ),
    BadInput(
        "npy with 2 channels",
        lambda w: _train("data.source=npz", f"data.path={w.p('two_channels.npy')}", *IMAGE_NETS)(w),
        "got (4, 2, 8, 8)",
    ),
    BadInput(
        "npz label out of range",
        lambda w: _train("data.source=npz", f"data.path={w.p('bad_labels.npz')}", "conditional=true", *IMAGE_NETS)(w),
        "label -1 in",
    ),
    BadInput(
        "npz without images",
        lambda w: _train("data.source=npz", f"data.path={w.p('no_images.npz')}", *IMAGE_NETS)(w),
        "has no image array",
    ),
    BadInput(
        "CIFAR-10 folder without batches",
        lambda w: _train("data.source=cifar10", f"data.path={w.p('empty')}", *IMAGE_NETS)(w),
        "no CIFAR-10 batches in",
    ),
    BadInput("checkpoint missing", lambda w: _train("--resume", w.p("missing.pt"))(w), "missing.pt' does not exist"),
    BadInput("checkpoint is a folder", lambda w: _train("--resume", w.p("empty"))(w), "is a folder"),
    BadInput(
        "checkpoint not a torch file",
        lambda w: _train("--resume", w.p("not_torch.pt"))(w),
        "not_torch.pt' is unreadable or truncated",
    ),
    BadInput(
        "checkpoint truncated",
        lambda w: _train("--resume", w.p("truncated.pt"))(w),
        "truncated.pt' is unreadable or truncated",
    ),
    BadInput(
        "checkpoint of another architecture",
        lambda w: ["train", "--out", w.run, "--resume", "latest", "score.hidden=48", "progress=false"],
        "does not match this config's networks",
    ),
    BadInput(
        "every checkpoint corrupt",
        lambda w: ["train", "--config", "ring8", "--out", w.all_corrupt, "--resume", "latest", "progress=false"],
        "none of the 1 checkpoints",
    ),
    BadInput("--resume latest without --out", lambda w: ["train", "--resume", "latest"], "needs --out"),
    BadInput(
        "unwritable output folder",
        lambda w: ["train", "--config", "ring8", "--out", w.p("a_file/run"), "progress=false"],
        "a_file' is a file, not a folder",
    ),
    BadInput(
        "generator without metadata",
        lambda w: ["sample", "--checkpoint", w.p("plain.safetensors"), "--out", w.p("s.png")],
        "not a scoremix generator",
    ),
    BadInput(
        "sample checkpoint missing",
        lambda w: ["sample", "--checkpoint", w.p("nothing"), "--out", w.p("s.png")],
        "nothing' does not exist",
    ),
    BadInput(
        "sample --out extension",
        lambda w: ["sample", "--checkpoint", w.run, "--out", w.p("s.jpg")],
        "must end in .png (picture) or .npz",
    ),
    BadInput(
        "sample --class out of range",
        lambda w: ["sample", "--checkpoint", w.run, "--out", w.p("s.png"), "--class", "3"],
        "--class 3 is out of range",
    ),
    BadInput(
        "sample --n 0",
        lambda w: ["sample", "--checkpoint", w.run, "--out", w.p("s.png"), "--n", "0"],
        "--n must be at least 1",
    ),
    BadInput(
        "sample bad --device",
        lambda w: ["sample", "--checkpoint", w.run, "--out", w.p("s.png"), "--device", "abacus"],
        "--device 'abacus' is not a device",
    ),
    BadInput(
        "sample unwritable --out",
        lambda w: ["sample", "--checkpoint", w.run, "--out", w.p("a_file/s.png")],
        "a_file' is a file, not a folder",
    ),
    BadInput(
        "eval too few samples",
        lambda w: ["eval", "--checkpoint", w.run, "--samples", "3"],
        "--samples must be at least 10",
    ),
    BadInput(
        "eval unwritable --json",
        lambda w: ["eval", "--checkpoint", w.run, "--json", w.p("a_file/m.json")],
        "a_file' is a file, not a folder",
    ),
    BadInput("presets --show unknown", lambda w: ["presets", "--show", "nope"], "unknown preset 'nope'"),
]


def check_bad_input(case: BadInput, ws: Workspace) -> dict:
    """Run one case; ok when it exits 2 with exactly one stderr line `error: ...` holding the gist and no
    traceback."""
    code, _, err = run_cli(case.argv(ws))
    lines = err.strip().splitlines()
    ok = (
        code == 2
        and len(lines) == 1
        and lines[0].startswith("error: ")
        and case.expect in lines[0]
        and "Traceback" not in err
    )
    return {"name": case.name, "exit_code": code, "stderr": err.strip()[-600:], "expect": case.expect, "ok": ok}
