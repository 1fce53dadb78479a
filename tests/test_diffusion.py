"""Diffusion teachers trained by this library: the EDM objective, the Heun sampler, the run-folder teacher
loader, `scoremix sample --steps` and `scoremix teacher inspect`."""

import copy
import math

import pytest
import torch

import scoremix
from scoremix import checkpoint as ckpt
from scoremix.analytic import GaussianMixture
from scoremix.cli import main
from scoremix.config import NetConfig
from scoremix.config_loader import load_config
from scoremix.errors import ConfigError, TeacherError
from scoremix.methods import build_method
from scoremix.nets.build import build_backbone
from scoremix.objectives.diffusion import denoising_loss, lognormal_sigmas
from scoremix.presets import PRESETS
from scoremix.sampling import load_sampler
from scoremix.solvers import HeunSampler, heun_evaluations, heun_sample, heun_sigmas
from scoremix.trainer import Trainer
from tests.conftest import tiny_overrides

MIXTURE = GaussianMixture([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])


def _exact(mixture):
    return lambda x, sigma, labels=None: mixture.denoiser(x, sigma)


def _energy_distance(a, b):
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


# -- the Heun sampler ---------------------------------------------------------------------------------
def test_heun_sigmas_are_edm_eq5():
    s = heun_sigmas(18, 0.002, 80.0, 7.0)
    assert s.shape == (19,) and s[-1] == 0
    assert math.isclose(s[0], 80.0, rel_tol=1e-12) and math.isclose(s[-2], 0.002, rel_tol=1e-12)
    i = torch.arange(18, dtype=torch.float64)
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(s[:-1], expected, rtol=1e-12, atol=0)
    assert (s[:-1].diff() < 0).all()
    assert heun_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]
    with pytest.raises(ValueError):
        heun_sigmas(0)


@pytest.mark.parametrize("steps", [1, 2, 18, 35])
def test_heun_costs_2n_minus_1_evaluations(steps):
    calls = []

    def counting(x, sigma, labels=None):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    heun_sample(counting, torch.randn(3, 2), steps)
    assert len(calls) == heun_evaluations(steps) == 2 * steps - 1


def test_one_heun_step_is_the_denoiser_at_sigma_max():
    z = torch.randn(50, 2, dtype=torch.float64)
    x = heun_sample(_exact(MIXTURE), z, 1, sigma_max=80.0)
    assert torch.allclose(x, MIXTURE.denoiser(80.0 * z, 80.0), atol=1e-12)


