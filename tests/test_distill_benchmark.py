"""benchmarks/distill.py (issues 19 and 23): --students checks and the picture's common scale."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import distill  # noqa: E402


def test_picture_rows_share_one_scale_and_panels_one_width(tmp_path):
    ring = tmp_path / "ring8.png"
    Image.new("RGB", (808, 400), "white").save(ring)
    rows = [distill.row_picture(torch.rand(20, 1, 28, 28) * 2 - 1) for _ in range(3)]
    assert rows[0].size == ((16 * 29 + 1) * distill.PICTURE_SCALE, 30 * distill.PICTURE_SCALE)
    out = tmp_path / "distill.png"
    distill.write_picture(
        [("ring8", str(ring)), ("missing", str(tmp_path / "none.png"))] + [(f"row {i}", r) for i, r in enumerate(rows)],
        str(out),
    )
    picture = Image.open(out).convert("RGB")
    width = rows[0].width
    ring_height = round(400 * width / 808) + 16
    assert picture.size == (width, ring_height + 3 * (rows[0].height + 16))
    for i, row in enumerate(rows):  # each row pasted as it is, below its title line
        top = ring_height + i * (row.height + 16) + 16
        assert picture.crop((0, top, width, top + row.height)).tobytes() == row.convert("RGB").tobytes()


def test_students_needs_two_runs():
    with pytest.raises(SystemExit, match="two run folders"):
        distill.check_students("teacher", "only-one")


def test_students_needs_teacher():
    proc = subprocess.run(
        [sys.executable, "benchmarks/distill.py", "--skip-ring8", "--students", "a,b"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2 and "--students needs --teacher" in proc.stderr
