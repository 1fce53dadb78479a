"""A small convolutional U-Net for 8x8 to 32x32 images (CPU-sized runs and tests)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..precision import fp32_region
from .embeddings import ConditionEmbedding


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class SmallUNet(nn.Module):
    """Encoder-decoder with skip connections; channel multipliers per resolution; the lowest-resolution
    activation is the bottleneck for the discriminator head."""

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        channel_mult=(1, 2),
        blocks: int = 1,
        attention: bool = False,
        dropout: float = 0.0,
        num_classes: int = 0,
        alpha_input: bool = False,
        label_dropout: float = 0.0,
    ):
        super().__init__()
        emb_dim = 4 * channels
        self.embed = ConditionEmbedding(
            emb_dim,
            noise_channels=channels,
            num_classes=num_classes,
            alpha_input=alpha_input,
            label_dropout=label_dropout,
        )
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [channels]
        c = channels
        for level, mult in enumerate(channel_mult):
            for _ in range(blocks):
                self.down.append(ResBlock(c, channels * mult, emb_dim, dropout))
                c = channels * mult
                skip_channels.append(c)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skip_channels.append(c)
        self.mid1 = ResBlock(c, c, emb_dim, dropout)
        self.mid_attn = SelfAttention(c) if attention else nn.Identity()
        self.mid2 = ResBlock(c, c, emb_dim, dropout)
        self.bottleneck_channels = c
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(c + skip_channels.pop(), channels * mult, emb_dim, dropout))
                c = channels * mult
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, in_channels, 3, padding=1)

    def forward(self, x, c_noise, labels=None, c_alpha=None, return_bottleneck: bool = False):
        emb = self.embed(c_noise, labels, c_alpha)
        h = self.inp(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        feats = h
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        out = self.out(F.silu(self.out_norm(h)))
        return (out, feats) if return_bottleneck else out


class ConvHead(nn.Module):
    """Discriminator head on a bottleneck feature map: conv + GroupNorm + SiLU layers to one logit."""

    def __init__(self, channels: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        mods: list[nn.Module] = []
        c = channels
        for _ in range(layers):
            mods += [nn.Conv2d(c, hidden, 3, padding=1), nn.GroupNorm(_groups(hidden), hidden), nn.SiLU()]
            c = hidden
        self.body = nn.Sequential(*mods)
        self.out = nn.Linear(c, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        with fp32_region(feats):  # logits feed softplus and log(alpha/(1-alpha)) offsets: kept in fp32
            return self.out(self.body(feats.float()).mean(dim=(2, 3))).flatten()
