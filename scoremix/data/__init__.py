"""Data sources for training: infinite toy samplers and finite image datasets behind one interface.

A source yields (x, labels) batches and can save/restore its position, so a resumed run sees exactly
the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import numpy as np
import torch

from .toy import TOYS, make_toy


class ToySource:
    """Fresh samples from a toy distribution, drawn from a dedicated generator."""

    def __init__(self, name: str, batch_size: int, seed: int, rank: int = 0):
        self.dist = make_toy(name)
        self.shape = self.dist.shape
        self.num_classes = 0
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + 17 + rank)

    def next_batch(self):
        return self.dist.sample(self.batch_size, self.generator), None

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class DatasetSource:
    """Epoch-wise shuffled batches from a finite dataset; each rank takes its own slice of every epoch.

    The permutation of epoch e depends only on (seed, e), so the position (epoch, cursor) is the whole state.
    """

    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 flip: bool = False, use_labels: bool = False):
        self.dataset = dataset
        self.shape = tuple(dataset.shape)
        self.num_classes = dataset.num_classes if use_labels else 0
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.flip = flip
        self.use_labels = use_labels
        self.epoch, self.cursor = 0, 0
        self.flip_generator = torch.Generator().manual_seed(seed * 7919 + 3 + rank)
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        usable = len(perm) // self.world_size * self.world_size
        return perm[:usable][self.rank::self.world_size]

    def next_batch(self):
        picks = []
        need = self.batch_size
        while need > 0:
            take = self._order[self.cursor:self.cursor + need]
            picks.append(take)
            need -= len(take)
            self.cursor += len(take)
            if self.cursor >= len(self._order):
                self.epoch += 1
                self.cursor = 0
                self._order = self._epoch_order(self.epoch)
        x, labels = self.dataset.get(np.concatenate(picks))
        if self.flip:
            mask = torch.rand(x.shape[0], generator=self.flip_generator) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x, (labels if self.use_labels else None)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "flip_generator": self.flip_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._epoch_order(self.epoch)
        self.flip_generator.set_state(state["flip_generator"])


def build_dataset(data_cfg):
    """The finite image dataset named by a DataConfig (None for toy sources)."""
    if data_cfg.source in TOYS:
        return None
    if data_cfg.source == "points":
        from .points import PointsDataset

        return PointsDataset(data_cfg.path, standardize=data_cfg.standardize, use_labels=data_cfg.conditional)
    from .images import load_image_dataset

    return load_image_dataset(data_cfg.source, path=data_cfg.path, resolution=data_cfg.resolution,
                              channels=data_cfg.channels, use_labels=data_cfg.conditional)


def build_source(data_cfg, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, dataset=None):
    if data_cfg.source in TOYS:
        return ToySource(data_cfg.source, batch_size, seed, rank)
    dataset = dataset if dataset is not None else build_dataset(data_cfg)
    return DatasetSource(dataset, batch_size, seed, rank, world_size, flip=data_cfg.flip,
                         use_labels=data_cfg.conditional)


def reference_samples(data_cfg, n: int, seed: int, dataset=None):
    """n data samples for metrics: fresh draws for toys, a seeded subset for datasets."""
    if data_cfg.source in TOYS:
        return make_toy(data_cfg.source).sample(n, torch.Generator().manual_seed(seed))
    dataset = dataset if dataset is not None else build_dataset(data_cfg)
    idx = np.random.default_rng(seed).permutation(len(dataset))[:n]
    return dataset.get(np.sort(idx))[0]
