"""Typed configuration: the dataclasses, YAML / dict round trips and key=value coercion.

The lowest layer of the configuration but one (config_validate.py, the checks, lies below it): presets.py
builds Configs from it, and config_loader.load_config (above both) resolves a preset or YAML file plus
overrides into a validated Config.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field

import yaml

from .config_validate import validate
from .errors import ConfigError


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
