"""The building blocks of the DDPM++ and ADM backbones (ddpmpp.py, adm.py), after EDM's layers: fan-based
initialisation (`InitSpec`, `make_linear`, `make_group_norm`), the resampling convolution
(`ResampleConv2d`, EDM's Conv2d), the residual block with optional attention (`ResidualBlock`, EDM's
UNetBlock), the noise-level embedding (`NoiseLevelEmbedding`, EDM's PositionalEmbedding) and the
conditioning helpers both backbones share (`class_one_hot`, `check_alpha`, `batch_noise`).

Parameter names and layouts match EDM's (see ddpmpp.py's checkpoint correspondence), so published weights
load without reshuffling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

# ----------------------------------------------------------------------------------------------------------
# Initialisation


@dataclass(frozen=True)
class InitSpec:
    """How to initialise a layer: a fan-based distribution and gains applied to weight and bias."""

    mode: str = "kaiming_normal"  # xavier_uniform | xavier_normal | kaiming_uniform | kaiming_normal
    weight_gain: float = 1.0
    bias_gain: float = 0.0


def _fan_scaled_fill_(tensor: torch.Tensor, mode: str, fan_in: int, fan_out: int, gain: float) -> None:
    """Fill ``tensor`` in place from the distribution named by ``mode``, then multiply by ``gain``."""
    with torch.no_grad():
        if mode == "xavier_uniform":
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            tensor.uniform_(-bound, bound)
        elif mode == "xavier_normal":
            tensor.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
        elif mode == "kaiming_uniform":
            bound = math.sqrt(3.0 / fan_in)
            tensor.uniform_(-bound, bound)
        elif mode == "kaiming_normal":
            tensor.normal_(0.0, math.sqrt(1.0 / fan_in))
        else:
            raise ValueError(f"unknown init mode {mode!r}")
        tensor.mul_(gain)


def make_linear(in_features: int, out_features: int, init: InitSpec, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(in_features, out_features, bias=bias)
    _fan_scaled_fill_(layer.weight, init.mode, in_features, out_features, init.weight_gain)
    if bias:
        _fan_scaled_fill_(layer.bias, init.mode, in_features, out_features, init.bias_gain)
    return layer


def make_group_norm(
    channels: int, eps: float = 1e-5, max_groups: int = 32, min_channels_per_group: int = 4
) -> nn.GroupNorm:
    """GroupNorm with at most 32 groups and at least 4 channels per group (EDM's rule)."""
    groups = max(1, min(max_groups, channels // min_channels_per_group))
    while channels % groups:  # only reachable for unusual small widths
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=eps)


# ----------------------------------------------------------------------------------------------------------
# Layers


class ResampleConv2d(nn.Module):
    """Optional 2x up- or down-sampling by a separable FIR filter, then an optional k x k convolution.

    kernel=0 gives a parameter-free resampler. Parameters: ``weight`` (out, in, k, k), ``bias`` (out);
    buffer ``resample_filter`` (1, 1, taps, taps) only when resampling.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[float] = (1, 1),
        init: InitSpec = InitSpec(),
    ):
        super().__init__()
        if up and down:
            raise ValueError("a convolution resamples up or down, not both")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        fan_in, fan_out = in_channels * kernel * kernel, out_channels * kernel * kernel
        self.weight = self.bias = None
        if kernel:
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
            _fan_scaled_fill_(self.weight, init.mode, fan_in, fan_out, init.weight_gain)
            if bias:
                self.bias = nn.Parameter(torch.empty(out_channels))
                _fan_scaled_fill_(self.bias, init.mode, fan_in, fan_out, init.bias_gain)
        taps = torch.as_tensor(resample_filter, dtype=torch.float32)
        # Outer product of the 1-D taps, normalised to unit sum: a 2-D low-pass filter.
        filter_2d = (taps[:, None] * taps[None, :] / taps.sum().square())[None, None]
        self.register_buffer("resample_filter", filter_2d if (up or down) else None)
        # A [c, c] filter is plain 2x2 average pooling / nearest upsampling: use the faster built-ins.
        self._box_filter = len(resample_filter) == 2 and resample_filter[0] == resample_filter[1]

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self._box_filter:
            if self.down:
                return F.avg_pool2d(x, 2)
            return F.interpolate(x, scale_factor=2, mode="nearest")
        filt = self.resample_filter.to(x.dtype)
        pad = (filt.shape[-1] - 1) // 2
        depthwise = filt.repeat(self.in_channels, 1, 1, 1)
        if self.down:
            return F.conv2d(x, depthwise, stride=2, padding=pad, groups=self.in_channels)
        # Transposed convolution spreads each pixel over 4 outputs; x4 keeps the mean unchanged.
        return F.conv_transpose2d(x, depthwise * 4, stride=2, padding=pad, groups=self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up or self.down:
            x = self._resample(x)
        if self.weight is not None:
            x = F.conv2d(x, self.weight, self.bias, padding=self.weight.shape[-1] // 2)
        return x


class ResidualBlock(nn.Module):
    """Pre-activation residual block conditioned on the embedding, optional resampling, optional
    multi-head self-attention after it. Covers both DDPM++ and ADM blocks (the flags differ).

    adaptive_scale=True: norm1(h) * (1 + scale) + shift (ADM); False: norm1(h + shift) (DDPM++).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int | None = None,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter: Sequence[float] = (1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
        init: InitSpec = InitSpec(),
        init_zero: InitSpec = InitSpec(weight_gain=0.0),
        init_attn: InitSpec | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale
        if not attention:
            self.num_heads = 0
        elif num_heads is not None:
            self.num_heads = num_heads
        else:  # at least one head, so small test widths still attend
            self.num_heads = max(1, out_channels // channels_per_head)

        self.norm0 = make_group_norm(in_channels, eps)
        self.conv0 = ResampleConv2d(
            in_channels, out_channels, 3, up=up, down=down, resample_filter=resample_filter, init=init
        )
        self.affine = make_linear(emb_channels, out_channels * (2 if adaptive_scale else 1), init)
        self.norm1 = make_group_norm(out_channels, eps)
        self.conv1 = ResampleConv2d(out_channels, out_channels, 3, init=init_zero)

        self.skip = None
        if in_channels != out_channels or up or down:
            # A 1x1 projection when widths differ (or when asked to); a bare resampler otherwise.
            kernel = 1 if (resample_proj or in_channels != out_channels) else 0
            self.skip = ResampleConv2d(
                in_channels, out_channels, kernel, up=up, down=down, resample_filter=resample_filter, init=init
            )

        if self.num_heads:
            if out_channels % self.num_heads:
                raise ValueError(f"{out_channels} channels do not split into {self.num_heads} heads")
            self.norm2 = make_group_norm(out_channels, eps)
            self.qkv = ResampleConv2d(out_channels, 3 * out_channels, 1, init=init_attn or init)
            self.proj = ResampleConv2d(out_channels, out_channels, 1, init=init_zero)

    def _attend(self, h: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = h.shape
        head_dim = channels // self.num_heads
        # Channel layout of qkv: (head, channel within head, q/k/v).
        qkv = self.qkv(self.norm2(h)).reshape(batch, self.num_heads, head_dim, 3, height * width)
        q, k, v = (qkv[:, :, :, i].transpose(-1, -2) for i in range(3))  # (B, heads, tokens, head_dim)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return attended.transpose(-1, -2).reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        modulation = self.affine(emb)[:, :, None, None]
        if self.adaptive_scale:
            scale, shift = modulation.chunk(2, dim=1)
            h = F.silu(self.norm1(h) * (1 + scale) + shift)
        else:
            h = F.silu(self.norm1(h + modulation))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        h = (h + (self.skip(x) if self.skip is not None else x)) * self.skip_scale
        if self.num_heads:
            h = (h + self.proj(self._attend(h))) * self.skip_scale
        return h


class NoiseLevelEmbedding(nn.Module):
    """Sinusoidal features of c_noise: frequencies max_positions^(-i/n) for i < n = num_channels/2.

    endpoint=True spreads the exponents over [0, 1] inclusive (DDPM++), False over [0, 1) (ADM).
    sin_first orders the halves as [sin, cos] (DDPM++) instead of [cos, sin] (ADM).
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False, sin_first: bool = False):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint
        self.sin_first = sin_first

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        exponents = torch.arange(half, dtype=torch.float32, device=c_noise.device)
        exponents = exponents / max(half - (1 if self.endpoint else 0), 1)
        freqs = self.max_positions ** (-exponents)
        angles = c_noise.float()[:, None] * freqs[None, :]
        halves = [angles.sin(), angles.cos()] if self.sin_first else [angles.cos(), angles.sin()]
        return torch.cat(halves, dim=1)


# ----------------------------------------------------------------------------------------------------------
# Conditioning helpers shared by the backbones


def class_one_hot(
    labels: torch.Tensor | None,
    num_classes: int,
    batch: int,
    label_dropout: float,
    training: bool,
    device: torch.device,
) -> torch.Tensor:
    """Integer class ids (B,) or one-hot/soft labels (B, num_classes) -> float (B, num_classes), with
    whole-label dropout (rows zeroed with probability label_dropout) in training mode."""
    if labels is None:
        raise ValueError("this network is class-conditional: pass labels")
    labels = torch.as_tensor(labels, device=device)
    if labels.is_floating_point() and labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise ValueError(f"one-hot labels have {labels.shape[1]} columns, expected {num_classes}")
        one_hot = labels.float()
    else:
        one_hot = F.one_hot(labels.long().reshape(-1), num_classes).float()
    if one_hot.shape[0] != batch:
        raise ValueError(f"got {one_hot.shape[0]} labels for a batch of {batch}")
    if training and label_dropout > 0:
        keep = torch.rand(batch, 1, device=one_hot.device) >= label_dropout
        one_hot = one_hot * keep.to(one_hot.dtype)
    return one_hot


def check_alpha(
    c_alpha: torch.Tensor | None, alpha_input: bool, batch: int, device: torch.device
) -> torch.Tensor | None:
    """Validate c_alpha against the constructor flag; broadcast a scalar to the batch."""
    if alpha_input and c_alpha is None:
        raise ValueError("this network is alpha-conditional: pass c_alpha")
    if not alpha_input and c_alpha is not None:
        raise ValueError("this network was built without alpha_input: do not pass c_alpha")
    if c_alpha is not None:
        c_alpha = torch.as_tensor(c_alpha, device=device).reshape(-1).expand(batch)
    return c_alpha


def batch_noise(c_noise: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """c_noise as a (B,) tensor on the input's device (a scalar is broadcast to the batch)."""
    return torch.as_tensor(c_noise, device=device).reshape(-1).expand(batch)
