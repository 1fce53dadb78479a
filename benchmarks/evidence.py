"""Evidence for the paper's claims at small scale, side by side with the baselines (one command).

    python benchmarks/evidence.py --budget tiny  [--out DIR] [--questions 1,2,...] [--plan]
    python benchmarks/evidence.py --budget small [--out DIR]

Questions (results under DIR/qN-*/, one JSON each, plus DIR/summary.md and PNG plots):
  1 swissroll   paper App. E.2 setting: SMT with / without the GAN term, alpha = 1 only (the DMD limit),
                alpha in {0, 1} only, SMD from the analytic and from a trained teacher, the non-saturating
                GAN, and the EDM teacher at 1, 4 and 35 Heun steps
  2 coverage    ring8, grid25 and a 10x-unbalanced mixture read from a .npy file (data.source=points):
                the full alpha range against alpha = 1 alone
  3 ablations   (Fig. 2b) adaptive vs DMD weight, GAN term on/off, the paper's alpha sampler vs the preset's (code),
                generator update every 1 / 2 / 5 iterations; ring8 and MNIST 5k
  4 stability   learning rates x1/3, x1, x3 for SMT, DMD and the GAN baseline on ring8 (3 seeds) and MNIST 5k;
                divergence flags and loss curves
  5 one-vs-many MNIST 5k: SMT, SMD, DMD, GAN and the EDM teacher at 1-35 Heun steps, with CPU times

Every run is `python -m scoremix train ...` in a subprocess (so the evidence is what a user gets) and
its metrics are read from the run folder. Each result JSON holds the exact commands, seeds, versions and
wall times. Budgets: `smoke` (plumbing only, seconds), `tiny` (< 15 min on 2 cores), `small` (about 2 h on 2 cores
with --jobs 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # scoremix is imported lazily below (configs, pictures), from this checkout

BUDGETS = {
    # toy_steps / mnist_steps: training iterations of one toy / MNIST run; teacher_*: diffusion teachers
    "smoke": dict(toy_steps=20, mnist_steps=4, mnist_warmup=(1, 1), toy_teacher_steps=20, mnist_teacher_steps=4, seeds=[0],
                  stability_seeds=[0], eval_samples=200, digit_samples=100, mnist_questions=True),
    "tiny": dict(toy_steps=1200, mnist_steps=60, mnist_warmup=(20, 10), toy_teacher_steps=1500, mnist_teacher_steps=150,
                 seeds=[0],
                 stability_seeds=[0], eval_samples=2000, digit_samples=500, mnist_questions=True),
    "small": dict(toy_steps=3000, mnist_steps=1200, mnist_warmup=(300, 100), toy_teacher_steps=4000,
                  mnist_teacher_steps=2000,
                  seeds=[0, 1, 2], stability_seeds=[0, 1, 2], eval_samples=5000, digit_samples=2000,
                  mnist_questions=True),
}

# mnist_warmup: the mnist-smt preset's generator warm-up and critic-only iterations (1,500 and 300) would fill
# a short run, so every SMT variant shortens them alike to (generator, critic) iterations, leaving
# mnist_steps - sum(mnist_warmup) iterations of SMT proper.


def _mnist_smt(b: dict) -> list[str]:
    gen, critic = b["mnist_warmup"]
    return [f"method.warmup_steps={gen}", f"method.critic_warmup_steps={critic}"]


# The swiss-roll setting of App. E.2: 2-layer MLPs of width 128 with leaky ReLU, batch 256, AdamW,
# lr 1e-5 for the generator and 1e-4 for the score model / discriminator.
PAPER_TOY_NETS = ["generator.hidden=128", "generator.depth=2", "generator.activation=leaky_relu",
                  "generator.fourier_features=0", "score.hidden=128", "score.depth=2",
                  "score.activation=leaky_relu", "score.fourier_features=0", "data.batch_size=256",
                  "optim.lr_gen=1e-5", "optim.lr_score=1e-4"]
SWISSROLL = ["data.source=swissroll", "data.sigma_data=1.5"]


def _versions() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "platform": platform.platform()}


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

    def __init__(self, out: str, budget: dict, dry: bool = False, collect: bool = False, done: dict | None = None,
                 report_only: bool = False):
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
        finished = _read_json(log + ".done") if not self.dry else None  # written by run_tasks: resume
        if finished and finished.get("command") == text and finished.get("returncode") == 0:
            return 0, finished["wall_s"]
        if self.collect:
            self.tasks.append(Task(cmd, text, log, produces, cost))
        if self.dry or self.collect:
            return 0, 0.0
        if self.report_only:  # tables from what exists; a missing output reads as not run (exit code -1)
            done = os.path.isfile(os.path.join(produces, "metrics.json")) if os.path.isdir(produces) else os.path.isfile(produces)
            return (0, float("nan")) if done else (-1, 0.0)
        start = time.time()
        with open(log, "w") as fh:
            rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=_child_env())
        return rc, time.time() - start

    def train(self, name: str, preset: str, overrides: list[str], seed: int, steps: int) -> dict:
        """One training run; returns its record (command, wall time, metrics, training-curve summary).
        A run whose resolved configuration equals an earlier one (the preset written out as overrides, for
        instance) is not trained twice: its record is the earlier run's, marked `same_run_as`."""
        overrides = list(overrides) + [f"train.seed={seed}", f"train.steps={steps}", "train.progress=off",
                                       f"eval.samples={self.budget['eval_samples']}"]
        key = _resolved_config(preset, overrides)
        if key in self.configs:
            first = self.configs[key]
            return dict(first, name=name, same_run_as=f"{first['name']}-s{seed}")
        folder = os.path.join(self.out, "runs", f"{name}-s{seed}")
        record_path = os.path.join(folder, "evidence.json")
        cmd = [sys.executable, "-m", "scoremix", "train", "--config", preset, "--out", folder] + overrides
        cached = _read_json(record_path) if not self.dry else None
        if cached and _resolved_config(cached["preset"], cached["overrides"]) == key:  # same run, however spelt
            self.configs[key] = cached
            return cached
        if not self.dry:
            os.makedirs(folder, exist_ok=True)
        rc, wall = self._run(cmd, os.path.join(folder, "train.log"), folder,
                             steps * (25.0 if preset.startswith("mnist") else 1.0))
        record = {"name": name, "preset": preset, "seed": seed, "steps": steps, "overrides": overrides,
                  "command": self.planned[-1], "returncode": rc, "wall_s": round(wall, 1), "folder": folder}
        self.configs[key] = record
        if self.dry or self.collect:
            return record
        record["metrics"] = _read_json(os.path.join(folder, "metrics.json"))
        record["curves"] = training_curves(os.path.join(folder, "stats.jsonl"))
        record["diverged"], record["why"] = diverged(record)
        if self.report_only:
            record["wall_s"] = (record["metrics"] or {}).get("train_seconds")  # training only: no wall time kept
        else:
            with open(record_path, "w") as fh:
                json.dump(record, fh, indent=1)
        return record

    def evaluate_steps(self, name: str, run: dict, steps: int, seed: int) -> dict:
        """The diffusion teacher of `run` sampled with `steps` Heun steps (2 steps - 1 evaluations)."""
        out = os.path.join(self.out, "runs", f"{name}-s{seed}.json")
        if os.path.isfile(out) and not self.dry:
            with open(out) as fh:
                return json.load(fh)
        cmd = [sys.executable, "-m", "scoremix", "eval", "--checkpoint", run["folder"], "--steps", str(steps),
               "--samples", str(self.budget["eval_samples"]), "--json", out + ".metrics"]
        rc, wall = self._run(cmd, out + ".log", out + ".metrics", 50.0 * steps)
        record = {"name": name, "seed": seed, "heun_steps": steps, "evaluations": 2 * steps - 1,
                  "command": self.planned[-1], "returncode": rc, "wall_s": round(wall, 1)}
        if not (self.dry or self.collect):
            record["metrics"] = _read_json(out + ".metrics")
            if not self.report_only:
                with open(out, "w") as fh:
                    json.dump(record, fh, indent=1)
        return record

    def digit_scores(self, name: str, run: dict, steps: int | None = None) -> dict:
        """Digit-classifier scores of an MNIST run (benchmarks/mnist_digits.py)."""
        if (run["folder"], steps) in self.digit_records:  # the same run under another question's name
            return self.digit_records[(run["folder"], steps)]
        out = os.path.join(self.out, "runs", f"{name}-digits{'' if steps is None else f'-h{steps}'}.json")
        if os.path.isfile(out) and not self.dry:
            with open(out) as fh:
                self.digit_records[(run["folder"], steps)] = json.load(fh)
            return self.digit_records[(run["folder"], steps)]
        classifier = os.path.join(self.out, "runs", "digit-classifier.pt")  # trained by the first call only
        cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "mnist_digits.py"), run["folder"],
               "--n", str(self.budget["digit_samples"]), "--out", out + ".raw", "--ema-only",
               "--classifier", classifier]
        if steps is not None:
            cmd += ["--steps", str(steps)]
        first = next((t for t in self.tasks if classifier in t.cmd), None)
        queued = len(self.tasks)
        rc, wall = self._run(cmd, out + ".log", out + ".raw", 500.0 * (steps or 1))
        if first is not None and len(self.tasks) > queued:
            self.tasks[-1].waits.add(first.produces)
        record = {"name": name, "heun_steps": steps, "command": self.planned[-1], "returncode": rc,
                  "wall_s": round(wall, 1)}
        if not (self.dry or self.collect):
            record["scores"] = _read_json(out + ".raw")
            if not self.report_only:
                with open(out, "w") as fh:
                    json.dump(record, fh, indent=1)
        self.digit_records[(run["folder"], steps)] = record
        return record

    def command(self, name: str, cmd: list[str], produces: str, cost: float) -> dict:
        """Any other command of the suite; its JSON output (`produces`) is read into the record."""
        record_path = os.path.join(self.out, "runs", f"{name}.json")
        text = " ".join(shlex.quote(c) for c in cmd)
        cached = _read_json(record_path) if not self.dry else None
        if cached and cached.get("command") == text:
            return cached
        rc, wall = self._run(cmd, os.path.join(self.out, "runs", f"{name}.log"), produces, cost)
        record = {"name": name, "command": text, "returncode": rc, "wall_s": round(wall, 1), "output": produces}
        if not (self.dry or self.collect):
            if produces.endswith((".json", ".metrics")):
                record["result"] = _read_json(produces)
            if not self.report_only:
                with open(record_path, "w") as fh:
                    json.dump(record, fh, indent=1)
        return record


