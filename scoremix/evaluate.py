"""Generate samples from a generator and measure them against the data (used by training and `eval`)."""

from __future__ import annotations

import torch

from .data import build_dataset, reference_samples
from .data.toy import TOYS, make_toy
from .metrics.toy import sample_metrics
from .precision import autocast


@torch.no_grad()
def generate_samples(
    generator,
    n: int,
    shape: tuple,
    num_classes: int,
    device,
    seed: int,
    batch_size: int = 1000,
    labels: torch.Tensor | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """n samples (float32, on the CPU) with noise from a private seeded RNG (the same z for every
    checkpoint); precision=bf16 runs the network under bfloat16 autocast."""
    rng = torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.eval()
    out = []
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        z = torch.randn(b, *shape, generator=rng).to(device)
        lab = None
        if num_classes > 0:
            lab = (labels[i : i + b] if labels is not None else torch.randint(0, num_classes, (b,), generator=rng)).to(
                device
            )
        with autocast(device, precision):
            x = generator(z, labels=lab)
        out.append(x.float().cpu())
    generator.train(was_training)
    return torch.cat(out)


class Evaluator:
    """Holds the reference sets of one dataset so repeated evaluations compare like with like."""

    def __init__(self, data_cfg, n: int, k: int = 3, seed: int = 12345, dataset=None):
        self.n, self.k = n, k
        self.mixture = None
        self._reference_cache: dict = {}  # reference-only terms of the metrics, computed on first use
        if data_cfg.source in TOYS:
            dist = make_toy(data_cfg.source)
            self.mixture = dist if dist.is_mixture else None
            self.reference = reference_samples(data_cfg, n, seed)
            self.reference2 = reference_samples(data_cfg, n, seed + 1)
            self.held_out = reference_samples(data_cfg, n, seed + 2)
        else:
            dataset = dataset if dataset is not None else build_dataset(data_cfg)
            self.mixture = getattr(dataset, "mixture", None)  # a points file that names its mixture
            half = min(n, len(dataset) // 2)
            both = reference_samples(data_cfg, 2 * half, seed, dataset=dataset)
            perm = torch.randperm(both.shape[0], generator=torch.Generator().manual_seed(seed))
            self.reference, self.reference2 = both[perm[:half]], both[perm[half:]]
            self.held_out = self.reference2
            self.n = half

    def __call__(self, samples: torch.Tensor) -> dict:
        return sample_metrics(
            samples[: self.n],
            self.reference,
            self.reference2,
            self.held_out,
            self.k,
            mixture=self.mixture,
            cache=self._reference_cache,
        )
