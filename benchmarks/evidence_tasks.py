"""The commands of benchmarks/evidence.py: collected as tasks, run `jobs` at a time in subprocesses through
benchmarks/runner.py, and read back as records (with resume: a finished command is not run again)."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time

import numpy as np
from runner import ROOT, Child, read_json, scoremix_command, write_json


class Task:
    """One command of the suite, with the path it produces (for dependencies) and a rough cost (for order)."""

    def __init__(self, cmd: list[str], text: str, log: str, produces: str, cost: float):
        self.cmd, self.text, self.log, self.produces, self.cost = cmd, text, log, produces, cost
        self.deps: list[Task] = []
        self.waits: set[str] = set()  # further outputs this command reads (a shared classifier file)


class Runner:
    """Runs training / evaluation commands, caching finished runs so an interrupted suite resumes.

    With `collect=True` commands are only recorded as tasks (see `run_tasks`); a later pass with
    `done={command: (returncode, wall_s)}` reads their results instead of running them again."""

    def __init__(
        self,
        out: str,
        budget: dict,
        dry: bool = False,
        collect: bool = False,
        done: dict | None = None,
        report_only: bool = False,
    ):
        self.out, self.budget, self.dry, self.collect, self.report_only = out, budget, dry, collect, report_only
        self.done = done or {}
        self.planned: list[str] = []
        self.tasks: list[Task] = []
        self.configs: dict[str, dict] = {}  # resolved configuration -> the first run that trains it
        self.digit_records: dict[tuple, dict] = {}  # (run folder, Heun steps) -> digit scores

    def _run(self, cmd: list[str], log: str, produces: str = "", cost: float = 1.0) -> tuple[int, float]:
        text = " ".join(shlex.quote(c) for c in cmd)
        self.planned.append(text)
        if text in self.done:
            return self.done[text]
        finished = read_json(log + ".done", tolerant=True) if not self.dry else None  # written by run_tasks: resume
        if finished and finished.get("command") == text and finished.get("returncode") == 0:
            return 0, finished["wall_s"]
        if self.collect:
            self.tasks.append(Task(cmd, text, log, produces, cost))
        if self.dry or self.collect:
            return 0, 0.0
        if self.report_only:  # tables from what exists; a missing output reads as not run (exit code -1)
            done = os.path.isfile(os.path.join(produces, "metrics.json") if os.path.isdir(produces) else produces)
            return (0, float("nan")) if done else (-1, 0.0)
        result = Child(cmd, log, fresh=True).wait()
        return result["rc"], result["wall_s"]

    def _save(self, path: str, record: dict) -> None:
        if not self.report_only:
            write_json(path, record, indent=1)

    def train(self, name: str, preset: str, overrides: list[str], seed: int, steps: int) -> dict:
        """One training run; returns its record (command, wall time, metrics, training-curve summary).
        A run whose resolved configuration equals an earlier one (the preset written out as overrides, for
        instance) is not trained twice: its record is the earlier run's, marked `same_run_as`."""
        overrides = list(overrides) + [
            f"train.seed={seed}",
            f"train.steps={steps}",
            "train.progress=off",
            f"eval.samples={self.budget['eval_samples']}",
        ]
        key = resolved_config(preset, overrides)
        if key in self.configs:
            first = self.configs[key]
            return dict(first, name=name, same_run_as=f"{first['name']}-s{seed}")
        folder = os.path.join(self.out, "runs", f"{name}-s{seed}")
        record_path = os.path.join(folder, "evidence.json")
        cmd = scoremix_command("train", "--config", preset, "--out", folder, *overrides)
        cached = read_json(record_path, tolerant=True) if not self.dry else None
        if cached and resolved_config(cached["preset"], cached["overrides"]) == key:  # same run, however spelt
            self.configs[key] = cached
            return cached
        if not self.dry:
            os.makedirs(folder, exist_ok=True)
        rc, wall = self._run(
            cmd, os.path.join(folder, "train.log"), folder, steps * (25.0 if preset.startswith("mnist") else 1.0)
        )
        record = {
            "name": name,
            "preset": preset,
            "seed": seed,
            "steps": steps,
            "overrides": overrides,
            "command": self.planned[-1],
            "returncode": rc,
            "wall_s": round(wall, 1),
            "folder": folder,
        }
        self.configs[key] = record
        if self.dry or self.collect:
            return record
        record["metrics"] = read_json(os.path.join(folder, "metrics.json"), tolerant=True)
        record["curves"] = training_curves(os.path.join(folder, "stats.jsonl"))
        record["diverged"], record["why"] = diverged(record)
        if self.report_only:
            record["wall_s"] = (record["metrics"] or {}).get("train_seconds")  # training only: no wall time kept
        self._save(record_path, record)
        return record

    def evaluate_steps(self, name: str, run: dict, steps: int, seed: int) -> dict:
        """The diffusion teacher of `run` sampled with `steps` Heun steps (2 steps - 1 evaluations)."""
        out = os.path.join(self.out, "runs", f"{name}-s{seed}.json")
        if os.path.isfile(out) and not self.dry:
            return read_json(out)
        cmd = scoremix_command(
            "eval",
            "--checkpoint",
            run["folder"],
            "--steps",
            str(steps),
            "--samples",
            str(self.budget["eval_samples"]),
            "--json",
            out + ".metrics",
        )
        rc, wall = self._run(cmd, out + ".log", out + ".metrics", 50.0 * steps)
        record = {
            "name": name,
            "seed": seed,
            "heun_steps": steps,
            "evaluations": 2 * steps - 1,
            "command": self.planned[-1],
            "returncode": rc,
            "wall_s": round(wall, 1),
        }
        if not (self.dry or self.collect):
            record["metrics"] = read_json(out + ".metrics", tolerant=True)
            self._save(out, record)
        return record

    def digit_scores(self, name: str, run: dict, steps: int | None = None) -> dict:
        """Digit-classifier scores of an MNIST run (benchmarks/mnist_digits.py)."""
        if (run["folder"], steps) in self.digit_records:  # the same run under another question's name
            return self.digit_records[(run["folder"], steps)]
        out = os.path.join(self.out, "runs", f"{name}-digits{'' if steps is None else f'-h{steps}'}.json")
        if os.path.isfile(out) and not self.dry:
            self.digit_records[(run["folder"], steps)] = read_json(out)
            return self.digit_records[(run["folder"], steps)]
        classifier = os.path.join(self.out, "runs", "digit-classifier.pt")  # trained by the first call only
        cmd = [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "mnist_digits.py"),
            run["folder"],
            "--n",
            str(self.budget["digit_samples"]),
            "--out",
            out + ".raw",
            "--ema-only",
            "--classifier",
            classifier,
        ]
        if steps is not None:
            cmd += ["--steps", str(steps)]
        first = next((t for t in self.tasks if classifier in t.cmd), None)
        queued = len(self.tasks)
        rc, wall = self._run(cmd, out + ".log", out + ".raw", 500.0 * (steps or 1))
        if first is not None and len(self.tasks) > queued:
            self.tasks[-1].waits.add(first.produces)
        record = {
            "name": name,
            "heun_steps": steps,
            "command": self.planned[-1],
            "returncode": rc,
            "wall_s": round(wall, 1),
        }
        if not (self.dry or self.collect):
            record["scores"] = read_json(out + ".raw", tolerant=True)
            self._save(out, record)
        self.digit_records[(run["folder"], steps)] = record
        return record

    def command(self, name: str, cmd: list[str], produces: str, cost: float) -> dict:
        """Any other command of the suite; its JSON output (`produces`) is read into the record."""
        record_path = os.path.join(self.out, "runs", f"{name}.json")
        text = " ".join(shlex.quote(c) for c in cmd)
        cached = read_json(record_path, tolerant=True) if not self.dry else None
        if cached and cached.get("command") == text:
            return cached
        rc, wall = self._run(cmd, os.path.join(self.out, "runs", f"{name}.log"), produces, cost)
        record = {"name": name, "command": text, "returncode": rc, "wall_s": round(wall, 1), "output": produces}
        if not (self.dry or self.collect):
            if produces.endswith((".json", ".metrics")):
                record["result"] = read_json(produces, tolerant=True)
            self._save(record_path, record)
        return record


