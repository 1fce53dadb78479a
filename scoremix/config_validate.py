"""Validation of a configuration: ranges, choices and combinations of keys, checked before anything runs.

Below config.py (which calls `validate` in `config_from_dict`): it imports no configuration module and
reads a Config only through its attributes.
"""

from __future__ import annotations

from .errors import ConfigError

_TOY_SOURCES = ("ring8", "grid25", "swissroll")
_VECTOR_SOURCES = ("points",)
_IMAGE_SOURCES = ("digits", "mnist", "folder", "npz", "zip", "cifar10", "imagenet64")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg) -> None:
    """Ranges, choices and combinations of a config.Config; every message names the key and the fix."""
    from .alpha import make_alpha_sampler

    d, m, o, t, n = cfg.data, cfg.method, cfg.optim, cfg.train, cfg.noise
    sources = _TOY_SOURCES + _VECTOR_SOURCES + _IMAGE_SOURCES
    _check(d.source in sources, f"data.source='{d.source}' is unknown; use one of {', '.join(sources)}")
    _check(
        d.source not in ("points", "folder", "npz", "zip") or d.path,
        f"data.source={d.source} needs data.path=... (the dataset file or folder)",
    )
    _check(d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size}")
    _check(d.sigma_data > 0, "data.sigma_data must be positive")
    _check(d.resolution is None or d.resolution >= 4, "data.resolution must be at least 4")
    _check(d.channels in (None, 1, 3), f"data.channels must be 1 or 3, got {d.channels}")
    _check(
        not (d.conditional and d.source in _TOY_SOURCES),
        f"data.conditional=true needs labelled images; data.source={d.source} has no labels",
    )
    _check(
        d.standardize in ("none", "global", "per_dim"),
        f"data.standardize='{d.standardize}' is unknown; use none, global or per_dim",
    )
    _check(
        not (d.source in _VECTOR_SOURCES and (d.flip or d.resolution or d.channels)),
        "data.flip, data.resolution and data.channels are for images; data.source=points takes none of them",
    )
    for role in ("score",) if m.name == "edm" else ("generator", "score"):  # edm: one network, `score`
        net = getattr(cfg, role)  # a NetConfig
        _check(
            net.arch in ("mlp", "unet", "ddpmpp", "adm"),
            f"{role}.arch='{net.arch}' is unknown; use mlp, unet, ddpmpp or adm",
        )
        _check(
            net.hidden >= 1 and net.depth >= 1 and net.channels >= 1 and net.blocks >= 1,
            f"{role}: hidden, depth, channels and blocks must be positive",
        )
        _check(
            net.fourier_features >= 0 and net.fourier_features % 2 == 0 and net.fourier_scale > 0,
            f"{role}: fourier_features must be an even number >= 0 and fourier_scale > 0",
        )
        _check(
            net.activation in ("silu", "leaky_relu", "relu"),
            f"{role}.activation='{net.activation}' is unknown; use silu, leaky_relu or relu",
        )
        _check(
            len(net.channel_mult) >= 1 and all(c >= 1 for c in net.channel_mult),
            f"{role}.channel_mult must be a non-empty list of positive integers",
        )
        _check(0 <= net.dropout < 1 and 0 <= net.label_dropout < 1, f"{role}: dropouts must lie in [0, 1)")
        _check(net.precond in ("edm", "vp", "ve"), f"{role}.precond='{net.precond}' is unknown; use edm, vp or ve")
        is_toy = d.source in _TOY_SOURCES + _VECTOR_SOURCES
        kind = "2-D data" if d.source in _TOY_SOURCES else "vector data"
        _check(not (is_toy and net.arch != "mlp"), f"{role}.arch={net.arch} needs images; {kind} uses arch=mlp")
        _check(
            not (not is_toy and net.arch == "mlp"),
            f"{role}.arch=mlp is for vector data; images need {role}.arch=unet, ddpmpp or adm",
        )
    _check(
        m.name in ("smt", "gan", "edm", "smd", "dmd"),
        f"method.name='{m.name}' is unknown; available: smt, smd, dmd, "
        "gan (the non-saturating GAN baseline), edm (diffusion)",
    )
    _check(
        m.name not in ("smt", "gan") or cfg.score.precond == "edm",
        f"score.precond={cfg.score.precond}: the {m.name} score network uses EDM preconditioning; set score.precond=edm",
    )
    _check(m.disc_noise in ("none", "grid"), f"method.disc_noise='{m.disc_noise}' is unknown; use none or grid")
    _check(m.r1_gamma >= 0, "method.r1_gamma must be >= 0")
    _check(m.teacher_dtype in ("fp32", "bf16"), f"method.teacher_dtype='{m.teacher_dtype}': use fp32 or bf16")
    _check(m.head in ("small", "paper"), f"method.head='{m.head}' is unknown; use small or paper")
    _check(
        m.head == "small" or m.name in ("smd", "dmd"),
        f"method.head=paper is the distillation head (smd, dmd); method.name={m.name} uses method.head=small",
    )
    _check(
        m.head == "small" or cfg.score.arch != "mlp",
        "method.head=paper is a convolutional head for image bottlenecks; vector data uses method.head=small",
    )
    _check(
        not (
            m.name in ("smd", "dmd")
            and m.teacher
            and str(m.teacher).startswith("analytic")
            and d.source not in _TOY_SOURCES
        ),
        f"method.teacher={m.teacher} exists only for the 2-D toys ({', '.join(_TOY_SOURCES)}); images need a "
        "trained teacher, e.g. a run of `scoremix train --config mnist-edm`",
    )
    _check(m.p_std > 0, f"method.p_std must be positive, got {m.p_std}")
    _check(m.gen_every >= 1, f"method.gen_every must be >= 1, got {m.gen_every}")
    make_alpha_sampler(m.score_alpha)
    gen_sampler = make_alpha_sampler(m.gen_alpha)
    _check(
        not (
            m.gen_alpha in ("uniform0", "paper", "code", "endpoints")
            or m.gen_alpha == "constant:0"
            or m.gen_alpha.startswith("range:0,")
            or m.gen_alpha.startswith("range:0.0,")
        ),
        f"method.gen_alpha={m.gen_alpha} can draw alpha=0, where the generator update is undefined; "
        "use uniform, range:a,b with a>0, or constant:c with c>0",
    )
    del gen_sampler
    _check(0 < m.gen_sigma_fraction <= 1, "method.gen_sigma_fraction must lie in (0, 1]")
    _check(
        m.weighting in ("adaptive", "dmd", "none"),
        f"method.weighting='{m.weighting}' is unknown; use adaptive, dmd or none",
    )
    _check(m.gan_gen_weight >= 0 and m.gan_disc_weight >= 0, "method.gan_*_weight must be >= 0")
    _check(
        m.gan_disc_alpha in ("half", "score"),
        f"method.gan_disc_alpha='{m.gan_disc_alpha}' is unknown; use half (balanced) or score",
    )
    _check(m.warmup_steps >= 0, "method.warmup_steps must be >= 0")
    _check(m.warmup_sigma in ("grid", "generator"), "method.warmup_sigma must be 'grid' or 'generator'")
    _check(m.critic_warmup_steps >= 0, "method.critic_warmup_steps must be >= 0")
    _check(0 < n.sigma_min < n.sigma_max, "noise: need 0 < sigma_min < sigma_max")
    _check(n.generator_sigma is None or n.generator_sigma > 0, "noise.generator_sigma must be positive (or none)")
    _check(n.grid >= 10 and n.rho > 0, "noise.grid must be >= 10 and noise.rho > 0")
    _check(o.lr_gen > 0 and o.lr_score > 0, "optim.lr_gen and optim.lr_score must be positive")
    _check(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "optim.beta1/beta2 must lie in [0, 1)")
    _check(
        o.weight_decay >= 0 and o.grad_clip >= 0 and o.lr_warmup >= 0,
        "optim: weight_decay, grad_clip, lr_warmup must be >= 0",
    )
    for key in ("gen_schedule", "score_schedule"):
        _check(getattr(o, key) in ("constant", "cosine"), f"optim.{key} must be constant or cosine")
    _check(t.steps >= 1, f"train.steps must be >= 1, got {t.steps}")
    _check(0 <= t.ema < 1, f"train.ema is a decay in [0, 1) (0 disables), got {t.ema}")
    for key in ("log_every", "sample_every", "ckpt_every", "keep_every", "eval_every"):
        _check(getattr(t, key) >= 0, f"train.{key} must be >= 0")
    _check(t.keep_last >= 1, "train.keep_last must be >= 1")
    _check(
        t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"),
        f"train.device='{t.device}': use auto, cpu or cuda",
    )
    _check(t.precision in ("fp32", "bf16"), f"train.precision='{t.precision}': use fp32 or bf16")
    _check(t.nonfinite in ("skip", "stop"), f"train.nonfinite='{t.nonfinite}': use skip or stop")
    _check(t.max_skips >= 1, "train.max_skips must be >= 1")
    flag = str(t.progress).lower()
    t.progress = {
        "true": "auto",
        "yes": "auto",
        "on": "auto",
        "1": "auto",
        "false": "off",
        "no": "off",
        "0": "off",
    }.get(flag, flag)
    _check(t.progress in ("auto", "bar", "lines", "off"), f"train.progress='{t.progress}': use auto, bar, lines or off")
    _check(t.progress_every > 0, "train.progress_every must be a positive number of seconds")
    _check(t.batch_gpu >= 0, f"train.batch_gpu must be >= 0 (0: no accumulation), got {t.batch_gpu}")
    _check(d.workers >= 0, f"data.workers must be >= 0, got {d.workers}")
    _check(d.holdout >= 0, f"data.holdout must be >= 0, got {d.holdout}")
    _check(
        d.holdout == 0 or d.source not in _TOY_SOURCES,
        f"data.holdout is for finite datasets; data.source={d.source} draws fresh samples",
    )
    _check(
        d.workers == 0 or d.source not in _TOY_SOURCES,
        f"data.workers is for image datasets; data.source={d.source} draws its samples in the training process",
    )
    _check(cfg.eval.samples >= 10 and cfg.eval.knn_k >= 1, "eval.samples must be >= 10 and eval.knn_k >= 1")
    _check(cfg.eval.heun_steps >= 1, f"eval.heun_steps must be >= 1, got {cfg.eval.heun_steps}")
    _check(
        cfg.log.wandb_mode in (None, "online", "offline", "disabled"),
        f"log.wandb_mode='{cfg.log.wandb_mode}' is unknown; use online, offline or disabled",
    )
    _check(bool(str(cfg.log.wandb_project).strip()), "log.wandb_project must not be empty")
