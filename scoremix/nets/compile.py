"""Regional torch.compile: compile each repeated residual block in place instead of the whole network.

Every block of one shape shares one compiled graph, so compilation takes a few graphs' time rather than
the whole U-Net's, and `nn.Module.compile` keeps parameter names (checkpoints and DDP are unaffected).
"""

from __future__ import annotations

from torch import nn

from .blocks import ResidualBlock
from .unet import ResBlock

REPEATED_BLOCKS = (ResidualBlock, ResBlock)


# Every block of a network shares one forward code object, and each (block shape, batch size) is one more
# compiled graph of it: a U-Net with 10 block shapes, called at 3 batch sizes (critic, generator, sampling),
# needs about 30. torch's default of 8 graphs per code object silently falls back to eager after that.
RECOMPILE_LIMIT = 256


def allow_recompiles(limit: int = RECOMPILE_LIMIT) -> None:
    import torch._dynamo.config as dynamo

    dynamo.recompile_limit = max(dynamo.recompile_limit, limit)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, limit)


def compile_blocks(net: nn.Module, **options) -> int:
    """Compile every residual block of `net` in place; returns how many were compiled (0 for MLPs)."""
    allow_recompiles()
    count = 0
    for module in net.modules():
        if isinstance(module, REPEATED_BLOCKS):
            module.compile(dynamic=False, **options)
            count += 1
    return count
