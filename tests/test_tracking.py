"""Experiment tracking (scoremix.tracking): log.wandb=true sends the scalars TensorBoard gets, the sample
pictures and the resolved config to W&B; off by default. Checked against a recording stand-in for the
`wandb` module (always) and against W&B's own offline run files (when wandb is installed)."""

from __future__ import annotations

import glob
import json
import os
import struct
import sys
import types

import pytest

from scoremix.cli import main
from scoremix.config import Config
from scoremix.trainer import Trainer
from tests.conftest import tiny_overrides

TRACKED = {"steps": 6, "log_every": 2, "sample_every": 3, "eval.samples": 50}


def _stats(run_dir: str) -> dict[int, dict]:
    """stats.jsonl by step: the numbers the trainer logged."""
    out = {}
    with open(os.path.join(run_dir, "stats.jsonl")) as fh:
        for line in fh:
            row = json.loads(line)
            out.setdefault(row["step"], {}).update({k: v for k, v in row.items() if k != "step"})
    return out


class FakeRun:
    def __init__(self, kwargs):
        self.kwargs, self.logged, self.finished, self.id = kwargs, [], 0, "fake1234"

    def log(self, values, step=None):
        self.logged.append((step, dict(values)))

    def finish(self):
        self.finished += 1


def fake_wandb(monkeypatch, fail: Exception | None = None):
    """A stand-in `wandb` module that records init, log and finish."""
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        if fail is not None:
            raise fail
        module.runs.append(FakeRun(kwargs))
        return module.runs[-1]

    class Image:
        def __init__(self, path, caption=None):
            self.path, self.caption = path, caption

    module.init, module.Image = init, Image
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


class FakeSummaryWriter:
    def __init__(self):
        self.scalars, self.closed = [], False

    def add_scalar(self, key, value, step):
        self.scalars.append((key, value, step))

    def close(self):
        self.closed = True


def _train(tiny_cfg, run_dir, **extra):
    cfg = tiny_cfg(**{**TRACKED, **extra})
    Trainer(cfg, run_dir).fit()
    return cfg


def test_wandb_gets_the_tensorboard_scalars_pictures_and_config(tiny_cfg, tmp_path, monkeypatch):
    wandb = fake_wandb(monkeypatch)
    board = FakeSummaryWriter()
    monkeypatch.setattr("scoremix.tracking._open_tensorboard", lambda run_dir: board)
    run_dir = str(tmp_path / "run")
    cfg = _train(
        tiny_cfg,
        run_dir,
        wandb=True,
        **{
            "log.wandb_project": "proj",
            "log.wandb_name": "trial-1",
            "log.wandb_mode": "offline",
            "train.tensorboard": True,
        },
    )
    (run,) = wandb.runs
    assert run.kwargs["project"] == "proj" and run.kwargs["name"] == "trial-1" and run.kwargs["mode"] == "offline"
    assert run.kwargs["dir"] == run_dir and run.kwargs["config"] == cfg.to_dict()
    assert run.kwargs["config"]["train"]["steps"] == 6 and run.kwargs["config"]["log"]["wandb"] is True
    scalars = {}
    for step, values in run.logged:
        if "samples" not in values:
            scalars.setdefault(step, {}).update(values)
    stats = _stats(run_dir)
    assert sorted(stats) == [2, 4, 6]
    for step, row in stats.items():
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert {k: scalars[step][k] for k in numbers} == pytest.approx(numbers, rel=1e-12)
        assert "loss_gen" in numbers or "loss_disc" in numbers
    # the same scalars went to TensorBoard, and the final metrics to both
    board_values = {(k, s): v for k, v, s in board.scalars}
    assert all(board_values[(k, s)] == v for s, row in scalars.items() for k, v in row.items())
    assert len(board_values) == sum(len(row) for row in scalars.values())
    final = json.load(open(f"{run_dir}/metrics.json"))
    assert scalars[6]["final/ema/energy_distance"] == final["ema"]["energy_distance"]
    pictures = [(step, values["samples"]) for step, values in run.logged if "samples" in values]
    assert [(s, im.caption) for s, im in pictures] == [(0, "init"), (3, "step-0000003"), (6, "final")]
    assert all(os.path.isfile(im.path) and im.path.startswith(run_dir) for _, im in pictures)
    assert run.finished == 1 and board.closed
    assert open(os.path.join(run_dir, "wandb-run-id.txt")).read().strip() == "fake1234"


