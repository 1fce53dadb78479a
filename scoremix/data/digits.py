"""scikit-learn's 8x8 handwritten digits (bundled with scikit-learn, nothing downloaded)."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .common import ArrayImageDataset, _check_options


def load_digits_dataset(
    resolution: int | None = None, channels: int | None = None, use_labels: bool = True
) -> ArrayImageDataset:
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
        images,
        layout="NHW",
        value_range=(0.0, 16.0),
        labels=labels,
        num_classes=10,
        name="digits",
        resolution=resolution,
        channels=channels,
    )
