"""The `points` source: (N, D) vector data from .npy / .npz / .csv, standardised, with its transform
recorded in the run and the exact mode metrics when the file names its mixture."""

import json
import os

import numpy as np
import pytest
import torch

from scoremix.cli import main
from scoremix.config_loader import load_config
from scoremix.data import build_dataset, build_source
from scoremix.data.points import PointsDataset
from scoremix.errors import ConfigError, DataError
from scoremix.evaluate import Evaluator


def _unbalanced(n=3000, seed=0):
    """Two Gaussians in 2-D whose weights differ 10x, offset far from the origin and scaled up."""
    rng = np.random.default_rng(seed)
    means = np.array([[10.0, 5.0], [16.0, 5.0]])
    weights = np.array([10.0, 1.0]) / 11
    comp = rng.choice(2, size=n, p=weights)
    x = means[comp] + 0.3 * rng.standard_normal((n, 2))
    return x, means, weights


def test_global_standardisation_is_exact_and_invertible(tmp_path):
    x, _, _ = _unbalanced()
    path = tmp_path / "p.npy"
    np.save(path, x)
    ds = PointsDataset(str(path), "global")
    z = ds.points.double().numpy()
    assert np.allclose(z.mean(0), 0, atol=1e-6)
    assert (z**2).mean() == pytest.approx(1.0, rel=1e-5)
    # one scale for every coordinate: the shape of the cloud is kept
    assert np.allclose(ds.scale, ds.scale[0])
    back = ds.to_original(ds.points.double()).numpy()
    assert np.allclose(back, x, atol=1e-5)


def test_per_dim_and_none(tmp_path):
    x, _, _ = _unbalanced()
    np.save(tmp_path / "p.npy", x)
    per_dim = PointsDataset(str(tmp_path / "p.npy"), "per_dim").points.double().numpy()
    assert np.allclose(per_dim.std(0), 1.0, atol=1e-5)
    none = PointsDataset(str(tmp_path / "p.npy"), "none").points.double().numpy()
    assert np.allclose(none, x, atol=1e-5)


def test_csv_with_header_and_npz_keys(tmp_path):
    x, means, weights = _unbalanced(200)
    np.savetxt(tmp_path / "p.csv", x, delimiter=",", header="a,b", comments="")
    ds = PointsDataset(str(tmp_path / "p.csv"), "none")
    assert ds.shape == (2,) and len(ds) == 200
    assert np.allclose(ds.points.double().numpy(), x, atol=1e-4)
    np.savez(tmp_path / "p.npz", points=x, y=np.arange(200) % 3)
    ds = PointsDataset(str(tmp_path / "p.npz"), "none", use_labels=True)
    assert ds.num_classes == 3 and ds.get([0, 1, 2])[1].tolist() == [0, 1, 2]


def test_mixture_in_standardised_units_gives_exact_mode_metrics(tmp_path):
    x, means, weights = _unbalanced(4000)
    np.savez(tmp_path / "mix.npz", x=x, means=means, stds=0.3, weights=weights)
    cfg = load_config("ring8", ["data.source=points", f"data.path={tmp_path / 'mix.npz'}", "eval.samples=2000"])
    ds = build_dataset(cfg.data)
    # the data itself measured against its own mixture: every mode, the right weights
    metrics = Evaluator(cfg.data, 2000, dataset=ds)(ds.points[:2000])
    assert metrics["modes_covered"] == 2 and metrics["precision"] > 0.98
    assert metrics["mode_kl"] < 0.01
    # all mass on the big mode: the small one is missed and mode_kl is log(11/10) away from 0
    big = ds.points[ds.points[:, 0] < 0][:2000]
    metrics = Evaluator(cfg.data, 2000, dataset=ds)(big)
    assert metrics["modes_covered"] == 1
    assert metrics["mode_kl"] == pytest.approx(np.log(11 / 10), abs=0.01)


def test_bad_files_say_what_to_fix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        PointsDataset(str(tmp_path / "missing.npy"))
    np.save(tmp_path / "img.npy", np.zeros((4, 8, 8)))
    with pytest.raises(DataError, match=r"\(N, D\)"):
        PointsDataset(str(tmp_path / "img.npy"))
    bad = np.ones((5, 2))
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="1 points have NaN"):
        PointsDataset(str(tmp_path / "nan.npy"))
    np.save(tmp_path / "ok.npy", np.ones((5, 2)))
    with pytest.raises(DataError, match="no labels"):
        PointsDataset(str(tmp_path / "ok.npy"), use_labels=True)
    with pytest.raises(ConfigError, match="needs data.path"):
        load_config("ring8", ["data.source=points"])
    with pytest.raises(ConfigError, match="standardize"):
        load_config("ring8", ["data.source=points", "data.path=x.npy", "data.standardize=minmax"])
    with pytest.raises(ConfigError, match="for images"):
        load_config("ring8", ["data.source=points", "data.path=x.npy", "data.flip=true"])


def test_source_resumes_exactly(tmp_path):
    x, _, _ = _unbalanced(100)
    np.save(tmp_path / "p.npy", x)
    cfg = load_config("ring8", ["data.source=points", f"data.path={tmp_path / 'p.npy'}"])
    a = build_source(cfg.data, 32, seed=3)
    for _ in range(4):
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch()[0] for _ in range(3)]
    b = build_source(cfg.data, 32, seed=3)
    b.load_state_dict(state)
    for want in expected:
        assert torch.equal(b.next_batch()[0], want)


def test_train_on_a_user_file_records_the_transform(tmp_path):
    x, means, weights = _unbalanced(600)
    np.savez(tmp_path / "mix.npz", x=x, means=means, stds=0.3, weights=weights)
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--config",
            "ring8",
            "--out",
            str(out),
            "data.source=points",
            f"data.path={tmp_path / 'mix.npz'}",
            "data.sigma_data=1.0",
            "steps=4",
            "eval.samples=200",
            "train.progress=false",
            "data.batch_size=32",
        ]
    )
    assert rc == 0
    record = json.loads((out / "data_transform.json").read_text())
    assert record["standardize"] == "global" and np.allclose(record["mean"], x.mean(0))
    metrics = json.loads((out / "metrics.json").read_text())
    assert "modes_covered" in metrics["raw"] and os.path.isfile(out / "samples" / "final.png")
