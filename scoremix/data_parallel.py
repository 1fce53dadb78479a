"""How a training run spreads over processes and micro-batches: the rank's device, the global batch cut into
per-process batches and micro-batches (gradient accumulation), the trainable networks wrapped in DDP,
gradients all-reduced only on a phase's last micro-batch, and the RNG key of each micro-batch.

The Trainer (trainer.py) calls these; they keep no state of their own.
"""

from __future__ import annotations

import contextlib
import zlib

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .distributed import DistInfo
from .errors import ConfigError


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=cpu")
        device = torch.device("cuda", info.local_rank) if name == "cuda" else torch.device(name)
        torch.cuda.set_device(device)  # so that NCCL and unplaced allocations use this rank's card
        return device
    return torch.device(name)


def batch_layout(batch_size: int, batch_gpu: int, world_size: int) -> tuple[int, int, int]:
    """(per-process batch, micro-batch, accumulation steps) of the global batch `batch_size` (data.batch_size)
    over `world_size` processes, in micro-batches of `batch_gpu` samples (train.batch_gpu; 0: one micro-batch
    per process, no accumulation)."""
    if batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} is the global batch and must divide evenly over {world_size} processes"
        )
    local_batch = batch_size // world_size
    micro_batch = batch_gpu or local_batch
    if local_batch % micro_batch:
        raise ConfigError(
            f"train.batch_gpu={batch_gpu} must divide the per-process batch {local_batch} "
            f"(data.batch_size={batch_size} over {world_size} process(es)); "
            f"try train.batch_gpu={_largest_divisor_at_most(local_batch, batch_gpu)}"
        )
    return local_batch, micro_batch, local_batch // micro_batch


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def split_micro_batches(batch, accum_steps: int, micro_batch: int) -> list:
    """The per-process batch cut into accum_steps micro-batches of micro_batch samples (tensors along dim 0)."""
    if accum_steps == 1:
        return [batch]
    m = micro_batch
    return [tuple(None if v is None else v[i * m : (i + 1) * m] for v in batch) for i in range(accum_steps)]


def seed_micro_batch(seed: int, step: int, phase: str, index: int) -> None:
    """Seed the global RNG from (seed, step, phase, global micro-batch index): every draw a method makes
    for a micro-batch is then a function of where that micro-batch sits in the global batch, not of the
    number of processes or of earlier draws, so 2 ranks x A micro-batches reproduce 1 rank x 2A and a
    checkpoint resumes exactly on any number of ranks."""
    key = np.random.SeedSequence([seed, step, zlib.crc32(phase.encode()), index])
    torch.manual_seed(int(key.generate_state(1, np.uint64)[0]))


def wrap_in_ddp(method, device: torch.device) -> None:
    """Wrap each network of `method` with trainable parameters in DDP (in method.train_networks); frozen
    ones (a teacher) stay as they are."""
    for name, net in method.networks.items():
        if any(p.requires_grad for p in net.parameters()):
            method.train_networks[name] = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
            )


def gradient_sync(train_networks, last: bool):
    """DDP all-reduces gradients only on the last micro-batch of a phase: a context that holds every DDP
    network in `no_sync` for the others."""
    stack = contextlib.ExitStack()
    if not last:
        for net in train_networks:
            if isinstance(net, DistributedDataParallel):
                stack.enter_context(net.no_sync())
    return stack
