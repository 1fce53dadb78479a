"""CIFAR-10 python pickles, read with a restricted unpickler that runs no code."""

from __future__ import annotations

import codecs
import os
import pickle
from typing import Callable

import numpy as np

from ..errors import DataError
from .common import ArrayImageDataset, _check_options, _labels_array, _require_path

# -- CIFAR-10 (python pickles) ------------------------------------------------------------------


def _np_reconstruct():
    return np.zeros(1).__reduce__()[0]


def _safe_codecs_encode(obj, encoding="utf-8", errors="strict"):
    """Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "").replace("_", "") not in (
        "latin1",
        "iso88591",
        "utf8",
        "ascii",
    ):
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
        raise DataError(
            f"'{path}' is not a readable CIFAR-10 batch ({type(e).__name__}: {e}): re-extract cifar-10-python.tar.gz"
        ) from e


def _dict_get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def _find_cifar_dir(path: str) -> str:
    if os.path.isfile(path):
        if path.endswith((".tar.gz", ".tgz")):
            raise DataError(
                f"'{path}' is the CIFAR-10 archive: extract it first (tar xzf {os.path.basename(path)}) and pass data.path=<folder>/cifar-10-batches-py"
            )
        path = os.path.dirname(path)
    if os.path.isfile(os.path.join(path, "data_batch_1")) or os.path.isfile(os.path.join(path, "test_batch")):
        return path
    sub = os.path.join(path, "cifar-10-batches-py")
    if os.path.isdir(sub):
        return sub
    archive = os.path.join(path, "cifar-10-python.tar.gz")
    if os.path.isfile(archive):
        raise DataError(
            f"'{path}' holds cifar-10-python.tar.gz but no extracted batches: run tar xzf {archive} -C {path}"
        )
    raise DataError(
        f"no CIFAR-10 batches in '{path}': pass data.path=... pointing to the cifar-10-batches-py folder (or its parent) of the CIFAR-10 python version"
    )


def load_cifar10_dataset(
    path: str, split: str = "train", resolution: int | None = None, channels: int | None = None, use_labels: bool = True
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
        raise DataError(
            f"CIFAR-10 folder '{root}' is incomplete: missing {', '.join(missing)}: re-extract cifar-10-python.tar.gz"
        )
    datas, labs = [], []
    for n in names:
        file = os.path.join(root, n)
        d = load_cifar10_pickle(file)
        data = _dict_get(d, "data") if isinstance(d, dict) else None
        labels = _dict_get(d, "labels") if isinstance(d, dict) else None
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
            got = f"shape {data.shape}, dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(
                f"'{file}' is not a CIFAR-10 batch: expected b'data' uint8 of shape (N, 3072), got {got}: re-extract cifar-10-python.tar.gz"
            )
        if labels is None or len(labels) != data.shape[0]:
            raise DataError(
                f"'{file}' is not a CIFAR-10 batch: expected {data.shape[0]} entries in b'labels': re-extract cifar-10-python.tar.gz"
            )
        lab, _ = _labels_array(np.asarray(labels), f"'{file}'", num_classes=10)
        datas.append(data)
        labs.append(lab)
    images = np.concatenate(datas) if len(datas) > 1 else datas[0]
    labels = np.concatenate(labs) if use_labels else None
    return ArrayImageDataset(
        images,
        layout="planes",
        src_shape=(3, 32, 32),
        labels=labels,
        num_classes=10,
        name="cifar10" if split == "train" else "cifar10-test",
        resolution=resolution,
        channels=channels,
    )
