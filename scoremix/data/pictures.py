"""Saving image grids and converting [-1, 1] images to uint8."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

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
        raise ValueError(
            f"save_image_grid expects images of shape (B, C, H, W) with C in {{1, 3}} and B >= 1; got {tuple(u.shape)}"
        )
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
