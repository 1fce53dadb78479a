"""What every teacher loader returns its module through (the lower layer of scoremix.teachers: the package
and its loaders import it, it imports none of them)."""

from __future__ import annotations


def freeze(module):
    """Eval mode and no gradients: what every loader returns."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
