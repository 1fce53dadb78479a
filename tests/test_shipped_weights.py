"""The MNIST weights shipped in weights/mnist/ (issue 20): small enough, and loadable by the public API as
the one-step generators and the diffusion teacher that benchmarks/results/quality/quality.json scored."""

import json
import os

import pytest
import torch

import scoremix

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(REPO, "weights", "mnist")
QUALITY = os.path.join(REPO, "benchmarks", "results", "quality", "quality.json")
FILES = {
    "mnist-smd.safetensors": "one-step",
    "mnist-smt.safetensors": "one-step",
    "mnist-edm-teacher.safetensors": "diffusion",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_shipped_file_is_small_and_loads(name):
    path = os.path.join(FOLDER, name)
    assert os.path.getsize(path) <= 8 * 2**20
    sampler, meta = scoremix.load_sampler(path, **({"steps": 18} if FILES[name] == "diffusion" else {}))
    assert meta["kind"] == FILES[name] and list(meta["data_shape"]) == [1, 28, 28] and meta["num_classes"] == 0
    z = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = sampler(z)
    assert x.shape == (4, 1, 28, 28) and torch.isfinite(x).all()
    assert 0.2 < x.std() < 1.5 and x.min() >= -1.5 and x.max() <= 1.5  # images in [-1, 1], not noise


def test_quality_rows_name_the_shipped_files():
    rows = json.load(open(QUALITY))["rows"]
    shipped = {os.path.basename(r["weights"]) for r in rows if r.get("weights")}
    assert shipped == set(FILES)
    for r in rows:
        if r.get("weights"):
            assert os.path.isfile(os.path.join(REPO, r["weights"]))
