"""Override lists shared by the distillation tests: tiny networks that build and step in milliseconds."""

QUIET = ["progress=false", "sample_every=0", "ckpt_every=0", "log_every=1", "optim.lr_warmup=0", "eval.samples=20"]

# ring8 toys: two-layer MLPs
TOY = [
    "generator.hidden=16",
    "score.hidden=16",
    "generator.depth=2",
    "score.depth=2",
    "generator.fourier_features=0",
    "score.fourier_features=0",
    "head_hidden=8",
    "batch_size=8",
    *QUIET,
    "method.warmup_steps=0",
    "method.critic_warmup_steps=0",
]

# 8x8 digits for the mnist presets
IMAGES = [
    "batch_size=4",
    *QUIET,
    "data.source=digits",
    "data.resolution=8",
    "head_hidden=8",
    "noise.generator_sigma=none",
    "method.critic_warmup_steps=0",
]
