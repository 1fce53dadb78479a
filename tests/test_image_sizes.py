"""Any image size either trains (resized to a size the networks take, with a notice) or is refused before
training with the data.resolution to pass; the label-range hint names a key that exists."""

import numpy as np
import pytest
import yaml

from scoremix.config_loader import load_config
from scoremix.errors import ConfigError, DataError


def grey_npz(path, n=200, side=25, labels=None):
    rng = np.random.default_rng(0)
    arrays = {"x": rng.integers(0, 256, (n, side, side), dtype=np.uint8)}
    if labels is not None:
        arrays["y"] = labels
    np.savez(path, **arrays)
    return str(path)


def test_25x25_greyscale_npz_with_digits_smt_is_resized_and_trains(tmp_path):
    """The issue's case: it crashed inside the U-Net (a skip connection of 26 against 25)."""
    from scoremix.trainer import Trainer

    path = grey_npz(tmp_path / "g.npz")
    cfg = load_config(
        "digits-smt",
        [
            "data.source=npz",
            f"data.path={path}",
            "batch_size=4",
            "progress=false",
            "sample_every=0",
            "ckpt_every=0",
            "method.warmup_steps=1",
        ],
    )
    said = []
    tr = Trainer(cfg, str(tmp_path / "run"), echo=said.append)
    assert tr.source.shape == (1, 26, 26)
    assert [s for s in said if s.startswith("notice:")] == [
        "notice: the images are 25x25 but the unet networks need sides divisible by 2; resizing them to 26x26 "
        "(set data.resolution to choose the size)"
    ]
    for _ in range(2):  # the warm-up phase and the SMT phases both run
        stats = tr.train_step(tr.source.next_batch())
        tr.step += 1
    assert all(np.isfinite(float(v)) for v in stats.values())
    with open(tmp_path / "run" / "config.yaml") as fh:
        assert yaml.safe_load(fh)["data"]["resolution"] == 26


def test_an_explicit_resolution_the_networks_cannot_take_is_refused(tmp_path):
    from scoremix.trainer import Trainer

    path = grey_npz(tmp_path / "g.npz", n=8)
    cfg = load_config(
        "digits-smt",
        [
            "data.source=npz",
            f"data.path={path}",
            "batch_size=4",
            "progress=false",
            "data.resolution=25",
            "generator.channel_mult=[1,2,2]",
            "score.channel_mult=[1,2,2]",
        ],
    )
    with pytest.raises(
        ConfigError,
        match=r"^data.resolution=25: the unet networks need image sides divisible by 4; "
        r"use data.resolution=24 or 28$",
    ):
        Trainer(cfg, str(tmp_path / "run"))


def test_label_range_error_names_data_conditional(tmp_path):
    from scoremix.data.images import load_image_dataset

    path = grey_npz(tmp_path / "g.npz", n=4, side=8, labels=np.array([0, 1, 2, -1]))
    with pytest.raises(DataError, match=r"set data.conditional=false to ignore them") as err:
        load_image_dataset("npz", path=path, use_labels=True)
    assert "use_labels" not in str(err.value)
    assert load_image_dataset("npz", path=path, use_labels=False).num_classes == 0
