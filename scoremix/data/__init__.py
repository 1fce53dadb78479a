"""Data sources for training: infinite toy samplers and finite image datasets behind one interface.

A source yields (x, labels) batches and can save/restore its position, so a resumed run sees exactly
the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch

from .toy import TOYS, make_toy


class ToySource:
    """Fresh samples from a toy distribution, drawn from a dedicated generator.

    Every rank draws the whole global batch from the same stream and keeps its own slice, so the samples
    of a step do not depend on how many processes share it (and a checkpoint resumes on any number)."""

    def __init__(self, name: str, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.dist = make_toy(name)
        self.shape = self.dist.shape
        self.num_classes = 0
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)

    def next_batch(self):
        x = self.dist.sample(self.batch_size * self.world_size, self.generator)
        return x[self.rank * self.batch_size : (self.rank + 1) * self.batch_size], None

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def close(self) -> None:
        pass


class DatasetSource:
    """Epoch-wise shuffled batches from a finite dataset.

    One global stream: the epochs' permutations, concatenated. Step k's global batch is the next
    batch_size * world_size positions of that stream and rank r takes its r-th block, so the position
    (epoch, cursor) counts global samples and is the whole state, whatever the number of processes.
    The permutation of epoch e depends only on (seed, e). With `workers` > 0 the same index lists are read
    by DataLoader worker processes ahead of time (see `scoremix.data.loader`); flips are drawn here either way.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        flip: bool = False,
        use_labels: bool = False,
        workers: int = 0,
    ):
        self.dataset = dataset
        self.shape = tuple(dataset.shape)
        self.num_classes = dataset.num_classes if use_labels else 0
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.flip = flip
        self.use_labels = use_labels
        self.workers = workers
        self.epoch, self.cursor = 0, 0
        self.flip_generator = torch.Generator().manual_seed(seed * 7919 + 3)
        self._orders: dict[int, np.ndarray] = {}
        self._loader = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        return self._orders[epoch]

    def advance(self, epoch: int, cursor: int) -> tuple[np.ndarray, int, int]:
        """This rank's indices of the global batch at position (epoch, cursor), and the next position."""
        picks = []
        need = self.batch_size * self.world_size
        while need > 0:
            order = self._epoch_order(epoch)
            take = order[cursor : cursor + need]
            picks.append(take)
            need -= len(take)
            cursor += len(take)
            if cursor >= len(order):
                epoch, cursor = epoch + 1, 0
        block = np.concatenate(picks)[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return block, epoch, cursor

    def next_batch(self):
        start = (self.epoch, self.cursor)
        indices, self.epoch, self.cursor = self.advance(*start)
        if self.workers > 0:
            if self._loader is None:
                from .loader import PrefetchLoader

                self._loader = PrefetchLoader(self, *start, workers=self.workers)
            x, labels = self._loader.next(indices)
        else:
            x, labels = self.dataset.get(indices)
        if self.flip:
            mask = torch.rand(x.shape[0] * self.world_size, generator=self.flip_generator) < 0.5
            mask = mask[self.rank * x.shape[0] : (self.rank + 1) * x.shape[0]]
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x, (labels if self.use_labels else None)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "flip_generator": self.flip_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.flip_generator.set_state(state["flip_generator"])

    def close(self) -> None:
        """Stop the DataLoader workers (a later next_batch starts them again)."""
        if self._loader is not None:
            self._loader.close()
            self._loader = None


def holdout_indices(n: int, holdout: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices) of a dataset of n items: the held-out ones are the first
    `holdout` positions of a permutation seeded by `seed` (benchmarks/mnist_digits.py uses the same)."""
    from ..errors import DataError

    if not 0 <= holdout < n:
        raise DataError(f"data.holdout={holdout} must be smaller than the dataset's {n} items")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return order[holdout:], order[:holdout]


class Subset:
    """Some items of a dataset, in the given order, behind the same interface (get, shape, labels)."""

    def __init__(self, dataset, indices: np.ndarray):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.shape = tuple(dataset.shape)
        self.num_classes = dataset.num_classes
        self.name = getattr(dataset, "name", "subset")

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self):
        labels = getattr(self.dataset, "labels", None)
        return None if labels is None else labels[self.indices]

    def get(self, indices):
        return self.dataset.get(self.indices[np.asarray(indices, dtype=np.int64)])

    def __getattr__(self, name):  # e.g. a points file's transform_record, mixture
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def build_dataset(data_cfg, part: str = "train"):
    """The finite dataset named by a DataConfig (None for toy sources). part: 'train' (without the
    data.holdout items), 'holdout' (only them) or 'all'."""
    if data_cfg.source in TOYS:
        return None
    if data_cfg.source == "points":
        from .points import PointsDataset

        dataset = PointsDataset(data_cfg.path, standardize=data_cfg.standardize, use_labels=data_cfg.conditional)
    else:
        from .images import load_image_dataset

        dataset = load_image_dataset(
            data_cfg.source,
            path=data_cfg.path,
            resolution=data_cfg.resolution,
            channels=data_cfg.channels,
            use_labels=data_cfg.conditional,
        )
    holdout = getattr(data_cfg, "holdout", 0)
    if part == "all" or not holdout:
        if part == "holdout":
            raise ValueError("build_dataset(part='holdout') needs data.holdout > 0")
        return dataset
    train, held = holdout_indices(len(dataset), holdout)
    return Subset(dataset, train if part == "train" else held)


def build_source(data_cfg, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, dataset=None):
    if data_cfg.source in TOYS:
        return ToySource(data_cfg.source, batch_size, seed, rank, world_size)
    dataset = dataset if dataset is not None else build_dataset(data_cfg)
    return DatasetSource(
        dataset,
        batch_size,
        seed,
        rank,
        world_size,
        flip=data_cfg.flip,
        use_labels=data_cfg.conditional,
        workers=data_cfg.workers,
    )


def reference_samples(data_cfg, n: int, seed: int, dataset=None):
    """n data samples for metrics: fresh draws for toys, a seeded subset for datasets."""
    if data_cfg.source in TOYS:
        return make_toy(data_cfg.source).sample(n, torch.Generator().manual_seed(seed))
    dataset = dataset if dataset is not None else build_dataset(data_cfg)
    idx = np.random.default_rng(seed).permutation(len(dataset))[:n]
    return dataset.get(np.sort(idx))[0]
