"""Modules stay small enough to read (issue 23): none in scoremix/ or benchmarks/ over 450 lines, and the
trainer's loop at most 400."""

import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 450
TRAINER_LIMIT = 400


def _lines(path: str) -> int:
    with open(path) as fh:
        return sum(1 for _ in fh)


def test_no_module_over_the_limit():
    paths = glob.glob(os.path.join(REPO, "scoremix", "**", "*.py"), recursive=True)
    paths += glob.glob(os.path.join(REPO, "benchmarks", "*.py"))
    assert len(paths) > 40
    too_long = {os.path.relpath(p, REPO): n for p in paths if (n := _lines(p)) > LIMIT}
    assert not too_long, f"modules over {LIMIT} lines (split them by purpose): {too_long}"


def test_trainer_stays_a_loop():
    assert _lines(os.path.join(REPO, "scoremix", "trainer.py")) <= TRAINER_LIMIT
