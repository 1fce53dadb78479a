"""What SMD and DMD share: the frozen teacher, the networks, the schedule and the generator warm-up.

Networks (the two methods build exactly the same ones):
  generator  the one-step generator g(z) = D(sigma_g z; sigma_g) (scoremix.precond.OneStepGenerator)
  critic     the fake denoiser D_fake (no alpha input) plus a head l on its bottleneck: SMD's density-ratio
             head (Eq. 13), or DMD2's discriminator when method.gan is on
The teacher is held outside `networks`: it is never in an optimiser, never saved in a checkpoint (a
resumed run reloads it from method.teacher and checks method.teacher_sha256), and runs without gradients,
in bf16 when method.teacher_dtype=bf16.

Initialisation (method.md sections 7-8):
  network teacher   generator and D_fake are built from the teacher's network settings with dropout 0 and
                    label dropout 0 (as the released code and DMD2 build them; a teacher's 0.13 / 0.10 is not
                    carried over), written into cfg.generator and cfg.score so that `scoremix sample/eval` and
                    a resumed run rebuild them, and both take the teacher's backbone weights: D_fake starts as
                    the teacher, the generator as the teacher evaluated at sigma_g = noise.generator_sigma or
                    sigma_max. Probes check both, so the generator direction is exactly 0 before the first
                    critic step. A diffusers UNet2DModel teacher is refused: no scoremix network takes its
                    weights, so its students could not be rebuilt for sampling (docs/distillation.md).
  analytic teacher  no weights to copy: generator and D_fake are the config's networks with their random
                    initialisation; method.warmup_steps regress the generator onto the teacher at sigma_g
                    (g(z) -> D_p(sigma_g z; sigma_g), the analytic counterpart of copying the teacher), and
                    method.critic_warmup_steps train D_fake (and the head) before the first generator step.

The head on D_fake's bottleneck is method.head: small (method.head_hidden wide) or paper (the released
code's, scoremix.nets.heads.PaperHead). In the generator step the critic runs in eval mode
(method.critic_eval_in_gen).
"""

from __future__ import annotations

import dataclasses
import hashlib

import torch
from torch import nn

from ..alpha import make_alpha_sampler
from ..errors import ConfigError, TeacherError
from ..nets.build import build_backbone, build_denoiser, build_generator, build_head
from ..noise import SigmaGrid
from ..objectives.diffusion import per_sample_mse
from ..precond import Denoiser
from .base import Method
from .smt import SMT, eval_mode


class DistillCritic(nn.Module):
    """D_fake and the head on its bottleneck as one module (one DDP wrapper, one forward per loss)."""

    def __init__(self, fake: nn.Module, head: nn.Module | None):
        super().__init__()
        self.fake = fake
        self.head = head

    def forward(self, x, sigma, labels=None, with_logits: bool = False, detach_features: bool = False):
        if not with_logits:
            return self.fake(x, sigma, labels=labels)
        denoised, feats = self.fake(x, sigma, labels=labels, return_features=True)
        if detach_features:
            feats = feats.detach()
        return denoised, self.head(feats.float())


def teacher_sha256(teacher: nn.Module) -> str | None:
    """SHA-256 of the teacher's tensors and preconditioning (the analytic teacher's own digest); None on the
    meta device. Paths and other bookkeeping in `info` stay out, so a moved teacher file still matches."""
    info = getattr(teacher, "info", {}) or {}
    if info.get("sha256"):
        return str(info["sha256"])
    h = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        if tensor.device.type == "meta":
            return None
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(str(info.get("precond")).encode())
    return h.hexdigest()


def _missing_teacher(name: str) -> ConfigError:
    return ConfigError(
        f"method.name={name} distils a frozen teacher: set method.teacher=PATH to a diffusion run "
        "of this library (train one with `scoremix train --config mnist-edm`) or an EDM .pkl, or "
        "method.teacher=analytic on the 2-D toys"
    )


def apply_net_config(section, net_config: dict, **force) -> None:
    """Copy a teacher's network settings into a NetConfig section (lists stay lists)."""
    fields = {f.name for f in dataclasses.fields(section)}
    for key, value in {**net_config, **force}.items():
        if key in fields:
            setattr(section, key, list(value) if isinstance(value, (list, tuple)) else value)
        elif key == "precond" and value not in (None, "edm"):
            raise TeacherError(
                f"the teacher uses {value} preconditioning, which this library's generator config "
                "cannot record (NetConfig has no 'precond' key); distil a teacher with EDM "
                "preconditioning"
            )


