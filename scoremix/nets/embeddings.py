"""Conditioning embeddings shared by every backbone."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..precision import fp32_region


def _cos_sin(angles: torch.Tensor) -> torch.Tensor:
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar (the noise level c_noise)."""

    def __init__(self, num_channels: int, max_positions: int = 10000, scale: float = 1.0):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / half
        freqs = (1 / self.max_positions) ** freqs
        return _cos_sin((x.float() * self.scale)[:, None] * freqs[None, :])


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar with fixed frequencies N(0, scale^2)."""

    def __init__(self, num_channels: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cos_sin(x.float()[:, None] * (2 * math.pi * self.freqs[None, :]))


class InputFourierFeatures(nn.Module):
    """Random Fourier features of a vector (Tancik et al. 2020): x -> [cos 2 pi x B, sin 2 pi x B] with
    fixed B ~ N(0, scale^2) of shape (dim, num_features / 2)."""

    def __init__(self, dim: int, num_features: int, scale: float):
        super().__init__()
        if num_features <= 0 or num_features % 2:
            raise ValueError(f"num_features must be a positive even number, got {num_features}")
        self.register_buffer("freqs", torch.randn(dim, num_features // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with fp32_region(x):  # phases 2 pi x B: a bf16 product would shift them by ~0.05 rad
            return _cos_sin(2 * math.pi * (x.float() @ self.freqs)).to(x.dtype)


class AlphaEmbedding(nn.Module):
    """The paper's alpha input (Sec. 3.4): Fourier features (scale 16) through a SiLU-activated linear
    layer, added to the other conditioning. With that layer's weights at zero the network ignores alpha."""

    def __init__(self, emb_dim: int, num_fourier: int = 64, scale: float = 16.0):
        super().__init__()
        self.fourier = FourierEmbedding(num_fourier, scale)
        self.linear = nn.Linear(num_fourier, emb_dim)

    def forward(self, c_alpha: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(self.linear(self.fourier(c_alpha)))


class ConditionEmbedding(nn.Module):
    """Noise level (+ class label) (+ alpha) -> one conditioning vector of size emb_dim."""

    def __init__(
        self,
        emb_dim: int,
        noise_channels: int,
        num_classes: int = 0,
        alpha_input: bool = False,
        label_dropout: float = 0.0,
    ):
        super().__init__()
        self.noise = PositionalEmbedding(noise_channels, max_positions=10000, scale=1000.0 / 4)
        self.map = nn.Sequential(nn.Linear(noise_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.num_classes = num_classes
        self.label = nn.Embedding(num_classes, emb_dim) if num_classes > 0 else None
        self.alpha = AlphaEmbedding(emb_dim) if alpha_input else None
        self.label_dropout = label_dropout

    def forward(self, c_noise, labels=None, c_alpha=None):
        emb = self.map(self.noise(c_noise))
        if self.label is not None:
            if labels is None:
                raise ValueError("this network is class-conditional: pass labels")
            lab = self.label(labels.long())
            if self.training and self.label_dropout > 0:
                keep = (torch.rand(lab.shape[0], 1, device=lab.device) >= self.label_dropout).to(lab.dtype)
                lab = lab * keep
            emb = emb + lab
        if self.alpha is not None:
            if c_alpha is None:
                raise ValueError("this network is alpha-conditional: pass c_alpha")
            emb = emb + self.alpha(c_alpha)
        return emb
