"""Pixel transforms shared by every image source: uint8 to [-1, 1], channel conversion, resizing."""

from __future__ import annotations

import numpy as np
from PIL import Image

# uint8 -> [-1, 1], correctly rounded to float32 (0 -> -1, 255 -> 1)
_U8_TO_UNIT = (np.arange(256, dtype=np.float64) / 127.5 - 1.0).astype(np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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
