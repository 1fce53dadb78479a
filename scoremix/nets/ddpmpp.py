"""DDPM++ backbone (Song et al. 2021) in the configuration EDM uses for CIFAR-10, built from the blocks it
shares with the ADM backbone (scoremix/nets/blocks.py, scoremix/nets/adm.py).

Paper-scale configuration (the defaults): 32x32, model_channels 128, channel_mult (2, 2, 2), 4 blocks per
resolution, attention at 16x16, about 55.7M parameters (EDM reports 56M).

Checkpoint correspondence. Module and parameter names follow EDM's ``SongUNet`` (training/networks.py of
NVlabs/edm) so that a published state_dict can be mapped onto this one key by key:

    EDM (inside ``model.``)                    here
    map_noise (no parameters)                  map_noise (no parameters)
    map_label.weight / .bias                   map_label.weight / .bias          (num_classes > 0)
    map_augment.weight                         -- none: augmentation labels are not used here; EDM's
                                                  CIFAR checkpoints have augment_dim 9, drop that key
    map_layer0.*, map_layer1.*                 map_layer0.*, map_layer1.*
    enc['32x32_conv'].weight / .bias           enc['32x32_conv'].weight / .bias
    enc['RxR_down'], enc['RxR_blockI']         same keys; inside each block norm0, conv0, affine, norm1,
                                               conv1, skip, and with attention norm2, qkv, proj; resampling
                                               convolutions carry the buffer ``resample_filter`` as in EDM
    dec['RxR_in0'], dec['RxR_in1'],            same keys
    dec['RxR_up'], dec['RxR_blockI']
    dec['32x32_aux_norm'], dec['32x32_aux_conv']   same keys (the output layers)
    --                                         map_alpha.* (only with alpha_input=True; no EDM counterpart)

The qkv channel layout (heads, channels per head, q/k/v) and the (scale, shift) order of ``affine`` match
EDM's, so weights load without reshuffling.
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

# ----------------------------------------------------------------------------------------------------------
# DDPM++


class DDPMpp(nn.Module):
    """DDPM++ U-Net (EDM's SongUNet with positional embedding, standard encoder and decoder, [1, 1]
    resampling filter). forward(x, c_noise, labels, c_alpha, return_bottleneck) -> F [, bottleneck].

    The bottleneck is the encoder's lowest-resolution output (model_channels * channel_mult[-1] channels).
    """

    def __init__(
        self,
        img_resolution: int = 32,
        in_channels: int = 3,
        out_channels: int = 3,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (2, 2, 2),
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.13,
        num_classes: int = 0,
        label_dropout: float = 0.0,
        alpha_input: bool = False,
        channel_mult_emb: int = 4,
        channel_mult_noise: int = 1,
        resample_filter: Sequence[float] = (1, 1),
    ):
        super().__init__()
        self.img_resolution = img_resolution
        self.num_classes = num_classes
        self.label_dropout = label_dropout
        self.alpha_input = alpha_input
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = InitSpec("xavier_uniform")
        init_zero = InitSpec("xavier_uniform", weight_gain=1e-5)
        init_attn = InitSpec("xavier_uniform", weight_gain=math.sqrt(0.2))
        block_args = dict(
            emb_channels=emb_channels,
            num_heads=1,
            dropout=dropout,
            skip_scale=math.sqrt(0.5),
            eps=1e-6,
            resample_filter=resample_filter,
            resample_proj=True,
            adaptive_scale=False,
            init=init,
            init_zero=init_zero,
            init_attn=init_attn,
        )

        # Conditioning: noise (+ label) (+ alpha) in noise_channels, then a two-layer SiLU MLP.
        self.map_noise = NoiseLevelEmbedding(noise_channels, endpoint=True, sin_first=True)
        self.map_label = make_linear(num_classes, noise_channels, init) if num_classes else None
        self.map_alpha = AlphaEmbedding(noise_channels) if alpha_input else None
        self.map_layer0 = make_linear(noise_channels, emb_channels, init)
        self.map_layer1 = make_linear(emb_channels, emb_channels, init)

        # Encoder: input conv, then per resolution (a downsampling block and) num_blocks blocks.
        self.enc = nn.ModuleDict()
        channels = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = ResampleConv2d(channels, model_channels, 3, init=init)
                channels = model_channels
            else:
                self.enc[f"{res}x{res}_down"] = ResidualBlock(channels, channels, down=True, **block_args)
            for idx in range(num_blocks):
                self.enc[f"{res}x{res}_block{idx}"] = ResidualBlock(
                    channels, model_channels * mult, attention=res in attn_resolutions, **block_args
                )
                channels = model_channels * mult
        self.bottleneck_channels = channels
        skip_channels = [layer.out_channels for layer in self.enc.values()]

        # Decoder: mirror image; every "_block" concatenates one encoder activation.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = ResidualBlock(channels, channels, attention=True, **block_args)
                self.dec[f"{res}x{res}_in1"] = ResidualBlock(channels, channels, **block_args)
            else:
                self.dec[f"{res}x{res}_up"] = ResidualBlock(channels, channels, up=True, **block_args)
            for idx in range(num_blocks + 1):
                attend = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = ResidualBlock(
                    channels + skip_channels.pop(), model_channels * mult, attention=attend, **block_args
                )
                channels = model_channels * mult
        # Output layers (EDM keeps them inside dec under "aux" names).
        self._out_norm_key = f"{img_resolution}x{img_resolution}_aux_norm"
        self._out_conv_key = f"{img_resolution}x{img_resolution}_aux_conv"
        self.dec[self._out_norm_key] = make_group_norm(channels, eps=1e-6)
        self.dec[self._out_conv_key] = ResampleConv2d(channels, out_channels, 3, init=init_zero)

    def embed(self, c_noise, labels, c_alpha, batch: int, device: torch.device) -> torch.Tensor:
        """The conditioning vector (B, emb_channels) fed to every block."""
        emb = self.map_noise(batch_noise(c_noise, batch, device))
        if self.map_label is not None:
            one_hot = class_one_hot(labels, self.num_classes, batch, self.label_dropout, self.training, device)
            emb = emb + self.map_label(one_hot * math.sqrt(self.num_classes))
        c_alpha = check_alpha(c_alpha, self.alpha_input, batch, device)
        if self.map_alpha is not None:
            emb = emb + self.map_alpha(c_alpha)
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

    def forward(self, x, c_noise, labels=None, c_alpha=None, return_bottleneck: bool = False):
        emb = self.embed(c_noise, labels, c_alpha, x.shape[0], x.device)
        skips = []
        h = x
        for layer in self.enc.values():
            h = layer(h, emb) if isinstance(layer, ResidualBlock) else layer(h)
            skips.append(h)
        bottleneck = h
        for key, layer in self.dec.items():
            if key in (self._out_norm_key, self._out_conv_key):
                continue
            if "_block" in key:
                h = torch.cat([h, skips.pop()], dim=1)
            h = layer(h, emb)
        out = self.dec[self._out_conv_key](F.silu(self.dec[self._out_norm_key](h)))
        return (out, bottleneck) if return_bottleneck else out


__all__ = ["DDPMpp"]