def test_heun_on_a_gaussian_matches_the_exact_ode_flow():
    """For N(0, s^2) the probability-flow ODE maps sigma_max z to s sigma_max z / sqrt(s^2 + sigma_max^2)."""
    s = 0.5
    gaussian = GaussianMixture([[0.0]], [s])
    z = torch.randn(2000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = z * 80 * s / math.sqrt(s**2 + 80**2)
    err35 = (heun_sample(_exact(gaussian), z, 35) - exact).abs().mean()
    assert err35 < 0.01


def test_heun_converges_at_second_order():
    """Halving the step (18 -> 35 steps, 17 -> 34 intervals) divides the error by about 4 for a 2nd-order
    method (2 for Euler). Error: mean distance to a 300-step solution from the same noise."""
    z = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = heun_sample(_exact(MIXTURE), z, 300)
    err = {n: float((heun_sample(_exact(MIXTURE), z, n) - ref).norm(dim=1).mean()) for n in (18, 35)}
    assert 3.0 < err[18] / err[35] < 6.0, err
    assert err[35] < 0.02


def test_heun_35_steps_lands_on_the_mixture():
    """35 steps with the exact denoiser of a 3-component 2-D mixture: component weights within 0.02
    (binomial noise of 10k draws: std <= 0.005), component means within 0.05, stds within 5 %, and the
    energy distance to exact draws within twice that of two exact sets plus 1e-3."""
    g = torch.Generator().manual_seed(0)
    x = heun_sample(_exact(MIXTURE), torch.randn(10000, 2, dtype=torch.float64, generator=g), 35)
    comp = MIXTURE.posterior(x, 0.0).argmax(1)
    weights = torch.bincount(comp, minlength=3).double() / len(comp)
    assert (weights - MIXTURE.weights).abs().max() < 0.02, weights
    for k in range(3):
        xs = x[comp == k]
        assert (xs.mean(0) - MIXTURE.means[k]).norm() < 0.05
        assert abs(float(xs.std(0).mean()) / float(MIXTURE.stds[k]) - 1) < 0.05
    exact_a, exact_b = MIXTURE.sample(4000, g), MIXTURE.sample(4000, g)
    floor = _energy_distance(exact_a, exact_b)
    assert _energy_distance(x[:4000], exact_a) < 2 * abs(floor) + 1e-3
    few = heun_sample(_exact(MIXTURE), torch.randn(4000, 2, dtype=torch.float64, generator=g), 4)
    assert _energy_distance(few, exact_a) > 10 * (2 * abs(floor) + 1e-3)  # the check can fail


# -- the EDM objective ----------------------------------------------------------------------------------
def test_lognormal_sigmas():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s = lognormal_sigmas(1000, -1.2, 1.2, generator=g1)
    assert torch.allclose(s, torch.exp(-1.2 + 1.2 * torch.randn(1000, generator=g2)))
    logs = lognormal_sigmas(40000, 0.3, 0.7, generator=torch.Generator().manual_seed(0)).log()
    assert abs(float(logs.mean()) - 0.3) < 0.02 and abs(float(logs.std()) - 0.7) < 0.02


def test_edm_loss_of_the_ideal_denoiser_is_one():
    """Data N(0, sigma_data^2 I): the posterior mean has error variance sigma^2 sigma_d^2 / (sigma^2 + sigma_d^2)
    per coordinate, which lambda(sigma) = sigma^-2 + sigma_d^-2 turns into exactly 1 at every sigma."""
    cfg = load_config("ring8-edm", tiny_overrides())
    method = build_method(cfg, (2,), 0)
    sd = cfg.data.sigma_data

    class Ideal(torch.nn.Module):
        def forward(self, x, sigma, labels=None):
            s = sigma.reshape(-1, 1)
            return x * sd**2 / (s**2 + sd**2)

    method.train_networks["denoiser"] = Ideal()
    torch.manual_seed(0)
    x = sd * torch.randn(200000, 2)
    loss, stats = method.loss("denoiser", (x, None), 0)
    assert abs(float(loss) - 1.0) < 0.02
    sigma = torch.tensor([0.1, 1.0])
    per = denoising_loss(torch.zeros(2, 2), torch.ones(2, 2), sigma, sd)
    assert torch.allclose(per, sigma**-2 + sd**-2)


def test_one_edm_step_changes_only_the_denoiser_and_its_ema(tmp_path):
    cfg = load_config("ring8-edm", tiny_overrides(steps=1, **{"eval.heun_steps": 2}))
    trainer = Trainer(cfg, str(tmp_path / "run"))
    assert set(trainer.method.networks) == {"denoiser"} and set(trainer.optimizers) == {"denoiser"}
    before = copy.deepcopy(trainer.method.networks["denoiser"].state_dict())
    ema_before = copy.deepcopy(trainer.ema.module.state_dict())
    stats = trainer.train_step(trainer.source.next_batch())
    assert set(stats) == {"loss_denoiser", "grad_norm_denoiser"}
    trainer.write_samples("check")  # sampling through the Heun wrapper leaves the modes as they were
    assert trainer.method.networks["denoiser"].training and not trainer.ema.module.training
    after = trainer.method.networks["denoiser"].state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    params = {k for k, _ in trainer.method.networks["denoiser"].named_parameters()}
    assert set(changed) == params  # every weight moved; buffers (Fourier frequencies) did not
    assert trainer.ema.updates == 1
    assert any(not torch.equal(ema_before[k], v) for k, v in trainer.ema.module.state_dict().items())


def test_edm_config_keys_and_presets():
    for name in ("ring8-edm", "digits-edm", "mnist-edm"):
        assert name in PRESETS
        cfg = PRESETS[name]()
        assert cfg.method.name == "edm" and cfg.method.p_mean == -1.2 and cfg.method.p_std == 1.2
    cfg = load_config("mnist-edm", ["method.p_mean=-1.0", "eval.heun_steps=35"])
    assert cfg.method.p_mean == -1.0 and cfg.eval.heun_steps == 35
    with pytest.raises(ConfigError, match="heun_steps"):
        load_config("mnist-edm", ["eval.heun_steps=0"])
    with pytest.raises(ConfigError, match="p_std"):
        load_config("mnist-edm", ["method.p_std=0"])


# -- a tiny diffusion run: samples, reload as a teacher, CLI ------------------------------------------------
@pytest.fixture(scope="module")
def edm_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("edm") / "run")
    cfg = load_config("ring8-edm", tiny_overrides(steps=12, ckpt_every=6, **{"eval.heun_steps": 3}))
    trainer = Trainer(cfg, out)
    trainer.fit()
    return out, trainer


