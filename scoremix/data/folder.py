"""A folder of image files, with class sub-folders or a dataset.json for labels."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from .common import _check_options, _require_path
from .files import IMAGE_EXTENSIONS, _ImageFilesDataset, _is_image_name, _labels_from_json, _parse_dataset_json


class FolderImageDataset(_ImageFilesDataset):
    """A folder of PNG / JPEG / BMP / WebP images, read lazily (one decode per image per ``get``).

    Layouts:
      * ``dataset.json`` at the root (EDM dataset_tool output written to a folder): all images
        below the root, labels from the json (``{"labels": [["00000/img00000000.png", 6], ...]}``
        or ``null``);
      * only sub-folders at the root: one class per sub-folder, class ids from the sorted
        sub-folder names, images anywhere below each sub-folder; every class folder must hold
        at least one image;
      * otherwise: all images below the root, unlabelled.
    Hidden files and folders (starting with '.') are skipped.  All images must share one size
    unless ``resolution`` is given (then each is centre-cropped and resized), and one channel
    count unless ``channels`` is given (then each is converted).  RGBA / LA lose alpha; 16-bit
    greyscale PNGs are scaled from 0..65535."""

    def __init__(self, path: str, resolution: int | None = None, channels: int | None = None, use_labels: bool = True):
        _check_options(resolution, channels)
        path = _require_path(path, "folder", "a folder of images")
        if not os.path.isdir(path):
            hint = ""
            if path.lower().endswith(".zip"):
                hint = " (for a zip of images use data.source=zip)"
            elif path.lower().endswith((".npz", ".npy")):
                hint = " (for an array file use data.source=npz)"
            raise DataError(
                f"dataset path '{path}' is not a folder{hint}: pass data.path=... pointing to a folder of images"
            )
        self._root = path
        names, labels, num_classes = self._list(path, use_labels)
        self._setup_files(
            names, labels, num_classes, resolution, channels, f"folder:{os.path.basename(os.path.normpath(path))}"
        )

    @staticmethod
    def _walk(root: str, sub: str = "") -> list[str]:
        out = []
        top = os.path.join(root, sub) if sub else root
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            out.extend(prefix + f for f in filenames if _is_image_name(f))
        return sorted(out)

    def _list(self, root: str, use_labels: bool):
        where = f"'{root}'"
        meta_path = os.path.join(root, "dataset.json")
        entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
        top_images = [e for e in entries if os.path.isfile(os.path.join(root, e)) and _is_image_name(e)]
        subdirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
        empty_msg = (
            f"no images found in {where} (looked for {', '.join(IMAGE_EXTENSIONS)}, sub-folders included): "
            "pass data.path=... pointing to a folder of images"
        )
        if os.path.isfile(meta_path):
            names = self._walk(root)
            if not names:
                raise DataError(empty_msg)
            with open(meta_path, "rb") as f:
                mapping = _parse_dataset_json(f.read(), f"'{meta_path}'")
            if mapping is None or not use_labels:
                return names, None, 0
            labels, k = _labels_from_json(mapping, names, f"'{meta_path}'")
            return names, labels, k
        if top_images or not subdirs:
            names = self._walk(root)
            if not names:
                raise DataError(empty_msg)
            return names, None, 0
        names, labels = [], []
        for k, d in enumerate(subdirs):
            files = self._walk(root, d)
            if not files:
                raise DataError(
                    f"class folder '{os.path.join(root, d)}' has no images: add images to it or remove it "
                    "(class ids come from the sorted sub-folder names)"
                )
            names.extend(files)
            labels.extend([k] * len(files))
        if not use_labels:
            return names, None, 0
        return names, np.asarray(labels, dtype=np.int64), len(subdirs)

    def _describe(self, name: str) -> str:
        return f"'{os.path.join(self._root, name)}'"

    def _open(self, name: str):
        return open(os.path.join(self._root, name), "rb")
