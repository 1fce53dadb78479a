"""Score-of-Mixture Distillation (Sec. 4, Eq. 12-15; method.md section 7): a one-step generator distilled
from a frozen diffusion teacher, with a fake denoiser and a density-ratio head on its bottleneck."""

from __future__ import annotations

import torch

from ..objectives import smd
from ..objectives.diffusion import add_noise
from ..objectives.dmd import fake_score_loss
from ..objectives.smt import surrogate_loss
from .distill import DistillationMethod, repeat_labels
from .smt import eval_mode


class SMD(DistillationMethod):
    needs_head = True

    def _generator_loss(self, n, device):
        """Eq. 15 (+ the GAN term of Eq. 11 with the density-ratio head when method.gan is on), at one
        x_t = g(z) + sigma eps with sigma from the middle of the grid and alpha from method.gen_alpha (the
        released code evaluates both terms at this one x_t). The critic runs in eval mode."""
        m = self.cfg.method
        labels = self.draw_labels(n, device)
        z = torch.randn(n, *self.data_shape).to(device)
        x = self.train_networks["generator"](z, labels=labels)
        lo, hi = self.gen_sigma_range
        sigma = self.grid.draw(n, device, lo=lo, hi=hi)
        alpha = self.gen_alpha(n).to(device)
        noise = torch.randn_like(x)
        x_t = x.detach() + sigma.reshape(-1, *([1] * (x.ndim - 1))) * noise
        d_teacher = self.teacher_denoise(x_t, sigma, labels)
        critic = self.networks["critic"]
        use_gan = m.gan and m.gan_gen_weight > 0
        with eval_mode(critic, enabled=m.critic_eval_in_gen):
            if use_gan:  # x_t again, now carrying the generator's gradient into the head's logit
                x_t = x + sigma.reshape(-1, *([1] * (x.ndim - 1))) * noise
                d_fake, logit = critic(x_t, sigma, labels, with_logits=True)
            else:
                with torch.no_grad():
                    d_fake, logit = critic(x_t, sigma, labels, with_logits=True)
        grad = smd.generator_direction(x.detach(), d_fake.detach(), d_teacher, logit.detach(), alpha)
        loss = surrogate_loss(x, grad)
        stats = {
            "loss_gen": loss.detach(),
            "gen_grad_rms": grad.pow(2).mean().sqrt().detach(),
            "gen_posterior": smd.density_ratio_posterior(logit.detach(), alpha).mean(),
        }
        if use_gan:
            gan = smd.gan_generator_loss(logit, alpha)
            loss = loss + m.gan_gen_weight * gan
            stats["loss_gen_gan"] = gan.detach()
        return loss, stats

    def _critic_loss(self, x_real, labels):
        """Released code's critic step: (a) plain EDM DSM of D_fake on detached fakes, plus (b) the mixture
        loss (Eq. 14) of the interpolated denoiser on reals and fakes at one sigma, one alpha (from
        method.score_alpha) and one noise draw per pair; (b) trains the head, and with
        method.smd_joint_features (the released --joint_training, on by default) also D_fake's encoder
        through the bottleneck features; D_fake's outputs in (b) are detached targets and mixands."""
        m = self.cfg.method
        n, device = x_real.shape[0], x_real.device
        x_fake = self._fakes(n, labels, device)
        sigma_dsm = self.grid.draw(n, device)
        sigma = self.grid.draw(n, device)
        alpha = self.score_alpha(n).to(device)
        noise = torch.randn_like(x_real)
        s = sigma.reshape(-1, *([1] * (x_real.ndim - 1)))
        x_real_t, x_fake_t = x_real + s * noise, x_fake + s * noise
        inputs = torch.cat([add_noise(x_fake, sigma_dsm), x_real_t, x_fake_t])
        denoised, logits = self.train_networks["critic"](
            inputs,
            torch.cat([sigma_dsm, sigma, sigma]),
            repeat_labels(labels, 3),
            with_logits=True,
            detach_features=not m.smd_joint_features,
        )
        d_teacher = self.teacher_denoise(
            torch.cat([x_real_t, x_fake_t]), torch.cat([sigma, sigma]), repeat_labels(labels, 2)
        )
        loss_fake = fake_score_loss(denoised[:n], x_fake, sigma_dsm, self.sigma_data).mean()
        loss_mix = smd.mixture_loss(
            logits[n : 2 * n],
            d_teacher[:n],
            denoised[n : 2 * n],
            logits[2 * n :],
            d_teacher[n:],
            denoised[2 * n :],
            alpha,
            sigma,
            self.sigma_data,
        ).mean()
        loss = loss_fake + loss_mix
        return loss, {
            "loss_fake": loss_fake.detach(),
            "loss_mix": loss_mix.detach(),
            "logit_real": logits[n : 2 * n].detach().mean(),
            "logit_fake": logits[2 * n :].detach().mean(),
        }
