"""One-file-per-image sources (folder, zip): header checks and lazy decoding."""

from __future__ import annotations

import json
import zipfile
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import DataError
from .common import ImageDataset, _labels_array
from .transforms import _to_unit_range

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Folder / zip sources check every image header when the dataset is built if there are at most
# this many images; beyond it only the first image is inspected up front and every image is
# checked when it is read (a mismatch then raises DataError from ``get``).
HEADER_SCAN_LIMIT = 50_000


_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
_UNSUPPORTED_MODES = {"F", "I;32", "I;32L", "I;32B"}


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
            raise DataError(
                f"{where}: label of '{n}' is {v!r}, but only integer class ids are supported: fix the labels or set data.conditional=false to ignore them"
            )
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
            name=name,
            length=len(names),
            src_shape=(first_c, h, w),
            labels=labels,
            num_classes=num_classes,
            resolution=resolution,
            channels=channels,
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
            raise DataError(
                f"cannot read image {self._describe(name)} ({type(e).__name__}: {e}): remove or replace the file"
            ) from e
        if mode in _UNSUPPORTED_MODES:
            raise DataError(
                f"image {self._describe(name)} has unsupported mode {mode!r}: save it as 8-bit greyscale or RGB"
            )
        return mode, size

    def _decode(self, name: str) -> np.ndarray:
        try:
            with self._open(name) as f:
                with Image.open(f) as img:
                    img.load()
                    mode, size = img.mode, img.size
                    if mode in _UNSUPPORTED_MODES:
                        raise DataError(
                            f"image {self._describe(name)} has unsupported mode {mode!r}: save it as 8-bit greyscale or RGB"
                        )
                    arr = _image_to_float(img)
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, zipfile.BadZipFile) as e:
            raise DataError(
                f"cannot read image {self._describe(name)} ({type(e).__name__}: {e}): remove or replace the file"
            ) from e
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