class DistillationMethod(Method):
    """Base of SMD and DMD; subclasses implement `_generator_loss` and `_critic_loss`."""

    needs_head = True  # SMD: always (density ratio); DMD: only with method.gan

    def __init__(self, cfg, data_shape: tuple, num_classes: int = 0, teacher: nn.Module | None = None):
        self.cfg = cfg
        m = cfg.method
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        if teacher is None:
            if not m.teacher:
                raise _missing_teacher(m.name)
            from ..teachers import load_teacher

            teacher = load_teacher(m.teacher, device="cpu", data_cfg=cfg.data)
        info = dict(getattr(teacher, "info", {}) or {})
        self._check_teacher(info)
        digest = teacher_sha256(teacher)
        if m.teacher_sha256 and digest and m.teacher_sha256 != digest:
            raise TeacherError(
                f"teacher '{m.teacher}' is not the one this run started with (sha256 {digest[:12]} "
                f"vs {m.teacher_sha256[:12]} recorded in method.teacher_sha256); pass the original "
                "teacher, or start a new run"
            )
        if digest:
            m.teacher_sha256 = digest
        self.teacher_info = info
        self.analytic = info.get("kind") == "analytic" or not any(True for _ in teacher.parameters())
        if self.analytic:
            generator = build_generator(cfg, data_shape, num_classes)
            fake = Denoiser(
                build_backbone(cfg.score, data_shape, num_classes, alpha_input=False),
                cfg.data.sigma_data,
                alpha_input=False,
            )
        else:
            generator, fake = self._networks_from_teacher(teacher, info)
        self.sigma_data = cfg.data.sigma_data
        head = build_head(fake.backbone, m.head_hidden, m.head) if (self.needs_head or m.gan) else None
        self.networks = {"generator": generator, "critic": DistillCritic(fake, head)}
        self.train_networks = dict(self.networks)

        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher_bf16 = m.teacher_dtype == "bf16" and not self.analytic
        if self.teacher_bf16:
            self.teacher.to(torch.bfloat16)
        self.grid = SigmaGrid(cfg.noise.grid, cfg.noise.sigma_min, cfg.noise.sigma_max, cfg.noise.rho)
        self.gen_sigma_range = self.grid.generator_index_range(m.gen_sigma_fraction)
        self.score_alpha = make_alpha_sampler(m.score_alpha)
        self.gen_alpha = make_alpha_sampler(m.gen_alpha)

    # -- teacher --------------------------------------------------------------------------------------
    def _check_teacher(self, info: dict) -> None:
        shape = info.get("data_shape")
        if shape is not None and tuple(shape) != self.data_shape:
            raise TeacherError(
                f"the teacher denoises data of shape {tuple(shape)} but data.source="
                f"{self.cfg.data.source} gives {self.data_shape}; set data.resolution/channels "
                "to the teacher's, or pick the teacher trained on this data"
            )
        classes = int(info.get("num_classes") or 0)
        if classes != self.num_classes:
            raise TeacherError(
                f"the teacher has {classes or 'no'} classes but the data gives "
                f"{self.num_classes or 'none'}; set data.conditional="
                f"{'true' if classes else 'false'} to match it"
            )

    def _networks_from_teacher(self, teacher: nn.Module, info: dict):
        cfg = self.cfg
        if info.get("kind") == "diffusers":
            raise TeacherError(
                f"method.teacher={cfg.method.teacher} is a diffusers UNet2DModel, which SMD/DMD cannot "
                "distil: its students would be UNet2DModels that no scoremix config rebuilds for "
                "checkpoints and `scoremix sample`; distil a scoremix diffusion run (scoremix train "
                "--config mnist-edm) or an EDM .pkl instead (docs/distillation.md)"
            )
        net_config = info.get("net_config")
        if not isinstance(net_config, dict) or not hasattr(teacher, "backbone"):
            raise TeacherError(
                "the teacher is a network but carries no info['net_config'] or .backbone, so no "
                "generator can be built from it; load it with scoremix.load_teacher"
            )
        # dropout 0 for the students (method.md section 8): D_fake must equal the teacher at the start
        apply_net_config(cfg.generator, net_config, dropout=0.0, label_dropout=0.0)
        apply_net_config(cfg.score, net_config, dropout=0.0, label_dropout=0.0)
        if info.get("sigma_data"):
            cfg.data.sigma_data = float(info["sigma_data"])
        generator = build_generator(cfg, self.data_shape, self.num_classes)
        fake = build_denoiser(
            build_backbone(cfg.score, self.data_shape, self.num_classes), cfg.score, cfg.data.sigma_data
        )
        weights = teacher.backbone.state_dict()
        for name, backbone in (("generator", generator.denoiser.backbone), ("fake denoiser", fake.backbone)):
            try:
                backbone.load_state_dict(weights)
            except RuntimeError as err:
                raise TeacherError(
                    f"the {name} built from the teacher's network settings does not take its "
                    f"weights ({str(err).splitlines()[0][:160]})"
                ) from None
        self._probe_generator(generator, teacher)
        self._probe_fake(fake, teacher)
        return generator, fake

    @torch.no_grad()
    def _probe_generator(self, generator, teacher) -> None:
        """The generator must start as the teacher evaluated at sigma_g (same preconditioning)."""
        if next(teacher.parameters()).device.type == "meta":
            return
        rng = torch.Generator().manual_seed(0)
        z = torch.randn(2, *self.data_shape, generator=rng)
        labels = torch.arange(2) % self.num_classes if self.num_classes else None
        with eval_mode(generator):
            got = generator(z, labels=labels)
        want = teacher(generator.sigma_max * z, torch.full((2,), generator.sigma_max), labels=labels)
        if not torch.allclose(got, want.float(), rtol=1e-4, atol=1e-4 * float(want.abs().max()) + 1e-6):
            raise TeacherError(
                "the generator rebuilt from the teacher's settings does not reproduce the teacher at "
                f"sigma {generator.sigma_max:g} (max difference {float((got - want).abs().max()):.3g}): "
                f"its preconditioning ({self.teacher_info.get('precond')}) is not one this library's "
                "generator builds"
            )

    @torch.no_grad()
    def _probe_fake(self, fake, teacher) -> None:
        """D_fake must start as the teacher itself (eval mode), at a low, a middle and a high noise level."""
        if next(teacher.parameters()).device.type == "meta":
            return
        rng = torch.Generator().manual_seed(1)
        sigma = torch.tensor([0.05, 1.0, 20.0])
        x = torch.randn(3, *self.data_shape, generator=rng) * sigma.reshape(-1, *[1] * len(self.data_shape))
        labels = torch.arange(3) % self.num_classes if self.num_classes else None
        with eval_mode(fake):
            got = fake(x, sigma, labels=labels)
        want = teacher(x, sigma, labels=labels).float()
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()) + 1e-6):
            raise TeacherError(
                "the fake denoiser rebuilt from the teacher's settings does not reproduce the teacher "
                f"(max difference {float((got - want).abs().max()):.3g}): its preconditioning "
                f"({self.teacher_info.get('precond')}) is not one this library builds"
            )

    @torch.no_grad()
    def teacher_denoise(self, x, sigma, labels=None) -> torch.Tensor:
        """D_p(x; sigma) without gradients, in the input's dtype (bf16 weights run under autocast)."""
        if self.teacher_bf16:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.teacher(x, sigma, labels=labels).to(x.dtype)
        return self.teacher(x, sigma, labels=labels).to(x.dtype)

    def to(self, device):
        super().to(device)
        self.teacher.to(device)
        return self

    # -- schedule and sampling: the same as SMT's (warm-up, critic warm-up, one generator step per gen_every)
    optimizer_groups = SMT.optimizer_groups
    plan = SMT.plan
    optimizer_steps = SMT.optimizer_steps
    draw_labels = SMT.draw_labels
    generate = SMT.generate

    # -- losses ---------------------------------------------------------------------------------------
    def loss(self, phase, batch, step):
        x_real, labels = batch
        if phase == "warmup":
            return self._warmup_loss(x_real.shape[0], x_real.device)
        if phase == "generator":
            return self._generator_loss(x_real.shape[0], x_real.device)
        if phase == "critic":
            return self._critic_loss(x_real, labels)
        raise ValueError(f"{type(self).__name__} has no phase {phase!r}")

    def _warmup_loss(self, n, device):
        """Regress the generator onto the teacher at its own noise level: g(z) -> D_p(sigma_g z; sigma_g)."""
        labels = self.draw_labels(n, device)
        z = torch.randn(n, *self.data_shape).to(device)
        gen = self.networks["generator"]
        target = self.teacher_denoise(gen.sigma_max * z, torch.full((n,), gen.sigma_max, device=device), labels)
        x = self.train_networks["generator"](z, labels=labels)
        loss = per_sample_mse(x, target).mean()
        return loss, {"loss_warmup": loss.detach()}

    def _fakes(self, n, labels, device):
        with torch.no_grad():
            z = torch.randn(n, *self.data_shape).to(device)
            return self.networks["generator"](z, labels=labels)

    def _generator_loss(self, n, device):
        raise NotImplementedError

    def _critic_loss(self, x_real, labels):
        raise NotImplementedError


def repeat_labels(labels, times: int):
    return None if labels is None else labels.repeat(times)
