"""Downsampled ImageNet 64x64 (.npz batches of the official release)."""

from __future__ import annotations

import collections
import math
import os
import re
import zipfile

import numpy as np

from ..errors import DataError
from .common import ImageDataset, _check_options, _labels_array, _require_path
from .npz import _npz_member_header, _NpzMemmap
from .transforms import _to_unit_range

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
                raise DataError(
                    f"{where} is not an ImageNet batch: expected keys 'data' and 'labels': re-download or re-extract it"
                )
            shape, fortran, dtype, _ = header
            s = int(round(math.sqrt(shape[1] / 3))) if len(shape) == 2 else 0
            if len(shape) != 2 or 3 * s * s != shape[1] or dtype != np.uint8 or fortran:
                raise DataError(
                    f"{where}: expected 'data' uint8 of shape (N, 3*S*S) like (N, 12288), got shape {shape}, dtype {dtype}: re-download the file"
                )
            if side is None:
                side = s
            elif s != side:
                raise DataError(
                    f"{where} holds {s}x{s} images but '{files[0]}' holds {side}x{side}: keep one resolution per folder"
                )
            if raw_labels.shape[:1] != (shape[0],):
                raise DataError(
                    f"{where}: {raw_labels.shape[0] if raw_labels.ndim else 0} labels for {shape[0]} images: re-download the file"
                )
            lab, _ = _labels_array(
                raw_labels.reshape(-1),
                f"{where} (1-based labels 1..1000; add 1 if yours are 0-based)",
                num_classes=1000,
                first=1,
            )
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
            name=name,
            length=int(self._offsets[-1]),
            src_shape=(3, side, side),
            labels=all_labels,
            num_classes=1000,
            resolution=resolution,
            channels=channels,
        )

    @staticmethod
    def _discover(path: str, split: str) -> list[str]:
        if os.path.isfile(path):
            if not path.endswith(".npz"):
                raise DataError(
                    f"'{path}' is not an .npz batch: pass data.path=... pointing to the folder with train_data_batch_*.npz"
                )
            return [path]
        if split == "train":
            names = sorted(
                (n for n in os.listdir(path) if re.fullmatch(r"train_data_batch_\d+\.npz", n)), key=_batch_number
            )
            if not names:
                raise DataError(
                    f"no train_data_batch_*.npz files in '{path}': pass data.path=... pointing to the extracted downsampled-ImageNet training batches"
                )
        else:
            names = ["val_data.npz"] if os.path.isfile(os.path.join(path, "val_data.npz")) else []
            if not names:
                raise DataError(
                    f"no val_data.npz in '{path}': pass data.path=... pointing to the extracted downsampled-ImageNet validation data"
                )
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
