"""Logit heads on a backbone's bottleneck: the discriminator of SMT's GAN term and DMD2's, and SMD's
density-ratio head l(x_t; sigma) (Eq. 13). Every head returns one fp32 logit per sample, also under bf16
autocast (the logits feed softplus and log(alpha/(1-alpha)) offsets).

    small  (scoremix.nets.unet.ConvHead / mlp.MLPHead) two 3x3 convolutions of width method.head_hidden and
           global mean pooling (a linear layer on MLP features); about 0.5M parameters on ADM's bottleneck
    paper  (PaperHead) the authors' head, method.md section 8
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..precision import fp32_region

PAPER_HEAD_SIDE = 8  # the bottleneck side the paper's head is built for (CIFAR-10 DDPM++ and ImageNet-64 ADM)


def paper_group_count(channels: int) -> int:
    """GroupNorm(32) as in the paper where every group keeps at least 8 channels (256 and 768 channels do);
    narrower bottlenecks get the largest power-of-two count that keeps 8 channels a group (4 groups for 32).
    After the stride-4 convolution the map is 1x1, so a group's statistics come from its channels alone."""
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= 8:
            return groups
    return 1


class PaperHead(nn.Module):
    """The density-ratio / discriminator head of the released SMD code and DMD2 on a C-channel bottleneck:

        4x4 conv stride 2 (padding 1) -> GroupNorm -> SiLU -> 4x4 conv stride 4 -> GroupNorm -> SiLU -> 1x1 conv

    every convolution C wide up to the last, which gives the logit: on the 8x8 bottleneck of the paper's
    networks 8x8 -> 4x4 -> 1x1. About 18.9M parameters on ImageNet-64 ADM (C = 768, the paper's "18M")
    and 2.1M on CIFAR-10 DDPM++ (C = 256).

    Other bottleneck sides: a side below 8 (the MNIST U-Net's 7x7, digits' 4x4) is resized to 8 by bilinear
    interpolation first, so the head sees the layout it was designed for; a larger side leaves a grid of
    logits (2x2 at 16x16), which are averaged into one.
    """

    def __init__(self, channels: int):
        super().__init__()
        groups = paper_group_count(channels)
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 4, stride=2, padding=1),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 4, stride=4),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, 1, 1),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim != 4:
            raise ValueError(f"the paper's head takes (B, C, H, W) bottleneck features, got shape {tuple(feats.shape)}")
        with fp32_region(feats):
            h = feats.float()
            height, width = h.shape[-2:]
            if min(height, width) < PAPER_HEAD_SIDE:
                size = (max(height, PAPER_HEAD_SIDE), max(width, PAPER_HEAD_SIDE))
                h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
            return self.body(h).mean(dim=(1, 2, 3))


__all__ = ["PaperHead", "paper_group_count", "PAPER_HEAD_SIDE"]
