"""Robustness: training survives kills, corruption, bad input and NaNs, and loading never runs foreign code.

Real processes are killed where a real process must die (SIGKILL, SIGTERM); everything else runs in this
process on tiny ring8 configs. The shared machinery lives in tests/robustness_helpers.py, which
benchmarks/robustness.py reuses.
"""

import copy
import errno
import json
import os
import pickle
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest

from scoremix import checkpoint as ckpt, sampling
from scoremix.cli import main
from scoremix.data.images import load_image_dataset
from scoremix.errors import CheckpointError, DataError, ScoremixError, TrainingError
from scoremix.methods.smt import SMT
from scoremix.trainer import Trainer
from tests.conftest import tiny_overrides
from tests.robustness_helpers import (
    BAD_INPUTS,
    REPO,
    CodeRunner,
    Workspace,
    check_bad_input,
    corruption_experiment,
    evil_pickle,
    evil_torch_file,
    evil_training_state,
    kill_resume_experiment,
    run_cli,
    sigterm_experiment,
    start_reference,
    state_differences,
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted subprocess run; it trains while the kill/resume chain is set up."""
    proc = start_reference(str(tmp_path_factory.mktemp("reference")))
    yield proc
    if proc.proc.poll() is None:
        proc.proc.kill()
        proc.proc.wait()


# -- kills and signals ----------------------------------------------------------------------------------
def test_sigkill_at_random_steps_resumes_bitwise_equal(reference, tmp_path):
    result = kill_resume_experiment(str(tmp_path), reference, kills=5, seed=0)
    lost = result["steps_lost_per_resume"]
    print(f"\nsteps lost per resume: {lost}; kills: {result['kills']}")
    assert result["kills_survived"] == 5
    assert all(0 <= n <= 1 for n in lost), result["kills"]  # a checkpoint every step: at most the one in flight
    assert result["final_resumed_from"] == result["kills"][-1]["resumed_from"]
    assert result["final_step"] == 40
    assert result["bitwise_equal"], result["differences"]


def test_sigterm_saves_at_the_step_boundary_and_resumes_bitwise(reference, tmp_path):
    result = sigterm_experiment(str(tmp_path), reference, at_step=8)
    assert result["exit_code"] == 0
    assert result["resume_hint"] and "--resume latest" in result["resume_hint"], result["stdout_tail"]
    assert result["steps_lost"] == 0 and result["checkpoint_loads"]
    assert 8 <= result["checkpoint_step"] < 40
    assert result["resumed_from"] == result["checkpoint_step"]
    assert result["bitwise_equal"], result["differences"]


def test_second_signal_exits_at_once(tiny_cfg, tmp_path, monkeypatch):
    original = SMT.loss

    def loss(self, phase, batch, step):
        if step == 3 and phase == "critic":
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
        return original(self, phase, batch, step)

    monkeypatch.setattr(SMT, "loss", loss)
    before = signal.getsignal(signal.SIGTERM)
    trainer = Trainer(tiny_cfg(steps=20, ckpt_every=1), str(tmp_path / "run"))
    with pytest.raises(SystemExit) as exc:
        trainer.fit()
    assert exc.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    folder = str(tmp_path / "run" / "checkpoints")
    assert ckpt.load_training_state(ckpt.list_checkpoints(folder)[-1])["step"] == 3
    assert not [f for f in os.listdir(folder) if f.startswith(".tmp-")]


# -- damaged checkpoints --------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["truncate", "flip", "tail"])
def test_damaged_newest_checkpoint_falls_back_with_a_warning(how, tmp_path):
    result = corruption_experiment(str(tmp_path), how)
    assert result["exit_code"] == 0
    assert result["warning"].startswith("warning: skipping corrupt checkpoint")
    assert result["warning_names_file"], result["warning"]
    assert result["resumed_from_previous"], result
    assert result["finished_step"] == 8


def test_resume_drops_a_cut_stats_line_and_stale_temp_files(tiny_cfg, tmp_path):
    run = str(tmp_path / "run")
    Trainer(tiny_cfg(steps=4, ckpt_every=2, log_every=1), run).fit()
    with open(os.path.join(run, "stats.jsonl"), "a") as fh:
        fh.write('{"step": 5, "loss_sc')  # a kill in the middle of a log line
    stale = os.path.join(run, "checkpoints", ".tmp-x1y2state-0000006.pt")
    open(stale, "wb").write(b"half a checkpoint")
    trainer = Trainer(tiny_cfg(steps=6, ckpt_every=2, log_every=1), run, resume="latest")
    assert trainer.step == 4 and not os.path.exists(stale)
    assert [json.loads(ln)["step"] for ln in open(os.path.join(run, "stats.jsonl"))] == [1, 2, 3, 4]


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    path = str(tmp_path / "f.bin")
    ckpt.atomic_write_bytes(path, b"data")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["f.bin"]


# -- bad input ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(str(tmp_path_factory.mktemp("bad-inputs")))


def test_the_bad_input_table_is_large_enough():
    assert len(BAD_INPUTS) >= 20 and len({c.name for c in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(case, workspace):
    result = check_bad_input(case, workspace)
    assert result["exit_code"] == 2, result
    assert "Traceback" not in result["stderr"]
    assert result["ok"], result


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_debug_raises_instead_of_the_one_line(case, workspace, capsys):
    with pytest.raises(ScoremixError) as exc:
        main(["--debug", *case.argv(workspace)])
    assert case.expect in " ".join(str(exc.value).split())
    assert "error:" not in capsys.readouterr().err


def test_debug_prints_a_traceback_from_the_command_line():
    cmd = [sys.executable, "-m", "scoremix", "train", "--config", "ring8", "stepz=3"]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert plain.returncode == 2 and plain.stderr.strip().splitlines() == [
        "error: unknown config key 'stepz'; did you mean 'steps'?"
    ]
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "ConfigError: unknown config key 'stepz'" in debug.stderr


# -- non-finite losses ----------------------------------------------------------------------------------
def poison(monkeypatch, steps, phases=None):
    """Make SMT's loss NaN at the given (1-based, as logged) steps and phases."""
    original = SMT.loss

    def loss(self, phase, batch, step):
        value, stats = original(self, phase, batch, step)
        if step + 1 in steps and (phases is None or phase in phases):
            value = value * float("nan")
        return value, stats

    monkeypatch.setattr(SMT, "loss", loss)


def snapshot(trainer) -> dict:
    return copy.deepcopy(
        {
            "networks": {k: v.state_dict() for k, v in trainer.method.networks.items()},
            "ema": trainer.ema.module.state_dict(),
            "ema_updates": trainer.ema.updates,
            "optimizers": {k: o.state_dict() for k, o in trainer.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in trainer.schedulers.items()},
        }
    )


def spy_on_steps(trainer) -> dict:
    """step (1-based) -> (state before, state after) of every train_step."""
    seen, original = {}, trainer.train_step

    def train_step(batch):
        before = snapshot(trainer)
        out = original(batch)
        seen[trainer.step + 1] = (before, snapshot(trainer))
        return out

    trainer.train_step = train_step
    return seen


def test_nonfinite_skip_leaves_the_weights_alone_and_counts(tiny_cfg, tmp_path, monkeypatch):
    poison(monkeypatch, {3})
    warnings = []
    trainer = Trainer(tiny_cfg(steps=6, gen_every=2, log_every=1), str(tmp_path / "run"), warn=warnings.append)
    seen = spy_on_steps(trainer)
    trainer.fit()
    assert state_differences(*seen[3]) == []  # networks, EMA, optimisers and schedulers untouched
    for step in (1, 2, 4, 5, 6):
        assert state_differences(*seen[step])
    lines = {r["step"]: r for r in map(json.loads, open(tmp_path / "run" / "stats.jsonl"))}
    assert [lines[s]["skipped_total"] for s in range(1, 7)] == [0, 0, 2, 2, 2, 2]
    assert lines[3]["skipped_generator"] == 1 and lines[3]["skipped_critic"] == 1
    assert len(warnings) == 2 and "non-finite loss in the generator phase at step 3" in warnings[0]
    assert trainer.skipped == 2


def test_too_many_consecutive_skips_stop_the_run(tmp_path, monkeypatch, capsys):
    poison(monkeypatch, set(range(2, 100)))
    run = str(tmp_path / "run")
    code = main(["train", "--config", "ring8", "--out", run, *tiny_overrides(steps=30, ckpt_every=1, max_skips=3)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0] == ("warning: non-finite loss in the critic phase at step 2; step skipped (1 in a row, 1 in total)")
    assert (
        err[-1].startswith(
            "error: 3 consecutive non-finite critic steps (train.max_skips=3); the last good checkpoint is "
        )
        and "state-0000003.pt" in err[-1]
        and "--resume latest" in err[-1]
    )


def test_a_phase_that_keeps_failing_stops_even_when_the_other_trains(tiny_cfg, tmp_path, monkeypatch):
    poison(monkeypatch, set(range(1, 100)), phases={"generator"})
    trainer = Trainer(tiny_cfg(steps=30, gen_every=1, max_skips=4), str(tmp_path / "run"), warn=lambda m: None)
    with pytest.raises(TrainingError, match=r"4 consecutive non-finite generator steps \(train.max_skips=4\)"):
        trainer.fit()


def test_nonfinite_stop_names_the_last_good_checkpoint_and_keeps_it(tiny_cfg, tmp_path, monkeypatch):
    poison(monkeypatch, {5})
    run = str(tmp_path / "run")
    trainer = Trainer(tiny_cfg(steps=10, ckpt_every=2, nonfinite="stop"), run)
    seen = spy_on_steps(trainer)
    with pytest.raises(TrainingError) as exc:
        trainer.fit()
    message = str(exc.value)
    assert "non-finite loss in the" in message and "at step 5 (train.nonfinite=stop)" in message
    assert f"the last good checkpoint is {run}/checkpoints/state-0000004.pt" in message
    assert "--resume latest" in message
    paths = ckpt.list_checkpoints(os.path.join(run, "checkpoints"))
    assert [ckpt.checkpoint_step(p) for p in paths] == [2, 4]
    state = ckpt.load_training_state(paths[-1])
    after_4 = seen[4][1]
    assert state["step"] == 4
    assert state_differences({k: state[k] for k in after_4}, after_4) == []
    raw, _, _, info = ckpt.load_generator(os.path.join(run, "generator.safetensors"))
    assert info["step"] == 4 and state_differences(raw, after_4["networks"]["generator"]) == []


# -- loading never runs foreign code --------------------------------------------------------------------
@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned-marker"
    yield str(path)
    assert not path.exists(), "a loader executed code from a pickle"


def test_the_malicious_pickle_does_run_code_when_unpickled_naively(tmp_path):
    control = tmp_path / "control-marker"
    pickle.loads(evil_pickle(str(control)))  # the positive control: the payload is real
    assert control.exists()


@pytest.mark.parametrize("kind", ["raw pickle", "torch file", "checksummed payload"])
def test_training_state_and_generator_loaders_refuse_code(kind, marker, tmp_path):
    path = str(tmp_path / "state-0000009.pt")
    if kind == "raw pickle":
        open(path, "wb").write(evil_pickle(marker))
    elif kind == "torch file":
        evil_torch_file(path, marker)
    else:
        evil_training_state(path, marker)
    with pytest.raises(CheckpointError, match="refusing to load it"):
        ckpt.load_training_state(path)
    with pytest.raises(CheckpointError, match="refusing to load it"):
        sampling.load_generator(path)
    for argv in (
        ["train", "--config", "ring8", "--out", str(tmp_path / "run"), "--resume", path],
        ["sample", "--checkpoint", path, "--out", str(tmp_path / "s.png")],
    ):
        code, _, err = run_cli(argv)
        assert code == 2 and "refusing to load it" in err and len(err.strip().splitlines()) == 1


def test_resume_latest_skips_a_malicious_newest_checkpoint(marker, tiny_cfg, tmp_path):
    run = str(tmp_path / "run")
    Trainer(tiny_cfg(steps=2, ckpt_every=1), run).fit()
    evil_torch_file(os.path.join(run, "checkpoints", "state-0000003.pt"), marker)
    warnings = []
    trainer = Trainer(tiny_cfg(steps=4, ckpt_every=1), run, resume="latest", warn=warnings.append)
    assert trainer.step == 2
    assert len(warnings) == 1 and "state-0000003.pt" in warnings[0] and "refusing to load it" in warnings[0]


def test_generator_file_holding_a_pickle_is_refused(marker, tmp_path):
    path = str(tmp_path / "generator.safetensors")
    open(path, "wb").write(evil_pickle(marker))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        sampling.load_generator(path)
    code, _, err = run_cli(["sample", "--checkpoint", path, "--out", str(tmp_path / "s.png")])
    assert code == 2 and "not a readable safetensors file" in err


def test_cifar10_loader_refuses_code(marker, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(evil_pickle(marker))
    with pytest.raises(DataError, match="disallowed objects"):
        load_image_dataset("cifar10", path=str(folder))
    code, _, err = run_cli(
        [
            "train",
            "--config",
            "ring8",
            "--out",
            str(tmp_path / "run"),
            "data.source=cifar10",
            f"data.path={tmp_path}",
            "generator.arch=unet",
            "score.arch=unet",
        ]
    )
    assert code == 2 and "refusing to unpickle it" in err


def test_npy_and_npz_loaders_refuse_code(marker, tmp_path):
    objects = np.array([CodeRunner(marker)] * 4, dtype=object)
    images = np.zeros((4, 8, 8, 3), np.uint8)
    np.save(tmp_path / "objects.npy", objects, allow_pickle=True)
    np.savez(tmp_path / "objects.npz", x=objects)
    np.savez(tmp_path / "labels.npz", x=images, y=objects)
    (tmp_path / "pickle.npy").write_bytes(evil_pickle(marker))
    for name, use_labels in [
        ("objects.npy", False),
        ("objects.npz", False),
        ("labels.npz", True),
        ("pickle.npy", False),
    ]:
        with pytest.raises(DataError, match="pickle"):
            load_image_dataset("npz", path=str(tmp_path / name), use_labels=use_labels)
    code, _, err = run_cli(
        [
            "train",
            "--config",
            "ring8",
            "--out",
            str(tmp_path / "run"),
            "data.source=npz",
            f"data.path={tmp_path / 'objects.npz'}",
            "generator.arch=unet",
            "score.arch=unet",
        ]
    )
    assert code == 2 and "not loaded for safety" in err


# -- a full disk ----------------------------------------------------------------------------------------
def test_disk_full_on_the_second_checkpoint_keeps_the_first(tmp_path, monkeypatch, capsys):
    real_write = ckpt.atomic_write_stream  # training states are streamed to disk
    calls = []

    def write(path, fill):
        if os.path.basename(path).startswith("state-"):
            calls.append(path)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        real_write(path, fill)

    monkeypatch.setattr(ckpt, "atomic_write_stream", write)
    run = str(tmp_path / "run")
    argv = ["train", "--config", "ring8", "--out", run, *tiny_overrides(steps=6, ckpt_every=2)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        f"error: could not write checkpoint {run}/checkpoints/state-0000004.pt "
        "(No space left on device); the previous checkpoint "
    )
    assert f"{run}/checkpoints/state-0000002.pt is intact" in err[0]
    assert f"scoremix train --out {run} --resume latest" in err[0]
    folder = os.path.join(run, "checkpoints")
    assert os.listdir(folder) == ["state-0000002.pt"]  # no half-written file either
    assert ckpt.load_training_state(os.path.join(folder, "state-0000002.pt"))["step"] == 2
    assert ckpt.load_generator(os.path.join(run, "generator.safetensors"))[3]["step"] == 2
    monkeypatch.undo()  # space freed: the advertised command finishes the run
    assert main(["train", "--out", run, "--resume", "latest", "progress=false"]) == 0
    assert ckpt.load_generator(os.path.join(run, "generator.safetensors"))[3]["step"] == 6


def test_disk_full_while_logging_is_one_clear_error(tmp_path, monkeypatch, capsys):
    real_log = Trainer._log

    def log(self, record, writer):
        if record["step"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(self.run_dir, "stats.jsonl"))
        real_log(self, record, writer)

    monkeypatch.setattr(Trainer, "_log", log)
    run = str(tmp_path / "run")
    assert main(["train", "--config", "ring8", "--out", run, *tiny_overrides(steps=6, ckpt_every=2, log_every=1)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: cannot write '{run}/stats.jsonl' at step 3 (No space left on device); the last checkpoint "
    )
    assert "state-0000002.pt is intact" in err[0] and "--resume latest" in err[0]
