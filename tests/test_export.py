"""`scoremix export`: ONNX graphs that ONNX Runtime runs within 1e-4 (max abs) of PyTorch for every generator
kind, folders that reproduce the run exactly without its other files, and one-line refusals (exit 2) that
leave nothing at --out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import scoremix
from scoremix import export as export_mod
from scoremix.cli import main
from scoremix.export import onnx_missing
from tests.export_helpers import KINDS, make_run

needs_onnx = pytest.mark.skipif(bool(onnx_missing()), reason="the export extra (onnx, onnxruntime, onnxscript)")
GENERATORS = [k for k, spec in KINDS.items() if not spec[4]]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _one_error_line(capsys) -> str:
    """The one `error: ...` line on stderr; besides it only the export's progress lines ('export: ...')."""
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.strip().splitlines() if not ln.startswith("export: ")]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


# -- ONNX: every generator kind, unconditional and class-conditional -----------------------------------
@needs_onnx
@pytest.mark.parametrize("kind", GENERATORS)
def test_onnx_runtime_matches_pytorch_for_every_generator_kind(kind, tmp_path, capsys):
    run, _ = make_run(str(tmp_path / "run"), kind)
    _, _, shape, classes, _ = KINDS[kind]
    out = tmp_path / "gen.onnx"
    assert main(["export", run, "--format", "onnx", "--out", str(out)]) == 0
    assert "max |ONNX Runtime - PyTorch|" in capsys.readouterr().out
    session = _session(out)
    inputs = {i.name: i.type for i in session.get_inputs()}
    assert inputs == ({"noise": "tensor(float)", "labels": "tensor(int64)"} if classes else {"noise": "tensor(float)"})
    assert [o.name for o in session.get_outputs()] == ["samples"]
    assert session.get_inputs()[0].shape == session.get_outputs()[0].shape == ["batch", *shape]  # dynamic batch
    sampler, meta = scoremix.load_sampler(run)
    rng = torch.Generator().manual_seed(7)
    for n in (1, 7):  # the batch axis is dynamic: neither is the traced batch (2) nor the check batch (5)
        z = torch.randn(n, *shape, generator=rng)
        labels = torch.randint(0, classes, (n,), generator=rng) if classes else None
        feed = {"noise": z.numpy(), **({"labels": labels.numpy()} if classes else {})}
        got = session.run(["samples"], feed)[0]
        with torch.no_grad():
            want = sampler(z, labels=labels).numpy()
        assert got.shape == want.shape == (n, *shape)
        assert np.abs(got - want).max() <= 1e-4
    assert want.std() > 0.05  # the network's own term, not only the c_skip * sigma * z leak of the noise
    if classes:  # labels reach the graph: other classes, other samples
        other = session.run(["samples"], {"noise": feed["noise"], "labels": (feed["labels"] + 1) % classes})[0]
        assert np.abs(other - got).max() > 1e-3
    props = {p.key: p.value for p in __import__("onnx").load(str(out)).metadata_props}
    assert props["kind"] == "one-step" and json.loads(props["num_classes"]) == classes
    assert json.loads(props["latent_shape"]) == list(shape) and props["library_version"] == scoremix.__version__


@needs_onnx
@pytest.mark.parametrize("kind", ["edm-mlp", "edm-unet-cond"])
def test_diffusion_runs_export_their_denoiser_alone(kind, tmp_path, capsys):
    run, cfg = make_run(str(tmp_path / "run"), kind)
    _, _, shape, classes, _ = KINDS[kind]
    out = tmp_path / "denoiser.onnx"
    assert main(["export", run, "--out", str(out)]) == 0  # --format onnx is the default
    line = capsys.readouterr().out
    assert "denoiser alone" in line and f"{cfg.eval.heun_steps} Heun steps" in line
    session = _session(out)
    assert [i.name for i in session.get_inputs()] == ["x", "sigma"] + (["labels"] if classes else [])
    assert [o.name for o in session.get_outputs()] == ["denoised"]
    sampler, _ = scoremix.load_sampler(run)
    sigma = torch.tensor([0.002, 0.1, 1.0, 10.0, 80.0, 0.5])
    x = torch.randn(6, *shape) * sigma.view(-1, *[1] * len(shape))
    labels = torch.arange(6) % classes if classes else None
    feed = {"x": x.numpy(), "sigma": sigma.numpy(), **({"labels": labels.numpy()} if classes else {})}
    got = session.run(["denoised"], feed)[0]
    with torch.no_grad():
        want = sampler.denoiser(x, sigma, labels=labels).numpy()
    assert np.abs(got - want).max() <= 1e-4 and want.std() > 0.05


