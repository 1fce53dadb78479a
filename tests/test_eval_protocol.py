"""The evaluation protocol: EDM quantisation, per-sample seeds, reference .npz files, metric names, and
the CLI (`eval --metrics`, `eval stats`, `eval --run`, `sample` image export) on a tiny digits run."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("scipy")

from scoremix.cli import main  # noqa: E402
from scoremix.config_loader import load_config  # noqa: E402
from scoremix.errors import ConfigError  # noqa: E402
from scoremix.eval_protocol import (  # noqa: E402
    generate_uint8,
    load_reference,
    metric_suffix,
    quantize_uint8,
    sample_noise,
    save_reference,
)
from scoremix.metrics.image import feature_statistics  # noqa: E402
from scoremix.nets.build import build_generator  # noqa: E402

TINY_DIGITS = [
    "generator.channels=8",
    "score.channels=8",
    "generator.channel_mult=[1,2]",
    "score.channel_mult=[1,2]",
    "batch_size=8",
    "progress=false",
    "sample_every=0",
    "log_every=1",
    "method.warmup_steps=1",
    "optim.lr_warmup=0",
    "eval.samples=20",
    "steps=3",
    "ckpt_every=1",
    "keep_last=5",
]


def test_quantisation_matches_edm_on_a_known_image():
    x = torch.tensor([-1.0, -0.999, 0.0, 1 / 255, 0.5, 0.99, 1.0, 1.7, -3.0, 2 / 255 - 1])
    u = quantize_uint8(x)
    # by hand: x * 127.5 + 128, clipped to [0, 255], truncated
    assert u.tolist() == [0, 0, 128, 128, 191, 254, 255, 255, 0, 1]
    image = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1
    edm = np.clip(image.numpy() * 127.5 + 128, 0, 255).astype(np.uint8)
    assert u.dtype == torch.uint8 and np.array_equal(quantize_uint8(image).numpy(), edm)


def _tiny_generator(classes=10):
    cfg = load_config("digits-smt", TINY_DIGITS + (["conditional=true"] if classes else []))
    torch.manual_seed(0)
    gen = build_generator(cfg, (1, 8, 8), classes).eval()
    return lambda z, labels=None: gen(z, labels=labels)


def test_a_sample_does_not_depend_on_batch_size_or_count():
    sampler = _tiny_generator()
    one = torch.cat([im for _, im, _ in generate_uint8(sampler, 10, (1, 8, 8), 10, seed=3, batch=1)])
    seven = [(idx, im, lab) for idx, im, lab in generate_uint8(sampler, 10, (1, 8, 8), 10, seed=3, batch=7)]
    assert [len(i) for i, _, _ in seven] == [7, 3]
    assert torch.equal(one, torch.cat([im for _, im, _ in seven]))
    assert torch.cat([lab for _, _, lab in seven]).tolist() == [i % 10 for i in range(10)]
    first4 = torch.cat([im for _, im, _ in generate_uint8(sampler, 4, (1, 8, 8), 10, seed=3, batch=4)])
    assert torch.equal(first4, one[:4])
    other_seed = torch.cat([im for _, im, _ in generate_uint8(sampler, 10, (1, 8, 8), 10, seed=4, batch=7)])
    assert not torch.equal(other_seed, one)
    # seed 0: sample i is torch.randn from a generator seeded i (EDM's --seeds=0-...)
    torch.testing.assert_close(
        sample_noise([5], (1, 8, 8), 0)[0], torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(5))
    )


def test_metric_names_follow_n():
    assert metric_suffix(50_000) == "" and metric_suffix(10_000) == "10k"
    assert metric_suffix(1000) == "1k" and metric_suffix(500) == "500" and metric_suffix(2500) == "2500"


def test_reference_npz_round_trip_and_edm_layout(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((64, 5))
    path = str(tmp_path / "ref.npz")
    save_reference(path, feats, {"name": "det", "sha256": "ab" * 32}, "digits", keep_features=True)
    ref = load_reference(path)
    mu, sigma = feature_statistics(feats)
    assert ref["mu"].dtype == np.float64 and np.array_equal(ref["mu"], mu) and np.array_equal(ref["sigma"], sigma)
    assert ref["n"] == 64 and ref["source"] == "digits" and ref["detector_sha256"] == "ab" * 32
    np.testing.assert_allclose(ref["features"], feats, rtol=1e-6)  # stored as float32
    with np.load(path, allow_pickle=False) as data:
        assert {"mu", "sigma"} <= set(data.files)
    # EDM's published files hold only mu and sigma (float64); they are read as they are
    edm = str(tmp_path / "cifar10-32x32.npz")
    np.savez(edm, mu=mu, sigma=sigma)
    ref2 = load_reference(edm)
    assert np.array_equal(ref2["sigma"], sigma) and "features" not in ref2 and len(ref2["sha256"]) == 64
    np.savez(str(tmp_path / "bad.npz"), mean=mu)
    with pytest.raises(ConfigError, match="no mu/sigma"):
        load_reference(str(tmp_path / "bad.npz"))


@pytest.fixture(scope="module")
def digits_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalproto")
    run = str(root / "run")
    assert main(["train", "--config", "digits-smt", "--out", run, *TINY_DIGITS, "conditional=true"]) == 0
    feat = str(root / "feat.safetensors")
    assert main(["features", "train", "--data", "digits", "--out", feat, "--epochs", "1"]) == 0
    ref = str(root / "ref.npz")
    assert (
        main(["eval", "stats", "--data", "digits", "--detector", feat, "--out", ref, "--features", "--no-progress"])
        == 0
    )
    return root, run, feat, ref


def test_eval_stats_of_the_same_data_is_at_fd_zero_from_its_reference(digits_setup, tmp_path, capsys):
    root, run, feat, ref = digits_setup
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "stats",
                "--data",
                "digits",
                "--detector",
                feat,
                "--out",
                str(tmp_path / "again.npz"),
                "--ref",
                ref,
                "--no-progress",
            ]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert abs(info["fd_to_ref"]["value"]) < 1e-6 and info["n"] == 1797
    assert (
        main(
            [
                "eval",
                "stats",
                "--data",
                "digits",
                "--detector",
                feat,
                "--out",
                str(tmp_path / "half.npz"),
                "--ref",
                ref,
                "--limit",
                "900",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["fd_to_ref"]["value"] > 1e-3


def test_eval_protocol_json_records_how_the_numbers_were_made(digits_setup, tmp_path):
    root, run, feat, ref = digits_setup
    out = str(tmp_path / "m.json")
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                run,
                "--metrics",
                "fid,kid,pr,is,classes",
                "--n",
                "120",
                "--ref",
                ref,
                "--detector",
                feat,
                "--batch",
                "50",
                "--json",
                out,
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.load(open(out))
    assert result["n"] == 120 and result["step"] == 3 and result["labels"] == "i % 10"
    assert set(result["weights"]) == {"raw", "ema"}
    ema = result["weights"]["ema"]
    assert {
        "fd120",
        "kd120",
        "kd120_std",
        "precision120",
        "recall120",
        "density120",
        "coverage120",
        "clf_is120",
        "class_entropy120",
        "class_accuracy120",
    } <= set(ema)
    assert not any(k.startswith(("fid", "kid")) for k in ema)  # local features never give "fid"
    assert ema["fd120"] > 0 and 1 <= ema["clf_is120"] <= 10
    assert result["detector"]["sha256"] == load_reference(ref)["detector_sha256"]
    assert result["reference"]["sha256"] == load_reference(ref)["sha256"]
    assert result["wall_seconds"]["ema"] > 0 and result["seed"] == 0
    # the same call with another batch size gives the same numbers
    out2 = str(tmp_path / "m2.json")
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                run,
                "--metrics",
                "fid,kid,pr,is,classes",
                "--n",
                "120",
                "--ref",
                ref,
                "--detector",
                feat,
                "--batch",
                "7",
                "--weights",
                "ema",
                "--json",
                out2,
                "--no-progress",
            ]
        )
        == 0
    )
    again = json.load(open(out2))["weights"]["ema"]
    assert again.keys() == ema.keys()  # same images; the feature net's float32 sums may differ in the last bits
    assert all(again[k] == pytest.approx(v, rel=1e-6, abs=1e-9) for k, v in ema.items())


def test_eval_protocol_user_errors(digits_setup, tmp_path, capsys):
    root, run, feat, ref = digits_setup
    cases = [
        (
            ["--metrics", "fid", "--n", "20", "--ref", ref, "--detector", feat, "--steps", "4"],
            "applies to diffusion runs only",
        ),
        (["--metrics", "fidd", "--n", "20", "--ref", ref, "--detector", feat], "unknown fidd"),
        (["--metrics", "fid", "--n", "20", "--detector", feat], "no reference"),
    ]
    env = os.environ.pop("SCOREMIX_DETECTOR", None)
    try:
        cases.append((["--metrics", "fid", "--n", "20", "--ref", ref], "no feature network"))
        for extra, message in cases:
            assert main(["eval", "--checkpoint", run, "--no-progress", *extra]) == 2
            err = capsys.readouterr().err
            assert message in err and len(err.strip().splitlines()) == 1, (extra, err)
    finally:
        if env is not None:
            os.environ["SCOREMIX_DETECTOR"] = env
    other = str(tmp_path / "other.npz")
    np.savez(other, mu=np.zeros(128), sigma=np.eye(128), detector_sha256=np.array("0" * 64))
    assert main(["eval", "--checkpoint", run, "--metrics", "fid", "--n", "20", "--ref", other, "--detector", feat]) == 2
    assert "was made with detector" in capsys.readouterr().err


def test_eval_over_a_runs_checkpoints_appends_once(digits_setup, capsys):
    root, run, feat, ref = digits_setup
    argv = [
        "eval",
        "--run",
        run,
        "--every",
        "1",
        "--metrics",
        "fid",
        "--n",
        "40",
        "--ref",
        ref,
        "--detector",
        feat,
        "--weights",
        "ema",
        "--no-progress",
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3] and all("fd40" in r["weights"]["ema"] for r in rows)
    assert main(argv) == 0  # nothing new: nothing appended
    assert len(open(os.path.join(run, "metrics.jsonl")).readlines()) == 3
    assert "all done already" in capsys.readouterr().out
    assert main(argv[:-1] + ["--n", "30", "--no-progress"]) == 0  # another protocol is another series
    assert len(open(os.path.join(run, "metrics.jsonl")).readlines()) == 6


def test_sample_exports_pngs_and_an_edm_npz_that_match(digits_setup, tmp_path):
    root, run, feat, ref = digits_setup
    folder, npz = str(tmp_path / "pngs") + "/", str(tmp_path / "s.npz")
    assert main(["sample", "--checkpoint", run, "--n", "12", "--out", folder, "--batch", "5"]) == 0
    assert main(["sample", "--checkpoint", run, "--n", "12", "--out", npz, "--batch", "12"]) == 0
    with np.load(npz) as data:
        arr, labels = data["arr_0"], data["arr_1"]
    assert arr.dtype == np.uint8 and arr.shape == (12, 8, 8, 1) and labels.tolist() == [i % 10 for i in range(12)]
    for i in (0, 11):
        assert np.array_equal(np.asarray(Image.open(os.path.join(folder, f"{i:06d}.png"))), arr[i, :, :, 0])
    listed = json.load(open(os.path.join(folder, "dataset.json")))["labels"]
    assert listed[11] == ["000011.png", 1]
    # both exports read back as datasets (e.g. for `eval stats --data npz:FILE`), pixel for pixel
    from scoremix.cli_eval import load_data
    from scoremix.data.images import tensor_to_uint8

    for spec in (f"npz:{npz}", f"folder:{folder}"):
        ds = load_data(spec)
        x, y = ds.get(np.arange(12))
        assert np.array_equal(tensor_to_uint8(x).permute(0, 2, 3, 1).numpy(), arr) and y.tolist() == labels.tolist()
    # eval's generated images are these images: sample i is the same everywhere
    from scoremix.eval_protocol import load_samplers

    samplers, info = load_samplers(run, ("ema",))
    images = torch.cat([im for _, im, _ in generate_uint8(samplers["ema"], 12, info["shape"], 10, 0, 4)])
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), arr)


def test_evaluation_key_tells_heun_step_counts_apart():
    """`eval --run --steps 35` after `--steps 18` must evaluate again, not skip as done."""
    from scoremix.eval_history import evaluation_key

    base = (["fid"], 1000, 0, "a" * 64, "b" * 64)
    assert evaluation_key(*base) == evaluation_key(*base, None)
    assert evaluation_key(*base, 18) != evaluation_key(*base, 35)
    assert evaluation_key(*base, 18) != evaluation_key(*base)
