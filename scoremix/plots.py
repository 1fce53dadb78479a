"""Pictures of samples with Pillow only: scatter plots for 2-D data, grids for images."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from .errors import ScoremixError


def scatter_image(
    points: torch.Tensor,
    bounds: tuple[float, float, float, float],
    size: int = 400,
    color=(31, 119, 180),
    title: str | None = None,
) -> Image.Image:
    """Points as small dots on a white square covering bounds = (xmin, xmax, ymin, ymax)."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    xmin, xmax, ymin, ymax = bounds
    pts = points.detach().cpu().double().numpy()
    px = (pts[:, 0] - xmin) / (xmax - xmin) * (size - 1)
    py = (1 - (pts[:, 1] - ymin) / (ymax - ymin)) * (size - 1)
    keep = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    for x, y in zip(px[keep], py[keep]):
        draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=color)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(160, 160, 160))
    if title:
        draw.text((6, 4), title, fill=(0, 0, 0))
    return img


def image_grid(x: torch.Tensor, nrow: int | None = None, pad: int = 1) -> Image.Image:
    """(B, C, H, W) in [-1, 1] -> one grid picture."""
    x = x.detach().cpu().float().clamp(-1, 1)
    b, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(b))))
    ncol = int(math.ceil(b / nrow))
    arr = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    canvas = np.zeros((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(b):
        r, col = divmod(i, nrow)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = arr[
            i
        ]
    if c == 1:
        return Image.fromarray(canvas[:, :, 0], mode="L")
    return Image.fromarray(canvas, mode="RGB")


def side_by_side(images: list[Image.Image], gap: int = 8, scale: int = 1) -> Image.Image:
    images = [im.convert("RGB") for im in images]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, max(im.height for im in images)), "white")
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def titled_grid(panels: list[tuple[str, Image.Image]], cols: int) -> Image.Image:
    """(title, picture) panels in rows of `cols` cells, each cell the largest panel's size plus a title line."""
    width = max(img.width for _, img in panels)
    height = max(img.height for _, img in panels) + 16
    grid = Image.new("RGB", (cols * width, math.ceil(len(panels) / cols) * height), "white")
    for i, (title, img) in enumerate(panels):
        x, y = (i % cols) * width, (i // cols) * height
        grid.paste(img.convert("RGB"), (x, y + 16))
        ImageDraw.Draw(grid).text((x + 4, y + 2), title, fill="black")
    return grid


def toy_bounds(reference: torch.Tensor, margin: float = 0.15) -> tuple[float, float, float, float]:
    lo, hi = reference.min(0).values, reference.max(0).values
    span = (hi - lo).max().item()
    mid = (hi + lo) / 2
    half = span * (0.5 + margin)
    return (mid[0].item() - half, mid[0].item() + half, mid[1].item() - half, mid[1].item() + half)


def samples_picture(
    samples: torch.Tensor, reference: torch.Tensor | None = None, titles=("samples", "data")
) -> Image.Image:
    """A picture of samples (scatter for vectors: their first two coordinates; grid for images), next to
    the data when given."""
    if samples.ndim == 2 and samples.shape[1] > 2:
        samples = samples[:, :2]
        reference = reference[:, :2] if reference is not None else None
    if samples.ndim == 2 and samples.shape[1] == 1:  # 1-D points: against a zero second axis
        samples = torch.cat([samples, torch.zeros_like(samples)], 1)
        reference = torch.cat([reference, torch.zeros_like(reference)], 1) if reference is not None else None
    if samples.ndim == 2 and samples.shape[1] == 2:
        bounds = toy_bounds(reference if reference is not None else samples)
        pics = [scatter_image(samples, bounds, title=titles[0])]
        if reference is not None:
            pics.append(scatter_image(reference, bounds, color=(214, 39, 40), title=titles[1]))
        return side_by_side(pics)
    if samples.ndim == 4:
        scale = max(1, 128 // samples.shape[-1])
        pics = [image_grid(samples)]
        if reference is not None:
            pics.append(image_grid(reference))
        return side_by_side(pics, scale=scale)
    raise ScoremixError(f"cannot draw samples of shape {tuple(samples.shape)}")


def save_picture(img: Image.Image, path: str) -> None:
    import io

    from .checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