def _read_json(path: str):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _child_env(threads: int | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _resolved_config(preset: str, overrides: list[str]) -> str:
    """The run's whole configuration as text: two runs with equal text train the same thing."""
    import dataclasses

    from scoremix.config import load_config

    return json.dumps(dataclasses.asdict(load_config(preset, overrides)), sort_keys=True, default=str)


def run_tasks(tasks: list[Task], jobs: int, threads: int | None, log=print) -> dict:
    """Runs the collected commands, `jobs` at a time, each after the commands whose output it reads
    (a teacher's folder, a checkpoint to evaluate); the costliest ready command starts first."""
    for i, task in enumerate(tasks):
        args = set(task.cmd) | {a.split("=", 1)[1] for a in task.cmd if "=" in a} | task.waits
        task.deps = [t for t in tasks[:i] if t.produces and t.produces in args]
    pending, running, done, finished = list(tasks), {}, {}, set()
    total, start = len(tasks), time.time()
    while pending or running:
        ready = sorted((t for t in pending if all(id(d) in finished for d in t.deps)), key=lambda t: -t.cost)
        for task in ready[:max(0, jobs - len(running))]:
            pending.remove(task)
            os.makedirs(os.path.dirname(task.log), exist_ok=True)
            fh = open(task.log, "w")
            proc = subprocess.Popen(task.cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=_child_env(threads))
            running[id(task)] = (task, proc, fh, time.time())
        if not running:
            raise RuntimeError("evidence: commands wait on outputs nothing produces")
        time.sleep(0.5)
        for key, (task, proc, fh, began) in list(running.items()):
            if proc.poll() is None:
                continue
            fh.close()
            del running[key]
            finished.add(key)
            done[task.text] = (proc.returncode, time.time() - began)
            with open(task.log + ".done", "w") as marker:
                json.dump({"command": task.text, "returncode": proc.returncode, "wall_s": round(done[task.text][1], 1)},
                          marker)
            log(f"[{len(done)}/{total}, {time.time() - start:.0f} s] rc={proc.returncode} "
                f"{time.time() - began:.0f} s  {os.path.basename(task.produces)}", flush=True)
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


# -- questions ------------------------------------------------------------------------------------------
def q1_swissroll(r: Runner) -> dict:
    b = r.budget
    steps = b["toy_steps"]
    base = SWISSROLL + PAPER_TOY_NETS
    variants = {
        "smt": ("swissroll", base),
        "smt-no-gan": ("swissroll", base + ["method.gan=false"]),
        "alpha-1-only": ("swissroll", base + ["method.gen_alpha=constant:1"]),
        "alpha-0-1-only": ("swissroll", base + ["method.gen_alpha=constant:1", "method.score_alpha=endpoints"]),
        "gan": ("ring8-gan", base),
        "smd-analytic": ("ring8-smd", base + ["method.teacher=analytic"]),
        # the library's own swissroll preset (wider MLPs with input Fourier features, larger learning rates)
        "preset-smt": ("swissroll", []),
        "preset-alpha-1-only": ("swissroll", ["method.gen_alpha=constant:1"]),
    }
    runs = {name: [r.train(f"q1-{name}", preset, ov, s, steps) for s in b["seeds"]]
            for name, (preset, ov) in variants.items()}
    teachers = [r.train("q1-edm-teacher", "ring8-edm", SWISSROLL + ["score.hidden=128", "score.depth=2",
                                                                     "score.activation=leaky_relu",
                                                                     "score.fourier_features=0"],
                        s, b["toy_teacher_steps"]) for s in b["seeds"]]
    runs["smd-trained-teacher"] = [r.train("q1-smd-trained-teacher", "ring8-smd",
                                           base + [f"method.teacher={t['folder']}"], s, steps)
                                   for s, t in zip(b["seeds"], teachers)]
    for k in (1, 4, 35):
        runs[f"edm-{k}-steps"] = [r.evaluate_steps(f"q1-edm-h{k}", t, k, s) for s, t in zip(b["seeds"], teachers)]
    return {"runs": runs, "teacher_runs": teachers}


def _unbalanced_mixture(out: str) -> str:
    """Two components whose weights differ 10x, written as a user's .npz (points + the mixture)."""
    path = os.path.join(out, "unbalanced.npz")
    if not os.path.isfile(path):
        rng = np.random.default_rng(0)
        means = np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        weights = np.array([10.0, 1.0, 10.0]) / 21
        comp = rng.choice(3, size=20000, p=weights)
        x = means[comp] + 0.15 * rng.standard_normal((20000, 2))
        np.savez(path, x=x, means=means, stds=0.15, weights=weights)
    return path


def q2_coverage(r: Runner) -> dict:
    b = r.budget
    data = {"ring8": ("ring8", []), "grid25": ("grid25", []),
            "unbalanced": ("ring8", ["data.source=points", f"data.path={_unbalanced_mixture(r.out)}",
                                     "data.standardize=none", "data.sigma_data=1.4"])}
    runs = {}
    for dname, (preset, ov) in data.items():
        for label, extra in (("full-alpha", []), ("alpha-1-only", ["method.gen_alpha=constant:1"])):
            runs[f"{dname}/{label}"] = [r.train(f"q2-{dname}-{label}", preset, ov + extra, s, b["toy_steps"])
                                        for s in b["seeds"]]
    return {"runs": runs}


def q3_ablations(r: Runner) -> dict:
    b = r.budget
    variants = {"preset": [], "dmd-weight": ["method.weighting=dmd"], "no-gan": ["method.gan=false"],
                "paper-alpha": ["method.score_alpha=paper"], "gen-every-1": ["method.gen_every=1"],
                "gen-every-5": ["method.gen_every=5"]}
    runs = {f"ring8/{k}": [r.train(f"q3-ring8-{k}", "ring8", ov, s, b["toy_steps"]) for s in b["seeds"]]
            for k, ov in variants.items()}
    if b["mnist_questions"]:
        for k, ov in variants.items():
            runs[f"mnist/{k}"] = [r.train(f"q3-mnist-{k}", "mnist-smt", _mnist_smt(b) + ov, 0, b["mnist_steps"])]
    digits = {k: r.digit_scores(f"q3-{k.replace('/', '-')}", v[0]) for k, v in runs.items() if k.startswith("mnist")}
    return {"runs": runs, "digits": digits}


def _lr_overrides(preset: str, factor: float) -> list[str]:
    from scoremix.presets import get_preset

    o = get_preset(preset).optim
    return [f"optim.lr_gen={o.lr_gen * factor:.3g}", f"optim.lr_score={o.lr_score * factor:.3g}"]


def q4_stability(r: Runner) -> dict:
    b = r.budget
    runs = {}
    for preset in ("ring8", "ring8-dmd", "ring8-gan"):
        for factor in (1 / 3, 1, 3):
            key = f"{preset}/lr-x{factor:.2g}"
            runs[key] = [r.train(f"q4-{preset}-x{factor:.2g}", preset, _lr_overrides(preset, factor), s,
                                 b["toy_steps"]) for s in b["stability_seeds"]]
    if b["mnist_questions"]:
        teacher = [f"method.teacher={_mnist_teacher(r)['folder']}"]
        for preset, name, extra in (("mnist-smt", "q4-mnist", _mnist_smt(b)), ("mnist-dmd", "q4-mnist-dmd", teacher),
                                    ("mnist-gan", "q4-mnist-gan", [])):
            for factor in (1 / 3, 1, 3):
                # at x1 the run is Q5's (the same configuration): named as Q5 names it, trained once
                run_name = name.replace("q4-", "q5-") if factor == 1 and preset != "mnist-smt" else f"{name}-x{factor:.2g}"
                runs[f"{preset}/lr-x{factor:.2g}"] = [r.train(run_name, preset,
                                                              extra + _lr_overrides(preset, factor), 0,
                                                              b["mnist_steps"])]
    digits = {k: r.digit_scores(f"q4-{k.replace('/', '-')}", v[0]) for k, v in runs.items() if k.startswith("mnist")}
    return {"runs": runs, "digits": digits}


def _mnist_teacher(r: Runner) -> dict:
    """The EDM teacher of the MNIST distillation runs (trained once, shared by Q4 and Q5)."""
    return r.train("q5-mnist-edm", "mnist-edm", [], 0, r.budget["mnist_teacher_steps"])


def q5_one_vs_many(r: Runner) -> dict:
    b = r.budget
    teacher = _mnist_teacher(r)
    runs = {"smt": [r.train("q5-mnist-smt", "mnist-smt", _mnist_smt(b), 0, b["mnist_steps"])],
            "gan": [r.train("q5-mnist-gan", "mnist-gan", [], 0, b["mnist_steps"])],
            "smd": [r.train("q5-mnist-smd", "mnist-smd", [f"method.teacher={teacher['folder']}"], 0, b["mnist_steps"])],
            "dmd": [r.train("q5-mnist-dmd", "mnist-dmd", [f"method.teacher={teacher['folder']}"], 0, b["mnist_steps"])]}
    digits = {k: r.digit_scores(f"q5-{k}", v[0]) for k, v in runs.items()}
    for k in (1, 2, 4, 8, 18, 35):
        digits[f"edm-{k}-steps"] = r.digit_scores("q5-mnist-edm", teacher, steps=k)
    # FD / KD / precision-recall in a local feature space (the evaluation protocol, offline)
    scoremix = [sys.executable, "-m", "scoremix"]
    detector = os.path.join(r.out, "runs", "mnist28-features.safetensors")
    ref = os.path.join(r.out, "runs", "mnist28-ref.npz")
    r.command("q5-features", scoremix + ["features", "train", "--data", "mnist", "--resolution", "28", "--out", detector],
              detector, 2000.0)
    r.command("q5-reference", scoremix + ["eval", "stats", "--data", "mnist", "--resolution", "28", "--detector",
                                          detector, "--features", "--out", ref], ref, 1000.0)
    protocol = {}
    for k, v in list(runs.items()) + [(f"edm-{k}-steps", [dict(teacher, heun_steps=k)]) for k in (1, 4, 18, 35)]:
        out = os.path.join(r.out, "runs", f"q5-{k}-fd.json.metrics")
        steps = v[0].get("heun_steps")
        cmd = scoremix + ["eval", "--checkpoint", v[0]["folder"], "--metrics", "fid,kid,pr", "--n",
                          str(b["digit_samples"]), "--ref", ref, "--detector", detector, "--weights", "ema",
                          "--json", out] + ([] if steps is None else ["--steps", str(steps)])
        protocol[k] = r.command(f"q5-{k}-fd", cmd, out, 300.0 * (steps or 1))
    return {"runs": runs, "teacher_runs": [teacher], "digits": digits, "protocol_metrics": protocol}


QUESTIONS = {1: ("swissroll", q1_swissroll), 2: ("coverage", q2_coverage), 3: ("ablations", q3_ablations),
             4: ("stability", q4_stability), 5: ("one-vs-many", q5_one_vs_many)}


# -- tables and plots -----------------------------------------------------------------------------------
TABLE_KEYS = ("precision", "modes_covered", "mode_kl", "energy_distance", "knn_precision", "knn_recall")


def summarise(records: list[dict]) -> dict:
    """Mean and spread (min..max) over seeds of the EMA metrics (raw when there is no EMA)."""
    out = {"seeds": len(records), "diverged": sum(bool(r.get("diverged")) for r in records),
           "wall_s": float(np.mean([w for r in records if isinstance(w := r.get("wall_s"), (int, float))] or [math.nan]))}
    for key in TABLE_KEYS:
        vals = []
        for rec in records:
            m = rec.get("metrics") or {}
            m = m.get("ema") or m.get("raw") or {}
            if isinstance(m.get(key), (int, float)):
                vals.append(float(m[key]))
        if vals:
            out[key] = {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}
    return out


def markdown_table(result: dict) -> str:
    rows = ["| variant | seeds | diverged | wall s | " + " | ".join(TABLE_KEYS) + " |",
            "|---|---|---|---|" + "---|" * len(TABLE_KEYS)]
    for name, records in result["runs"].items():
        s = summarise(records)
        cells = []
        for key in TABLE_KEYS:
            v = s.get(key)
            f = ".3g" if key == "modes_covered" else ".3f"
            cells.append("–" if v is None else (f"{v['mean']:{f}}" if s["seeds"] == 1 else
                                                 f"{v['mean']:{f}} ({v['min']:{f}}–{v['max']:{f}})"))
        rows.append(f"| {name} | {s['seeds']} | {s['diverged']} | {s['wall_s']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_curves(result: dict, path: str, key_prefix: str = "loss") -> None:
    """One panel per variant: the loss curves of every seed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [n for n, recs in result["runs"].items() if any(r.get("curves") for r in recs)]
    if not names:
        return
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for rec in result["runs"][name]:
            curves = rec.get("curves") or {}
            for key, values in curves.items():
                if key.startswith(key_prefix) and len(values) == len(curves.get("step", [])):
                    ax.plot(curves["step"], values, lw=0.8, label=f"{key} s{rec['seed']}")
        ax.set_title(name, fontsize=8)
        ax.set_yscale("symlog")
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def q1_picture(result: dict, path: str, n: int = 2000) -> None:
    """One scatter per variant (seed 0's EMA generator; the EDM teacher at each step count) beside the data."""
    import torch

    from scoremix.config import load_config
    from scoremix.data import reference_samples
    from scoremix.plots import scatter_image, titled_grid, toy_bounds
    from scoremix.sampling import load_sampler, sample

    reference = torch.as_tensor(reference_samples(load_config("swissroll", SWISSROLL).data, n, seed=0)).float()
    bounds = toy_bounds(reference)
    panels = [("data", scatter_image(reference, bounds, size=200))]
    for name, records in result["runs"].items():
        rec = records[0]
        steps = rec.get("heun_steps")
        folder = rec.get("folder") or next((t["folder"] for t in result.get("teacher_runs", []) if t["seed"] == rec["seed"]), None)
        if rec.get("returncode") != 0 or folder is None:
            continue
        try:
            sampler, meta = load_sampler(folder, steps=steps)
            x = sample(sampler, n, meta["data_shape"], meta["num_classes"], seed=0)
        except Exception as err:  # a failed run has no weights: leave its panel out, say so
            print(f"q1 picture: {name}: {err}", file=sys.stderr)
            continue
        panels.append((name, scatter_image(x.reshape(n, -1).float(), bounds, size=200)))
    titled_grid(panels, 4).save(path)


def runs_picture(result: dict, path: str) -> None:
    """Each variant's seed-0 run as it drew itself at the end (samples/final.png: samples beside data)."""
    from PIL import Image

    from scoremix.plots import titled_grid

    panels = []
    for name, records in result["runs"].items():
        picture = os.path.join(records[0].get("folder", ""), "samples", "final.png")
        if os.path.isfile(picture):
            panels.append((f"{name} (seed {records[0]['seed']}): samples | data", Image.open(picture)))
    if panels:
        titled_grid(panels, 2).save(path)


def _protocol_values(record: dict | None) -> dict:
    """fd / kd / precision / recall of the EMA weights, whatever sample count names them (fd2k, kd2k, ...)."""
    weights = ((record or {}).get("result") or {}).get("weights", {}).get("ema", {})
    out = {}
    for key, value in weights.items():
        base = key.rstrip("0123456789k")
        if base in ("fd", "kd", "precision", "recall") and not key.endswith("_std"):
            out[base] = value
    return out


def digits_table(result: dict) -> str:
    """Q5: each one-step method and the teacher by Heun step count: digit-classifier scores and FD / KD /
    precision / recall in the local feature space."""
    rows = ["| method | network evaluations | digit score | confident | FD | KD | precision | recall | training s |",
            "|---|---|---|---|---|---|---|---|---|"]
    walls = {k: v[0].get("wall_s") for k, v in result["runs"].items()}
    teacher_wall = next((t.get("wall_s") for t in result.get("teacher_runs", [])), None)
    protocol = result.get("protocol_metrics", {})

    def cell(v, fmt):
        return "–" if v is None else format(v, fmt)

    for name, rec in result.get("digits", {}).items():
        entries = list(((rec.get("scores") or {}).get("runs") or {}).values())
        ema = entries[0].get("ema", {}) if entries else {}
        steps = rec.get("heun_steps")
        p = _protocol_values(protocol.get(name))
        wall = walls.get(name) if steps is None else teacher_wall
        rows.append(f"| {name} | {1 if steps is None else 2 * steps - 1} | {cell(ema.get('digit_score'), '.2f')} | "
                    f"{cell(ema.get('confident'), '.0%')} | {cell(p.get('fd'), '.1f')} | {cell(p.get('kd'), '.2f')} | "
                    f"{cell(p.get('precision'), '.3f')} | {cell(p.get('recall'), '.3f')} | {cell(wall, '.0f')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="tiny")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "evidence"))
    parser.add_argument("--questions", default="1,2,3,4,5", help="comma list of question numbers")
    parser.add_argument("--plan", action="store_true", help="print the commands without running them")
    parser.add_argument("--report-only", action="store_true",
                        help="write the tables and plots from the runs that finished; run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="commands run at a time (2 on 2 cores: toy runs "
                        "use one core well, so two at once nearly halve the suite's time)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per command (default: cores / jobs when --jobs > 1)")
    args = parser.parse_args(argv)
    budget = BUDGETS[args.budget]
    questions = [int(x) for x in args.questions.split(",")]
    os.makedirs(args.out, exist_ok=True)
    command = "python benchmarks/evidence.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.plan:
        runner = Runner(args.out, budget, dry=True)
        for q in questions:
            QUESTIONS[q][1](runner)
        print("\n".join(runner.planned))
        print(f"# {len(runner.planned)} commands")
        return 0
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None)
    start = time.time()
    done = {}
    if not args.report_only:
        collector = Runner(args.out, budget, collect=True)
        for q in questions:
            QUESTIONS[q][1](collector)
        done = run_tasks(collector.tasks, args.jobs, threads)
    runner = Runner(args.out, budget, done=done, report_only=args.report_only)
    summary = [f"# Evidence ({args.budget} budget)", "", f"Command: `{command}`", "",
               f"Machine: {_versions()['machine']}, torch {_versions()['torch']}; {args.jobs} command(s) at a time, "
               f"{threads or 'default'} torch thread(s) each. Wall times of runs that shared the machine are "
               "comparable with each other, not with a run alone.", "",
               "Values: mean over seeds (min–max). Runs whose configuration equals an earlier run's are that run "
               "(`same_run_as` in the JSON).", ""]
    for q in questions:
        title, fn = QUESTIONS[q]
        result = fn(runner)
        result.update({"question": q, "title": title, "budget": args.budget, "budget_settings": budget,
                       "command": command, "jobs": args.jobs, "threads": threads, "versions": _versions(),
                       "suite_wall_s": round(time.time() - start, 1)})
        stem = os.path.join(args.out, f"q{q}-{title}")
        with open(stem + ".json", "w") as fh:
            json.dump(result, fh, indent=1)
        plot_curves(result, stem + "-curves.png")
        summary += [f"## Q{q}: {title}", "", markdown_table(result), ""]
        if q == 1:
            q1_picture(result, stem + "-samples.png", n=min(2000, budget["eval_samples"]))
            summary += [f"![samples](q{q}-{title}-samples.png)", ""]
        if q == 2:
            runs_picture(result, stem + "-samples.png")
            summary += [f"![samples](q{q}-{title}-samples.png)", ""]
        if result.get("digits"):
            summary += [digits_table(result), ""]
    summary += [f"Suite wall time: {time.time() - start:.0f} s.", ""]
    with open(os.path.join(args.out, "summary.md"), "w") as fh:
        fh.write("\n".join(summary) + "\n")
    print(f"evidence: {len(done)} commands in {time.time() - start:.0f} s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
