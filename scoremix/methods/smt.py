"""Score-of-Mixture Training from scratch (Sec. 3): a one-step generator, an amortized mixture-score
network D(x_t; sigma, alpha) and an optional discriminator head on that network's bottleneck."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..alpha import make_alpha_sampler
from ..nets.build import build_backbone, build_generator, build_head
from ..noise import SigmaGrid
from ..objectives.diffusion import add_noise, denoising_loss
from ..objectives.gan import discriminator_loss, generator_gan_loss
from ..objectives.smt import generator_direction, mixture_denoisers, mixture_denoising_loss, surrogate_loss
from ..precond import Denoiser
from .base import Method, Phase


class Critic(nn.Module):
    """The amortized score network plus the optional discriminator head, as one module so that one
    DDP wrapper covers both and one forward call serves the score and the GAN losses."""

    def __init__(self, denoiser: Denoiser, head: nn.Module | None):
        super().__init__()
        self.denoiser = denoiser
        self.head = head

    def forward(self, x, sigma, alpha, labels=None, with_logits: bool = False):
        if not with_logits:
            return self.denoiser(x, sigma, alpha=alpha, labels=labels)
        denoised, feats = self.denoiser(x, sigma, alpha=alpha, labels=labels, return_features=True)
        if feats.dtype in (torch.float16, torch.bfloat16):
            feats = feats.float()
        return denoised, self.head(feats)


@contextlib.contextmanager
def eval_mode(module: nn.Module, enabled: bool = True):
    """Run `module` in eval mode (dropout off) inside the block, then restore its previous mode."""
    was_training = module.training
    if enabled:
        module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class SMT(Method):
    def __init__(self, cfg, data_shape: tuple, num_classes: int = 0):
        self.cfg = cfg
        m = cfg.method
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        self.sigma_data = cfg.data.sigma_data
        self.grid = SigmaGrid(cfg.noise.grid, cfg.noise.sigma_min, cfg.noise.sigma_max, cfg.noise.rho)
        self.gen_sigma_range = self.grid.generator_index_range(m.gen_sigma_fraction)
        self.score_alpha = make_alpha_sampler(m.score_alpha)
        self.gen_alpha = make_alpha_sampler(m.gen_alpha)

        generator = build_generator(cfg, data_shape, num_classes)
        score_backbone = build_backbone(cfg.score, data_shape, num_classes, alpha_input=True)
        head = build_head(score_backbone, m.head_hidden) if m.gan else None
        critic = Critic(Denoiser(score_backbone, self.sigma_data, alpha_input=True), head)
        self.networks = {"generator": generator, "critic": critic}
        self.train_networks = dict(self.networks)

    # -- schedule -------------------------------------------------------------------------------------
    def optimizer_groups(self):
        o = self.cfg.optim
        return {
            "generator": {
                "params": list(self.networks["generator"].parameters()),
                "lr": o.lr_gen,
                "schedule": o.gen_schedule,
            },
            "critic": {
                "params": list(self.networks["critic"].parameters()),
                "lr": o.lr_score,
                "schedule": o.score_schedule,
            },
        }

    def plan(self, step: int) -> list[Phase]:
        """Generator denoising warm-up, then critic-only iterations against the frozen warmed-up
        generator, then SMT: a generator step every gen_every-th iteration, a critic step every one."""
        m = self.cfg.method
        if step < m.warmup_steps:
            return [Phase("warmup", "generator")]
        smt_step = step - m.warmup_steps - m.critic_warmup_steps
        phases = []
        if smt_step >= 0 and smt_step % m.gen_every == 0:
            phases.append(Phase("generator", "generator"))
        phases.append(Phase("critic", "critic"))
        return phases

    def optimizer_steps(self, name: str, total_iterations: int) -> int:
        m = self.cfg.method
        warmup = min(m.warmup_steps, total_iterations)
        if name == "critic":
            return total_iterations - warmup
        smt = max(total_iterations - warmup - m.critic_warmup_steps, 0)
        return warmup + (smt + m.gen_every - 1) // m.gen_every

    # -- sampling -------------------------------------------------------------------------------------
    def draw_labels(self, n: int, device) -> torch.Tensor | None:
        if self.num_classes == 0:
            return None
        return torch.randint(0, self.num_classes, (n,), device=device)

    def generate(self, z, labels=None, generator_module=None):
        module = generator_module if generator_module is not None else self.networks["generator"]
        return module(z, labels=labels)

    # -- losses ---------------------------------------------------------------------------------------
    def loss(self, phase, batch, step):
        x_real, labels = batch
        if phase == "warmup":
            return self._warmup_loss(x_real, labels)
        if phase == "generator":
            return self._generator_loss(x_real.shape[0], x_real.device, labels, x_real.dtype)
        if phase == "critic":
            return self._critic_loss(x_real, labels)
        raise ValueError(f"SMT has no phase {phase!r}")

    def _warmup_loss(self, x_real, labels):
        """Generator denoising warm-up (App. E.1): plain EDM DSM of the generator's denoiser, on the
        whole sigma grid or only at the generator's own noise level (warmup_sigma)."""
        n, device = x_real.shape[0], x_real.device
        if self.cfg.method.warmup_sigma == "generator":
            sigma = torch.full((n,), float(self.networks["generator"].sigma_max), device=device, dtype=x_real.dtype)
        else:
            sigma = self.grid.draw(n, device).to(x_real.dtype)
        denoised = self.train_networks["generator"](add_noise(x_real, sigma), labels=labels, sigma=sigma)
        loss = denoising_loss(denoised, x_real, sigma, self.sigma_data).mean()
        return loss, {"loss_warmup": loss.detach()}

    def _generator_loss(self, n, device, labels=None, dtype=torch.float32):
        """Eq. 6, 9, 10 (+ Eq. 11 when the GAN term is on). Class labels are the real batch's (as in
        the released code), so the generator sees the data's label frequencies."""
        m = self.cfg.method
        z = torch.randn(n, *self.data_shape, device=device)
        x = self.train_networks["generator"](z, labels=labels)
        lo, hi = self.gen_sigma_range
        sigma = self.grid.draw(n, device, lo=lo, hi=hi).to(dtype)
        alpha = self.gen_alpha(n, device=device).to(dtype)
        x_t = add_noise(x.detach(), sigma)
        critic = self.networks["critic"]
        with eval_mode(critic.denoiser, enabled=m.critic_eval_in_gen):
            d_fake, d_mix, d_real = mixture_denoisers(critic.denoiser, x_t, sigma, alpha, labels)
        grad = generator_direction(x.detach(), d_fake, d_mix, d_real, sigma=sigma, alpha=alpha, weighting=m.weighting)
        loss = surrogate_loss(x, grad)
        stats = {"loss_gen": loss.detach(), "gen_grad_rms": grad.pow(2).mean().sqrt().detach()}
        if m.gan and m.gan_gen_weight > 0:
            sigma_gan = self.grid.draw(n, device).to(dtype)
            x_gan = add_noise(x, sigma_gan)
            _, logits = critic(x_gan, sigma_gan, torch.full_like(alpha, 0.5), labels, with_logits=True)
            gan = generator_gan_loss(logits, alpha, offset=m.gan_offset)
            loss = loss + m.gan_gen_weight * gan
            stats["loss_gen_gan"] = gan.detach()
        return loss, stats

    def _critic_loss(self, x_real, labels):
        """Eq. 8 on real and fake samples in one batched call (+ the discriminator loss of Sec. 3.5)."""
        m = self.cfg.method
        n, device = x_real.shape[0], x_real.device
        with torch.no_grad():
            z = torch.randn(n, *self.data_shape, device=device)
            x_fake = self.networks["generator"](z, labels=labels)
        sigma = self.grid.draw(n, device).to(x_real.dtype)
        alpha = self.score_alpha(n, device=device).to(x_real.dtype)
        inputs = [add_noise(x_real, sigma), add_noise(x_fake, sigma)]
        sigmas, alphas = [sigma, sigma], [alpha, alpha]
        if m.gan:
            sigma_gan = self.grid.draw(n, device).to(x_real.dtype)
            inputs += [add_noise(x_real, sigma_gan), add_noise(x_fake, sigma_gan)]
            sigmas += [sigma_gan, sigma_gan]
            alphas += [torch.full_like(alpha, 0.5)] * 2
        lab = None if labels is None else labels.repeat(len(inputs))
        out = self.train_networks["critic"](
            torch.cat(inputs), torch.cat(sigmas), torch.cat(alphas), lab, with_logits=m.gan
        )
        denoised, logits = out if m.gan else (out, None)
        d_real, d_fake = denoised[:n], denoised[n : 2 * n]
        loss = mixture_denoising_loss(d_real, x_real, d_fake, x_fake, alpha, sigma, self.sigma_data).mean()
        stats = {"loss_score": loss.detach()}
        if m.gan:
            # Balanced classes (gan_disc_alpha=half) put the optimum at l* = log p_t/q_t, the logit that
            # Eq. 11's offset log(alpha/(1-alpha)) turns into the posterior of "real" in m_alpha. With the
            # score model's alpha draws (score) the optimum is log(E[alpha] p_t / (E[1-alpha] q_t)).
            disc_alpha = alpha if m.gan_disc_alpha == "score" else torch.full_like(alpha, 0.5)
            disc = discriminator_loss(logits[2 * n : 3 * n], logits[3 * n :], disc_alpha)
            loss = loss + m.gan_disc_weight * disc
            stats["loss_disc"] = disc.detach()
        return loss, stats
