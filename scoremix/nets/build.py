"""Backbones and heads from a NetConfig."""

from __future__ import annotations

from torch import nn

from .mlp import MLPBackbone, MLPHead
from .unet import ConvHead, SmallUNet


def build_backbone(net_cfg, data_shape: tuple, num_classes: int = 0, alpha_input: bool = False,
                   dropout: float | None = None) -> nn.Module:
    dropout = net_cfg.dropout if dropout is None else dropout
    if net_cfg.arch == "mlp":
        return MLPBackbone(data_shape[0], hidden=net_cfg.hidden, depth=net_cfg.depth,
                           activation=net_cfg.activation, fourier_features=net_cfg.fourier_features,
                           fourier_scale=net_cfg.fourier_scale, num_classes=num_classes, alpha_input=alpha_input,
                           label_dropout=net_cfg.label_dropout)
    channels, resolution = data_shape[0], data_shape[-1]
    if net_cfg.arch == "unet":
        return SmallUNet(channels, net_cfg.channels, tuple(net_cfg.channel_mult), net_cfg.blocks,
                         attention=bool(net_cfg.attention), dropout=dropout, num_classes=num_classes,
                         alpha_input=alpha_input, label_dropout=net_cfg.label_dropout)
    kwargs = dict(img_resolution=resolution, in_channels=channels, out_channels=channels,
                  model_channels=net_cfg.channels, channel_mult=list(net_cfg.channel_mult),
                  num_blocks=net_cfg.blocks, attn_resolutions=list(net_cfg.attention), dropout=dropout,
                  num_classes=num_classes, label_dropout=net_cfg.label_dropout, alpha_input=alpha_input)
    if net_cfg.arch == "ddpmpp":
        from .ddpmpp import DDPMpp

        return DDPMpp(**kwargs)
    if net_cfg.arch == "adm":
        from .adm import ADM

        return ADM(**kwargs)
    raise ValueError(f"unknown arch {net_cfg.arch!r}")


def build_generator(cfg, data_shape: tuple, num_classes: int = 0):
    """The paper's one-step generator: a preconditioned denoiser (no alpha input) run at one noise level."""
    from ..precond import Denoiser, OneStepGenerator, generator_sigma

    backbone = build_backbone(cfg.generator, data_shape, num_classes, alpha_input=False)
    return OneStepGenerator(Denoiser(backbone, cfg.data.sigma_data, alpha_input=False), generator_sigma(cfg))


def build_head(backbone: nn.Module, hidden: int) -> nn.Module:
    """Discriminator head on the backbone's bottleneck features."""
    if isinstance(backbone, MLPBackbone):
        return MLPHead(backbone.bottleneck_channels, hidden)
    return ConvHead(backbone.bottleneck_channels, hidden)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_denoiser(cfg, data_shape: tuple, num_classes: int = 0):
    """A diffusion model's denoiser D(x; sigma): the `score` section's backbone (no alpha input) under EDM
    preconditioning with data.sigma_data (method.name=edm and the teachers it produces)."""
    from ..precond import Denoiser

    backbone = build_backbone(cfg.score, data_shape, num_classes, alpha_input=False)
    return Denoiser(backbone, cfg.data.sigma_data, alpha_input=False)
