"""The DMD / DMD2 baseline (Yin et al. 2024a, 2024b): the alpha = 1 limit of SMT's generator update, a
fake score trained by plain denoising score matching on the generator's samples, and DMD2's optional GAN
term on the fake network's bottleneck."""

from __future__ import annotations

from .diffusion import denoising_loss
from .gan_baseline import discriminator_loss, generator_loss
from .smt import _mean


def dmd_generator_direction(x, d_fake, d_real):
    """(D_fake - D_real) / mean |x - D_real|: gradient of reverse KL with the DMD weight sigma^2/||x - D_real||_1."""
    return (d_fake - d_real) / _mean((x - d_real).abs())


def fake_score_loss(d_fake, x_fake, sigma, sigma_data):
    """Per sample lambda(sigma) ||D_fake(x_fake + sigma eps; sigma) - x_fake||^2 on detached generator samples:
    its minimiser is the denoiser of the generator's distribution q (DMD's 'fake' score)."""
    return denoising_loss(d_fake, x_fake.detach(), sigma, sigma_data)


# DMD2's GAN term is the non-saturating GAN on the fake network's bottleneck: the baseline's losses.
gan_discriminator_loss = discriminator_loss
gan_generator_loss = generator_loss


__all__ = ["dmd_generator_direction", "fake_score_loss", "gan_discriminator_loss", "gan_generator_loss"]
