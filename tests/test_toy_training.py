"""A short ring8 run improves every toy metric over the untrained generator."""

import math

import torch

from scoremix.config_loader import load_config
from scoremix.trainer import Trainer


def test_short_ring8_run_improves_every_metric(tmp_path):
    cfg = load_config(
        "ring8",
        ["steps=1500", "progress=false", "sample_every=0", "ckpt_every=0", "eval.samples=2000", "log_every=500"],
    )
    trainer = Trainer(cfg, str(tmp_path / "run"))
    before = trainer.evaluate()["raw"]
    after = trainer.fit()["ema"]
    assert after["energy_distance"] < 0.5 * before["energy_distance"]
    assert after["precision"] > before["precision"] + 0.05
    assert after["knn_precision"] > before["knn_precision"] + 0.05
    assert after["knn_recall"] > before["knn_recall"] + 0.2
    assert after["modes_covered"] >= before["modes_covered"]
    assert after["mode_kl"] < before["mode_kl"] or before["mode_kl"] == float("inf")
    assert after["mode_kl"] < 0.5


def test_mode_metrics_on_exact_samples_and_a_collapsed_generator():
    """The metrics themselves: data samples score perfectly, a one-mode generator does not."""
    from scoremix.data.toy import ring8
    from scoremix.metrics.toy import energy_distance, knn_precision_recall, mode_metrics

    dist = ring8()
    g = torch.Generator().manual_seed(0)
    real, other = dist.sample(4000, g), dist.sample(4000, g)
    exact = mode_metrics(real, dist.means, dist.stds, dist.weights)
    # a 2-D Gaussian puts 1 - exp(-9/2) of its mass within 3 std of its mean
    assert abs(exact["precision"] - (1 - math.exp(-4.5))) < 0.006
    assert exact["modes_covered"] == 8 and exact["mode_kl"] < 0.01
    collapsed = dist.means[0] + 0.1 * torch.randn(4000, 2, generator=g)
    one = mode_metrics(collapsed, dist.means, dist.stds, dist.weights)
    assert one["modes_covered"] == 1 and abs(one["mode_kl"] - torch.log(torch.tensor(8.0)).item()) < 0.01
    assert abs(energy_distance(real, other)) < 0.01 < energy_distance(collapsed, other)
    p, r = knn_precision_recall(other, collapsed, k=3)
    assert p > 0.9 and r < 0.2  # every fake is plausible, most reals are missed


def test_evaluator_reuses_reference_terms_without_changing_any_metric():
    """The Evaluator caches the reference-only terms (E|Y - Y'|, the energy floor, the held-out k-NN radii);
    every metric must equal the uncached computation, for each of several generators in turn."""
    from scoremix.config_loader import load_config
    from scoremix.evaluate import Evaluator
    from scoremix.metrics.toy import sample_metrics

    ev = Evaluator(load_config("ring8").data, n=1500)
    g = torch.Generator().manual_seed(3)
    for fake in (ev.mixture.sample(1500, g), ev.mixture.means[0] + 0.3 * torch.randn(1500, 2, generator=g)):
        cached = ev(fake)
        direct = sample_metrics(fake, ev.reference, ev.reference2, ev.held_out, ev.k, mixture=ev.mixture)
        assert cached == direct
    assert set(ev._reference_cache) == {"reference_self", "energy_floor", "held_out_radii"}
