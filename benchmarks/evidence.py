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
wall times. Budgets: `smoke` (plumbing only, seconds), `tiny` (every question's plumbing at toy size, MNIST
in Q5 only; 52 commands, about 8 CPU-minutes: under 10 min on 2 cores), `small` (about 2 h on 2 cores with
--jobs 2). The pieces: evidence_tasks.py (running the commands, resume), evidence_questions.py (which runs
answer each question), evidence_report.py (tables and pictures); subprocesses through runner.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # scoremix is imported lazily below (configs, pictures), from this checkout

from evidence_questions import QUESTIONS  # noqa: E402
from evidence_report import report_question, summarise  # noqa: E402
from evidence_tasks import Runner, Task, diverged, run_tasks  # noqa: E402
from runner import command_line, machine, write_text  # noqa: E402

__all__ = ["BUDGETS", "Runner", "Task", "diverged", "main", "run_tasks", "summarise"]

BUDGETS = {
    # toy_steps / mnist_steps: training iterations of one toy / MNIST run; teacher_*: diffusion teachers
    # mnist_warmup: (generator, critic) warm-up iterations of every MNIST SMT run (evidence_questions._mnist_smt)
    # heun_steps: the Heun step counts at which Q5 scores the MNIST teacher
    "smoke": dict(
        toy_steps=20,
        mnist_steps=4,
        mnist_warmup=(1, 1),
        toy_teacher_steps=20,
        mnist_teacher_steps=4,
        seeds=[0],
        stability_seeds=[0],
        eval_samples=200,
        digit_samples=100,
        mnist_questions=True,
        heun_steps=[1, 2, 4, 8, 18, 35],
    ),
    # tiny: a smoke run of every question at toy size, not evidence. One core's CPU seconds per command
    # (OMP_NUM_THREADS=1; measured for some, scaled by iterations for the rest): a toy run 6-11, the MNIST
    # teacher 38 (150 steps, then 250 samples at 35 evaluations, raw and EMA), an MNIST student 11-18, digit
    # scores 7-27, FD / KD / PR 9-18, features 16: 31 toy + 21 MNIST commands, about 210 + 270 s.
    "tiny": dict(
        toy_steps=300,
        mnist_steps=40,
        mnist_warmup=(10, 10),
        toy_teacher_steps=600,
        mnist_teacher_steps=150,
        seeds=[0],
        stability_seeds=[0],
        eval_samples=250,
        digit_samples=250,
        mnist_questions=False,
        heun_steps=[1, 4, 18],
    ),
    "small": dict(
        toy_steps=3000,
        mnist_steps=1200,
        mnist_warmup=(300, 100),
        toy_teacher_steps=4000,
        mnist_teacher_steps=2000,
        seeds=[0, 1, 2],
        stability_seeds=[0, 1, 2],
        eval_samples=5000,
        digit_samples=2000,
        mnist_questions=True,
        heun_steps=[1, 2, 4, 8, 18, 35],
    ),
}


def _versions() -> dict:
    m = machine()
    return {
        "python": m["python"],
        "torch": m["torch"],
        "numpy": np.__version__,
        "machine": f"{platform.machine()}, {m['cpu_count']} CPUs",
        "platform": m["platform"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="tiny")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "evidence"))
    parser.add_argument("--questions", default="1,2,3,4,5", help="comma list of question numbers")
    parser.add_argument("--plan", action="store_true", help="print the commands without running them")
    parser.add_argument(
        "--report-only", action="store_true", help="write the tables and plots from the runs that finished; run nothing"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="commands run at a time (2 on 2 cores: toy runs "
        "use one core well, so two at once nearly halve the suite's time)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per command (default: cores / jobs when --jobs > 1)"
    )
    args = parser.parse_args(argv)
    budget = BUDGETS[args.budget]
    questions = [int(x) for x in args.questions.split(",")]
    os.makedirs(args.out, exist_ok=True)
    command = command_line(__file__, [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])])
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
    summary = [
        f"# Evidence ({args.budget} budget)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {_versions()['machine']}, torch {_versions()['torch']}; {args.jobs} command(s) at a time, "
        f"{threads or 'default'} torch thread(s) each. Wall times of runs that shared the machine are "
        "comparable with each other, not with a run alone.",
        "",
        "Values: mean over seeds (min–max). Runs whose configuration equals an earlier run's are that run "
        "(`same_run_as` in the JSON).",
        "",
    ]
    for q in questions:
        title, fn = QUESTIONS[q]
        result = fn(runner)
        result.update(
            {
                "question": q,
                "title": title,
                "budget": args.budget,
                "budget_settings": budget,
                "command": command,
                "jobs": args.jobs,
                "threads": threads,
                "versions": _versions(),
                "suite_wall_s": round(time.time() - start, 1),
            }
        )
        summary += report_question(q, result, args.out, budget)
    summary += [f"Suite wall time: {time.time() - start:.0f} s.", ""]
    write_text(os.path.join(args.out, "summary.md"), "\n".join(summary) + "\n")
    print(f"evidence: {len(done)} commands in {time.time() - start:.0f} s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
