"""Image data sources for training one-step generators.

Every source is an :class:`ImageDataset`; the trainer uses only this interface::

    len(ds)                 number of images
    ds.shape                (C, H, W) of one image after resizing / padding / channel conversion
    ds.num_classes          number of classes, 0 when unlabelled (or use_labels=False)
    ds.get(indices)         (x, labels): x float32 (B, C, H, W) in [-1, 1];
                            labels int64 (B,) or None when unlabelled
    ds.name                 short description, e.g. "cifar10" or "folder:cats"

Build one with :func:`load_image_dataset` (source names: ``digits``, ``mnist``, ``folder``,
``npz``/``npy``, ``zip``, ``cifar10``, ``imagenet64``).

Memory: small sources (digits, the 5k MNIST digits, CIFAR-10) are held in memory as uint8.
Large sources are read lazily on every ``get``: a folder or zip of images decodes only the
requested files; a ``.npy`` file is memory-mapped; an uncompressed ``.npz`` member (written by
``np.savez``) is memory-mapped too, a compressed one (``np.savez_compressed``) is loaded whole
on first use.  Values are converted to float32 only inside ``get``.

Resizing (``resolution``): images whose size differs from ``resolution`` are centre-cropped to
a square and resized with Pillow in float precision (box filter when shrinking, bilinear when
enlarging), on every ``get`` call.  Channel conversion (``channels``): grey -> RGB repeats
the plane; RGB -> grey uses the ITU-R 601-2 luma weights (0.299, 0.587, 0.114), as Pillow does.

Datasets are safe to pickle (e.g. for DataLoader workers) and to use after ``fork``: file
handles and memory maps are dropped on pickling and reopened lazily, and a zip handle is
reopened in each new process.

The code lives in one module per format (digits, mnist, npz, cifar10, folder, zip_archive, imagenet64, with
the shared parts in common, transforms, files and pictures); this module re-exports them and builds a
dataset from its source name.
"""

from __future__ import annotations

from ..errors import DataError
from .cifar10 import load_cifar10_dataset, load_cifar10_pickle
from .common import IMAGE_SOURCES, ArrayImageDataset, ImageDataset, _check_options
from .digits import load_digits_dataset
from .folder import FolderImageDataset
from .imagenet64 import ImageNet64Dataset
from .mnist import _mnist_5k_path, load_mnist_dataset  # noqa: F401  (the bundled file's path)
from .npz import load_array_dataset
from .pictures import save_image_grid, tensor_to_uint8
from .zip_archive import ZipImageDataset

__all__ = [
    "ImageDataset",
    "ArrayImageDataset",
    "FolderImageDataset",
    "ZipImageDataset",
    "ImageNet64Dataset",
    "IMAGE_SOURCES",
    "load_image_dataset",
    "load_digits_dataset",
    "load_mnist_dataset",
    "load_array_dataset",
    "load_cifar10_dataset",
    "load_cifar10_pickle",
    "tensor_to_uint8",
    "save_image_grid",
]

# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


def load_image_dataset(
    source: str,
    path: str | None = None,
    resolution: int | None = None,
    channels: int | None = None,
    use_labels: bool = True,
    *,
    split: str = "train",
) -> ImageDataset:
    """Build an image dataset.

    source: 'digits' | 'mnist' (built in, take no path) | 'folder' | 'npz' / 'npy' | 'zip' |
    'cifar10' | 'imagenet64'.  resolution: output side length (default: the source's own;
    mnist defaults to 32 by padding).  channels: 1 or 3 to convert (default: the source's own).
    use_labels=False drops labels (num_classes 0).  split: 'train' or 'test'/'val' (cifar10,
    imagenet64 only)."""
    if not isinstance(source, str) or source.strip().lower() not in IMAGE_SOURCES:
        raise DataError(f"unknown image source {source!r}: set data.source to one of {', '.join(IMAGE_SOURCES)}")
    source = source.strip().lower()
    _check_options(resolution, channels)
    if split != "train" and source not in ("cifar10", "imagenet64"):
        raise DataError(
            f"source '{source}' has no {split!r} split: use split 'train' (only cifar10 and imagenet64 have test/val splits)"
        )
    if source in ("digits", "mnist"):
        if path is not None and str(path).strip():
            raise DataError(
                f"source '{source}' is built in and takes no path; got data.path='{path}': remove data.path"
            )
        loader = load_digits_dataset if source == "digits" else load_mnist_dataset
        return loader(resolution=resolution, channels=channels, use_labels=use_labels)
    if source == "folder":
        return FolderImageDataset(path, resolution=resolution, channels=channels, use_labels=use_labels)
    if source in ("npz", "npy"):
        return load_array_dataset(path, resolution=resolution, channels=channels, use_labels=use_labels)
    if source == "zip":
        return ZipImageDataset(path, resolution=resolution, channels=channels, use_labels=use_labels)
    if source == "cifar10":
        return load_cifar10_dataset(path, split=split, resolution=resolution, channels=channels, use_labels=use_labels)
    return ImageNet64Dataset(path, split=split, resolution=resolution, channels=channels, use_labels=use_labels)
