"""ADM backbone (Dhariwal & Nichol 2021) in the configuration EDM uses for ImageNet 64x64.

Paper-scale configuration (the defaults): 64x64, model_channels 192, channel_mult (1, 2, 3, 4), 3 blocks per
resolution, attention at 32, 16 and 8 with 64 channels per head, 1000 classes: about 295.9M parameters (EDM
reports 296M).

Checkpoint correspondence. Names follow EDM's ``DhariwalUNet`` (training/networks.py of NVlabs/edm):

    EDM (inside ``model.``)                    here
    map_noise (no parameters)                  map_noise (no parameters)
    map_augment.weight                         -- none (EDM's ImageNet model has no augmentation labels)
    map_layer0.*, map_layer1.*                 map_layer0.*, map_layer1.*
    map_label.weight (no bias)                 map_label.weight                  (num_classes > 0)
    enc['64x64_conv'], enc['RxR_down'],        same keys; blocks hold norm0, conv0, affine, norm1, conv1,
    enc['RxR_blockI']                          skip, and with attention norm2, qkv, proj; resampling
                                               convolutions carry the buffer ``resample_filter``
    dec['RxR_in0'], dec['RxR_in1'],            same keys
    dec['RxR_up'], dec['RxR_blockI']
    out_norm.*, out_conv.*                     out_norm.*, out_conv.*
    --                                         map_alpha.* (only with alpha_input=True; no EDM counterpart)

The building blocks are shared with DDPM++ (scoremix/nets/blocks.py); ADM uses adaptive (scale, shift)
modulation, no resampling projection in the skip path, unit skip scale and multi-head attention.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import (
    InitSpec,
    NoiseLevelEmbedding,
    ResampleConv2d,
    ResidualBlock,
    batch_noise,
    check_alpha,
    class_one_hot,
    make_group_norm,
    make_linear,
)
from .embeddings import AlphaEmbedding


class ADM(nn.Module):
    """ADM U-Net (EDM's DhariwalUNet). forward(x, c_noise, labels, c_alpha, return_bottleneck)
    -> F [, bottleneck]; the bottleneck is the encoder's lowest-resolution output
    (model_channels * channel_mult[-1] channels)."""

    def __init__(
        self,
        img_resolution: int = 64,
        in_channels: int = 3,
        out_channels: int = 3,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.10,
        num_classes: int = 1000,
        label_dropout: float = 0.0,
        alpha_input: bool = False,
        channel_mult_emb: int = 4,
        channels_per_head: int = 64,
    ):
        super().__init__()
        self.img_resolution = img_resolution
        self.num_classes = num_classes
        self.label_dropout = label_dropout
        self.alpha_input = alpha_input
        emb_channels = model_channels * channel_mult_emb
        init = InitSpec("kaiming_uniform", weight_gain=math.sqrt(1 / 3), bias_gain=math.sqrt(1 / 3))
        init_zero = InitSpec("kaiming_uniform", weight_gain=0.0, bias_gain=0.0)
        block_args = dict(
            emb_channels=emb_channels,
            channels_per_head=channels_per_head,
            dropout=dropout,
            init=init,
            init_zero=init_zero,
        )

        # Conditioning: SiLU MLP on the noise embedding, then label (and alpha) added in emb_channels.
        self.map_noise = NoiseLevelEmbedding(model_channels, endpoint=False, sin_first=False)
        self.map_layer0 = make_linear(model_channels, emb_channels, init)
        self.map_layer1 = make_linear(emb_channels, emb_channels, init)
        self.map_label = None
        if num_classes:
            # Unit-variance rows: each class gets an N(0, 1) embedding vector.
            label_init = InitSpec("kaiming_normal", weight_gain=math.sqrt(num_classes))
            self.map_label = make_linear(num_classes, emb_channels, label_init, bias=False)
        self.map_alpha = AlphaEmbedding(emb_channels) if alpha_input else None

        # Encoder.
        self.enc = nn.ModuleDict()
        channels = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = ResampleConv2d(channels, model_channels * mult, 3, init=init)
                channels = model_channels * mult
            else:
                self.enc[f"{res}x{res}_down"] = ResidualBlock(channels, channels, down=True, **block_args)
            for idx in range(num_blocks):
                self.enc[f"{res}x{res}_block{idx}"] = ResidualBlock(
                    channels, model_channels * mult, attention=res in attn_resolutions, **block_args
                )
                channels = model_channels * mult
        self.bottleneck_channels = channels
        skip_channels = [layer.out_channels for layer in self.enc.values()]

        # Decoder; every "_block" concatenates one encoder activation.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = ResidualBlock(channels, channels, attention=True, **block_args)
                self.dec[f"{res}x{res}_in1"] = ResidualBlock(channels, channels, **block_args)
            else:
                self.dec[f"{res}x{res}_up"] = ResidualBlock(channels, channels, up=True, **block_args)
            for idx in range(num_blocks + 1):
                self.dec[f"{res}x{res}_block{idx}"] = ResidualBlock(
                    channels + skip_channels.pop(),
                    model_channels * mult,
                    attention=res in attn_resolutions,
                    **block_args,
                )
                channels = model_channels * mult
        self.out_norm = make_group_norm(channels)
        self.out_conv = ResampleConv2d(channels, out_channels, 3, init=init_zero)

    def embed(self, c_noise, labels, c_alpha, batch: int, device: torch.device) -> torch.Tensor:
        """The conditioning vector (B, emb_channels) fed to every block."""
        emb = F.silu(self.map_layer0(self.map_noise(batch_noise(c_noise, batch, device))))
        emb = self.map_layer1(emb)
        if self.map_label is not None:
            one_hot = class_one_hot(labels, self.num_classes, batch, self.label_dropout, self.training, device)
            emb = emb + self.map_label(one_hot)
        c_alpha = check_alpha(c_alpha, self.alpha_input, batch, device)
        if self.map_alpha is not None:
            emb = emb + self.map_alpha(c_alpha)
        return F.silu(emb)

    def forward(self, x, c_noise, labels=None, c_alpha=None, return_bottleneck: bool = False):
        emb = self.embed(c_noise, labels, c_alpha, x.shape[0], x.device)
        skips = []
        h = x
        for layer in self.enc.values():
            h = layer(h, emb) if isinstance(layer, ResidualBlock) else layer(h)
            skips.append(h)
        bottleneck = h
        for key, layer in self.dec.items():
            if "_block" in key:
                h = torch.cat([h, skips.pop()], dim=1)
            h = layer(h, emb)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return (out, bottleneck) if return_bottleneck else out


__all__ = ["ADM"]
