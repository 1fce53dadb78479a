"""diffusers UNet2DModel teachers converted to EDM's denoiser form (scoremix.teachers.diffusers_unet)."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from scoremix.errors import TeacherError  # noqa: E402


def _tiny_unet(num_class_embeds=None, out_channels=3):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=out_channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    )
    with torch.no_grad():  # diffusers zero-initialises nothing important, but make every weight count
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return unet.eval()


def _save(tmp_path, unet, layout: str, **scheduler_kwargs):
    """layout 'pipeline': root/unet + root/scheduler; 'unet': one folder with scheduler_config.json."""
    scheduler = diffusers.DDPMScheduler(**scheduler_kwargs)
    if layout == "pipeline":
        unet.save_pretrained(tmp_path / "unet")
        scheduler.save_pretrained(tmp_path / "scheduler")
        (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
        return str(tmp_path), scheduler
    unet.save_pretrained(tmp_path)
    scheduler.save_config(tmp_path)
    return str(tmp_path), scheduler


def _reference_timestep(sigma: float, sigmas: np.ndarray) -> float:
    return float(np.interp(math.log(sigma), np.log(sigmas), np.arange(len(sigmas))))


@pytest.mark.parametrize(
    "prediction_type, layout, schedule",
    [("epsilon", "pipeline", "linear"), ("v_prediction", "unet", "squaredcos_cap_v2")],
)
def test_converted_denoiser_equals_closed_form_conversion(tmp_path, prediction_type, layout, schedule):
    from scoremix.teachers import load_teacher

    unet = _tiny_unet()
    folder, scheduler = _save(tmp_path, unet, layout, prediction_type=prediction_type, beta_schedule=schedule)
    teacher = load_teacher(folder)
    info = teacher.info
    assert (
        info["kind"],
        info["arch"],
        info["precond"],
        info["resolution"],
        info["channels"],
        info["num_classes"],
        info["net_config"],
        info["data_shape"],
    ) == ("diffusers", "UNet2DModel", prediction_type, 8, 3, 0, None, [3, 8, 8])
    assert info["parameters"] == sum(p.numel() for p in unet.parameters())
    abar = scheduler.alphas_cumprod.double().numpy()  # diffusers' own schedule (float32)
    sigmas = np.sqrt((1 - abar) / abar)
    assert np.allclose(teacher.sigmas.numpy(), sigmas, rtol=1e-6, atol=0)
    assert info["sigma_max"] == pytest.approx(sigmas[-1], rel=1e-5)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen) * 3
    for sigma in (float(sigmas[10]), 0.37, 4.2, float(sigmas[-1])):
        t = _reference_timestep(sigma, sigmas)
        a, s = 1 / math.sqrt(1 + sigma**2), sigma / math.sqrt(1 + sigma**2)
        with torch.no_grad():
            out = unet(x * a, torch.full((2,), t)).sample
            expected = x - sigma * out if prediction_type == "epsilon" else a * (a * x) - s * out
            got = teacher(x, sigma)
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * (1 + sigma)), sigma
    # the integer timesteps are hit exactly
    assert teacher.timestep(torch.tensor(sigmas[[0, 10, 999]])).tolist() == pytest.approx([0, 10, 999], abs=1e-9)

    denoised, feats = teacher(x, 1.0, return_features=True)
    assert feats.shape == (2, 16, 4, 4) and torch.equal(denoised, teacher(x, 1.0))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_exact_prediction_gives_the_clean_image(tmp_path, prediction_type):
    """If the UNet returned the true eps / v / y of x = y + sigma n, D(x; sigma) must return y exactly."""
    from scoremix.teachers.diffusers_unet import load_diffusers_unet

    folder, _ = _save(tmp_path, _tiny_unet(), "unet", prediction_type=prediction_type)
    teacher = load_diffusers_unet(folder)
    y, n = torch.rand(3, 3, 8, 8) * 2 - 1, torch.randn(3, 3, 8, 8)
    sigma = torch.tensor([0.05, 1.3, 60.0])
    x = y + sigma.reshape(-1, 1, 1, 1) * n

    def oracle(sample, timesteps, class_labels=None):
        abar = (
            torch.from_numpy(
                np.interp(
                    timesteps.double().numpy(), np.arange(len(teacher.sigmas)), 1 / (1 + teacher.sigmas.numpy() ** 2)
                )
            )
            .reshape(-1, 1, 1, 1)
            .float()
        )
        a, s = abar.sqrt(), (1 - abar).sqrt()
        assert torch.allclose(sample, a * y + s * n, atol=2e-4)  # the network sees the VP-scaled sample
        target = {"epsilon": n, "v_prediction": a * n - s * y, "sample": y}[prediction_type]
        return types.SimpleNamespace(sample=target)

    teacher.backbone.forward = oracle
    assert torch.allclose(teacher(x, sigma), y, atol=2e-4)


def test_class_conditional_unet_takes_integer_and_one_hot_labels(tmp_path):
    from scoremix.teachers.diffusers_unet import load_diffusers_unet

    folder, _ = _save(tmp_path, _tiny_unet(num_class_embeds=4), "unet")
    teacher = load_diffusers_unet(folder)
    assert teacher.info["num_classes"] == 4
    x = torch.randn(2, 3, 8, 8)
    labels = torch.tensor([1, 3])
    got = teacher(x, 0.5, labels=labels)
    assert torch.equal(got, teacher(x, 0.5, labels=torch.nn.functional.one_hot(labels, 4).float()))
    assert not torch.allclose(got, teacher(x, 0.5, labels=labels.flip(0)))
    with pytest.raises(ValueError, match="class-conditional"):
        teacher(x, 0.5)


def test_missing_or_unsupported_scheduler_is_refused(tmp_path):
    from scoremix.teachers.diffusers_unet import load_diffusers_unet

    unet = _tiny_unet()
    unet.save_pretrained(tmp_path)
    with pytest.raises(TeacherError, match="no scheduler_config.json") as err:
        load_diffusers_unet(str(tmp_path))
    assert "\n" not in str(err.value)
    (tmp_path / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "DDPMScheduler", "prediction_type": "flow"})
    )
    with pytest.raises(TeacherError, match="prediction_type 'flow'"):
        load_diffusers_unet(str(tmp_path))
    (tmp_path / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "DDPMScheduler", "beta_schedule": "laplace"})
    )
    with pytest.raises(TeacherError, match="beta_schedule 'laplace'"):
        load_diffusers_unet(str(tmp_path))


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_beta_schedules_match_diffusers(schedule):
    from scoremix.precond_variants import ddpm_alphas_cumprod, ddpm_betas

    ours = ddpm_betas(1000, 1e-4, 0.02, schedule)
    scheduler = diffusers.DDPMScheduler(beta_schedule=schedule)
    assert torch.allclose(ours, scheduler.betas, rtol=1e-6, atol=0)
    assert np.allclose(ddpm_alphas_cumprod(ours), scheduler.alphas_cumprod.double().numpy(), rtol=1e-6, atol=0)


def test_center_input_sample_is_refused_in_one_line(tmp_path):
    from scoremix.teachers.diffusers_unet import load_diffusers_unet

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        center_input_sample=True,
    )
    folder, _ = _save(tmp_path, unet, "unet")
    with pytest.raises(TeacherError, match="center_input_sample=true") as err:
        load_diffusers_unet(folder)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("preset", ["mnist-smd", "mnist-dmd"])
def test_distilling_a_diffusers_teacher_is_refused_in_one_line(tmp_path, capsys, preset):
    """The README's former example (c): SMD/DMD students are rebuilt from the run's config for checkpoints and
    `scoremix sample`, which no UNet2DModel is, so the run is refused before anything is written."""
    from scoremix.cli import main

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    folder, _ = _save(tmp_path / "unet-folder", unet, "pipeline")
    out = tmp_path / "student"
    code = main(
        [
            "train",
            "--config",
            preset,
            f"method.teacher={folder}",
            "data.resolution=32",
            "--out",
            str(out),
            "steps=1",
            "progress=false",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "diffusers UNet2DModel" in err and "mnist-edm" in err and "EDM .pkl" in err
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
