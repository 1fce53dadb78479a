"""MLP backbone for vector data (the paper's toy setting, App. E.2)."""

from __future__ import annotations

import torch
from torch import nn

from ..precision import fp32_region
from .embeddings import ConditionEmbedding, InputFourierFeatures

_ACTIVATIONS = {"silu": nn.SiLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU}


class MLPBackbone(nn.Module):
    """x -> hidden (depth layers, each modulated by the conditioning embedding) -> x-shaped output.

    The last hidden activation is the bottleneck used by the discriminator head.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        activation: str = "silu",
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        emb_dim: int | None = None,
        num_classes: int = 0,
        alpha_input: bool = False,
        label_dropout: float = 0.0,
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        emb_dim = emb_dim or hidden
        self.dim = dim
        self.embed = ConditionEmbedding(
            emb_dim, noise_channels=64, num_classes=num_classes, alpha_input=alpha_input, label_dropout=label_dropout
        )
        # Random Fourier features of the input (Tancik et al. 2020) let a small MLP form the sharp,
        # many-cornered maps of multi-modal toys; the raw input is kept alongside them.
        self.fourier = InputFourierFeatures(dim, fourier_features, fourier_scale) if fourier_features else None
        self.inp = nn.Linear(dim + fourier_features, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.cond = nn.ModuleList(nn.Linear(emb_dim, hidden) for _ in range(depth))
        self.act = _ACTIVATIONS[activation]()
        self.out = nn.Linear(hidden, dim)
        self.bottleneck_channels = hidden

    def forward(self, x, c_noise, labels=None, c_alpha=None, return_bottleneck: bool = False):
        emb = self.embed(c_noise, labels, c_alpha)
        if self.fourier is not None:
            x = torch.cat([x, self.fourier(x)], dim=1)
        h = self.act(self.inp(x) + self.cond[0](emb))
        for layer, cond in zip(self.layers, self.cond[1:]):
            h = self.act(layer(h) + cond(emb))
        out = self.out(h)
        return (out, h) if return_bottleneck else out


class MLPHead(nn.Module):
    """Discriminator head on MLP features: one logit per sample."""

    def __init__(self, channels: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        with fp32_region(feats):  # logits feed softplus and log(alpha/(1-alpha)) offsets: kept in fp32
            return self.net(feats.float()).flatten()
