"""benchmarks/evidence.py: the smoke budget runs the plumbing of the coverage and stability questions end to
end (a few iterations per run) and writes results that hold the commands and a divergence flag."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import evidence  # noqa: E402


def test_divergence_flags():
    ok = {
        "returncode": 0,
        "curves": {"grad_norm_critic": [1.0, 1.1, 0.9, 1.0, 1.2]},
        "metrics": {"ema": {"num_modes": 8, "modes_covered": 8}},
    }
    assert evidence.diverged(ok) == (False, "")
    spike = dict(ok, curves={"grad_norm_critic": [1.0, 1.1, 0.9, 1.0, 50.0]})
    assert evidence.diverged(spike)[0] and "spiked" in evidence.diverged(spike)[1]
    collapsed = dict(ok, metrics={"ema": {"num_modes": 8, "modes_covered": 1}})
    assert evidence.diverged(collapsed) == (True, "collapsed to one mode")
    assert evidence.diverged(dict(ok, returncode=2))[0]
    assert evidence.diverged(dict(ok, curves={"skipped_total": [0, 3]}))[0]


def test_summary_spread_over_seeds():
    recs = [{"metrics": {"ema": {"precision": p}}, "wall_s": 1.0, "diverged": False} for p in (0.8, 0.9, 1.0)]
    s = evidence.summarise(recs)
    assert s["precision"] == {"mean": np.mean([0.8, 0.9, 1.0]), "min": 0.8, "max": 1.0}


def test_smoke_budget_runs_the_plumbing(tmp_path):
    out = tmp_path / "ev"
    rc = subprocess.call(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "evidence.py"),
            "--budget",
            "smoke",
            "--questions",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
    )
    assert rc == 0
    result = json.loads((out / "q2-coverage.json").read_text())
    unbalanced = result["runs"]["unbalanced/full-alpha"][0]
    assert unbalanced["returncode"] == 0 and "data.source=points" in unbalanced["command"]
    assert unbalanced["metrics"]["ema"]["num_modes"] == 3  # the mixture named in the user's .npz
    assert "versions" in result and result["budget"] == "smoke"
    assert "| unbalanced/alpha-1-only |" in (out / "summary.md").read_text()
    # a second call finds every command done (resume) and runs none
    again = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "evidence.py"),
            "--budget",
            "smoke",
            "--questions",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "evidence: 0 commands" in again.stdout


def test_run_tasks_waits_for_the_outputs_a_command_reads(tmp_path):
    produced = tmp_path / "teacher.txt"
    write = [sys.executable, "-c", f"import time; time.sleep(0.5); open({str(produced)!r}, 'w').write('ok')"]
    # reads the teacher's output: fails (exit 1) when started before the writer finished
    read = [
        sys.executable,
        "-c",
        "import os, sys; sys.exit(0 if os.path.isfile(sys.argv[1].split('=', 1)[1]) else 1)",
        f"method.teacher={produced}",
    ]
    tasks = [
        evidence.Task(write, "write", str(tmp_path / "w.log"), str(produced), cost=1.0),
        evidence.Task(read, "read", str(tmp_path / "r.log"), str(tmp_path / "none"), cost=100.0),
    ]
    done = evidence.run_tasks(tasks, jobs=2, threads=1, log=lambda *a, **k: None)
    assert done["write"][0] == 0 and done["read"][0] == 0
    assert json.loads((tmp_path / "r.log.done").read_text())["returncode"] == 0  # the resume marker
