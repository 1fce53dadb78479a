"""What the trainer steps: one AdamW optimiser per group a method names, its learning-rate schedule, and the
exponential moving average (EMA) of the sampled network."""

from __future__ import annotations

import copy
import math

import torch


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up over `warmup` optimiser steps, then constant or cosine decay to 0 at `total`."""
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule == "cosine":
        progress = min(1.0, step / max(1, total))
        return warm * 0.5 * (1 + math.cos(math.pi * progress))
    return warm


def build_optimizers(method, cfg) -> tuple[dict, dict, dict]:
    """For each of `method.optimizer_groups()`: an AdamW optimiser with cfg.optim's betas and weight decay,
    a LambdaLR scheduler over the optimiser's own step count in cfg.train.steps iterations, and the
    parameters whose gradient norm it clips. Returns (optimizers, schedulers, params), keyed by group."""
    o = cfg.optim
    optimizers, schedulers, params = {}, {}, {}
    for name, g in method.optimizer_groups().items():
        opt = torch.optim.AdamW(g["params"], lr=g["lr"], betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        total = method.optimizer_steps(name, cfg.train.steps)
        schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k, total=total, sch=g["schedule"]: lr_factor(k, o.lr_warmup, total, sch)
        )
        optimizers[name] = opt
        params[name] = g["params"]
    return optimizers, schedulers, params


class EMA:
    """Exponential moving average of a module's parameters and buffers, with the usual early ramp."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_params = list(self.module.parameters())
        # one launch, not one per tensor
        torch._foreach_lerp_(ema_params, [p.detach() for p in module.parameters()], 1 - d)
        for e, b in zip(self.module.buffers(), module.buffers()):
            e.copy_(b)