@needs_onnx
def test_onnx_runtime_sampler_calls_a_graph_like_the_pytorch_sampler(tmp_path):
    """OnnxRuntimeSampler: a generator graph in one call; a denoiser graph inside the Heun sampler, where 2N-1
    float32 evaluations, each within 1e-4 of PyTorch, compose to within 5e-4."""
    from scoremix.export import OnnxRuntimeSampler

    for kind, steps, tolerance in (("unet-cond", None, 1e-4), ("edm-mlp", 3, 5e-4)):
        run, _ = make_run(str(tmp_path / kind), kind)
        out = str(tmp_path / f"{kind}.onnx")
        assert main(["export", run, "--out", out]) == 0
        onnx_sampler = OnnxRuntimeSampler(out, steps=steps)
        torch_sampler, meta = scoremix.load_sampler(run, steps=steps)
        assert onnx_sampler.evaluations == meta["evaluations"] and onnx_sampler.metadata["step"] == meta["step"]
        z = torch.randn(6, *meta["latent_shape"])
        labels = torch.arange(6) % meta["num_classes"] if meta["num_classes"] else None
        with torch.no_grad():
            want = torch_sampler(z, labels=labels)
        got = onnx_sampler(z, labels)
        assert got.dtype == torch.float32 and (got - want).abs().max() <= tolerance
        assert want.std() > 0.05


@needs_onnx
def test_onnx_raw_and_ema_weights_differ_and_match_their_samplers(tmp_path):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    z = torch.randn(9, 2)
    outputs = {}
    for flag in ("--ema", "--raw"):
        out = tmp_path / f"g{flag}.onnx"
        assert main(["export", run, "--out", str(out), flag]) == 0
        outputs[flag] = _session(out).run(None, {"noise": z.numpy()})[0]
        sampler, meta = scoremix.load_sampler(run, weights=flag[2:])
        assert meta["weights"] == flag[2:]
        with torch.no_grad():
            assert np.abs(outputs[flag] - sampler(z).numpy()).max() <= 1e-4
    assert np.abs(outputs["--ema"] - outputs["--raw"]).max() > 1e-3


