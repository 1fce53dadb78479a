"""`scoremix data prepare` writes an EDM-style zip that the zip source reads back."""

import json
import zipfile

import numpy as np
import torch

from scoremix.cli import main
from scoremix.data.images import load_image_dataset


def test_prepare_npz_into_a_zip_at_a_new_resolution(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (12, 25, 25), dtype=np.uint8)
    y = rng.integers(0, 3, 12)
    np.savez(tmp_path / "g.npz", x=x, y=y)
    out = str(tmp_path / "g32.zip")
    assert main(["data", "prepare", str(tmp_path / "g.npz"), "--out", out, "--resolution", "32"]) == 0
    assert "wrote 12 images (1x32x32, 3 classes)" in capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        meta = json.loads(zf.read("dataset.json"))
        assert meta["labels"][0] == ["00000/img00000000.png", int(y[0])]
    prepared = load_image_dataset("zip", path=out, use_labels=True)
    direct = load_image_dataset("npz", path=str(tmp_path / "g.npz"), resolution=32, use_labels=True)
    xp, yp = prepared.get(np.arange(12))
    xd, yd = direct.get(np.arange(12))
    assert torch.equal(yp, yd)
    # PNG stores 8 bits: the zip holds the resized images rounded to the nearest level
    assert (xp - xd).abs().max().item() <= 1 / 127.5 + 1e-6
    assert prepared.shape == (1, 32, 32)


def test_prepare_refuses_an_unknown_path(tmp_path, capsys):
    assert main(["data", "prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "o.zip")]) == 2
    assert "neither a built-in dataset" in capsys.readouterr().err