@pytest.fixture(scope="module")
def smt_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("smt") / "run")
    assert main(["train", "--config", "ring8", "--out", out, *tiny_overrides(steps=4)]) == 0
    return out


def test_diffusion_run_folder(edm_run):
    out, trainer = edm_run
    import json
    import os

    files = set(os.listdir(out))
    assert {"denoiser.safetensors", "metrics.json", "checkpoints", "samples"} <= files
    assert "generator.safetensors" not in files
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert {"raw", "ema"} <= set(metrics) and metrics["step"] == 12
    raw, ema, config, info = ckpt.load_generator(os.path.join(out, "denoiser.safetensors"))
    assert config["method"]["name"] == "edm" and ema is not None and info["step"] == 12
    from safetensors import safe_open

    with safe_open(os.path.join(out, "denoiser.safetensors"), framework="pt") as fh:
        assert fh.metadata()["format"] == "scoremix-denoiser"


@pytest.mark.parametrize("which", ["folder", "safetensors", "state"])
def test_saved_run_reloads_as_the_same_teacher(edm_run, which):
    out, trainer = edm_run
    path = {
        "folder": out,
        "safetensors": f"{out}/denoiser.safetensors",
        "state": f"{out}/checkpoints/state-0000012.pt",
    }[which]
    teacher = scoremix.load_teacher(path)
    x = torch.randn(64, 2)
    sigma = torch.exp(torch.randn(64))
    assert torch.equal(teacher(x, sigma), trainer.ema.module(x, sigma))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    info = teacher.info
    assert info["kind"] == "scoremix" and info["arch"] == "mlp" and info["precond"] == "edm"
    assert info["resolution"] is None and info["channels"] == 2 and info["num_classes"] == 0
    assert info["parameters"] == sum(p.numel() for p in trainer.method.networks["denoiser"].parameters())
    assert info["weights"] == "ema" and info["step"] == 12 and info["sigma_data"] == 1.4
    # the contract: features, the backbone, and a NetConfig that rebuilds the same network
    denoised, feats = teacher(x, sigma, return_features=True)
    assert torch.equal(denoised, teacher(x, sigma)) and feats.shape[0] == 64
    rebuilt = build_backbone(NetConfig(**info["net_config"]), tuple(info["data_shape"]), info["num_classes"])
    rebuilt.load_state_dict(teacher.backbone.state_dict())
    trainable = copy.deepcopy(teacher).requires_grad_(True)
    assert torch.equal(trainable(x, sigma), teacher(x, sigma))


def test_raw_weights_and_the_state_file_agree_with_memory(edm_run):
    from scoremix.teachers.run import load_run_teacher

    out, trainer = edm_run
    teacher = load_run_teacher(f"{out}/checkpoints/state-0000012.pt", use_ema=False)
    x, sigma = torch.randn(16, 2), torch.full((16,), 0.7)
    assert teacher.info["weights"] == "raw"
    assert torch.equal(teacher(x, sigma), trainer.method.networks["denoiser"](x, sigma))


