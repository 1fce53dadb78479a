"""`scoremix sample` of a data.source=points run writes its samples in the data file's units, as
scoremix.generate returns them (the run's standardisation, recorded in data_transform.json, undone)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import scoremix
from scoremix.cli import main
from scoremix.sampling import load_generator, sample


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    """A 4-step run on 2-D points far from the origin and spread much wider than the standardised units."""
    folder = tmp_path_factory.mktemp("points")
    rng = np.random.default_rng(0)
    x = np.array([300.0, -40.0]) + rng.standard_normal((400, 2)) * np.array([25.0, 10.0])
    np.save(folder / "points.npy", x)
    run = folder / "run"
    assert (
        main(
            [
                "train",
                "--config",
                "ring8",
                "--out",
                str(run),
                "data.source=points",
                f"data.path={folder / 'points.npy'}",
                "data.sigma_data=1.0",
                "steps=4",
                "eval.samples=100",
                "batch_size=32",
                "generator.hidden=32",
                "score.hidden=32",
                "progress=false",
            ]
        )
        == 0
    )
    return run, x


def test_sample_npz_is_in_the_data_units_and_equals_generate(points_run, tmp_path, capsys):
    run, data = points_run
    out = tmp_path / "s.npz"
    assert main(["sample", "--checkpoint", str(run), "--n", "300", "--seed", "3", "--out", str(out)]) == 0
    written = np.load(out)["x"]
    # the standardised samples, drawn as the command draws them, mapped by x * scale + mean
    gen, cfg, shape, classes, _, _ = load_generator(str(run))
    standardised = sample(gen, 300, shape, classes, seed=3).double().numpy()
    record = json.loads((run / "data_transform.json").read_text())
    expected = standardised * np.array(record["scale"]) + np.array(record["mean"])
    assert written.dtype == np.float32 and written.shape == (300, 2)
    np.testing.assert_allclose(written, expected, rtol=1e-6, atol=1e-4)
    assert np.allclose(record["mean"], data.mean(0)) and abs(written[:, 0].mean() - 300) < 100  # not ~0
    assert np.array_equal(written, scoremix.generate(str(run), 300, seed=3))


def test_sample_without_the_transform_is_one_error_and_writes_nothing(points_run, tmp_path, capsys):
    run, _ = points_run
    copy = tmp_path / "run-copy"
    copy.mkdir()
    (copy / "generator.safetensors").write_bytes((run / "generator.safetensors").read_bytes())
    cfg_data = scoremix.load_sampler(str(run))[1]["config"].data
    os.rename(cfg_data.path, cfg_data.path + ".moved")  # neither data_transform.json nor the data file
    try:
        out = tmp_path / "s.npz"
        code = main(["sample", "--checkpoint", str(copy), "--n", "10", "--out", str(out)])
    finally:
        os.rename(cfg_data.path + ".moved", cfg_data.path)
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data_transform.json" in err and "standardised" in err


def test_sample_help_says_points_are_written_in_data_units(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sample", "--help"])
    assert stop.value.code == 0
    assert "for data.source=points runs in the data file's units" in " ".join(capsys.readouterr().out.split())
