"""The paper-scale presets (method.md section 8): SMT on CIFAR-10 and ImageNet 64 from scratch, and SMD from
EDM's published teachers, with the released scripts' optimiser and run settings. Registered in
scoremix.presets.PRESETS."""

from __future__ import annotations

from .config import Config, NetConfig


def _paper_image_training(cfg: Config) -> Config:
    """Optimiser and run settings of the paper's GPU runs (released scripts, method.md section 8): AdamW
    (0.9, 0.999), weight decay 0.01, gradient clip 10, 500 LR warm-up steps, bf16 autocast, EMA 0.9999."""
    cfg.optim.beta1, cfg.optim.beta2 = 0.9, 0.999
    cfg.optim.weight_decay = 0.01
    cfg.optim.grad_clip = 10.0
    cfg.optim.lr_warmup = 500
    cfg.train.precision = "bf16"
    cfg.train.channels_last = True
    cfg.train.ema = 0.9999
    cfg.train.log_every = 100
    cfg.train.sample_every = 5000
    cfg.train.ckpt_every = 5000
    cfg.train.keep_every = 50000
    cfg.eval.samples = 10000
    return cfg


def _image_smt(name: str, source: str, arch_kwargs: dict, score_dropout: float) -> Config:
    """Shared settings of the paper's image runs (method.md section 8)."""
    cfg = Config(name=name)
    cfg.data.source = source
    cfg.data.sigma_data = 0.5
    cfg.data.batch_size = 280  # the paper's 40 per GPU x 7 GPUs, written out as the global batch
    cfg.generator = NetConfig(**arch_kwargs, dropout=0.0)
    cfg.score = NetConfig(**arch_kwargs, dropout=score_dropout)
    cfg.method.gen_every = 5
    cfg.method.score_alpha = "code"  # the released code's; D_1 is trained far more often (issue 9)
    cfg.method.gen_alpha = "uniform"
    cfg.method.gan = True
    cfg.method.gan_gen_weight = 3e-3
    cfg.method.gan_disc_weight = 1e-2
    # Our choice (neither paper nor code has it): after the generator warm-up the critic learns both
    # scores for 2k iterations before the first SMT update, instead of steering it from random weights.
    cfg.method.critic_warmup_steps = 2000
    return _paper_image_training(cfg)


def cifar10_smt() -> Config:
    """The paper's CIFAR-10 SMT run: DDPM++ (56M) generator and score net, 150k iterations, batch 280."""
    cfg = _image_smt(
        "cifar10-smt",
        "cifar10",
        dict(arch="ddpmpp", channels=128, channel_mult=[2, 2, 2], blocks=4, attention=[16]),
        score_dropout=0.13,
    )
    cfg.data.path = "data/cifar-10-batches-py"
    cfg.data.flip = True
    cfg.optim.lr_gen, cfg.optim.lr_score = 1e-4, 5e-4
    cfg.optim.gen_schedule = "cosine"
    cfg.method.warmup_steps = 10000  # the paper gives 40k for ImageNet only; our choice for CIFAR
    cfg.train.steps = 150000
    return cfg


def imagenet64_smt() -> Config:
    """The paper's class-conditional ImageNet 64x64 SMT run: ADM (296M), 200k iterations, batch 280."""
    cfg = _image_smt(
        "imagenet64-smt",
        "imagenet64",
        dict(arch="adm", channels=192, channel_mult=[1, 2, 3, 4], blocks=3, attention=[32, 16, 8]),
        score_dropout=0.10,
    )
    cfg.data.path = "data/imagenet64"
    cfg.data.conditional = True
    cfg.optim.lr_gen, cfg.optim.lr_score = 5e-6, 5e-5
    cfg.method.warmup_steps = 40000  # App. E.1
    cfg.train.steps = 200000
    return cfg


def _image_smd(name: str, source: str) -> Config:
    """Released-code SMD settings (method.md sections 7-8): AdamW (0.9, 0.999), weight decay 0.01, clip 10,
    500 warm-up steps, 5 critic steps per generator step, critic alpha with 25 % zeros, generator alpha on
    [0.5, 1], the Eq. 11 term at 3e-3, bf16 autocast, global batch 280, the released density-ratio head
    (method.head=paper) and --joint_training (smd_joint_features). Networks come from the teacher, built
    with dropout 0."""
    cfg = Config(name=name)
    cfg.data.source = source
    cfg.data.sigma_data = 0.5
    cfg.data.batch_size = 280
    cfg.method.name = "smd"
    cfg.method.teacher = None  # method.teacher=PATH to the published EDM pickle
    cfg.method.gen_every = 5
    cfg.method.score_alpha = "paper"
    cfg.method.gen_alpha = "range:0.5,1"
    cfg.method.gan = True
    cfg.method.gan_gen_weight = 3e-3
    cfg.method.head = "paper"  # 4x4 s2 conv, GroupNorm, SiLU, 4x4 s4 conv, GroupNorm, SiLU, 1x1 conv
    cfg.method.smd_joint_features = True  # the mixture loss also trains D_fake's encoder (--joint_training)
    return _paper_image_training(cfg)


def cifar10_smd() -> Config:
    """SMD on CIFAR-10 from EDM's edm-cifar10-32x32-uncond-vp.pkl (method.teacher=PATH); lr 5e-5 / 5e-5."""
    cfg = _image_smd("cifar10-smd", "cifar10")
    # replaced by the teacher's own settings at start-up; EDM's CIFAR-10 DDPM++ for --dry-run and validation
    cfg.generator = NetConfig(arch="ddpmpp", channels=128, channel_mult=[2, 2, 2], blocks=4, attention=[16])
    cfg.score = NetConfig(arch="ddpmpp", channels=128, channel_mult=[2, 2, 2], blocks=4, attention=[16], dropout=0.0)
    cfg.data.path = "data/cifar-10-batches-py"
    cfg.optim.lr_gen, cfg.optim.lr_score = 5e-5, 5e-5
    cfg.train.steps = 150000  # the paper gives no SMD iteration count; as its CIFAR SMT run
    return cfg


def imagenet64_smd() -> Config:
    """SMD on class-conditional ImageNet 64 from EDM's edm-imagenet-64x64-cond-adm.pkl; lr 2e-6 / 2e-6, bf16 teacher."""
    cfg = _image_smd("imagenet64-smd", "imagenet64")
    cfg.generator = NetConfig(arch="adm", channels=192, channel_mult=[1, 2, 3, 4], blocks=3, attention=[32, 16, 8])
    cfg.score = NetConfig(
        arch="adm", channels=192, channel_mult=[1, 2, 3, 4], blocks=3, attention=[32, 16, 8], dropout=0.0
    )
    cfg.data.path = "data/imagenet64"
    cfg.data.conditional = True
    cfg.method.teacher_dtype = "bf16"  # the 296M-parameter ADM teacher held in bfloat16
    cfg.optim.lr_gen, cfg.optim.lr_score = 2e-6, 2e-6
    cfg.train.steps = 200000  # as the paper's ImageNet SMT run
    return cfg
