"""A non-saturating GAN on the same networks as SMT: the baseline of the paper's comparisons (App. E.2).

The generator is SMT's one-step generator. The discriminator is the score network's backbone (no alpha
input) with the same head SMT's GAN term uses, read at the noise level `noise.sigma_min` (clean data), or
at a sigma drawn from the grid for every sample (`method.disc_noise=grid`, instance noise).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nets.build import build_backbone, build_generator, build_head
from ..noise import SigmaGrid
from ..objectives.diffusion import add_noise
from ..objectives.gan_baseline import discriminator_loss, generator_loss, r1_penalty
from ..precond import Denoiser
from .base import Method, Phase
from .smt import SMT


class Discriminator(nn.Module):
    """One logit per sample from the backbone's bottleneck at noise level sigma."""

    def __init__(self, denoiser: Denoiser, head: nn.Module):
        super().__init__()
        self.denoiser = denoiser
        self.head = head

    def forward(self, x, sigma, labels=None):
        _, feats = self.denoiser(x, sigma, labels=labels, return_features=True)
        return self.head(feats.float())


class GAN(Method):
    def __init__(self, cfg, data_shape: tuple, num_classes: int = 0):
        self.cfg = cfg
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        self.grid = SigmaGrid(cfg.noise.grid, cfg.noise.sigma_min, cfg.noise.sigma_max, cfg.noise.rho)
        backbone = build_backbone(cfg.score, data_shape, num_classes, alpha_input=False)
        discriminator = Discriminator(
            Denoiser(backbone, cfg.data.sigma_data), build_head(backbone, cfg.method.head_hidden)
        )
        self.networks = {"generator": build_generator(cfg, data_shape, num_classes), "critic": discriminator}
        self.train_networks = dict(self.networks)

    optimizer_groups = SMT.optimizer_groups  # generator: lr_gen; critic (the discriminator): lr_score

    def plan(self, step: int) -> list[Phase]:
        """A generator step every gen_every-th iteration, a discriminator step every iteration."""
        phases = [Phase("generator", "generator")] if step % self.cfg.method.gen_every == 0 else []
        return phases + [Phase("critic", "critic")]

    def optimizer_steps(self, name: str, total_iterations: int) -> int:
        if name == "critic":
            return total_iterations
        return (total_iterations + self.cfg.method.gen_every - 1) // self.cfg.method.gen_every

    def generate(self, z, labels=None, generator_module=None):
        module = generator_module if generator_module is not None else self.networks["generator"]
        return module(z, labels=labels)

    def _labels(self, n, device, labels=None):
        if self.num_classes == 0:
            return None
        return labels if labels is not None else torch.randint(0, self.num_classes, (n,)).to(device)

    def _sigma(self, n, device):
        if self.cfg.method.disc_noise == "grid":
            return self.grid.draw(n, device)
        return torch.full((n,), float(self.cfg.noise.sigma_min), device=device)

    def _noised(self, x, sigma):
        return add_noise(x, sigma) if self.cfg.method.disc_noise == "grid" else x

    def loss(self, phase, batch, step):
        x_real, labels = batch
        n, device = x_real.shape[0], x_real.device
        if phase == "generator":
            lab = self._labels(n, device, labels)
            z = torch.randn(n, *self.data_shape).to(device)
            x_fake = self.train_networks["generator"](z, labels=lab)
            sigma = self._sigma(n, device)
            # The discriminator's own gradients are not wanted here: the unwrapped module, and the critic's
            # optimiser zeroes them before its own step.
            logits = self.networks["critic"](self._noised(x_fake, sigma), sigma, lab)
            loss = generator_loss(logits)
            return loss, {"loss_gen": loss.detach()}
        if phase == "critic":
            with torch.no_grad():
                z = torch.randn(n, *self.data_shape).to(device)
                x_fake = self.networks["generator"](z, labels=labels)
            sigma = self._sigma(n, device)
            real_in = self._noised(x_real, sigma)
            gamma = self.cfg.method.r1_gamma
            if gamma > 0:
                real_in = real_in.detach().requires_grad_(True)
            lab = None if labels is None else labels.repeat(2)
            logits = self.train_networks["critic"](
                torch.cat([real_in, self._noised(x_fake, sigma)]), sigma.repeat(2), lab
            )
            loss = discriminator_loss(logits[:n], logits[n:])
            stats = {"loss_disc": loss.detach(), "disc_real_prob": torch.sigmoid(logits[:n]).mean().detach()}
            if gamma > 0:
                penalty = r1_penalty(logits[:n], real_in)
                loss = loss + 0.5 * gamma * penalty
                stats["r1"] = penalty.detach()
            return loss, stats
        raise ValueError(f"the GAN baseline has no phase {phase!r}")
