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
    ok = {"returncode": 0, "curves": {"grad_norm_critic": [1.0, 1.1, 0.9, 1.0, 1.2]},
          "metrics": {"ema": {"num_modes": 8, "modes_covered": 8}}}
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
    rc = subprocess.call([sys.executable, os.path.join(ROOT, "benchmarks", "evidence.py"), "--budget", "smoke",
                          "--questions", "2", "--out", str(out)], cwd=ROOT)
    assert rc == 0
    result = json.loads((out / "q2-coverage.json").read_text())
    unbalanced = result["runs"]["unbalanced/full-alpha"][0]
    assert unbalanced["returncode"] == 0 and "data.source=points" in unbalanced["command"]
    assert unbalanced["metrics"]["ema"]["num_modes"] == 3  # the mixture named in the user's .npz
    assert "versions" in result and result["budget"] == "smoke"
    assert "| unbalanced/alpha-1-only |" in (out / "summary.md").read_text()
