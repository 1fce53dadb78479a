"""benchmarks/toy_limits.py: its transport maps must push N(0, I) exactly onto the toy data, or the
capacity measurement's reference (regression onto that map) would mean nothing."""

import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from toy_limits import transport_map  # noqa: E402

from scoremix.data.toy import make_toy  # noqa: E402
from scoremix.metrics.toy import energy_distance, mode_metrics  # noqa: E402


@pytest.mark.parametrize("name", ["grid25", "ring8"])
def test_transport_map_pushes_gaussian_noise_onto_the_data(name):
    data = make_toy(name)
    z = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    x = transport_map(name, z)
    m = mode_metrics(x, data.means, data.stds, data.weights)
    # within 3 std of a mode: 0.989 for two independent normal coordinates (0.9973^2 less the clamp)
    assert m["precision"] > 0.985 and m["modes_covered"] == m["num_modes"] and m["mode_kl"] < 0.005
    # every mode equally often, to sampling error
    nearest = torch.cdist(x, data.means).argmin(1)
    share = torch.bincount(nearest, minlength=len(data.means)).double() / len(x)
    expected = 1.0 / len(data.means)
    assert (share - expected).abs().max() < 4 * math.sqrt(expected * (1 - expected) / len(x))
    # within-mode spread is the data's: per-coordinate offsets are N(0, std^2)
    offset = (x - data.means[nearest]) / data.stds[nearest, None]
    assert offset.mean(0).abs().max() < 0.03 and (offset.std(0) - 1).abs().max() < 0.03
    real = data.sample(3000, generator=torch.Generator().manual_seed(1))
    assert energy_distance(x[:3000], real) < 0.01


def test_transport_map_rejects_unknown_data():
    with pytest.raises(ValueError, match="no transport map"):
        transport_map("swissroll", torch.zeros(4, 2))
