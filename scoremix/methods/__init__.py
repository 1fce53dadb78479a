"""Methods own their networks and say, per iteration, which losses are computed and which optimisers step."""

from .base import Method, Phase
from .edm import EDM
from .smt import SMT


def build_method(cfg, data_shape, num_classes, teacher=None):
    """The method named by cfg.method.name; `teacher` (smd/dmd) is an already-loaded teacher module used
    instead of loading cfg.method.teacher."""
    if cfg.method.name == "smt":
        return SMT(cfg, data_shape, num_classes)
    if cfg.method.name == "gan":
        from .gan import GAN

        return GAN(cfg, data_shape, num_classes)
    if cfg.method.name in ("smd", "dmd"):
        from .dmd import DMD
        from .smd import SMD

        return (SMD if cfg.method.name == "smd" else DMD)(cfg, data_shape, num_classes, teacher=teacher)
    if cfg.method.name == "edm":
        return EDM(cfg, data_shape, num_classes)
    raise ValueError(f"unknown method {cfg.method.name!r}")


__all__ = ["Method", "Phase", "SMT", "EDM", "build_method"]
