"""The non-saturating GAN (Goodfellow et al. 2014), the baseline one-step generator that SMT is compared
with. Pure functions of discriminator logits; `l > 0` means "real"."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def discriminator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """-E log sigmoid(l(x_real)) - E log(1 - sigmoid(l(x_fake))); minimised by l* = log p/q."""
    return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()


def generator_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss -E log sigmoid(l(g(z)))."""
    return F.softplus(-logit_fake).mean()


def r1_penalty(logit_real: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """E ||d l / d x_real||^2 (Mescheder et al. 2018); x_real must require grad before the forward pass."""
    (grad,) = torch.autograd.grad(logit_real.sum(), x_real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
