"""`scoremix data prepare`: resize a dataset once into an EDM-style zip (PNG files + dataset.json).

Layout (what EDM's dataset_tool writes and the `zip` source reads): `00000/img00000000.png`, ... with
1000 images per folder, and `dataset.json` = {"labels": [[name, class id], ...]} or {"labels": null}.
Training from the zip then decodes small PNGs instead of resizing every image on every read.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
from PIL import Image

from ..errors import DataError
from .images import IMAGE_SOURCES, load_image_dataset, tensor_to_uint8

_NAMED = ("digits", "mnist")


def guess_source(spec: str) -> tuple[str, str | None]:
    """(source, path) from a SOURCE argument: a built-in name, or a path whose kind is read off it."""
    if spec in _NAMED:
        return spec, None
    if not os.path.exists(spec):
        raise DataError(
            f"'{spec}' is neither a built-in dataset ({', '.join(_NAMED)}) nor an existing file or "
            "folder: pass a path to a folder of images, a .npz/.npy, a .zip or a CIFAR-10 folder"
        )
    if os.path.isdir(spec):
        names = set(os.listdir(spec))
        if "data_batch_1" in names or "cifar-10-batches-py" in names:
            return "cifar10", spec
        return "folder", spec
    ext = os.path.splitext(spec)[1].lower()
    if ext in (".npz", ".npy"):
        return "npz", spec
    if ext == ".zip":
        return "zip", spec
    if ext in (".gz", ".tar") or spec.endswith(".tar.gz"):
        return "cifar10", spec
    raise DataError(
        f"cannot tell the kind of dataset '{spec}' from its name; pass --source with one of "
        f"{', '.join(s for s in IMAGE_SOURCES if s != 'npy')}"
    )


def prepare_zip(
    source: str,
    path: str | None,
    out: str,
    resolution: int | None = None,
    channels: int | None = None,
    labels: bool = True,
    chunk: int = 256,
    echo=print,
) -> dict:
    """Write the dataset as PNGs at `resolution` into the zip `out` (atomically); returns a summary."""
    if not out.endswith(".zip"):
        raise DataError(f"--out '{out}' must name a .zip file")
    dataset = load_image_dataset(source, path=path, resolution=resolution, channels=channels, use_labels=labels)
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.path.basename(out)}")
    n = len(dataset)
    names, label_values = [], []
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for start in range(0, n, chunk):
                idx = np.arange(start, min(n, start + chunk))
                x, y = dataset.get(idx)
                pixels = tensor_to_uint8(x).permute(0, 2, 3, 1).numpy()
                for k, i in enumerate(idx):
                    name = f"{i // 1000:05d}/img{i:08d}.png"
                    image = pixels[k, :, :, 0] if pixels.shape[-1] == 1 else pixels[k]
                    buf = io.BytesIO()
                    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
                    zf.writestr(name, buf.getvalue())
                    names.append(name)
                    if y is not None:
                        label_values.append(int(y[k]))
                if start // chunk % 20 == 0:
                    echo(f"{min(n, start + chunk)}/{n} images")
            meta = {"labels": [[a, b] for a, b in zip(names, label_values)] if label_values else None}
            zf.writestr("dataset.json", json.dumps(meta))
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    shape = tuple(dataset.shape)
    return {"images": n, "shape": shape, "num_classes": dataset.num_classes, "out": out}
