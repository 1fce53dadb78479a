"""Images from .npy / .npz arrays (memory-mapped when uncompressed)."""

from __future__ import annotations

import math
import os
import struct
import zipfile

import numpy as np

from ..errors import DataError
from .common import ArrayImageDataset, _check_options, _labels_array, _require_path

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


_SHAPE_HINT = (
    "expected images of shape (N, H, W, C) or (N, C, H, W) with C in {1, 3}, or (N, H, W) for greyscale"
    " (vector data of shape (N, D): data.source=points)"
)


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
        raise DataError(
            f"{where}: images must be uint8 (0..255) or float (in [0, 1] or [-1, 1]); got dtype {arr.dtype}: convert them with x.astype(np.uint8)"
        )
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
            raise DataError(
                f"{where}: integer images must lie in 0..255; found values {lo:g}..{hi:g}: rescale them and save as uint8"
            )
        return (0.0, 255.0)
    tol = 1e-3
    if lo >= -1.0 - tol and hi <= 1.0 + tol:
        return (-1.0, 1.0) if lo < 0 else (0.0, 1.0)
    hint = "convert them to uint8 (0..255)" if lo >= 0 and hi <= 255 else "rescale them to [-1, 1]"
    raise DataError(f"{where}: float images must lie in [0, 1] or [-1, 1]; found values {lo:g}..{hi:g}: {hint}")


_NPZ_IMAGE_KEYS = (
    "x",
    "images",
    "data",
    "arr_0",
)  # arr_0 / arr_1: EDM / ADM sample files (np.savez(f, images, labels))
_NPZ_LABEL_KEYS = ("y", "labels", "arr_1")


def load_array_dataset(
    path: str, resolution: int | None = None, channels: int | None = None, use_labels: bool = True
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
        raise DataError(
            f"dataset path {where} is a folder, not a .npy/.npz file: pass data.source=folder or point data.path to the file"
        )
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and magic[:4] != b"PK\x03\x04":
        raise DataError(
            f"{where} is not a .npy/.npz file (pickles are never loaded): save the images with np.save or np.savez"
        )
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise DataError(
                f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays with np.save / np.savez"
            ) from e
        raise DataError(
            f"{where} is not a readable .npy/.npz file ({e}): save the images with np.save or np.savez"
        ) from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{where} is not a readable .npy/.npz file ({e}): save the images with np.save or np.savez"
        ) from e

    labels = None
    num_classes = 0
    reopen = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            img_key = next((k for k in _NPZ_IMAGE_KEYS if k in keys), None)
            if img_key is None:
                raise DataError(
                    f"{where} has no image array: expected a key 'x', 'images' or 'data'; found keys {keys}: save with np.savez(path, x=images, y=labels)"
                )
            header = _npz_member_header(path, img_key)
            if header is None:
                raise DataError(
                    f"{where}: cannot read member '{img_key}': save with np.savez(path, x=images, y=labels)"
                )
            shape, _, dtype, offset = header
            if dtype.hasobject:
                raise DataError(
                    f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays"
                )
            _array_layout(shape, where)  # shape check before loading anything
            if offset is not None:
                reopen = _NpzMemmap(path, img_key)
                images = reopen()
            else:
                try:
                    images = loaded[img_key]
                except ValueError as e:
                    raise DataError(
                        f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays"
                    ) from e
            lab_key = next((k for k in _NPZ_LABEL_KEYS if k in keys), None)
            if use_labels and lab_key is not None:
                try:
                    raw_labels = loaded[lab_key]
                except ValueError as e:
                    raise DataError(
                        f"{where}: labels '{lab_key}' hold pickled Python objects: save integer labels"
                    ) from e
                if raw_labels.shape[:1] != (shape[0],):
                    raise DataError(
                        f"{where}: {raw_labels.shape[0] if raw_labels.ndim else 0} labels for {shape[0]} images: provide exactly one label per image"
                    )
                labels, num_classes = _labels_array(raw_labels, where)
    else:
        images = loaded
        if images.dtype.hasobject:
            raise DataError(
                f"{where} holds pickled Python objects, which are not loaded for safety: save plain numeric arrays"
            )
        if isinstance(images, np.memmap):
            reopen = _NpyMemmap(path)
    layout = _array_layout(images.shape, where)
    if images.shape[0] == 0:
        raise DataError(f"{where} holds no images (N = 0): point data.path to a non-empty array")
    value_range = _value_range(images, where)
    return ArrayImageDataset(
        images,
        layout=layout,
        value_range=value_range,
        labels=labels,
        num_classes=num_classes,
        name=f"npz:{os.path.basename(path)}",
        resolution=resolution,
        channels=channels,
        reopen=reopen,
    )
