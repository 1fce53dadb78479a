"""A diffusion model trained with the EDM objective (Karras et al. 2022): the teachers of SMD (method.md sec. 7).

One network, the denoiser D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) built from the config's
`score` section (no alpha input; the `generator` section is unused). Each iteration draws
ln sigma ~ N(P_mean, P_std^2) per sample and minimises lambda(sigma) ||D(x + sigma n; sigma) - x||^2 with
lambda(sigma) = sigma^-2 + sigma_data^-2 (EDM Table 1; the per-sample mean over pixels, as everywhere in
this library). The trainer keeps an EMA of the denoiser; pictures and metrics draw samples with the Heun
sampler (scoremix.solvers) at eval.heun_steps steps; the run's weights go to denoiser.safetensors.
"""

from __future__ import annotations

from ..nets.build import build_diffusion_denoiser
from ..objectives.diffusion import add_noise, denoising_loss, lognormal_sigmas
from ..solvers import HeunSampler
from .base import Method, Phase


class EDM(Method):
    ema_network = "denoiser"
    ema_optimizer = "denoiser"
    weights_file = "denoiser.safetensors"
    weights_kind = "denoiser"

    def __init__(self, cfg, data_shape: tuple, num_classes: int = 0):
        self.cfg = cfg
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        self.sigma_data = cfg.data.sigma_data
        self.networks = {"denoiser": build_diffusion_denoiser(cfg, data_shape, num_classes)}
        self.train_networks = dict(self.networks)

    def optimizer_groups(self):
        o = self.cfg.optim
        return {
            "denoiser": {
                "params": list(self.networks["denoiser"].parameters()),
                "lr": o.lr_score,
                "schedule": o.score_schedule,
            }
        }

    def plan(self, step: int) -> list[Phase]:
        return [Phase("denoiser", "denoiser")]

    def optimizer_steps(self, name: str, total_iterations: int) -> int:
        return total_iterations

    def loss(self, phase, batch, step):
        if phase != "denoiser":
            raise ValueError(f"EDM has no phase {phase!r}")
        x, labels = batch
        m = self.cfg.method
        sigma = lognormal_sigmas(x.shape[0], m.p_mean, m.p_std, device=x.device)
        denoised = self.train_networks["denoiser"](add_noise(x, sigma), sigma, labels=labels)
        loss = denoising_loss(denoised, x, sigma, self.sigma_data).mean()
        return loss, {"loss_denoiser": loss.detach()}

    def as_sampler(self, module, steps: int | None = None):
        """`module` (the denoiser or its EMA) as a sampler z -> x with eval.heun_steps Heun steps."""
        n = self.cfg.noise
        return HeunSampler(module, steps or self.cfg.eval.heun_steps, n.sigma_min, n.sigma_max, n.rho)

    def generate(self, z, labels=None, generator_module=None):
        module = generator_module if generator_module is not None else self.networks["denoiser"]
        return self.as_sampler(module)(z, labels=labels)
