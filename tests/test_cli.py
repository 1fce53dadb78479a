"""The command line: train, sample, eval, presets, and its error handling."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from scoremix.cli import main
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli") / "run")
    code = main(["train", "--config", "ring8", "--out", out, *tiny_overrides(steps=20, ckpt_every=10, sample_every=10)])
    assert code == 0
    return out


def test_train_writes_the_run_folder(trained_run):
    files = set(os.listdir(trained_run))
    assert {"config.yaml", "stats.jsonl", "metrics.json", "generator.safetensors", "checkpoints", "samples"} <= files
    metrics = json.load(open(os.path.join(trained_run, "metrics.json")))
    assert {"raw", "ema"} <= set(metrics) and metrics["step"] == 20
    for variant in ("raw", "ema"):
        assert {
            "precision",
            "modes_covered",
            "mode_kl",
            "energy_distance",
            "energy_floor",
            "knn_precision",
            "knn_recall",
        } <= set(metrics[variant])
    lines = [json.loads(row) for row in open(os.path.join(trained_run, "stats.jsonl"))]
    assert [row["step"] for row in lines] == [5, 10, 15, 20]
    assert os.path.isfile(os.path.join(trained_run, "samples", "final.png"))
    assert os.path.isfile(os.path.join(trained_run, "samples", "step-0000010.png"))


def test_resume_latest_continues_the_step_count(trained_run, capsys):
    code = main(["train", "--out", trained_run, "--resume", "latest", "steps=30", "progress=false"])
    assert code == 0
    assert "resumed from" in capsys.readouterr().out
    lines = [json.loads(row) for row in open(os.path.join(trained_run, "stats.jsonl"))]
    assert [row["step"] for row in lines] == [5, 10, 15, 20, 25, 30]


def test_sample_png_and_npz(trained_run, tmp_path):
    png, npz = str(tmp_path / "s.png"), str(tmp_path / "s.npz")
    assert main(["sample", "--checkpoint", trained_run, "--n", "50", "--out", png]) == 0
    assert Image.open(png).size[0] > 100
    assert main(["sample", "--checkpoint", trained_run, "--n", "50", "--out", npz, "--raw", "--seed", "3"]) == 0
    x = np.load(npz)["x"]
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                trained_run,
                "--n",
                "50",
                "--out",
                str(tmp_path / "t.npz"),
                "--raw",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert np.array_equal(np.load(str(tmp_path / "t.npz"))["x"], x)  # seeded


def test_eval_writes_json(trained_run, tmp_path):
    out = str(tmp_path / "m.json")
    assert main(["eval", "--checkpoint", trained_run, "--json", out, "--samples", "300"]) == 0
    metrics = json.load(open(out))
    assert metrics["samples"] == 300 and {"raw", "ema"} <= set(metrics)


def test_presets_and_dry_run(capsys):
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    assert "quickstart" in listed and "ring8" in listed
    assert main(["train", "--dry-run", "steps=77"]) == 0
    out = capsys.readouterr().out
    assert "steps: 77" in out and "# parameters: generator" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "stepz=3"], "did you mean 'steps'"),
        (["train", "--config", "nope"], "unknown preset"),
        (["sample", "--checkpoint", "/nonexistent/run", "--out", "x.png"], "does not exist"),
        (["sample", "--checkpoint", "/tmp", "--out", "x.jpg"], "must end in .png"),
        (["train", "--resume", "latest"], "needs --out"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "scoremix", "presets"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "quickstart" in done.stdout
