"""benchmarks/quality.py: every stage of every budget is a valid config, and the tiny ladder runs end to end
and writes the report the quality issue asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import quality  # noqa: E402

from scoremix.config_loader import load_config  # noqa: E402
from scoremix.export import onnx_missing  # noqa: E402


@pytest.mark.parametrize("budget", sorted(quality.BUDGETS))
def test_every_stage_of_every_budget_is_a_valid_config(budget, tmp_path):
    for stage, (method, preset, _, seed) in quality.STAGES.items():
        overrides = quality.stage_overrides(stage, quality.BUDGETS[budget], str(tmp_path))
        cfg = load_config(preset, [o for o in overrides if not o.startswith("train.device=cuda")])
        assert cfg.data.holdout == quality.HELD_OUT and cfg.data.resolution == 28
        assert cfg.train.seed == seed
        if method in ("smd", "dmd"):
            assert cfg.method.teacher == os.path.join(str(tmp_path), "teacher")
    for probe, (stage, factor) in quality.PROBES.items():  # same settings as the stage, factor x its iterations
        strip = [
            o for o in quality.stage_overrides(stage, quality.BUDGETS[budget], str(tmp_path)) if "device=cuda" not in o
        ]
        stretched = load_config(quality.STAGES[stage][1], strip)
        overrides = quality.stage_overrides(probe, quality.BUDGETS[budget], str(tmp_path))
        cfg = load_config(quality.STAGES[stage][1], [o for o in overrides if "device=cuda" not in o])
        assert cfg.train.steps == factor * stretched.train.steps
        if budget == "cpu":
            assert cfg.train.steps == {"teacher": 16000, "smt": 9000}[stage]
        cfg.train.steps = stretched.train.steps
        assert cfg == stretched


def test_students_train_as_long_as_each_other():
    """SMD and DMD rows compare at equal iterations in every budget."""
    for budget in quality.BUDGETS.values():
        smd = load_config("mnist-smd-base", budget["overrides"].get("student", []))
        dmd = load_config("mnist-dmd-base", budget["overrides"].get("student", []))
        assert smd.train.steps == dmd.train.steps and smd.data.batch_size == dmd.data.batch_size


def test_tiny_ladder_writes_rows_picture_and_report(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    cmd = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "quality.py"),
        "--budget",
        "tiny",
        "--runs",
        str(runs),
        "--results",
        str(results),
        "--ship",
        str(tmp_path / "weights"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((results / "quality.json").read_text())
    assert result["complete"] and [r["stage"] for r in result["rows"]] == list(quality.STAGES)
    keys = {"method", "nfe", "digit_score", "confident", "fd_local", "train_cpu_minutes", "samples", "seed", "weights"}
    for row in result["rows"]:
        assert keys <= set(row)
        assert row["nfe"] == (35 if row["method"] == "teacher" else 1)  # 18 Heun steps for the teacher
        assert 1.0 <= row["digit_score"] <= 10.0 and 0.0 <= row["confident"] <= 1.0
        assert row["fd_local"] > 0 and row["train_cpu_minutes"] > 0 and row["samples"] == 64
    shipped = {r["stage"]: r["weights"] for r in result["rows"] if r["weights"]}
    assert set(shipped) >= {"teacher", "smt"} and any(s.startswith("smd-") for s in shipped)
    floor = result["floor"]
    assert floor["fd_local"] < min(r["fd_local"] for r in result["rows"])  # real digits beat untrained networks
    assert (results / "quality.png").stat().st_size > 1000 and "| teacher | 35 |" in (
        results / "quality.md"
    ).read_text()
    assert "| DMD - SMD digit score |" in (results / "quality.md").read_text()  # both students have two seeds
    assert result["probes"] == []  # a probe trains only when named
    # a second call skips the finished teacher, reuses its score, and trains the probe that doubles its iterations
    again = subprocess.run(
        cmd + ["--only", "teacher,teacher-2x", "--no-curves"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "[teacher]" not in again.stdout and "[teacher-2x]" in again.stdout
    second = json.loads((results / "quality.json").read_text())
    assert [r["stage"] for r in second["rows"]] == list(quality.STAGES)
    assert second["rows"][0]["digit_score"] == result["rows"][0]["digit_score"]
    (probe,) = second["probes"]
    assert probe["stretches"] == "teacher" and probe["iterations"] == 2 * result["rows"][0]["iterations"]
    assert probe["nfe"] == 35 and probe["train_cpu_minutes"] > 0
    assert f"| teacher-2x | teacher-2x | {probe['iterations']} |" in (results / "quality.md").read_text()
    assert second["curves"] == result["curves"]  # --no-curves keeps the curves the last report drew
    if not onnx_missing():  # benchmarks/inference.py on the same runs: every path timed, scored and compared
        out = tmp_path / "inference.json"
        bench = [sys.executable, os.path.join(ROOT, "benchmarks", "inference.py"), "--student", str(runs / "smd-s0")]
        bench += ["--teacher", str(runs / "teacher"), "--steps", "2", "--samples", "8", "--batch", "4"]
        bench += ["--repeats", "1", "--classifier", str(runs / "digit-classifier.pt"), "--out", str(out)]
        done = subprocess.run(bench, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        bench_result = json.loads(out.read_text())
        assert set(bench_result["one_step_vs_teacher_speedup"]) == {"pytorch fp32", "pytorch bf16", "onnxruntime"}
        diff = bench_result["onnx_max_abs_diff"]  # the teacher's: through 3 Heun evaluations of an untrained net
        assert diff["one-step"] < 1e-4 and diff["teacher"] < 1e-2 and bench_result["samples_scored"] == 8
        for row in bench_result["rows"]:
            assert len(row["batch_s"]) == 1 and row["network_evaluations"] == (3 if row["model"] == "teacher" else 1)


def test_gpu_budget_smoke_on_cpu(tmp_path):
    """--budget gpu with tiny sizes on the CPU: the gpu stage settings parse, train and score."""
    cmd = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "quality.py"),
        "--budget",
        "gpu",
        "--smoke",
        "--runs",
        str(tmp_path),
        "--only",
        "teacher,smd-s0",
        "--no-curves",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads((tmp_path / "results" / "quality.json").read_text())["rows"]
    assert [r["stage"] for r in rows] == ["teacher", "smd-s0"] and rows[1]["iterations"] == 6
