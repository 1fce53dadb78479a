"""The optional GAN regulariser of Sec. 3.5 / App. D.2 (Eq. 11)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..precond import log_snr_like


def discriminator_loss(logit_real, logit_fake, alpha):
    """mean((1 - alpha) softplus(l(x_fake,t))) + mean(alpha softplus(-l(x_real,t)))."""
    return ((1 - alpha) * F.softplus(logit_fake)).mean() + (alpha * F.softplus(-logit_real)).mean()


def generator_gan_loss(logit_fake, alpha, offset: bool = True):
    """Eq. 11: mean softplus(-l(x_fake,t) - log(alpha / (1 - alpha))); offset=False drops the log term
    (as the released SMT code does)."""
    shift = log_snr_like(alpha) if offset else torch.zeros_like(logit_fake)
    return F.softplus(-logit_fake - shift).mean()
