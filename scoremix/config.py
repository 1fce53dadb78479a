"""Typed configuration: the dataclasses, key=value coercion and validation.

The lowest layer of the configuration: presets.py builds Configs from it, and config_loader.load_config
(above both) resolves a preset or YAML file plus overrides into a validated Config.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field

import yaml

from .errors import ConfigError

_TOY_SOURCES = ("ring8", "grid25", "swissroll")
_VECTOR_SOURCES = ("points",)
_IMAGE_SOURCES = ("digits", "mnist", "folder", "npz", "zip", "cifar10", "imagenet64")


@dataclass
class DataConfig:
    source: str = (
        "ring8"  # ring8 | grid25 | swissroll | points | digits | mnist | folder | npz | zip | cifar10 | imagenet64
    )
    path: typing.Optional[str] = None  # file or folder for points/folder/npz/zip/cifar10/imagenet64
    resolution: typing.Optional[int] = None  # resize/pad images to this size (None: native)
    channels: typing.Optional[int] = None  # convert images to 1 or 3 channels (None: native)
    conditional: bool = False  # train class-conditionally on the dataset's labels
    flip: bool = False  # random horizontal flips
    batch_size: int = 256  # GLOBAL batch: split evenly over the ranks
    sigma_data: float = 0.5  # data standard deviation used by EDM preconditioning
    standardize: str = "global"  # points: none | global (centre, one scale) | per_dim (centre, scale each coordinate)
    workers: int = 0  # DataLoader worker processes reading batches ahead (0: read in the training process)
    holdout: int = 0  # keep this many items out of training (a fixed seed-0 permutation), for metrics


@dataclass
class NetConfig:
    arch: str = "mlp"  # mlp | unet | ddpmpp | adm
    hidden: int = 256  # mlp: width
    depth: int = 3  # mlp: hidden layers
    activation: str = "silu"  # mlp: silu | leaky_relu | relu
    fourier_features: int = 0  # mlp: random Fourier features of the input (0: off)
    fourier_scale: float = 1.0  # mlp: std of their frequencies, in cycles per unit of the scaled input
    channels: int = 32  # unet/ddpmpp/adm: base channels
    channel_mult: typing.List[int] = field(
        default_factory=lambda: [1, 2]
    )  # unet/ddpmpp/adm: channel multiplier per resolution (len - 1 downsamplings)
    blocks: int = 1  # residual blocks per resolution
    attention: typing.List[int] = field(default_factory=list)  # resolutions with self-attention
    dropout: float = 0.0  # dropout in the residual blocks
    label_dropout: float = 0.0  # probability of dropping a sample's class label in training
    precond: str = "edm"  # preconditioning of the denoiser: edm | vp | ve (vp/ve: published EDM teachers)


@dataclass
class MethodConfig:
    name: str = "smt"  # smt | smd | dmd | gan (the baseline) | edm (a diffusion model)
    gen_every: int = 5  # generator step every K-th iteration; score model every iteration
    score_alpha: str = "code"  # alpha sampler of the score model (scoremix.alpha); code: lower D_1 error on ring8
    gen_alpha: str = "uniform"  # alpha sampler of the generator
    gen_sigma_fraction: float = 0.96  # generator sigmas from the middle of the grid (indices 20..980)
    weighting: str = "adaptive"  # adaptive (Eq. 10) | dmd (Eq. 32) | none (Prop. 3.1)
    gan: bool = False  # GAN regulariser (Sec. 3.5, Eq. 11)
    gan_gen_weight: float = 3e-3  # weight of the Eq. 11 GAN term in the generator loss
    gan_disc_weight: float = 1e-2  # weight of the discriminator loss in the critic loss
    gan_offset: bool = True  # the log(alpha/(1-alpha)) offset of Eq. 11
    gan_disc_alpha: str = (
        "half"  # discriminator class weights: half (optimum l = log p_t/q_t) | score (its alpha draws)
    )
    head_hidden: int = 64  # discriminator head width (method.head=small)
    head: str = "small"  # smd/dmd head on D_fake's bottleneck: small | paper (docs/distillation.md)
    warmup_steps: int = 0  # generator denoising warm-up iterations before SMT (App. E.1)
    warmup_sigma: str = "grid"  # warm-up noise levels: grid (all of them) | generator (only the generator's)
    critic_warmup_steps: int = 0  # then critic-only iterations before the first generator SMT step
    disc_noise: str = (
        "none"  # gan baseline: the discriminator sees clean data (none) or data noised at grid sigmas (grid)
    )
    r1_gamma: float = 0.0  # gan baseline: R1 penalty weight on real data (0: off)
    # smd | dmd (distillation, Sec. 4). score_alpha/gen_alpha, gen_every, gan*, head and head_hidden apply too;
    # warmup_steps regress the generator onto the teacher at its noise level (for teachers without weights)
    teacher: typing.Optional[str] = (
        None  # frozen teacher: diffusion run folder/state-*.pt/.safetensors, EDM .pkl, or analytic
    )
    teacher_dtype: str = "fp32"  # fp32 | bf16: hold the (network) teacher in bfloat16 to halve its memory
    teacher_sha256: typing.Optional[str] = (
        None  # filled in at the start of a run; a resumed run refuses another teacher
    )
    smd_joint_features: bool = True  # smd: the mixture loss also trains D_fake's encoder (released --joint_training)
    p_mean: float = -1.2  # edm: training sigmas are log-normal, ln sigma ~ N(p_mean, p_std^2) (EDM Table 1)
    p_std: float = 1.2  # edm: std of ln sigma
    critic_eval_in_gen: bool = True  # generator step: the critic (SMT's D_0/D_alpha/D_1, SMD/DMD's D_fake) in eval mode


@dataclass
class NoiseConfig:
    sigma_min: float = 0.002  # smallest sigma of the Karras grid
    sigma_max: float = 80.0  # largest sigma of the grid; the generator runs there unless generator_sigma is set
    generator_sigma: typing.Optional[float] = (
        None  # sigma at which the generator D(sigma z; sigma) runs (None: sigma_max)
    )
    rho: float = 7.0  # Karras grid exponent
    grid: int = 1000  # number of sigmas in the grid


@dataclass
class OptimConfig:
    lr_gen: float = 1e-4  # generator learning rate
    lr_score: float = 5e-4  # critic / score network / diffusion denoiser learning rate
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.999  # AdamW beta2
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 10.0  # 0 disables
    lr_warmup: int = 500  # optimiser steps of linear LR warm-up
    gen_schedule: str = "constant"  # constant | cosine
    score_schedule: str = "constant"  # constant | cosine (the critic's or denoiser's learning rate)


@dataclass
class TrainConfig:
    steps: int = 2000  # iterations (score-model steps)
    seed: int = 0  # seeds the initial weights, the noise draws and the data order
    ema: float = 0.999  # EMA decay of the generator (0 disables)
    log_every: int = 100  # iterations between stats.jsonl lines
    sample_every: int = 500  # sample pictures (0: only at the end)
    ckpt_every: int = 1000  # training-state checkpoints (0: only at the end)
    keep_last: int = 3  # checkpoints kept (plus every keep_every-th if > 0)
    keep_every: int = 0  # also keep every checkpoint whose step is a multiple of this (0: none)
    eval_every: int = 0  # metrics during training (0: only at the end)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast on GPU, fp32 master weights)
    channels_last: bool = False  # channels-last memory format for image networks
    nonfinite: str = "skip"  # skip | stop: what a non-finite loss or gradient does
    max_skips: int = 20  # consecutive skipped steps before the run stops
    tensorboard: bool = False  # also log scalars to RUN/tb (needs the tensorboard extra)
    progress: str = "auto"  # auto (bar on a terminal, lines otherwise) | bar | lines | off
    progress_every: float = 30.0  # seconds between progress lines (progress=lines, or auto without a terminal)
    batch_gpu: int = (
        0  # per-process micro-batch; data.batch_size is reached by gradient accumulation (0: no accumulation)
    )
    tf32: bool = True  # TF32 matrix multiplies and convolutions on CUDA
    compile: bool = False  # regional torch.compile of the backbones' residual blocks (opt-in; slow first steps)


@dataclass
class EvalConfig:
    samples: int = 10000  # generated samples for metrics
    knn_k: int = 3  # k of the k-NN precision / recall
    heun_steps: int = 18  # diffusion runs (method.name=edm): Heun steps of samples and metrics (2N-1 evaluations)


@dataclass
class LogConfig:
    wandb: bool = False  # log scalars, sample pictures and the config to Weights & Biases ([wandb] extra)
    wandb_project: str = "scoremix"  # W&B project of the run
    wandb_name: typing.Optional[str] = None  # W&B run name (None: the run folder's name)
    wandb_mode: typing.Optional[str] = None  # online | offline | disabled (None: $WANDB_MODE, else online)


@dataclass
class Config:
    name: str = "custom"  # run name; the default run folder is runs/<name>-<time>
    data: DataConfig = field(default_factory=DataConfig)
    generator: NetConfig = field(default_factory=NetConfig)
    score: NetConfig = field(default_factory=NetConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "name"}
_SECTION_TYPES = {name: typing.get_type_hints(Config)[name] for name in _SECTIONS}


def _leaf_paths() -> dict[str, list[str]]:
    """Leaf field name -> dotted paths that end in it (for key=value shorthands like steps=N)."""
    out: dict[str, list[str]] = {"name": ["name"]}
    for section, cls in _SECTION_TYPES.items():
        for f in dataclasses.fields(cls):
            out.setdefault(f.name, []).append(f"{section}.{f.name}")
    return out


def all_keys() -> list[str]:
    return sorted(p for paths in _leaf_paths().values() for p in paths)


def _coerce(value, hint, key: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin in (list, typing.List):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str):
            value = yaml.safe_load(value if value.strip().startswith("[") else f"[{value}]")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list like [1, 2], got {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                pass
        if isinstance(value, int):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, all_keys() + list(_leaf_paths()) + list(_SECTION_TYPES), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else "; run `scoremix presets --keys` to list them"
    return ConfigError(f"unknown config key '{key}'{hint}")


def resolve_key(key: str) -> tuple[str, ...]:
    """'steps' -> ('train', 'steps'); 'score.hidden' -> ('score', 'hidden'); errors for unknown/ambiguous."""
    if "." in key:
        section, _, leaf = key.partition(".")
        if section not in _SECTION_TYPES or leaf not in {f.name for f in dataclasses.fields(_SECTION_TYPES[section])}:
            raise _unknown_key(key)
        return section, leaf
    paths = _leaf_paths().get(key)
    if not paths:
        raise _unknown_key(key)
    if len(paths) > 1:
        raise ConfigError(f"config key '{key}' is ambiguous: write one of {', '.join(paths)}")
    return tuple(paths[0].split("."))


def set_value(cfg: Config, key: str, value) -> None:
    path = resolve_key(key)
    if path == ("name",):
        cfg.name = str(value)
        return
    section = getattr(cfg, path[0])
    hint = typing.get_type_hints(type(section))[path[1]]
    setattr(section, path[1], _coerce(value, hint, ".".join(path)))


def apply_dict(cfg: Config, data: dict, source: str = "config") -> None:
    for key, value in data.items():
        if key in ("preset", "name") and not isinstance(value, dict):
            if key == "name":
                cfg.name = str(value)
            continue
        if isinstance(value, dict):
            if key not in _SECTION_TYPES:
                raise ConfigError(f"{source}: {_unknown_key(key)}")
            for leaf, v in value.items():
                try:
                    set_value(cfg, f"{key}.{leaf}", v)
                except ConfigError as err:
                    raise ConfigError(f"{source}: {err}") from None
        else:
            set_value(cfg, key, value)


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. steps=1000 or score.hidden=128)")
        key, _, value = item.partition("=")
        out.append((key.strip(), value.strip()))
    return out


def config_from_dict(data: dict) -> Config:
    cfg = Config()
    apply_dict(cfg, data)
    validate(cfg)
    return cfg


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Ranges, choices and combinations; every message names the key and the fix."""
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
        net: NetConfig = getattr(cfg, role)
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
