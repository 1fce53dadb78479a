"""A run refused while it is being built (its method, teacher or data) leaves nothing new behind: no run folder,
no config.yaml, no empty checkpoints/ or samples/; a folder that existed before (a resumed run's) is left
exactly as it was."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import scoremix.trainer as trainer_module
from scoremix.cli import main
from scoremix.errors import TeacherError
from scoremix.trainer import Trainer


def _tree(folder) -> dict[str, bytes]:
    """Every file and folder under `folder`: relative path -> content (b'<dir>' for folders)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), folder)] = b"<dir>"
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                out[os.path.relpath(os.path.join(root, name), folder)] = fh.read()
    return out


def _refuse(monkeypatch):
    def build_method(*args, **kwargs):
        raise TeacherError("refused for the test")

    monkeypatch.setattr(trainer_module, "build_method", build_method)


def test_refused_method_leaves_no_new_folder(tiny_cfg, tmp_path, monkeypatch):
    _refuse(monkeypatch)
    run = tmp_path / "runs" / "new" / "run"  # parents that do not exist yet either
    with pytest.raises(TeacherError, match="refused for the test"):
        Trainer(tiny_cfg(), str(run))
    assert os.listdir(tmp_path) == []


def test_refused_method_keeps_an_existing_run_folder_as_it_was(tiny_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    Trainer(tiny_cfg(steps=2, ckpt_every=1, log_every=1), str(run)).fit()
    before = _tree(run)
    assert "config.yaml" in before and "checkpoints/state-0000002.pt" in before
    _refuse(monkeypatch)
    with pytest.raises(TeacherError, match="refused for the test"):  # resumed with other settings: refused
        Trainer(tiny_cfg(steps=4, ckpt_every=1, log_every=1, seed=5), str(run), resume="latest")
    assert _tree(run) == before  # config.yaml not rewritten, stats.jsonl not cut, nothing added


def test_failed_resume_does_not_rewrite_the_runs_config(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_cfg(steps=2, ckpt_every=1), str(run)).fit()
    before = _tree(run)
    from scoremix.errors import CheckpointError

    with pytest.raises(CheckpointError, match="does not match this config's networks"):
        Trainer(tiny_cfg(steps=4, ckpt_every=1, **{"score.hidden": 48}), str(run), resume="latest")
    assert _tree(run) == before


def test_refused_diffusers_teacher_leaves_no_run_folder(tmp_path, capsys):
    """The command of issue 23: `scoremix train --config mnist-smd method.teacher=DIFFUSERS_FOLDER`."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    teacher = tmp_path / "teacher"
    unet.save_pretrained(teacher)
    diffusers.DDPMScheduler().save_config(teacher)
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 1), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", x=images)
    runs = tmp_path / "runs"
    code = main(
        [
            "train",
            "--config",
            "mnist-smd",
            f"method.teacher={teacher}",
            "data.source=npz",
            f"data.path={tmp_path / 'images.npz'}",
            "data.conditional=false",
            "data.resolution=none",
            "data.holdout=0",
            "--out",
            str(runs / "student"),
            "steps=1",
            "progress=false",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "diffusers UNet2DModel" in err
    assert not runs.exists()


def test_a_built_run_has_its_folder_and_config(tiny_cfg, tmp_path):
    """Written once the run is built: the folders and config.yaml are there before fit() starts."""
    run = tmp_path / "run"
    trainer = Trainer(tiny_cfg(), str(run))
    assert sorted(os.listdir(run)) == ["checkpoints", "config.yaml", "samples"]
    assert (run / "config.yaml").read_text() == trainer.cfg.to_yaml()
