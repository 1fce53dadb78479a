"""Methods own their networks and say, per iteration, which losses are computed and which optimisers step."""

from .base import Method, Phase
from .edm import EDM
from .smt import SMT


def build_method(cfg, data_shape, num_classes):
    if cfg.method.name == "smt":
        return SMT(cfg, data_shape, num_classes)
    if cfg.method.name == "gan":
        from .gan import GAN

        return GAN(cfg, data_shape, num_classes)
    if cfg.method.name == "edm":
        return EDM(cfg, data_shape, num_classes)
    raise ValueError(f"unknown method {cfg.method.name!r}")


__all__ = ["Method", "Phase", "SMT", "EDM", "build_method"]
