"""The interface every feature extractor implements, and the file digest they record (the lower layer of
scoremix.features: the package and its extractors import it, it imports none of them)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FeatureExtractor:
    """Base class: subclasses set the attributes and implement `_forward(images uint8 on device)`."""

    kind = "base"
    name = ""
    path = ""
    sha256 = ""
    dim = 0
    has_logits = False
    preprocessing = ""

    def __init__(self, device="cpu"):
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"feature extractors take uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        features, logits = self._forward(images.to(self.device))
        features = features.reshape(features.shape[0], -1).double().cpu().numpy()
        return features, (None if logits is None else logits.double().cpu().numpy())

    def _forward(self, images: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "feature_dim": self.dim,
            "has_logits": self.has_logits,
            "preprocessing": self.preprocessing,
        }
