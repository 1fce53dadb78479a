"""SMT on images: a few steps of small configurations of each backbone, class-conditional too."""

import numpy as np
import pytest
import torch

from scoremix.config_loader import load_config
from scoremix.trainer import Trainer

SMALL = {
    "unet": ["generator.channels=8", "score.channels=8", "generator.channel_mult=[1,2]", "score.channel_mult=[1,2]"],
    "ddpmpp": [
        "generator.arch=ddpmpp",
        "score.arch=ddpmpp",
        "generator.channels=8",
        "score.channels=8",
        "generator.channel_mult=[1,2]",
        "score.channel_mult=[1,2]",
        "generator.attention=[4]",
        "score.attention=[4]",
    ],
    "adm": [
        "generator.arch=adm",
        "score.arch=adm",
        "generator.channels=16",
        "score.channels=16",
        "generator.channel_mult=[1,2]",
        "score.channel_mult=[1,2]",
        "generator.attention=[4]",
        "score.attention=[4]",
    ],
}
COMMON = [
    "batch_size=4",
    "progress=false",
    "sample_every=0",
    "ckpt_every=0",
    "log_every=1",
    "gen_every=2",
    "method.warmup_steps=1",
    "optim.lr_warmup=0",
    "eval.samples=20",
]


@pytest.mark.parametrize("arch", list(SMALL))
def test_few_smt_steps_on_digits(arch, tmp_path):
    cfg = load_config("digits-smt", SMALL[arch] + COMMON + ["conditional=true", "steps=4"])
    tr = Trainer(cfg, str(tmp_path / arch))
    assert tr.source.shape == (1, 8, 8) and tr.source.num_classes == 10
    before = {k: v.clone() for k, v in tr.method.networks["critic"].state_dict().items()}
    phases = []
    for _ in range(4):
        phases.append([p.name for p in tr.method.plan(tr.step)])
        stats = tr.train_step(tr.source.next_batch())
        assert all(torch.isfinite(v).all() for v in stats.values())
        tr.step += 1
    assert phases == [["warmup"], ["generator", "critic"], ["critic"], ["generator", "critic"]]
    after = tr.method.networks["critic"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    x = tr.method.generate(torch.randn(3, 1, 8, 8), labels=torch.tensor([0, 1, 2]))
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()


@pytest.mark.parametrize("preset", ["mnist-smt", "mnist-smt-cond"])
def test_mnist_presets_run_their_three_phases_at_28x28(preset, tmp_path):
    """The CPU MNIST recipe: warm-up at the generator's sigma 2.5, critic-only iterations, then SMT."""
    cfg = load_config(
        preset,
        SMALL["unet"]
        + [
            "batch_size=4",
            "progress=false",
            "sample_every=0",
            "ckpt_every=0",
            "log_every=1",
            "eval.samples=20",
            "optim.lr_warmup=0",
            "method.warmup_steps=2",
            "method.critic_warmup_steps=2",
            "gen_every=3",
            "steps=6",
        ],
    )
    assert (cfg.noise.generator_sigma, cfg.method.warmup_sigma) == (2.5, "generator")
    tr = Trainer(cfg, str(tmp_path / preset))
    assert tr.source.shape == (1, 28, 28) and tr.source.num_classes == (10 if preset.endswith("cond") else 0)
    assert tr.method.networks["generator"].sigma_max == 2.5
    phases = []
    while tr.step < 6:
        phases.append([p.name for p in tr.method.plan(tr.step)])
        stats = tr.train_step(tr.source.next_batch())
        assert all(torch.isfinite(v).all() for v in stats.values())
        tr.step += 1
    assert phases == [["warmup"], ["warmup"], ["critic"], ["critic"], ["generator", "critic"], ["critic"]]


def test_full_run_on_an_npz_folder_writes_image_grids(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "imgs.npz"
    np.savez(path, x=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), y=rng.integers(0, 5, 40))
    cfg = load_config(
        "digits-smt",
        SMALL["unet"] + COMMON + ["data.source=npz", f"data.path={path}", "conditional=true", "flip=true", "steps=3"],
    )
    tr = Trainer(cfg, str(tmp_path / "run"))
    assert tr.source.shape == (3, 16, 16) and tr.source.num_classes == 5
    result = tr.fit()
    assert result["step"] == 3 and "knn_precision" in result["raw"]
    from PIL import Image

    grid = Image.open(tmp_path / "run" / "samples" / "final.png")
    assert grid.mode == "RGB" and grid.size[0] > 2 * 16 * 8


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cifar10-smt", "imagenet64-smt"])
def test_one_full_size_iteration_on_cpu(preset, tmp_path):
    """One SMT iteration (generator + critic step) of the paper-size networks at batch 2 on CPU."""
    import time

    res, classes = (32, 0) if preset.startswith("cifar") else (64, 1000)
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    arrays = {"x": rng.integers(0, 256, (4, res, res, 3), dtype=np.uint8)}
    if classes:
        arrays["y"] = rng.integers(0, classes, 4)
    np.savez(path, **arrays)
    cfg = load_config(
        preset,
        [
            "data.source=npz",
            f"data.path={path}",
            "batch_size=2",
            "method.warmup_steps=0",
            "method.critic_warmup_steps=0",
            "progress=false",
            "device=cpu",
            "precision=fp32",
            "channels_last=false",
        ],
    )
    tr = Trainer(cfg, str(tmp_path / "run"))
    start = time.time()
    stats = tr.train_step(tr.source.next_batch())
    seconds = time.time() - start
    print(f"\n{preset}: one iteration at batch 2 on CPU took {seconds:.1f} s; params {tr.param_counts}")
    assert {"loss_gen", "loss_score", "loss_disc"} <= set(stats)
    assert all(torch.isfinite(v).all() for v in stats.values())
