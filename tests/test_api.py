"""The public API, scoremix.load_sampler and scoremix.generate: samples in the data's own form, the same as
`scoremix sample` writes, from a run folder, a weights file, a training state or an exported folder."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import scoremix
from scoremix.cli import main
from scoremix.errors import CheckpointError, ConfigError
from tests.export_helpers import make_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_scoremix_is_light_and_names_the_api():
    code = (
        "import sys, scoremix; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules)); "
        "print(scoremix.__all__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": REPO}
    ).stdout.splitlines()
    assert out[0] == "[]"  # neither torch nor numpy until a function is called
    assert {"load_sampler", "generate", "load_teacher"} <= set(eval(out[1]))
    for fn in (scoremix.load_sampler, scoremix.generate):
        assert fn.__module__ == "scoremix.api" and len(inspect.getdoc(fn)) > 200
        assert all(p.annotation is not inspect.Parameter.empty for p in inspect.signature(fn).parameters.values())
    params = inspect.signature(scoremix.generate).parameters
    assert list(params)[:6] == ["path", "n", "seed", "labels", "device", "precision"]
    assert params["seed"].default == 0 and params["device"].default == "cpu" and params["precision"].default == "fp32"


def test_generate_images_is_uint8_nhwc_as_the_sample_command_writes(tmp_path):
    run, _ = make_run(str(tmp_path / "run"), "unet-cond")
    images = scoremix.generate(run, 30, seed=4)
    assert images.dtype == np.uint8 and images.shape == (30, 8, 8, 1) and images.std() > 5
    npz = str(tmp_path / "s.npz")
    assert main(["sample", "--checkpoint", run, "--n", "30", "--seed", "4", "--out", npz, "--no-progress"]) == 0
    with np.load(npz) as saved:
        assert np.array_equal(saved["arr_0"], images)
    # per-sample seeds: a sample depends neither on n nor on the batch size
    assert np.array_equal(scoremix.generate(run, 7, seed=4, batch_size=3), images[:7])
    # labels: None is i % 10; one class for all; a sequence per sample
    assert np.array_equal(scoremix.generate(run, 30, seed=4, labels=list(np.arange(30) % 10)), images)
    threes = scoremix.generate(run, 30, seed=4, labels=3)
    assert np.array_equal(threes, scoremix.generate(run, 30, seed=4, labels=[3] * 30))
    assert not np.array_equal(threes, images)
    sampler, meta = scoremix.load_sampler(run)
    from scoremix.eval_protocol import quantize_uint8, sample_noise

    z = sample_noise(range(5), (1, 8, 8), 4)
    with torch.no_grad():
        want = quantize_uint8(sampler(z, labels=torch.full((5,), 3))).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(threes[:5], want)


def test_generate_toy_vectors_match_the_sample_command(tmp_path):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    x = scoremix.generate(run, 100, seed=2)
    assert x.dtype == np.float32 and x.shape == (100, 2)
    npz = str(tmp_path / "s.npz")
    assert main(["sample", "--checkpoint", run, "--n", "100", "--seed", "2", "--out", npz]) == 0
    with np.load(npz) as saved:
        assert np.array_equal(saved["x"], x)


def test_generate_points_undoes_the_runs_standardisation(tmp_path):
    run, cfg = make_run(str(tmp_path / "run"), "mlp-cond")
    record = json.load(open(os.path.join(run, "data_transform.json")))
    sampler, meta = scoremix.load_sampler(run)
    x = scoremix.generate(run, 60, seed=1)
    standardised = scoremix.sampling.sample(sampler, 60, (3,), 3, seed=1, labels=torch.arange(60) % 3).double()
    expected = standardised.numpy() * np.array(record["scale"]) + np.array(record["mean"])
    assert x.shape == (60, 3) and np.allclose(x, expected, rtol=0, atol=1e-5)
    assert abs(record["mean"][0] - 10) < 1 and record["scale"][0] > 2  # a transform that is not the identity
    # without data_transform.json the data file still says it; without both, a one-line error
    os.unlink(os.path.join(run, "data_transform.json"))
    assert np.array_equal(scoremix.generate(run, 60, seed=1), x)
    os.unlink(cfg.data.path)
    with pytest.raises(CheckpointError, match="how its points were standardised"):
        scoremix.generate(run, 60, seed=1)


def test_load_sampler_takes_every_kind_of_path(tmp_path, tiny_cfg):
    from scoremix.trainer import Trainer

    run = str(tmp_path / "run")
    Trainer(tiny_cfg(steps=4, ckpt_every=2), run).fit()
    z = torch.randn(20, 2)
    assert main(["export", run, "--format", "folder", "--out", str(tmp_path / "exported")]) == 0
    paths = [
        run,
        os.path.join(run, "generator.safetensors"),
        os.path.join(run, "checkpoints", "state-0000004.pt"),
        str(tmp_path / "exported"),
    ]
    outputs = []
    for path in paths:
        sampler, meta = scoremix.load_sampler(path)
        assert meta["kind"] == "one-step" and meta["step"] == 4 and meta["latent_shape"] == (2,)
        assert meta["weights"] == "ema" and meta["num_classes"] == 0
        with torch.no_grad():
            outputs.append(sampler(z))
    assert all(torch.equal(o, outputs[0]) for o in outputs[1:])
    raw, meta = scoremix.load_sampler(run, weights="raw")
    with torch.no_grad():
        assert meta["weights"] == "raw" and not torch.equal(raw(z), outputs[0])


def test_api_refuses_bad_arguments_with_what_to_do(tmp_path):
    run, _ = make_run(str(tmp_path / "run"), "unet-cond")
    plain, _ = make_run(str(tmp_path / "plain"), "mlp")
    with pytest.raises(ConfigError, match="use 'ema'"):
        scoremix.load_sampler(run, weights="best")
    with pytest.raises(ConfigError, match="unconditional; pass labels=None"):
        scoremix.generate(plain, 4, labels=1)
    with pytest.raises(ConfigError, match=r"labels must lie in 0\.\.9"):
        scoremix.generate(run, 4, labels=10)
    with pytest.raises(ConfigError, match="one class or 4 classes"):
        scoremix.generate(run, 4, labels=[1, 2])
    with pytest.raises(ConfigError, match="positive integer"):
        scoremix.generate(run, 0)
    with pytest.raises(ConfigError, match="fp32 or bf16"):
        scoremix.generate(run, 4, precision="fp16")
    with pytest.raises(CheckpointError, match="does not exist"):
        scoremix.generate(str(tmp_path / "nowhere"), 4)
