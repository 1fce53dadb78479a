"""Regional torch.compile: compile each repeated residual block in place instead of the whole network.

Every block of one shape shares one compiled graph, so compilation takes a few graphs' time rather than
the whole U-Net's, and `nn.Module.compile` keeps parameter names (checkpoints and DDP are unaffected).
"""

from __future__ import annotations

from torch import nn

from .ddpmpp import ResidualBlock
from .unet import ResBlock

REPEATED_BLOCKS = (ResidualBlock, ResBlock)


def compile_blocks(net: nn.Module, **options) -> int:
    """Compile every residual block of `net` in place; returns how many were compiled (0 for MLPs)."""
    count = 0
    for module in net.modules():
        if isinstance(module, REPEATED_BLOCKS):
            module.compile(dynamic=False, **options)
            count += 1
    return count
