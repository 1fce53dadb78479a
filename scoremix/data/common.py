"""The ImageDataset interface, its post-processing, and the in-memory/memory-mapped array dataset."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from .transforms import _convert_channels, _resize, _to_unit_range

IMAGE_SOURCES = ("digits", "mnist", "folder", "npz", "npy", "zip", "cifar10", "imagenet64")


# --------------------------------------------------------------------------------------------
# Base class and shared post-processing
# --------------------------------------------------------------------------------------------


class ImageDataset:
    """Base class.  Subclasses implement ``_read(idx)`` returning images as float32 in
    [-1, 1], channels last: one array (B, h, w, c) or a list of (h, w, c) arrays (which may differ
    in size when they will be resized).  The base class converts channels, resizes, pads and
    returns (B, C, H, W) tensors."""

    # attribute names that hold OS resources; dropped on pickling and recreated lazily
    _transient: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        name: str,
        length: int,
        src_shape: tuple[int, int, int],
        labels: np.ndarray | None,
        num_classes: int,
        resolution: int | None = None,
        channels: int | None = None,
        pad: int = 0,
    ):
        c, h, w = (int(v) for v in src_shape)
        self.name = name
        self._length = int(length)
        self._src_channels = c
        self._channels = int(channels) if channels is not None else c
        if resolution is not None:
            self._size = (int(resolution), int(resolution))
        else:
            self._size = (h, w)
        self._pad = int(pad)
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (self._length,):
                raise DataError(
                    f"{name}: got {labels.shape[0] if labels.ndim else 0} labels for {self._length} "
                    "images: provide exactly one label per image"
                )
            self._labels = labels
            self._num_classes = int(num_classes)
        else:
            self._labels = None
            self._num_classes = 0

    # -- public interface -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w = self._size
        return (self._channels, h + 2 * self._pad, w + 2 * self._pad)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def labels(self) -> np.ndarray | None:
        """All labels as an int64 array of shape (N,), or None when unlabelled (read-only view)."""
        if self._labels is None:
            return None
        view = self._labels.view()
        view.flags.writeable = False
        return view

    def get(self, indices) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self._check_indices(indices)
        if idx.size == 0:
            x = torch.zeros((0, *self.shape), dtype=torch.float32)
        else:
            x = self._postprocess(self._read(idx))
        y = None if self._labels is None else torch.from_numpy(self._labels[idx].copy())
        return x, y

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, len={len(self)}, shape={self.shape}, "
            f"num_classes={self.num_classes})"
        )

    # -- pickling -----------------------------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in self._transient:
            state[key] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # -- helpers for subclasses -------------------------------------------------------------

    def _read(self, idx: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_indices(self, indices) -> np.ndarray:
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        idx = np.asarray(indices)
        if idx.ndim == 0:
            idx = idx.reshape(1)
        if idx.ndim != 1:
            raise IndexError(f"indices must be a 1-D array; got shape {idx.shape}")
        if idx.size == 0:
            return idx.astype(np.int64)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"indices must be integers; got dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self._length:
            raise IndexError(f"index {lo if lo < 0 else hi} out of range for {self.name} with {self._length} images")
        return idx

    def _postprocess(self, raw) -> torch.Tensor:
        th, tw = self._size
        c = self._channels
        if isinstance(raw, np.ndarray) and raw.shape[1:3] == (th, tw):
            batch = _convert_channels(raw, c)
        else:
            out = []
            for im in raw:
                if c < im.shape[-1]:
                    im = _convert_channels(im, c)  # shrink before resizing (cheaper)
                if im.shape[:2] != (th, tw):
                    im = _resize(im, th, tw)
                out.append(_convert_channels(im, c))
            batch = np.stack(out)
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))
        if self._pad:
            p = self._pad
            x = torch.nn.functional.pad(x, (p, p, p, p), value=-1.0)
        return x.clamp_(-1.0, 1.0)


def _check_options(resolution, channels) -> None:
    if resolution is not None:
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
            raise DataError(
                f"resolution must be a positive integer; got {resolution!r}: set data.resolution=N or leave it unset"
            )
    if channels is not None:
        if isinstance(channels, bool) or channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3; got {channels!r}: set data.channels=1 or data.channels=3")


def _labels_array(values, where: str, num_classes: int | None = None, first: int = 0) -> tuple[np.ndarray, int]:
    """Validate integer class labels (``first``-based) and return them 0-based with the class count
    (``num_classes`` when given, else max + 1)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(
            f"labels in {where} must be integer class ids of shape (N,); got shape {arr.shape}: "
            "store one integer per image (not one-hot vectors)"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if (
            arr.dtype == bool
            or not np.issubdtype(arr.dtype, np.floating)
            or not np.all(np.isfinite(arr))
            or np.any(arr != np.round(arr))
        ):
            raise DataError(f"labels in {where} must be integers; got dtype {arr.dtype}: store integer class ids")
    arr = arr.astype(np.int64) - first
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        upper = (num_classes - 1) if num_classes is not None else None
        if lo < 0 or (upper is not None and hi > upper):
            bad = lo if lo < 0 else hi
            rng = f"{first}..{first + upper}" if upper is not None else f"{first} or more"
            raise DataError(
                f"label {bad + first} in {where} is out of range: labels must be {rng}; "
                "fix the labels or set data.conditional=false to ignore them"
            )
        count = num_classes if num_classes is not None else hi + 1
    else:
        count = num_classes or 0
    return arr, int(count)


def _require_path(path, source: str, what: str) -> str:
    if path is None or (isinstance(path, str) and not path.strip()):
        raise DataError(f"source '{source}' needs a path: pass data.path=... pointing to {what}")
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise DataError(f"dataset path '{path}' does not exist: pass data.path=... pointing to {what}")
    return path


# --------------------------------------------------------------------------------------------
# Array-backed datasets: digits, MNIST, CIFAR-10, .npy/.npz
# --------------------------------------------------------------------------------------------


class ArrayImageDataset(ImageDataset):
    """Images in one array, held in memory or memory-mapped.

    ``layout`` is ``"NHWC"``, ``"NCHW"``, ``"NHW"`` (greyscale) or ``"planes"`` (N, C*H*W rows
    holding C row-major planes, the CIFAR-10 / downsampled-ImageNet layout; give ``src_shape``).
    ``value_range`` = (lo, hi) maps raw values linearly to [-1, 1] (uint8: (0, 255)).
    ``reopen`` (optional, picklable callable) recreates a memory-mapped array after unpickling,
    so that pickling never copies the mapped file."""

    _transient = ("_array",)

    def __init__(
        self,
        images: np.ndarray,
        *,
        layout: str,
        value_range: tuple[float, float] = (0.0, 255.0),
        labels: np.ndarray | None = None,
        num_classes: int = 0,
        name: str = "array",
        resolution: int | None = None,
        channels: int | None = None,
        pad: int = 0,
        src_shape: tuple[int, int, int] | None = None,
        reopen: Callable[[], np.ndarray] | None = None,
    ):
        n = images.shape[0]
        if layout == "NHWC":
            src = (images.shape[3], images.shape[1], images.shape[2])
        elif layout == "NCHW":
            src = tuple(images.shape[1:4])
        elif layout == "NHW":
            src = (1, images.shape[1], images.shape[2])
        elif layout == "planes":
            if src_shape is None or int(np.prod(src_shape)) != images.shape[1]:
                raise ValueError("layout 'planes' needs src_shape with C*H*W == images.shape[1]")
            src = tuple(src_shape)
        else:
            raise ValueError(f"unknown layout {layout!r}")
        super().__init__(
            name=name,
            length=n,
            src_shape=src,
            labels=labels,
            num_classes=num_classes,
            resolution=resolution,
            channels=channels,
            pad=pad,
        )
        self._array = images
        self._layout = layout
        self._value_range = (float(value_range[0]), float(value_range[1]))
        self._src_full = src
        self._reopen = reopen
        if reopen is None:
            self._transient = ()  # in-memory arrays travel with the pickle

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self._reopen()
        return self._array

    def _read(self, idx: np.ndarray) -> np.ndarray:
        arr = self.array
        if arr.ndim and isinstance(arr, np.memmap):
            # read in sorted order (sequential on disk), then restore the requested order
            order = np.argsort(idx, kind="stable")
            a = np.empty((idx.size, *arr.shape[1:]), dtype=arr.dtype)
            a[order] = arr[idx[order]]
        else:
            a = arr[idx]
        if self._layout == "NCHW":
            a = a.transpose(0, 2, 3, 1)
        elif self._layout == "NHW":
            a = a[..., None]
        elif self._layout == "planes":
            c, h, w = self._src_full
            a = a.reshape(-1, c, h, w).transpose(0, 2, 3, 1)
        return _to_unit_range(a, self._value_range)