def test_a_resumed_run_continues_its_wandb_run(tiny_cfg, tmp_path, monkeypatch):
    wandb = fake_wandb(monkeypatch)
    run_dir = str(tmp_path / "run")
    _train(tiny_cfg, run_dir, wandb=True, ckpt_every=3)
    cfg = tiny_cfg(**{**TRACKED, "steps": 8, "wandb": True})
    Trainer(cfg, run_dir, resume="latest").fit()
    first, second = wandb.runs
    assert "id" not in first.kwargs and second.kwargs["id"] == "fake1234" and second.kwargs["resume"] == "allow"
    assert min(step for step, _ in second.logged) > 6


def test_wandb_is_off_by_default(tiny_cfg, tmp_path, monkeypatch):
    assert Config().log.wandb is False
    wandb = fake_wandb(monkeypatch)
    _train(tiny_cfg, str(tmp_path / "run"))
    assert wandb.runs == [] and not os.path.exists(tmp_path / "run" / "wandb-run-id.txt")


def test_wandb_problems_are_one_line_before_training(tmp_path, monkeypatch, capsys):
    argv = ["train", "--config", "ring8", "--out", str(tmp_path / "run"), *tiny_overrides(**TRACKED), "wandb=true"]
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'scoremix[wandb]'" in err[0]
    fake_wandb(monkeypatch, fail=RuntimeError("api_key not configured (no-tty)\ncall wandb.login"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not start a run (api_key not configured (no-tty))" in err[0]
    assert "log.wandb_mode=offline" in err[0]
    assert not os.path.exists(tmp_path / "run" / "stats.jsonl")  # nothing trained
    assert main(["train", "--config", "ring8", "--dry-run", "log.wandb_mode=cloud"]) == 2
    assert "log.wandb_mode='cloud' is unknown" in capsys.readouterr().err


# -- the real W&B, offline -----------------------------------------------------------------------------
def read_offline_run(path: str) -> list:
    """The records of a W&B offline run file (run-ID.wandb): a 7-byte header (':W&B', magic, version), then
    LevelDB-style log blocks of 32 KiB holding chunks (crc32c, length, type: 1 full, 2 first, 3 middle,
    4 last), each record one wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as fh:
        data = fh.read()
    assert data[:4] == b":W&B"
    block, pos, chunks, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
            pending = b""
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def test_real_wandb_offline_run_holds_the_scalars_pictures_and_config(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")  # no network: log.wandb_mode is left to the environment
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = str(tmp_path / "run")
    _train(tiny_cfg, run_dir, wandb=True, **{"log.wandb_project": "scoremix-tests", "log.wandb_name": "offline-1"})
    import wandb

    wandb.teardown()  # run.finish() returns before W&B's service has written everything; the process exit waits
    (path,) = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
    records = read_offline_run(path)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "run" in kinds and kinds[-1] == "exit", (os.path.getsize(path), kinds)
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs[0].project == "scoremix-tests" and runs[0].display_name == "offline-1"
    config = {item.key: json.loads(item.value_json) for item in runs[0].config.update}
    assert config["train"]["steps"] == 6 and config["log"]["wandb"] is True and config["data"]["source"] == "ring8"
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.setdefault(row["_step"], {}).update(row)
    for step, row in _stats(run_dir).items():
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert history[step][key] == pytest.approx(value, rel=1e-6), (step, key)
    assert [history[s]["samples/caption"] for s in (0, 3, 6)] == ["init", "step-0000003", "final"]
    assert all(
        os.path.isfile(os.path.join(os.path.dirname(path), "files", history[s]["samples/path"])) for s in (0, 3, 6)
    )
