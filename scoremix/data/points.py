"""Vector data a user brings: an (N, D) array of points from a .npy, .npz or .csv file.

The points are standardised before training and the transform is kept with the dataset (and written to
the run folder), so samples can be mapped back to the file's units with `PointsDataset.to_original`:

    none      x                          (the file's units)
    global    (x - mean) / s             mean per coordinate, one scale s = std of all centred values,
                                         so distances and isotropic mixtures keep their shape
    per_dim   (x - mean) / std_d         one scale per coordinate

An .npz may also describe the mixture the points came from (keys `means` (K, D), `stds` (K,) or a scalar,
`weights` (K,)), in the file's units; then the exact mode metrics (precision, modes covered, mode_kl)
are reported as for the built-in toys.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import DataError

STANDARDIZE_CHOICES = ("none", "global", "per_dim")
_POINT_KEYS = ("x", "points", "data")
_LABEL_KEYS = ("y", "labels")


class PointsMixture:
    """The known mixture of a points file, in standardised units (what mode_metrics reads)."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor):
        self.means, self.stds, self.weights = means, stds, weights


def _read_array(path: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(points, labels or None, extra arrays of an .npz)."""
    if not os.path.isfile(path):
        raise DataError(
            f"data.path='{path}' does not exist; data.source=points needs an .npy, .npz or .csv "
            "file holding an (N, D) array"
        )
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False), None, {}
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            key = next((k for k in _POINT_KEYS if k in arrays), None)
            if key is None:
                if len(arrays) != 1:
                    raise DataError(
                        f"'{path}' holds {sorted(arrays)}; name the points array one of {', '.join(_POINT_KEYS)}"
                    )
                key = next(iter(arrays))
            label_key = next((k for k in _LABEL_KEYS if k in arrays), None)
            return arrays[key], (arrays[label_key] if label_key else None), arrays
        if ext == ".csv":
            with open(path) as fh:
                first = fh.readline()
            has_header = any(c.isalpha() and c not in "eE" for c in first)
            return np.loadtxt(path, delimiter=",", skiprows=1 if has_header else 0, ndmin=2), None, {}
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read points from '{path}': {str(err).splitlines()[0]}") from None
    raise DataError(f"data.path='{path}': data.source=points reads .npy, .npz or .csv files, not '{ext}'")


def _transform(x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) with standardised = (x - mean) / scale; scale has shape (D,)."""
    d = x.shape[1]
    if kind == "none":
        return np.zeros(d), np.ones(d)
    mean = x.mean(0)
    centred = x - mean
    if kind == "global":
        s = float(np.sqrt((centred**2).mean()))
        scale = np.full(d, s if s > 0 else 1.0)
    else:
        scale = centred.std(0)
        scale[scale == 0] = 1.0
    return mean, scale


class PointsDataset:
    """Finite (N, D) float points in standardised units, with the `get(indices)` interface of the image
    datasets so the same epoch-wise source and exact resume apply."""

    def __init__(self, path: str, standardize: str = "global", use_labels: bool = False):
        if standardize not in STANDARDIZE_CHOICES:
            raise DataError(f"data.standardize='{standardize}' is unknown; use one of {', '.join(STANDARDIZE_CHOICES)}")
        raw, labels, extra = _read_array(path)
        if raw.ndim != 2 or raw.shape[0] < 2 or raw.shape[1] < 1:
            raise DataError(
                f"'{path}' holds an array of shape {raw.shape}; data.source=points needs (N, D) "
                "with N >= 2 points of D coordinates (images go through data.source=npz)"
            )
        if not np.issubdtype(raw.dtype, np.number):
            raise DataError(f"'{path}': the points array has dtype {raw.dtype}; it must be numeric")
        raw = raw.astype(np.float64)
        if not np.isfinite(raw).all():
            bad = int((~np.isfinite(raw)).any(1).sum())
            raise DataError(f"'{path}': {bad} points have NaN or infinite coordinates; remove them")
        self.path = path
        self.standardize = standardize
        self.mean, self.scale = _transform(raw, standardize)
        self.points = torch.from_numpy((raw - self.mean) / self.scale).float()
        self.shape = (raw.shape[1],)
        self.labels = None
        self.num_classes = 0
        if use_labels:
            if labels is None:
                raise DataError(f"data.conditional=true but '{path}' has no labels (an .npz key y or labels)")
            labels = np.asarray(labels).reshape(-1)
            if labels.shape[0] != raw.shape[0] or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
                raise DataError(f"'{path}': labels must be {raw.shape[0]} non-negative integers")
            self.labels = torch.from_numpy(labels.astype(np.int64))
            self.num_classes = int(labels.max()) + 1
        self.mixture = self._mixture(extra)

    def _mixture(self, extra: dict) -> PointsMixture | None:
        if "means" not in extra:
            return None
        d = self.shape[0]
        means = np.asarray(extra["means"], dtype=np.float64)
        if means.ndim != 2 or means.shape[1] != d:
            raise DataError(f"'{self.path}': means must have shape (K, {d}), got {means.shape}")
        k = means.shape[0]
        stds = np.broadcast_to(np.asarray(extra.get("stds", np.zeros(())), dtype=np.float64), (k,)).copy()
        weights = np.asarray(extra.get("weights", np.full(k, 1.0 / k)), dtype=np.float64).reshape(-1)
        if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0 or (stds <= 0).any():
            raise DataError(f"'{self.path}': the mixture needs {k} non-negative weights and positive stds")
        if self.standardize == "per_dim" and not np.allclose(self.scale, self.scale[0]):
            raise DataError(
                "the mode metrics assume isotropic components; use data.standardize=global or none "
                "with a file that names its mixture"
            )
        s = float(self.scale[0])
        return PointsMixture(
            torch.from_numpy((means - self.mean) / s).float(),
            torch.from_numpy(stds / s).float(),
            torch.from_numpy(weights / weights.sum()).float(),
        )

    def __len__(self) -> int:
        return self.points.shape[0]

    def get(self, indices) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return self.points[idx], (self.labels[idx] if self.labels is not None else None)

    def transform_record(self) -> dict:
        """What a run writes to data_transform.json: standardised = (x - mean) / scale."""
        return {
            "source": "points",
            "path": os.path.abspath(self.path),
            "standardize": self.standardize,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    def to_original(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised samples back in the file's units."""
        return x * torch.as_tensor(self.scale, dtype=x.dtype) + torch.as_tensor(self.mean, dtype=x.dtype)
