"""train.progress: a bar on a terminal, plain lines in a log file (no carriage returns)."""

import io

import pytest

from scoremix.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_writes_plain_lines_when_not_a_terminal(monkeypatch):
    clock = iter(range(0, 1000, 10))  # 10 s per call of time.time
    monkeypatch.setattr("scoremix.progress.time.time", lambda: float(next(clock)))
    out = io.StringIO()
    p = Progress("auto", total=6, desc="run", every=25, stream=out)
    for _ in range(6):
        p.update(1)
        p.set_postfix({"loss": "0.5"})
    p.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # time 0 at start, then 10, 20, ... at updates: a line at 30 s (step 3), 60 s (step 6, also the last step)
    assert lines == [
        "run step 3/6 (50.0%) 0.10 it/s eta 0m30s loss=0.5",
        "run step 6/6 (100.0%) 0.10 it/s eta 0m00s loss=0.5",
    ]


def test_auto_draws_a_bar_on_a_terminal():
    out = FakeTerminal()
    p = Progress("auto", total=3, desc="run", stream=out)
    for _ in range(3):
        p.update(1)
    p.close()
    assert p.mode == "bar" and "\r" in out.getvalue() and "3/3" in out.getvalue()


@pytest.mark.parametrize("mode", ["off", "lines"])
def test_off_and_other_ranks_write_nothing(mode):
    out = FakeTerminal()
    p = Progress(mode, total=3, stream=out, enabled=mode == "lines", every=1e9)
    p.update(1)
    p.close()
    assert out.getvalue() == ""


def test_training_log_has_no_carriage_returns(tiny_cfg, tmp_path, capsys):
    from scoremix.trainer import Trainer

    cfg = tiny_cfg(steps=4, progress="lines", **{"train.progress_every": 1e-6, "eval.samples": 20})
    Trainer(cfg, str(tmp_path / "r")).fit()
    out = capsys.readouterr().out
    assert "\r" not in out
    assert [ln.split(" (")[0] for ln in out.splitlines() if " step " in ln] == [
        f"ring8 step {k}/4" for k in range(1, 5)
    ]
