"""train.batch_gpu: gradient accumulation, alone and under two gloo processes.

What is claimed and tested: every random draw of a micro-batch is keyed by (seed, step, phase, global
micro-batch index) and every rank reads its block of one global data stream, so 2 processes x 2
micro-batches of 8 and 1 process x 4 micro-batches of 8 (global batch 32 both) compute the same losses
on the same samples; their weights after N steps agree to float rounding (DDP averages the two ranks'
gradients where one process sums four quarters). A 2-process checkpoint then resumes in 1 process and
ends on the same weights."""

import os
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests.conftest import tiny_overrides

STEPS = 4
OVERRIDES = dict(
    steps=STEPS,
    gen_every=2,
    batch_size=32,
    ckpt_every=2,
    **{"train.batch_gpu": 8, "method.gan": True, "eval.samples": 20, "ema": 0.9},
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(out: str, overrides: list, world: int = 1, rank: int = 0, resume: str | None = None) -> None:
    """Train to STEPS with the Trainer's own step (no pictures or metrics), saving a checkpoint every 2 steps."""
    from scoremix.config_loader import load_config
    from scoremix.distributed import DistInfo
    from scoremix.trainer import Trainer

    info = DistInfo(rank, world, rank)
    trainer = Trainer(load_config("ring8", overrides), out, resume=resume, info=info)
    while trainer.step < STEPS:
        trainer.train_step(trainer.source.next_batch())
        trainer.step += 1
        if trainer.step % 2 == 0:
            trainer.save_checkpoint()


def _worker(rank: int, world: int, port: int, out: str, overrides: list) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from scoremix.distributed import cleanup, init_distributed

    info = init_distributed("cpu")
    _train(out, overrides, world, rank)
    cleanup(info)
    # the work is saved: skip interpreter teardown, where gloo's threads intermittently abort the child
    # ("terminate called without an active exception") in fresh environments
    os._exit(0)


def _weights(path: str) -> dict:
    from scoremix.checkpoint import load_training_state

    state = load_training_state(path)
    out = {f"{n}.{k}": v for n, sd in state["networks"].items() for k, v in sd.items()}
    out.update({f"ema.{k}": v for k, v in state["ema"].items()})
    return out


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_micro_batches_split_the_batch_in_order(tiny_cfg, tmp_path):
    from scoremix.trainer import Trainer

    tr = Trainer(tiny_cfg(batch_size=12, **{"train.batch_gpu": 4}), str(tmp_path / "r"))
    assert (tr.micro_batch, tr.accum_steps) == (4, 3)
    x = torch.arange(12.0)[:, None]
    parts = tr.micro_batches((x, None))
    assert [p[0][:, 0].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert all(p[1] is None for p in parts)


def test_batch_gpu_that_does_not_divide_is_refused(tiny_cfg, tmp_path):
    from scoremix.errors import ConfigError
    from scoremix.trainer import Trainer

    with pytest.raises(ConfigError, match=r"batch_gpu=5 must divide .* try train.batch_gpu=4"):
        Trainer(tiny_cfg(batch_size=12, **{"train.batch_gpu": 5}), str(tmp_path / "r"))


def test_accumulated_gradient_is_the_mean_of_the_micro_batch_gradients(tiny_cfg, tmp_path, monkeypatch):
    """One phase, accumulation on: the gradient the optimiser sees equals the average of the micro-batches'
    gradients computed one by one with the same seeds (any wrong scale or a missed micro-batch shows)."""
    from scoremix.trainer import Trainer

    tr = Trainer(
        tiny_cfg(batch_size=16, gen_every=1, **{"train.batch_gpu": 4, "optim.grad_clip": 0}), str(tmp_path / "r")
    )
    batch = tr.source.next_batch()
    seen = {}
    for name, opt in tr.optimizers.items():
        monkeypatch.setattr(
            opt, "step", lambda name=name: seen.setdefault(name, [p.grad.clone() for p in tr.params[name]])
        )
    tr.train_step(batch)
    for phase in tr.method.plan(0):
        expected = None
        for i, part in enumerate(tr.micro_batches(batch)):
            for p in tr.params[phase.optimizer]:
                p.grad = None
            tr._seed_micro_batch(phase.name, i)
            tr.method.loss(phase.name, part, 0)[0].backward()
            grads = [p.grad.clone() / 4 for p in tr.params[phase.optimizer]]
            expected = grads if expected is None else [e + g for e, g in zip(expected, grads)]
        for got, want in zip(seen[phase.optimizer], expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_two_processes_with_accumulation_match_one_and_resume_in_one(tmp_path):
    from scoremix.checkpoint import list_checkpoints

    overrides = tiny_overrides(**OVERRIDES)
    two = str(tmp_path / "two")
    mp.spawn(_worker, args=(2, _free_port(), two, overrides), nprocs=2, join=True)
    one = str(tmp_path / "one")
    _train(one, overrides)
    two_final = _weights(list_checkpoints(os.path.join(two, "checkpoints"))[-1])
    one_final = _weights(list_checkpoints(os.path.join(one, "checkpoints"))[-1])
    assert _max_difference(two_final, one_final) < 1e-5
    # the two runs differ from a run on other samples by far more than the tolerance
    other = str(tmp_path / "other")
    _train(other, tiny_overrides(**{**OVERRIDES, "seed": 1}))
    assert _max_difference(_weights(list_checkpoints(os.path.join(other, "checkpoints"))[-1]), one_final) > 1e-3

    resumed = str(tmp_path / "resumed")
    os.makedirs(os.path.join(resumed, "checkpoints"))
    shutil.copy(os.path.join(two, "checkpoints", "state-0000002.pt"), os.path.join(resumed, "checkpoints"))
    _train(resumed, overrides, resume="latest")
    final = list_checkpoints(os.path.join(resumed, "checkpoints"))[-1]
    assert final.endswith("state-0000004.pt")
    assert _max_difference(_weights(final), one_final) < 1e-5
