"""data.workers: DataLoader workers give the batches of the in-process path, which are today's batches,
and resume exactly."""

import numpy as np
import pytest
import torch

from scoremix.data import DatasetSource
from scoremix.data.images import load_image_dataset


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "small.npz"
    np.savez(path, x=rng.integers(0, 256, (37, 8, 8, 3), dtype=np.uint8), y=rng.integers(0, 5, 37))
    return load_image_dataset("npz", path=str(path), use_labels=True)


def reference_batches(dataset, seed, batch, count, flip):
    """The single-process stream as it was specified before workers existed: epoch e is
    default_rng([seed, e]).permutation(N), batches run on across epoch ends, flips drawn from
    Generator(seed * 7919 + 3) one torch.rand(batch) per batch."""
    flips = torch.Generator().manual_seed(seed * 7919 + 3)
    stream = np.concatenate([np.random.default_rng([seed, e]).permutation(len(dataset)) for e in range(20)])
    out = []
    for k in range(count):
        x, y = dataset.get(stream[k * batch : (k + 1) * batch])
        if flip:
            mask = torch.rand(batch, generator=flips) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        out.append((x, y))
    return out


def take(source, count):
    return [source.next_batch() for _ in range(count)]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_equal_the_reference_stream(dataset, workers):
    source = DatasetSource(dataset, 8, seed=5, flip=True, use_labels=True, workers=workers)
    try:
        assert_same(take(source, 11), reference_batches(dataset, 5, 8, 11, flip=True))  # 88 samples: 3 epochs
    finally:
        source.close()


def test_workers_resume_exactly(dataset):
    straight = DatasetSource(dataset, 8, seed=5, flip=True, use_labels=True, workers=2)
    first = DatasetSource(dataset, 8, seed=5, flip=True, use_labels=True, workers=2)
    second = DatasetSource(dataset, 8, seed=5, flip=True, use_labels=True, workers=2)
    try:
        expected = take(straight, 10)
        head = take(first, 6)
        second.load_state_dict(first.state_dict())
        assert_same(head + take(second, 4), expected)
    finally:
        for s in (straight, first, second):
            s.close()


def test_two_ranks_read_the_blocks_of_one_global_batch(dataset):
    whole = take(DatasetSource(dataset, 8, seed=5, use_labels=True), 6)
    ranks = [take(DatasetSource(dataset, 4, seed=5, rank=r, world_size=2, use_labels=True), 6) for r in (0, 1)]
    for k in range(6):
        assert torch.equal(torch.cat([ranks[0][k][0], ranks[1][k][0]]), whole[k][0])
