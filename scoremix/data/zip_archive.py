"""A zip of images in EDM's dataset_tool layout (what `scoremix data prepare` writes)."""

from __future__ import annotations

import io
import os
import zipfile

from ..errors import DataError
from .common import _check_options, _require_path
from .files import IMAGE_EXTENSIONS, _ImageFilesDataset, _is_image_name, _labels_from_json, _parse_dataset_json


class ZipImageDataset(_ImageFilesDataset):
    """A zip of images in EDM's dataset_tool layout (e.g. ``00000/img00000000.png``) with an
    optional ``dataset.json`` at the root: ``{"labels": [["00000/img00000000.png", 6], ...]}``
    or ``{"labels": null}``.  Images are listed in sorted member-name order and decoded lazily on
    ``get``.  One ZipFile handle per process, opened on first use (reopened after fork or
    unpickling).  Same size / channel rules as :class:`FolderImageDataset`."""

    _transient = ("_zip",)

    def __init__(self, path: str, resolution: int | None = None, channels: int | None = None, use_labels: bool = True):
        _check_options(resolution, channels)
        path = _require_path(path, "zip", "a zip of images (EDM dataset_tool layout)")
        if os.path.isdir(path):
            raise DataError(
                f"dataset path '{path}' is a folder, not a zip: pass data.source=folder or point data.path to the .zip file"
            )
        self._path = path
        self._zip = None
        self._zip_pid = None
        try:
            zf = self._zipfile()
            members = zf.namelist()
        except zipfile.BadZipFile as e:
            raise DataError(
                f"'{path}' is not a zip file ({e}): pass data.path=... pointing to a zip made by EDM's dataset_tool"
            ) from e
        names = sorted(
            m for m in members if not m.endswith("/") and not m.startswith("__MACOSX/") and _is_image_name(m)
        )
        if not names:
            raise DataError(
                f"no images found in zip '{path}' (looked for {', '.join(IMAGE_EXTENSIONS)}): pass data.path=... pointing to a zip of images"
            )
        labels, num_classes = None, 0
        if "dataset.json" in members and use_labels:
            where = f"dataset.json in '{path}'"
            mapping = _parse_dataset_json(zf.read("dataset.json"), where)
            if mapping is not None:
                labels, num_classes = _labels_from_json(mapping, names, where)
        self._setup_files(names, labels, num_classes, resolution, channels, f"zip:{os.path.basename(path)}")

    def _zipfile(self) -> zipfile.ZipFile:
        pid = os.getpid()
        if self._zip is None or self._zip_pid != pid:
            self._zip = zipfile.ZipFile(self._path)
            self._zip_pid = pid
        return self._zip

    def _describe(self, name: str) -> str:
        return f"'{name}' in '{self._path}'"

    def _open(self, name: str):
        # read the member fully: Pillow seeks, and a buffer keeps the shared handle short-lived
        return io.BytesIO(self._zipfile().read(name))

    def _open_header(self, name: str):
        # stream the member: Pillow reads only the first bytes to learn size and mode
        return self._zipfile().open(name)

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None