def resolved_config(preset: str, overrides: list[str]) -> str:
    """The run's whole configuration as text: two runs with equal text train the same thing."""
    import dataclasses

    from scoremix.config_loader import load_config

    return json.dumps(dataclasses.asdict(load_config(preset, overrides)), sort_keys=True, default=str)


def run_tasks(tasks: list[Task], jobs: int, threads: int | None, log=print) -> dict:
    """Runs the collected commands, `jobs` at a time, each after the commands whose output it reads
    (a teacher's folder, a checkpoint to evaluate); the costliest ready command starts first. Each finished
    command leaves a marker LOG.done (command, exit code, wall seconds) by which a later call skips it."""
    for i, task in enumerate(tasks):
        args = set(task.cmd) | {a.split("=", 1)[1] for a in task.cmd if "=" in a} | task.waits
        task.deps = [t for t in tasks[:i] if t.produces and t.produces in args]
    pending, running, done, finished = list(tasks), {}, {}, set()
    total, start = len(tasks), time.time()
    while pending or running:
        ready = sorted((t for t in pending if all(id(d) in finished for d in t.deps)), key=lambda t: -t.cost)
        for task in ready[: max(0, jobs - len(running))]:
            pending.remove(task)
            running[id(task)] = (task, Child(task.cmd, task.log, threads, fresh=True))
        if not running:
            raise RuntimeError("evidence: commands wait on outputs nothing produces")
        time.sleep(0.5)
        for key, (task, child) in list(running.items()):
            result = child.poll()
            if result is None:
                continue
            del running[key]
            finished.add(key)
            done[task.text] = (result["rc"], result["wall_s"])
            write_json(
                task.log + ".done",
                {"command": task.text, "returncode": result["rc"], "wall_s": result["wall_s"]},
                indent=None,
            )
            log(
                f"[{len(done)}/{total}, {time.time() - start:.0f} s] rc={result['rc']} {result['wall_s']:.0f} s "
                f"(CPU {result['cpu_s']:.0f} s)  {os.path.basename(task.produces)}",
                flush=True,
            )
    return done


