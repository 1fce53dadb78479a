"""Local feature networks: a small classifier trained on the dataset itself (`scoremix features train`);
its penultimate layer (128-d, after ReLU) gives features for Frechet distance / KID and its head gives
logits, with nothing from the internet. The network is `metrics.digits.DigitClassifier`.

Saved as safetensors; the metadata records the architecture, input shape (C, H, W), number of classes,
data source, held-out accuracy and training settings. Loading reads tensors only (no pickle).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ConfigError
from ..metrics.digits import DigitClassifier, train_digit_classifier
from .extractor import FeatureExtractor, file_sha256

FORMAT = "scoremix-features"
ARCH = "digit-cnn"


def uint8_to_unit(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [-1, 1] with the network's channels and size: grey -> RGB repeats
    the plane, RGB -> grey uses the ITU-R 601 luma weights, other sizes are resized bilinearly
    (antialiased when shrinking)."""
    c, h, w = shape
    x = images.float() / 127.5 - 1.0
    if x.shape[1] != c:
        if c == 3 and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        elif c == 1 and x.shape[1] == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[None, :, None, None]).sum(1, keepdim=True)
        else:
            raise ValueError(f"cannot convert {x.shape[1]}-channel images to {c} channels")
    if tuple(x.shape[2:]) != (h, w):
        x = F.interpolate(
            x, size=(h, w), mode="bilinear", align_corners=False, antialias=x.shape[2] > h or x.shape[3] > w
        )
    return x


class LocalFeatureNet(FeatureExtractor):
    kind = "local"
    has_logits = True

    def __init__(self, model: DigitClassifier, meta: dict, path: str = "", sha256: str = "", device="cpu"):
        super().__init__(device)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.input_shape = tuple(meta["input_shape"])
        self.path, self.sha256 = (os.path.abspath(path) if path else ""), sha256
        self.name = os.path.basename(path) if path else f"{ARCH}:{meta.get('data_source', '?')}"
        self.dim = model.classify[1].out_features
        self.preprocessing = f"uint8 / 127.5 - 1, channels and size converted to {list(self.input_shape)}"

    def _forward(self, images: torch.Tensor):
        x = uint8_to_unit(images, self.input_shape)
        hidden = self.model.classify[:3](self.model.features(x))  # flatten, linear, ReLU: penultimate layer
        return hidden, self.model.classify[3:](hidden)

    def describe(self) -> dict:
        out = super().describe()
        out.update({k: self.meta[k] for k in ("data_source", "held_out_accuracy", "input_shape") if k in self.meta})
        return out


def train_local_features(
    images: torch.Tensor, labels: torch.Tensor, source: str, held_out: float = 0.1, epochs: int = 6, seed: int = 0
) -> LocalFeatureNet:
    """Train the classifier on images in [-1, 1] (N, C, H, W) with integer labels, holding out a seeded
    `held_out` share of the images to measure its accuracy."""
    n = images.shape[0]
    n_test = max(1, int(round(n * held_out)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test, train = order[:n_test], order[n_test:]
    t0 = time.time()
    max_shift = int(2 * min(images.shape[2:]) / 28)  # shifts of up to 2 pixels at 28x28, none at 8x8
    model = train_digit_classifier(images[train], labels[train], epochs=epochs, seed=seed, max_shift=max_shift)
    with torch.no_grad():
        pred = torch.cat([model(images[test[i : i + 500]]).argmax(1) for i in range(0, n_test, 500)])
    accuracy = float((pred == labels[test]).double().mean())
    meta = {
        "format": FORMAT,
        "arch": ARCH,
        "input_shape": list(images.shape[1:]),
        "num_classes": int(model.classify[-1].out_features),
        "data_source": source,
        "held_out_accuracy": accuracy,
        "train_images": int(train.numel()),
        "held_out_images": int(n_test),
        "epochs": epochs,
        "max_shift": max_shift,
        "seed": seed,
        "train_seconds": round(time.time() - t0, 1),
    }
    return LocalFeatureNet(model, meta)


def save_local_features(net: LocalFeatureNet, path: str) -> None:
    from safetensors.torch import save

    from ..checkpoint import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"format": FORMAT, "meta": json.dumps(net.meta)}))


def load_local_extractor(path: str, device="cpu") -> LocalFeatureNet:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:
        raise ConfigError(f"'{path}' is not a readable safetensors file ({type(err).__name__})") from None
    if header.get("format") != FORMAT:
        raise ConfigError(
            f"'{path}' is a safetensors file but not a feature network; make one with "
            "`scoremix features train --data SOURCE --out FILE`"
        )
    meta = json.loads(header["meta"])
    model = DigitClassifier(int(meta["input_shape"][0]), int(meta["num_classes"]))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise ConfigError(
            f"'{path}': weights do not match the {ARCH} network ({str(err).splitlines()[0][:120]})"
        ) from None
    return LocalFeatureNet(model, meta, path, file_sha256(path), device)


def dataset_arrays(dataset) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All images (float [-1, 1]) and labels of an ImageDataset."""
    x, y = dataset.get(np.arange(len(dataset)))
    return x, y
