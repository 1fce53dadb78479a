"""Metrics on generated samples: mode statistics for Gaussian mixtures, energy distance, k-NN
precision/recall (Kynkaanniemi et al. 2019). All run on flattened vectors, chunked to bound memory."""

from __future__ import annotations

import math

import torch


def _pairwise_mean_distance(
    x: torch.Tensor, y: torch.Tensor, exclude_diagonal: bool = False, chunk: int = 2048
) -> float:
    total = 0.0
    for i in range(0, x.shape[0], chunk):
        total += torch.cdist(x[i : i + chunk], y).sum().item()
    count = x.shape[0] * y.shape[0]
    if exclude_diagonal:
        count -= x.shape[0]
    return total / count


def energy_distance(x: torch.Tensor, y: torch.Tensor, y_self: float | None = None) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (U-statistics within samples); 0 iff the laws agree.
    y_self: E|Y - Y'| when already known (a fixed reference set)."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    if y_self is None:
        y_self = _pairwise_mean_distance(y, y, True)
    return 2 * _pairwise_mean_distance(x, y) - _pairwise_mean_distance(x, x, True) - y_self


def _kth_neighbour_radius(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    radii = []
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i : i + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # +1 skips the point itself
    return torch.cat(radii)


def _covered(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    inside = []
    for i in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[i : i + chunk], support)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def knn_precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = 3, real_radii: torch.Tensor | None = None
) -> tuple[float, float]:
    """precision: share of fakes inside the real k-NN manifold; recall: share of reals inside the fake one.
    real_radii: the reals' k-th neighbour radii when already known (a fixed reference set)."""
    real, fake = real.flatten(1).float(), fake.flatten(1).float()
    if real_radii is None:
        real_radii = _kth_neighbour_radius(real, k)
    precision = _covered(fake, real, real_radii).float().mean().item()
    recall = _covered(real, fake, _kth_neighbour_radius(fake, k)).float().mean().item()
    return precision, recall


def mode_metrics(samples: torch.Tensor, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor) -> dict:
    """precision: share of samples within 3 std of their nearest mean. Among those precise samples, each
    mode's share; modes_covered counts modes with at least a quarter of their expected share; mode_kl is
    KL(share histogram || true weights)."""
    samples, means = samples.double(), means.double()
    dist = torch.cdist(samples, means)
    nearest = dist.argmin(dim=1)
    precise = dist.gather(1, nearest[:, None]).squeeze(1) <= 3 * stds.double()[nearest]
    counts = torch.bincount(nearest[precise], minlength=means.shape[0]).double()
    n_precise = counts.sum().item()
    w = weights.double() / weights.sum()
    share = counts / max(n_precise, 1.0)
    covered = int((counts >= 0.25 * w * samples.shape[0]).sum().item())
    nz = share > 0
    kl = float((share[nz] * (share[nz] / w[nz]).log()).sum().item()) if n_precise > 0 else math.inf
    return {
        "precision": precise.double().mean().item(),
        "modes_covered": covered,
        "num_modes": int(means.shape[0]),
        "mode_kl": kl,
    }


def sample_metrics(
    fake: torch.Tensor,
    reference: torch.Tensor,
    reference2: torch.Tensor,
    held_out: torch.Tensor,
    k: int = 3,
    mixture=None,
    cache: dict | None = None,
) -> dict:
    """All metrics of one sample set: energy distance to `reference` and its floor (reference vs
    reference2), k-NN precision/recall against `held_out`, and mode metrics when `mixture` is given.
    cache: a dict kept with fixed reference sets; the quantities that depend on them alone are computed
    once and reused (same values, less time when several generators are measured)."""
    cache = {} if cache is None else cache
    out = {}
    if mixture is not None:
        out.update(mode_metrics(fake, mixture.means, mixture.stds, mixture.weights))
    if "reference_self" not in cache:
        ref = reference.flatten(1).double()
        cache["reference_self"] = _pairwise_mean_distance(ref, ref, True)
        cache["energy_floor"] = energy_distance(reference2, reference, cache["reference_self"])
        cache["held_out_radii"] = _kth_neighbour_radius(held_out.flatten(1).float(), k)
    out["energy_distance"] = energy_distance(fake, reference, cache["reference_self"])
    out["energy_floor"] = cache["energy_floor"]
    out["knn_precision"], out["knn_recall"] = knn_precision_recall(held_out, fake, k, cache["held_out_radii"])
    return out