def training_curves(stats_path: str) -> dict:
    """Loss and gradient-norm series from stats.jsonl (one point per log_every)."""
    series: dict[str, list] = {}
    try:
        with open(stats_path) as fh:
            for line in fh:
                row = json.loads(line)
                for key, value in row.items():
                    if key == "step" or key.startswith(("loss", "grad_norm", "skipped")):
                        series.setdefault(key, []).append(value)
    except (OSError, ValueError):
        pass
    return series


def diverged(record: dict) -> tuple[bool, str]:
    """A run diverged when it failed, skipped non-finite steps, ended with non-finite metrics, had a
    gradient-norm spike (a logged norm above 20x the median of the run), or collapsed (a known mixture
    with at most one mode covered)."""
    if record["returncode"] != 0:
        return True, f"exit code {record['returncode']}"
    curves = record.get("curves") or {}
    if any(v for v in curves.get("skipped_total", [])):
        return True, "non-finite steps were skipped"
    for key, values in curves.items():
        if key.startswith("grad_norm") and len(values) >= 5:
            arr = np.asarray(values, dtype=float)
            if not np.isfinite(arr).all():
                return True, f"{key} not finite"
            median = float(np.median(arr))
            if median > 0 and arr.max() > 20 * median:
                return True, f"{key} spiked to {arr.max():.3g} (median {median:.3g})"
    metrics = (record.get("metrics") or {}).get("ema") or (record.get("metrics") or {}).get("raw") or {}
    if any(isinstance(v, float) and not math.isfinite(v) for v in metrics.values()):
        return True, "non-finite metrics"
    if metrics.get("num_modes", 0) > 1 and metrics.get("modes_covered", 2) <= 1:
        return True, "collapsed to one mode"
    return False, ""
