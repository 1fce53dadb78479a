"""`scoremix sample`, `eval` and `export` with their output redirected to a log file write plain progress
lines, as `train` does, and never a carriage return (tqdm's bars would fill a log with them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from scoremix.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_DIGITS = [
    "generator.channels=8",
    "score.channels=8",
    "generator.channel_mult=[1,2]",
    "score.channel_mult=[1,2]",
    "batch_size=8",
    "progress=false",
    "sample_every=0",
    "log_every=1",
    "method.warmup_steps=1",
    "optim.lr_warmup=0",
    "eval.samples=20",
    "steps=2",
    "ckpt_every=0",
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    run = str(root / "run")
    assert main(["train", "--config", "digits-smt", "--out", run, *TINY_DIGITS]) == 0
    feat = str(root / "feat.safetensors")
    assert main(["features", "train", "--data", "digits", "--out", feat, "--epochs", "1"]) == 0
    return root, run, feat


def _logged(argv: list[str], log) -> str:
    """Run `python -m scoremix ARGV` with stdout and stderr both going to the file `log`; its text."""
    with open(log, "w") as fh:
        subprocess.run(
            [sys.executable, "-m", "scoremix", *argv],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=True,
            env={**os.environ, "PYTHONPATH": REPO},
        )
    with open(log, newline="") as fh:
        return fh.read()


def test_sample_eval_and_export_write_plain_lines_into_a_log(digits, tmp_path):
    root, run, feat = digits
    text = _logged(
        ["sample", "--checkpoint", run, "--n", "30", "--batch", "10", "--out", str(tmp_path / "s.npz")],
        tmp_path / "sample.log",
    )
    assert "\r" not in text
    assert re.search(r"^sample \(ema weights\) images 30/30 \(100\.0%\) [\d.]+ images/s", text, re.M), text

    ref = str(tmp_path / "ref.npz")
    text = _logged(
        ["eval", "stats", "--data", "digits", "--detector", feat, "--out", ref, "--limit", "200", "--features"],
        tmp_path / "stats.log",
    )
    assert "\r" not in text and re.search(r"^reference images 200/200 \(100\.0%\)", text, re.M), text

    text = _logged(
        [
            "eval",
            "--checkpoint",
            run,
            "--metrics",
            "fid,kid",
            "--n",
            "40",
            "--batch",
            "20",
            "--ref",
            ref,
            "--detector",
            feat,
            "--json",
            str(tmp_path / "m.json"),
        ],
        tmp_path / "eval.log",
    )
    assert "\r" not in text
    for which in ("raw", "ema"):
        assert re.search(rf"^{which} step 2 images 40/40 \(100\.0%\)", text, re.M), text

    text = _logged(["export", run, "--format", "folder", "--out", str(tmp_path / "exported")], tmp_path / "export.log")
    assert "\r" not in text
    assert text.splitlines()[:3] == [
        f"export: loading {run}",
        "export: writing config.json and model.safetensors (ema weights, step 2)",
        "export: checking that the folder loads and samples as the run does",
    ]
    assert text.splitlines()[-1].startswith("folder: generator (ema weights, step 2) -> ")


def test_no_progress_writes_no_progress_lines(digits, tmp_path):
    _, run, _ = digits
    text = _logged(
        ["sample", "--checkpoint", run, "--n", "12", "--out", str(tmp_path / "s.npz"), "--no-progress"],
        tmp_path / "quiet.log",
    )
    assert text.splitlines() == [f"12 samples (ema weights, step 2, per-sample seeds, base 0) -> {tmp_path / 's.npz'}"]
