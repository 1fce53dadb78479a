"""The interface between a method and the generic trainer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Phase:
    """One loss/optimiser pair of an iteration: `loss(phase.name, ...)` is minimised by `optimizer`."""

    name: str
    optimizer: str


class Method:
    """Subclasses build `self.networks` (name -> module) and implement the four methods below.

    `self.train_networks` holds the modules used for gradient-carrying forward passes; the trainer
    replaces its entries with DDP wrappers when it runs distributed. Forward passes whose gradients must
    not be synchronised use `self.networks` directly.
    """

    networks: dict[str, nn.Module]
    train_networks: dict[str, nn.Module]
    ema_network: str = "generator"
    ema_optimizer: str = "generator"  # the EMA follows each step of this optimiser
    weights_file: str = "generator.safetensors"  # where the trainer writes ema_network's weights
    weights_kind: str = "generator"  # their format tag: scoremix-<kind>

    def optimizer_groups(self) -> dict[str, dict]:
        """optimizer name -> {'params': [...], 'lr': float, 'schedule': 'constant'|'cosine', 'networks': [...]}"""
        raise NotImplementedError

    def plan(self, step: int) -> list[Phase]:
        """The phases of iteration `step`, in order."""
        raise NotImplementedError

    def optimizer_steps(self, name: str, total_iterations: int) -> int:
        """How many times optimizer `name` steps in `total_iterations` iterations (for LR schedules)."""
        return sum(any(p.optimizer == name for p in self.plan(s)) for s in range(total_iterations))

    def loss(self, phase: str, batch, step: int) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def generate(self, z: torch.Tensor, labels=None, generator_module: nn.Module | None = None) -> torch.Tensor:
        raise NotImplementedError

    def as_sampler(self, module: nn.Module) -> nn.Module:
        """The module that draws samples x = sampler(z, labels=...) from `module` (ema_network or its EMA):
        the generator itself for one-step methods; diffusion methods wrap it in their ODE sampler."""
        return module

    def to(self, device):
        for net in self.networks.values():
            net.to(device)
        return self
