"""DMD / DMD2 baseline (Yin et al. 2024): reverse KL, the alpha = 1 limit of SMD. Same networks, trainer and
schedule as SMD; only the losses differ."""

from __future__ import annotations

import torch

from ..objectives.diffusion import add_noise
from ..objectives.dmd import dmd_generator_direction, fake_score_loss, gan_discriminator_loss, gan_generator_loss
from ..objectives.smt import surrogate_loss
from .distill import DistillationMethod, repeat_labels
from .smt import eval_mode


class DMD(DistillationMethod):
    needs_head = False  # the head exists only as DMD2's discriminator (method.gan)

    def _generator_loss(self, n, device):
        """grad = (D_fake - D_p) / mean|x - D_p| at x_t = g(z) + sigma eps, sigma from the middle of the grid
        (+ DMD2's GAN term: the logit of g(z) noised afresh, at a sigma drawn afresh from the whole grid, as
        DMD2's compute_cls_logits does). The critic runs in eval mode."""
        m = self.cfg.method
        labels = self.draw_labels(n, device)
        z = torch.randn(n, *self.data_shape).to(device)
        x = self.train_networks["generator"](z, labels=labels)
        lo, hi = self.gen_sigma_range
        sigma = self.grid.draw(n, device, lo=lo, hi=hi)
        x_t = add_noise(x.detach(), sigma)
        d_teacher = self.teacher_denoise(x_t, sigma, labels)
        critic = self.networks["critic"]
        use_gan = m.gan and m.gan_gen_weight > 0
        with eval_mode(critic, enabled=m.critic_eval_in_gen):
            with torch.no_grad():
                d_fake = critic(x_t, sigma, labels)
            if use_gan:
                sigma_gan = self.grid.draw(n, device)
                _, logit = critic(add_noise(x, sigma_gan), sigma_gan, labels, with_logits=True)
        grad = torch.nan_to_num(
            dmd_generator_direction(x.detach(), d_fake.detach(), d_teacher), nan=0.0, posinf=0.0, neginf=0.0
        )
        loss = surrogate_loss(x, grad)
        stats = {"loss_gen": loss.detach(), "gen_grad_rms": grad.pow(2).mean().sqrt().detach()}
        if use_gan:
            gan = gan_generator_loss(logit)
            loss = loss + m.gan_gen_weight * gan
            stats["loss_gen_gan"] = gan.detach()
        return loss, stats

    def _critic_loss(self, x_real, labels):
        """Plain EDM DSM of D_fake on detached fakes (+ DMD2's discriminator loss through D_fake's bottleneck,
        weight method.gan_disc_weight, on reals and fakes each noised at its own sigma drawn from the whole
        grid, as DMD2 does)."""
        m = self.cfg.method
        n, device = x_real.shape[0], x_real.device
        x_fake = self._fakes(n, labels, device)
        sigma_dsm = self.grid.draw(n, device)
        inputs, sigmas = [add_noise(x_fake, sigma_dsm)], [sigma_dsm]
        if m.gan:
            sigma_real, sigma_fake = self.grid.draw(n, device), self.grid.draw(n, device)
            inputs += [add_noise(x_real, sigma_real), add_noise(x_fake, sigma_fake)]
            sigmas += [sigma_real, sigma_fake]
        out = self.train_networks["critic"](
            torch.cat(inputs), torch.cat(sigmas), repeat_labels(labels, len(inputs)), with_logits=m.gan
        )
        denoised, logits = out if m.gan else (out, None)
        loss = fake_score_loss(denoised[:n], x_fake, sigma_dsm, self.sigma_data).mean()
        stats = {"loss_fake": loss.detach()}
        if m.gan:
            disc = gan_discriminator_loss(logits[n : 2 * n], logits[2 * n :])
            loss = loss + m.gan_disc_weight * disc
            stats["loss_disc"] = disc.detach()
        return loss, stats
