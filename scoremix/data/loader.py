"""DataLoader workers that read the batches a DatasetSource will ask for, ahead of time.

The index lists come from the source's own position arithmetic (`DatasetSource.advance`), started at the
source's position, so the worker path yields exactly the batches of the in-process path for the same seed,
and a resumed source (new position) simply starts a new loader there.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class _IndexStream(Sampler):
    """Endless index lists of one rank, from position (epoch, cursor) on."""

    def __init__(self, source, epoch: int, cursor: int):
        self.source, self.epoch, self.cursor = source, epoch, cursor

    def __iter__(self):
        epoch, cursor = self.epoch, self.cursor
        while True:
            indices, epoch, cursor = self.source.advance(epoch, cursor)
            yield indices


class _BatchReader(Dataset):
    """dataset.get(indices) in a worker; the indices travel back so the consumer can check the order."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices):
        x, labels = self.dataset.get(indices)
        return indices, x, labels


def _as_is(item):
    return item


class PrefetchLoader:
    def __init__(self, source, epoch: int, cursor: int, workers: int, prefetch: int = 4):
        loader = DataLoader(
            _BatchReader(source.dataset),
            batch_size=None,
            sampler=_IndexStream(source, epoch, cursor),
            num_workers=workers,
            collate_fn=_as_is,
            prefetch_factor=prefetch,
            pin_memory=torch.cuda.is_available(),
        )
        self._iter = iter(loader)

    def next(self, expected: np.ndarray):
        indices, x, labels = next(self._iter)
        if not np.array_equal(indices, expected):  # cannot happen unless the two position streams diverge
            raise RuntimeError("DataLoader workers delivered a batch out of order")
        return x, labels

    def close(self) -> None:
        shutdown = getattr(self._iter, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
