"""Checkpoint files: safe loading, checksums, generator safetensors, exact resume."""

import os

import pytest
import torch

from scoremix import checkpoint as ckpt
from scoremix.errors import CheckpointError
from scoremix.trainer import Trainer


def test_training_state_round_trip_is_weights_only_and_verified(tmp_path):
    state = {"step": 3, "w": torch.randn(4, 4), "nested": {"a": [1, 2.5, "x"]}}
    path = str(tmp_path / "state-0000003.pt")
    ckpt.save_training_state(state, path)
    raw = torch.load(path, weights_only=True)  # the outer file is plain tensors and containers
    assert raw["format"] == ckpt.STATE_FORMAT
    back = ckpt.load_training_state(path)
    assert back["step"] == 3 and torch.equal(back["w"], state["w"]) and back["nested"] == state["nested"]
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # flip one byte in the payload
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError):
        ckpt.load_training_state(path)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = str(tmp_path / "state-0000001.pt")
    ckpt.save_training_state({"step": 1}, path)
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        ckpt.load_training_state(path)
    other = str(tmp_path / "other.pt")
    torch.save({"hello": 1}, other)
    with pytest.raises(CheckpointError, match="not a scoremix training-state"):
        ckpt.load_training_state(other)


def test_latest_valid_skips_a_corrupt_newest(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_training_state({"step": step}, str(tmp_path / f"state-{step:07d}.pt"))
    with open(tmp_path / "state-0000003.pt", "r+b") as fh:
        fh.truncate(100)
    with pytest.warns(UserWarning, match="corrupt"):
        path, state = ckpt.load_latest_valid(str(tmp_path))
    assert state["step"] == 2 and path.endswith("state-0000002.pt")


def test_prune_keeps_last_and_every(tmp_path):
    for step in range(1, 11):
        ckpt.save_training_state({"step": step}, str(tmp_path / f"state-{step:07d}.pt"))
    ckpt.prune_checkpoints(str(tmp_path), keep_last=2, keep_every=4)
    assert [ckpt.checkpoint_step(p) for p in ckpt.list_checkpoints(str(tmp_path))] == [4, 8, 9, 10]


def test_generator_safetensors_carries_config(tmp_path):
    raw = {"a": torch.randn(3), "b": torch.randn(2, 2)}
    ema = {k: v + 1 for k, v in raw.items()}
    path = str(tmp_path / "g.safetensors")
    ckpt.save_generator(path, raw, ema, {"name": "x"}, 7, data_shape=(2,), num_classes=0)
    r, e, cfg, info = ckpt.load_generator(path)
    assert torch.equal(r["b"], raw["b"]) and torch.equal(e["a"], ema["a"])
    assert cfg == {"name": "x"} and info == {"step": 7, "data_shape": (2,), "num_classes": 0}


def _weights(trainer):
    out = {f"{n}.{k}": v.clone() for n, net in trainer.method.networks.items() for k, v in net.state_dict().items()}
    out.update({f"ema.{k}": v.clone() for k, v in trainer.ema.module.state_dict().items()})
    return out


def test_resume_continues_bitwise(tiny_cfg, tmp_path):
    cfg = tiny_cfg(steps=8, ckpt_every=4, gen_every=3, ema=0.9)
    full = Trainer(cfg, str(tmp_path / "full"))
    full.fit()
    first = ckpt.list_checkpoints(str(tmp_path / "full" / "checkpoints"))
    assert [ckpt.checkpoint_step(p) for p in first] == [4, 8]
    resumed = Trainer(cfg, str(tmp_path / "resumed"), resume=first[0])
    assert resumed.step == 4
    assert resumed.optimizers["critic"].state_dict()["state"][0]["step"].item() == 4
    resumed.fit()
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_rejects_a_checkpoint_of_another_architecture(tiny_cfg, tmp_path):
    cfg = tiny_cfg(steps=2, ckpt_every=2)
    Trainer(cfg, str(tmp_path / "a")).fit()
    path = ckpt.list_checkpoints(str(tmp_path / "a" / "checkpoints"))[-1]
    other = tiny_cfg(steps=4, **{"score.hidden": 48})
    with pytest.raises(CheckpointError, match="does not match this config"):
        Trainer(other, str(tmp_path / "b"), resume=path)
