"""benchmarks/gpu_check.py --smoke runs its MFU part end to end on the CPU (slow: about a minute)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_check_smoke_reports_mfu_for_training_and_sampling(tmp_path):
    out = tmp_path / "smoke.json"
    subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
        capture_output=True,
    )
    report = json.loads(out.read_text())
    assert report["bf16_matmul_peak"]["tflops"] > 0
    kinds = [(r["preset"], r["what"]) for r in report["runs"]]
    assert kinds == [
        ("cifar10-smt", "training cycle"),
        ("imagenet64-smt", "training cycle"),
        ("mnist-smt", "iterations per second"),
        ("cifar10-smt", "one-step sampling"),
        ("imagenet64-smt", "one-step sampling"),
    ]
    assert report["runs"][1]["accumulation_steps"] == 2 and report["runs"][2]["iterations_per_second"] > 0
    for run in [r for r in report["runs"] if "mfu" in r or "error" in r]:
        assert run["achieved_tflops"] > 0 and 0 < run["mfu"] < 1.5
