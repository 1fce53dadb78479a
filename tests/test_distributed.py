"""Two CPU processes under torch.distributed (gloo), as torchrun would start them."""

import os
import socket

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, overrides: list) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from scoremix.cli import main

    code = main(["train", "--config", "ring8", "--out", out, *overrides])
    if code != 0:
        raise SystemExit(code)


def test_ddp_two_processes_stay_in_sync(tmp_path):
    from tests.conftest import tiny_overrides

    out = str(tmp_path / "ddp")
    overrides = tiny_overrides(steps=7, gen_every=3, ckpt_every=7, batch_size=32, **{"method.gan": True})
    mp.spawn(_worker, args=(2, _free_port(), out, overrides), nprocs=2, join=True)
    from scoremix.checkpoint import list_checkpoints, load_training_state

    state = load_training_state(list_checkpoints(os.path.join(out, "checkpoints"))[-1])
    assert state["step"] == 7
    # the optimisers stepped on the schedule: generator at iterations 0, 3, 6; critic at every one
    gen_steps = next(iter(state["optimizers"]["generator"]["state"].values()))["step"].item()
    critic_steps = next(iter(state["optimizers"]["critic"]["state"].values()))["step"].item()
    assert (gen_steps, critic_steps) == (3, 7)
    assert os.path.isfile(os.path.join(out, "metrics.json"))


def _compare_worker(rank: int, world: int, port: int, folder: str) -> None:
    """Train a few steps, then every rank saves its weights so the test can compare them."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from scoremix.config_loader import load_config
    from scoremix.distributed import cleanup, init_distributed
    from scoremix.trainer import Trainer
    from tests.conftest import tiny_overrides

    info = init_distributed("cpu")
    cfg = load_config("ring8", tiny_overrides(steps=5, gen_every=2, batch_size=32))
    trainer = Trainer(cfg, os.path.join(folder, "run"), info=info)
    for _ in range(5):
        trainer.train_step(trainer.source.next_batch())
        trainer.step += 1
    weights = {f"{n}.{k}": v for n, net in trainer.method.networks.items() for k, v in net.state_dict().items()}
    torch.save({"weights": weights, "batch": trainer.source.next_batch()[0]}, os.path.join(folder, f"rank{rank}.pt"))
    cleanup(info)


def test_ranks_share_weights_but_not_data(tmp_path):
    mp.spawn(_compare_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert not torch.equal(a["batch"], b["batch"])
