"""Backbones and heads from a NetConfig."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .heads import PaperHead
from .mlp import MLPBackbone, MLPHead
from .unet import ConvHead, SmallUNet


def build_backbone(
    net_cfg, data_shape: tuple, num_classes: int = 0, alpha_input: bool = False, dropout: float | None = None
) -> nn.Module:
    dropout = net_cfg.dropout if dropout is None else dropout
    if getattr(net_cfg, "precond", "edm") not in ("edm", "vp", "ve"):
        raise ValueError(f"unknown precond {net_cfg.precond!r}; use edm, vp or ve")
    if net_cfg.arch == "mlp":
        return MLPBackbone(
            data_shape[0],
            hidden=net_cfg.hidden,
            depth=net_cfg.depth,
            activation=net_cfg.activation,
            fourier_features=net_cfg.fourier_features,
            fourier_scale=net_cfg.fourier_scale,
            num_classes=num_classes,
            alpha_input=alpha_input,
            label_dropout=net_cfg.label_dropout,
        )
    channels, resolution = data_shape[0], data_shape[-1]
    if net_cfg.arch == "unet":
        return SmallUNet(
            channels,
            net_cfg.channels,
            tuple(net_cfg.channel_mult),
            net_cfg.blocks,
            attention=bool(net_cfg.attention),
            dropout=dropout,
            num_classes=num_classes,
            alpha_input=alpha_input,
            label_dropout=net_cfg.label_dropout,
        )
    kwargs = dict(
        img_resolution=resolution,
        in_channels=channels,
        out_channels=channels,
        model_channels=net_cfg.channels,
        channel_mult=list(net_cfg.channel_mult),
        num_blocks=net_cfg.blocks,
        attn_resolutions=list(net_cfg.attention),
        dropout=dropout,
        num_classes=num_classes,
        label_dropout=net_cfg.label_dropout,
        alpha_input=alpha_input,
    )
    if net_cfg.arch == "ddpmpp":
        from .ddpmpp import DDPMpp

        return DDPMpp(**kwargs)
    if net_cfg.arch == "adm":
        from .adm import ADM

        return ADM(**kwargs)
    raise ValueError(f"unknown arch {net_cfg.arch!r}")


def build_generator(cfg, data_shape: tuple, num_classes: int = 0):
    """The paper's one-step generator: a preconditioned denoiser (no alpha input) run at one noise level."""
    from ..precond import OneStepGenerator, generator_sigma

    backbone = build_backbone(cfg.generator, data_shape, num_classes, alpha_input=False)
    return OneStepGenerator(build_denoiser(backbone, cfg.generator, cfg.data.sigma_data), generator_sigma(cfg))


def build_denoiser(backbone: nn.Module, net_cfg, sigma_data: float, alpha_input: bool = False) -> nn.Module:
    """The backbone under the preconditioning net_cfg.precond names: edm (default; scoremix.precond.Denoiser)
    or the vp / ve preconditionings of published EDM teachers (scoremix.precond_variants)."""
    from ..precond_variants import make_denoiser

    return make_denoiser(backbone, sigma_data, getattr(net_cfg, "precond", "edm"), alpha_input=alpha_input)


HEADS = ("small", "paper")


def build_head(backbone: nn.Module, hidden: int, kind: str = "small") -> nn.Module:
    """Logit head on the backbone's bottleneck features (scoremix.nets.heads): `small` (width `hidden`) or
    `paper` (the released code's strided head at the bottleneck's own width; image backbones only)."""
    if kind not in HEADS:
        raise ConfigError(f"method.head={kind!r} is unknown; use small or paper")
    if kind == "paper":
        if isinstance(backbone, MLPBackbone):
            raise ConfigError(
                "method.head=paper is a convolutional head for image bottlenecks; vector data "
                "(arch=mlp) uses method.head=small"
            )
        return PaperHead(backbone.bottleneck_channels)
    if isinstance(backbone, MLPBackbone):
        return MLPHead(backbone.bottleneck_channels, hidden)
    return ConvHead(backbone.bottleneck_channels, hidden)


def size_multiple(net_cfg) -> int:
    """Image sides a backbone takes must be multiples of this: each of the len(channel_mult) - 1
    downsamplings halves the side and the decoder doubles it back onto the skip connections."""
    if net_cfg.arch == "mlp":
        return 1
    return 2 ** (len(net_cfg.channel_mult) - 1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_diffusion_denoiser(cfg, data_shape: tuple, num_classes: int = 0):
    """A diffusion model's denoiser D(x; sigma): the `score` section's backbone (no alpha input) under its
    preconditioning (score.precond, EDM by default) with data.sigma_data (method.name=edm and the teachers
    it produces)."""
    backbone = build_backbone(cfg.score, data_shape, num_classes, alpha_input=False)
    return build_denoiser(backbone, cfg.score, cfg.data.sigma_data)