def test_load_sampler_runs_heun_on_the_teacher(edm_run):
    out, _ = edm_run
    sampler, meta = load_sampler(out, steps=4)
    assert meta["kind"] == "diffusion" and meta["steps"] == 4 and meta["evaluations"] == 7
    assert meta["weights"] == "ema" and meta["data_shape"] == (2,)
    z = torch.randn(10, 2)
    teacher = scoremix.load_teacher(out)
    assert torch.allclose(sampler(z), heun_sample(teacher, z, 4, 0.002, 40.0, 7.0).float())
    default, meta = load_sampler(out)
    assert meta["steps"] == 3  # the run's eval.heun_steps


def test_load_sampler_one_step_generator(smt_run):
    sampler, meta = load_sampler(smt_run)
    assert meta["kind"] == "one-step" and meta["evaluations"] == 1 and meta["method"] == "smt"
    with pytest.raises(ConfigError, match="one-step generator"):
        load_sampler(smt_run, steps=4)


def test_sample_steps_cli(edm_run, smt_run, tmp_path, capsys):
    import numpy as np

    out, _ = edm_run
    npz = str(tmp_path / "s.npz")
    assert main(["sample", "--checkpoint", out, "--steps", "35", "--n", "20", "--out", npz]) == 0
    assert "35 Heun steps" in capsys.readouterr().out
    assert np.load(npz)["x"].shape == (20, 2)
    assert main(["sample", "--checkpoint", smt_run, "--steps", "35", "--n", "20", "--out", npz]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps applies to diffusion runs only" in err[0]
    assert main(["sample", "--checkpoint", out, "--steps", "0", "--n", "20", "--out", npz]) == 2


def test_eval_steps_cli(edm_run, tmp_path):
    import json

    out, _ = edm_run
    path = str(tmp_path / "m.json")
    assert main(["eval", "--checkpoint", out, "--steps", "2", "--samples", "100", "--json", path]) == 0
    result = json.load(open(path))
    assert result["heun_steps"] == 2 and {"raw", "ema"} <= set(result)


def test_teacher_inspect(edm_run, smt_run, tmp_path, capsys):
    out, trainer = edm_run
    assert main(["teacher", "inspect", out]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    n = sum(p.numel() for p in trainer.method.networks["denoiser"].parameters())
    assert lines["kind"] == "scoremix" and lines["arch"] == "mlp" and lines["resolution"] == "-"
    assert lines["channels"] == "2" and lines["classes"] == "0" and lines["parameters"] == f"{n:,}"
    assert main(["teacher", "inspect", smt_run]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one-step generator, not a diffusion model" in err[0]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["teacher", "inspect", str(bad)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(TeacherError):
        scoremix.load_teacher(smt_run)


def test_image_diffusion_run_reloads(tmp_path):
    """A U-Net denoiser on 8x8 digits: saved, reloaded as a teacher, same outputs; Heun samples in range."""
    cfg = load_config(
        "digits-edm",
        [
            "steps=2",
            "score.channels=8",
            "batch_size=8",
            "eval.samples=20",
            "eval.heun_steps=2",
            "progress=false",
            "sample_every=0",
            "ckpt_every=0",
            "optim.lr_warmup=0",
            "log_every=1",
        ],
    )
    trainer = Trainer(cfg, str(tmp_path / "run"))
    trainer.fit()
    teacher = scoremix.load_teacher(str(tmp_path / "run"))
    assert teacher.info["resolution"] == 8 and teacher.info["channels"] == 1 and teacher.info["arch"] == "unet"
    x, sigma = torch.randn(4, 1, 8, 8), torch.tensor([0.01, 0.5, 3.0, 80.0])
    assert torch.equal(teacher(x, sigma), trainer.ema.module(x, sigma))
    sampler, meta = load_sampler(str(tmp_path / "run"), steps=2)
    assert meta["evaluations"] == 3 and sampler(torch.randn(4, 1, 8, 8)).shape == (4, 1, 8, 8)
    assert isinstance(sampler, HeunSampler)