@needs_onnx
def test_readme_three_lines_from_a_run_folder_to_onnx_runtime_samples(tmp_path):
    """The README's three lines: export a run, open it with ONNX Runtime, draw samples (in a fresh process)."""
    run, _ = make_run(str(tmp_path / "runs" / "digits"), "unet-cond")
    script = (
        "import numpy as np, onnxruntime as ort\n"
        "session = ort.InferenceSession('digits.onnx')\n"
        "x = session.run(['samples'], {'noise': np.random.randn(16, 1, 8, 8).astype(np.float32),"
        " 'labels': np.arange(16) % 10})[0]\n"
        "np.save('x.npy', x)\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    subprocess.run(
        [sys.executable, "-m", "scoremix", "export", "runs/digits", "--format", "onnx", "--out", "digits.onnx"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True)
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (16, 1, 8, 8) and x.dtype == np.float32 and np.isfinite(x).all() and x.std() > 0.05


# -- folder: exact round trip, without the run's other files -------------------------------------------
@pytest.mark.parametrize("kind", ["unet-cond", "mlp-cond"])
def test_folder_export_reproduces_the_run_exactly_on_its_own(kind, tmp_path, capsys):
    run, cfg = make_run(str(tmp_path / "run"), kind)
    _, _, shape, classes, _ = KINDS[kind]
    folder = tmp_path / "export"
    assert main(["export", run, "--format", "folder", "--out", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("folder: generator (ema weights, step 5)")
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    description = json.load(open(folder / "config.json"))
    assert description["format"] == "scoremix-export" and description["kind"] == "one-step"
    assert description["data_shape"] == description["latent_shape"] == list(shape)
    assert description["num_classes"] == classes and description["library_version"] == scoremix.__version__
    assert description["config"] == cfg.to_dict() and description["weights"] == "ema"
    expected = scoremix.generate(run, 40, seed=3)
    moved = tmp_path / "elsewhere" / "model"  # away from the run, whose files are then deleted
    shutil.copytree(folder, moved)
    shutil.rmtree(run)
    got = scoremix.generate(str(moved), 40, seed=3)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    if len(shape) == 3:
        assert got.shape == (40, 8, 8, 1) and got.dtype == np.uint8
    else:  # points come back in the data file's units (mean about (10, -5, 3)), from the folder's own record
        assert description["data_transform"]["standardize"] == "global"
        assert np.allclose(got.mean(0), [10, -5, 3], atol=4)


def test_sample_command_reads_an_exported_folder_like_the_run(tmp_path, capsys):
    run, _ = make_run(str(tmp_path / "run"), "unet-cond")
    folder = str(tmp_path / "export")
    assert main(["export", run, "--format", "folder", "--out", folder]) == 0
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    assert main(["sample", "--checkpoint", run, "--n", "30", "--out", a, "--no-progress"]) == 0
    assert main(["sample", "--checkpoint", folder, "--n", "30", "--out", b, "--no-progress"]) == 0
    with np.load(a) as x, np.load(b) as y:
        assert np.array_equal(x["arr_0"], y["arr_0"]) and np.array_equal(x["arr_1"], y["arr_1"])
    capsys.readouterr()
    assert main(["sample", "--checkpoint", folder, "--raw", "--n", "4", "--out", a]) == 2
    assert "holds ema weights only" in _one_error_line(capsys)


def test_folder_export_of_a_trained_run_and_of_a_diffusion_run(tmp_path, tiny_cfg):
    from scoremix.trainer import Trainer

    Trainer(tiny_cfg(steps=3), str(tmp_path / "trained")).fit()
    assert main(["export", str(tmp_path / "trained"), "--format", "folder", "--raw", "--out", str(tmp_path / "t")]) == 0
    z = torch.randn(50, 2)
    run_sampler, _ = scoremix.load_sampler(str(tmp_path / "trained"), weights="raw")
    folder_sampler, meta = scoremix.load_sampler(str(tmp_path / "t"), weights="raw")
    assert meta["weights"] == "raw" and meta["step"] == 3
    with torch.no_grad():
        assert torch.equal(run_sampler(z), folder_sampler(z))
    run, _ = make_run(str(tmp_path / "edm"), "edm-mlp")
    assert main(["export", run, "--format", "folder", "--out", str(tmp_path / "e")]) == 0
    assert json.load(open(tmp_path / "e" / "config.json"))["network"] == "denoiser"
    a, meta = scoremix.load_sampler(run, steps=3)
    b, meta_b = scoremix.load_sampler(str(tmp_path / "e"), steps=3)
    assert meta_b["kind"] == "diffusion" and meta_b["evaluations"] == 5
    with torch.no_grad():
        assert torch.equal(a(z), b(z))
    teacher = scoremix.load_teacher(str(tmp_path / "e"))  # an exported diffusion run is a teacher too
    sigma = torch.full((50,), 0.7)
    assert torch.equal(teacher(z, sigma), a.denoiser(z, sigma))


def test_folder_export_replaces_an_earlier_export_and_nothing_else(tmp_path, capsys):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    out = tmp_path / "model"
    assert main(["export", run, "--format", "folder", "--out", str(out)]) == 0
    assert main(["export", run, "--format", "folder", "--raw", "--out", str(out)]) == 0
    assert json.load(open(out / "config.json"))["weights"] == "raw"
    assert sorted(os.listdir(tmp_path)) == ["model", "run"]  # no staging folders left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", run, "--format", "folder", "--out", str(other)]) == 2
    assert "folder with other files" in _one_error_line(capsys)
    assert os.listdir(other) == ["keep.txt"] and (other / "keep.txt").read_text() == "mine"


# -- bad input: one line, exit 2, nothing at --out -------------------------------------------------------
def _assert_refused(argv, message, capsys, out, parent):
    before = sorted(os.listdir(parent)) if os.path.isdir(parent) else None
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert message in line, line
    assert not os.path.exists(out)
    if before is not None:
        assert sorted(os.listdir(parent)) == before  # no temporary files either


def test_export_refusals(tmp_path, capsys):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "config.yaml").write_text("name: x\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    onnx_out, folder_out = str(out_dir / "g.onnx"), str(out_dir / "g")
    cases = [
        (["export", str(empty), "--out", onnx_out], "holds no generator.safetensors", onnx_out),
        (
            ["export", str(empty), "--format", "folder", "--out", folder_out],
            "holds no generator.safetensors",
            folder_out,
        ),
        (["export", str(tmp_path / "missing"), "--out", onnx_out], "does not exist", onnx_out),
        (["export", run, "--format", "tflite", "--out", onnx_out], "--format 'tflite' is unknown; use onnx", onnx_out),
        (["export", run, "--out", str(out_dir / "g.pt")], "must end in .onnx", str(out_dir / "g.pt")),
        (
            ["export", run, "--format", "folder", "--opset", "18", "--out", folder_out],
            "--opset applies to --format onnx only",
            folder_out,
        ),
    ]
    for argv, message, out in cases:
        _assert_refused(argv, message, capsys, out, str(out_dir))


def test_export_refuses_paths_that_cannot_be_written(tmp_path, capsys):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for argv in (
        ["export", run, "--out", str(blocker / "sub" / "g.onnx")],
        ["export", run, "--format", "folder", "--out", str(blocker / "g")],
    ):
        assert main(argv) == 2
        assert "is a file, not a folder" in _one_error_line(capsys)
    assert blocker.read_text() == "not a folder"
    assert main(["export", run, "--format", "folder", "--out", str(blocker)]) == 2
    assert "is a file" in _one_error_line(capsys)
    assert main(["export", run, "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_error_line(capsys)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["export", run, "--out", str(locked / "g.onnx")]) == 2
        assert "no permission" in _one_error_line(capsys)


@needs_onnx
def test_export_refuses_opsets_the_exporter_lacks(tmp_path, capsys):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    low, high = export_mod.opset_range()
    assert low == 18 and high >= 18
    for opset in (11, high + 1):
        _assert_refused(
            ["export", run, "--opset", str(opset), "--out", str(tmp_path / "g.onnx")],
            f"writes ONNX opsets {low} to {high}; pass --opset in that range",
            capsys,
            str(tmp_path / "g.onnx"),
            str(tmp_path),
        )
    assert main(["export", run, "--opset", str(high), "--out", str(tmp_path / "g.onnx")]) == 0
    import onnx

    written = [o.version for o in onnx.load(str(tmp_path / "g.onnx")).opset_import if o.domain in ("", "ai.onnx")]
    assert written == [high]


def test_export_without_the_onnx_packages_names_the_extra(tmp_path, capsys, monkeypatch):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    monkeypatch.setattr(export_mod, "onnx_missing", lambda: ["onnxruntime"])
    _assert_refused(
        ["export", run, "--out", str(tmp_path / "g.onnx")],
        "pip install 'scoremix[export]'",
        capsys,
        str(tmp_path / "g.onnx"),
        str(tmp_path),
    )


@needs_onnx
def test_a_graph_that_fails_its_check_is_not_written_and_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    run, _ = make_run(str(tmp_path / "run"), "mlp")
    out = tmp_path / "g.onnx"
    out.write_bytes(b"an earlier export")
    monkeypatch.setattr(export_mod, "onnx_check", lambda *a, **k: 3e-4)
    assert main(["export", run, "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "differs from PyTorch's by up to 0.0003 (> 0.0001)" in line and "nothing written" in line
    assert out.read_bytes() == b"an earlier export" and sorted(os.listdir(tmp_path)) == ["g.onnx", "run"]
