"""Paper-scale backbones (DDPM++ for CIFAR-10, ADM for ImageNet 64): sizes, interface, alpha input,
class conditioning, dropout, dtype/layout robustness, and the EDM naming the checkpoint mapping relies on."""

from __future__ import annotations

import time

import pytest
import torch

from scoremix.nets.adm import ADM
from scoremix.nets.blocks import ResampleConv2d, ResidualBlock
from scoremix.nets.ddpmpp import DDPMpp
from scoremix.nets.embeddings import AlphaEmbedding
from scoremix.precond import Denoiser

RES = 16
SMALL = dict(
    img_resolution=RES,
    in_channels=3,
    out_channels=3,
    model_channels=16,
    channel_mult=(1, 2),
    num_blocks=1,
    attn_resolutions=(RES // 2,),
    dropout=0.0,
)
ARCHS = {"ddpmpp": DDPMpp, "adm": ADM}


def build_small(arch: str, seed: int = 0, **overrides):
    """A CPU-sized network whose parameters are all perturbed, so that zero-initialised output layers do
    not hide the dependence on the inputs."""
    torch.manual_seed(seed)
    kwargs = dict(SMALL, num_classes=0)
    if arch == "adm":
        kwargs["channels_per_head"] = 16
    kwargs.update(overrides)
    net = ARCHS[arch](**kwargs)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def inputs(batch: int = 3, num_classes: int = 0, alpha: bool = False, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, RES, RES, generator=gen)
    c_noise = torch.randn(batch, generator=gen)
    labels = torch.randint(0, num_classes, (batch,), generator=gen) if num_classes else None
    c_alpha = torch.rand(batch, generator=gen) - 0.5 if alpha else None
    return x, c_noise, labels, c_alpha


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------------
# Sizes of the paper-scale networks (built on the meta device: nothing is allocated)


@pytest.mark.parametrize("arch, kwargs, reported", [("ddpmpp", dict(), 56e6), ("adm", dict(num_classes=1000), 296e6)])
def test_full_size_parameter_count(arch, kwargs, reported):
    with torch.device("meta"):
        plain = ARCHS[arch](**kwargs)
        with_alpha = ARCHS[arch](alpha_input=True, **kwargs)
    n_plain, n_alpha = count(plain), count(with_alpha)
    assert abs(n_plain - reported) / reported < 0.02, n_plain
    # The alpha input adds exactly one AlphaEmbedding at the width where it joins the conditioning.
    emb_width = with_alpha.map_alpha.linear.out_features
    with torch.device("meta"):
        alpha_params = count(AlphaEmbedding(emb_width))
    assert n_alpha - n_plain == alpha_params
    print(f"{arch}: {n_plain:,} parameters; alpha_input adds {alpha_params:,}")


def test_full_size_configs_match_edm_layout():
    with torch.device("meta"):
        ddpmpp, adm = DDPMpp(), ADM(num_classes=1000)
    assert ddpmpp.bottleneck_channels == 256 and adm.bottleneck_channels == 768
    keys = set(ddpmpp.state_dict())
    for key in [
        "map_layer0.weight",
        "map_layer1.bias",
        "enc.32x32_conv.weight",
        "enc.32x32_block0.norm0.weight",
        "enc.32x32_block0.affine.weight",
        "enc.32x32_block0.skip.weight",
        "enc.16x16_down.conv0.weight",
        "enc.16x16_down.skip.resample_filter",
        "enc.16x16_block0.qkv.weight",
        "enc.16x16_block0.proj.bias",
        "dec.8x8_in0.norm2.weight",
        "dec.8x8_in1.conv1.weight",
        "dec.16x16_up.conv0.resample_filter",
        "dec.16x16_block4.qkv.weight",
        "dec.32x32_aux_norm.weight",
        "dec.32x32_aux_conv.bias",
    ]:
        assert key in keys, key
    assert "dec.16x16_block3.qkv.weight" not in keys  # DDPM++ decoder attends only in the last block
    assert ddpmpp.enc["16x16_block0"].num_heads == 1
    keys = set(adm.state_dict())
    for key in [
        "map_label.weight",
        "enc.64x64_conv.weight",
        "enc.32x32_down.skip.resample_filter",
        "enc.32x32_block0.qkv.weight",
        "dec.8x8_in0.proj.weight",
        "dec.64x64_block3.conv1.weight",
        "out_norm.weight",
        "out_conv.weight",
    ]:
        assert key in keys, key
    assert "map_label.bias" not in keys and "enc.32x32_down.skip.weight" not in keys
    assert "enc.64x64_block0.qkv.weight" not in keys  # no attention at 64x64
    assert adm.enc["32x32_block0"].num_heads == 384 // 64


# ----------------------------------------------------------------------------------------------------------
# Interface on small configurations


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
@pytest.mark.parametrize("num_classes, alpha", [(0, False), (0, True), (10, False), (10, True)])
def test_forward_backward_and_bottleneck(arch, num_classes, alpha):
    net = build_small(arch, num_classes=num_classes, alpha_input=alpha)
    x, c_noise, labels, c_alpha = inputs(num_classes=num_classes, alpha=alpha)
    out, feats = net(x, c_noise, labels=labels, c_alpha=c_alpha, return_bottleneck=True)
    assert out.shape == x.shape
    low_res = RES // 2 ** (len(SMALL["channel_mult"]) - 1)
    assert feats.shape == (x.shape[0], net.bottleneck_channels, low_res, low_res)
    (out.square().mean() + feats.mean()).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # Without return_bottleneck only the output comes back, and it is the same output.
    assert torch.equal(net(x, c_noise, labels=labels, c_alpha=c_alpha), out.detach())


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
def test_zeroed_alpha_layer_makes_output_independent_of_alpha(arch):
    net = build_small(arch, alpha_input=True).eval()
    x, c_noise, _, _ = inputs()
    alpha_a, alpha_b = torch.full((3,), -0.5), torch.tensor([0.5, 0.1, -0.3])
    with torch.no_grad():
        assert not torch.equal(net(x, c_noise, c_alpha=alpha_a), net(x, c_noise, c_alpha=alpha_b))
        net.map_alpha.linear.weight.zero_()
        net.map_alpha.linear.bias.zero_()
        assert torch.equal(net(x, c_noise, c_alpha=alpha_a), net(x, c_noise, c_alpha=alpha_b))


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
def test_alpha_flag_is_enforced(arch):
    x, c_noise, _, c_alpha = inputs(alpha=True)
    with pytest.raises(ValueError):
        build_small(arch, alpha_input=True)(x, c_noise)
    with pytest.raises(ValueError):
        build_small(arch, alpha_input=False)(x, c_noise, c_alpha=c_alpha)
    assert build_small(arch).map_alpha is None


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
def test_scalar_noise_and_alpha_broadcast_over_the_batch(arch):
    net = build_small(arch, alpha_input=True).eval()
    x, _, _, _ = inputs()
    with torch.no_grad():
        expanded = net(x, torch.full((3,), 0.3), c_alpha=torch.full((3,), -0.2))
        assert torch.equal(net(x, torch.tensor(0.3), c_alpha=torch.tensor(-0.2)), expanded)


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
def test_class_conditioning(arch):
    net = build_small(arch, num_classes=10).eval()
    x, c_noise, labels, _ = inputs(num_classes=10)
    with torch.no_grad():
        out = net(x, c_noise, labels=labels)
        one_hot = torch.nn.functional.one_hot(labels, 10).float()
        assert torch.allclose(net(x, c_noise, labels=one_hot), out, atol=1e-6)
        assert not torch.allclose(net(x, c_noise, labels=(labels + 1) % 10), out)
    with pytest.raises(ValueError):
        net(x, c_noise)


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
def test_label_dropout_one_drops_every_label_in_training_only(arch):
    net = build_small(arch, num_classes=10, label_dropout=1.0)
    x, c_noise, labels, _ = inputs(num_classes=10)
    with torch.no_grad():
        net.train()
        assert torch.equal(net(x, c_noise, labels=labels), net(x, c_noise, labels=(labels + 3) % 10))
        net.eval()
        assert not torch.equal(net(x, c_noise, labels=labels), net(x, c_noise, labels=(labels + 3) % 10))


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
@pytest.mark.parametrize("alpha", [False, True])
def test_inside_edm_denoiser(arch, alpha):
    net = build_small(arch, num_classes=10, alpha_input=alpha)
    denoiser = Denoiser(net, sigma_data=0.5, alpha_input=alpha)
    x, _, labels, _ = inputs(num_classes=10)
    sigma = torch.tensor([0.01, 1.0, 80.0])
    alpha_values = torch.tensor([0.0, 0.5, 1.0]) if alpha else None
    denoised, feats = denoiser(x, sigma, alpha=alpha_values, labels=labels, return_features=True)
    assert denoised.shape == x.shape and torch.isfinite(denoised).all()
    assert feats.shape[1] == net.bottleneck_channels
    denoised.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
def test_dropout_active_in_training_only(arch):
    net = build_small(arch, dropout=0.3)
    x, c_noise, _, _ = inputs()
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(x, c_noise), net(x, c_noise))
        net.train()
        assert not torch.equal(net(x, c_noise), net(x, c_noise))


@pytest.mark.parametrize("arch", ["ddpmpp", "adm"])
def test_channels_last_and_bf16_autocast(arch):
    net = build_small(arch, num_classes=10, alpha_input=True).eval()
    x, c_noise, labels, c_alpha = inputs(num_classes=10, alpha=True)
    with torch.no_grad():
        reference = net(x, c_noise, labels=labels, c_alpha=c_alpha)
        channels_last = net.to(memory_format=torch.channels_last)(
            x.to(memory_format=torch.channels_last), c_noise, labels=labels, c_alpha=c_alpha
        )
        assert torch.allclose(channels_last, reference, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, feats = net(x, c_noise, labels=labels, c_alpha=c_alpha, return_bottleneck=True)
    assert out.shape == x.shape and torch.isfinite(out).all() and torch.isfinite(feats).all()
    assert (out.float() - reference).abs().mean() < 0.05 * reference.abs().mean() + 1e-3
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_noise_embedding_order_and_endpoint():
    # DDPM++: [sin, cos], exponents i/(n-1) (last frequency exactly 1/10000); ADM: [cos, sin], exponents i/n.
    c_noise = torch.tensor([3.0, -1.5], dtype=torch.float64)
    song = DDPMpp(**SMALL).map_noise(c_noise).double()
    adm = ADM(**dict(SMALL, num_classes=0)).map_noise(c_noise).double()
    n = song.shape[1] // 2
    i = torch.arange(n, dtype=torch.float64)
    song_angles = c_noise[:, None] * 10000.0 ** (-i / (n - 1))
    adm_angles = c_noise[:, None] * 10000.0 ** (-i / n)
    assert torch.allclose(song, torch.cat([song_angles.sin(), song_angles.cos()], dim=1), atol=1e-5)
    assert torch.allclose(adm, torch.cat([adm_angles.cos(), adm_angles.sin()], dim=1), atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Layers whose exact behaviour matters for loading EDM weights


@pytest.mark.parametrize("up", [False, True])
def test_box_resampling_fast_path_equals_filter_convolution(up):
    torch.manual_seed(0)
    conv = ResampleConv2d(6, 4, 1, up=up, down=not up, resample_filter=(1, 1))
    x = torch.randn(2, 6, 8, 8)
    fast = conv(x)
    conv._box_filter = False
    assert torch.allclose(conv(x), fast, atol=1e-6)
    assert fast.shape[-1] == (16 if up else 4)


def test_smooth_resampling_filter_shapes():
    x = torch.randn(2, 4, 8, 8)
    down = ResampleConv2d(4, 4, 0, down=True, resample_filter=(1, 3, 3, 1))
    up = ResampleConv2d(4, 4, 0, up=True, resample_filter=(1, 3, 3, 1))
    assert down(x).shape[-1] == 4 and up(x).shape[-1] == 16
    # Constant images stay constant away from the border (the filter has unit gain).
    ones = torch.ones(1, 4, 8, 8)
    assert torch.allclose(down(ones)[..., 1:-1, 1:-1], torch.ones(1, 4, 2, 2))
    assert torch.allclose(up(ones)[..., 2:-2, 2:-2], torch.ones(1, 4, 12, 12))


def test_attention_channel_layout():
    """qkv output channels are laid out (head, channel in head, q/k/v), as in EDM checkpoints."""
    torch.manual_seed(0)
    block = ResidualBlock(32, 32, 8, attention=True, num_heads=2)
    h = torch.randn(2, 32, 4, 4)
    heads, head_dim, tokens = 2, 16, 16
    qkv = block.qkv(block.norm2(h)).reshape(2 * heads, head_dim, 3, tokens)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (batch*heads, head_dim, tokens)
    weights = torch.softmax(torch.einsum("ncq,nck->nqk", q, k) / head_dim**0.5, dim=2)
    expected = torch.einsum("nqk,nck->ncq", weights, v).reshape(h.shape)
    assert torch.allclose(block._attend(h), expected, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Full-size timing (run with: pytest -m slow tests/test_backbones.py -s)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, kwargs, res, num_classes", [("ddpmpp", dict(), 32, 0), ("adm", dict(num_classes=1000), 64, 1000)]
)
def test_full_size_forward_backward_time(arch, kwargs, res, num_classes):
    torch.manual_seed(0)
    net = ARCHS[arch](alpha_input=True, **kwargs)
    x = torch.randn(2, 3, res, res)
    c_noise = torch.randn(2)
    labels = torch.randint(0, num_classes, (2,)) if num_classes else None
    c_alpha = torch.rand(2) - 0.5
    start = time.perf_counter()
    out, feats = net(x, c_noise, labels=labels, c_alpha=c_alpha, return_bottleneck=True)
    (out.square().mean() + feats.mean()).backward()
    elapsed = time.perf_counter() - start
    assert out.shape == x.shape and torch.isfinite(out).all()
    print(f"\n{arch}: {count(net):,} parameters, forward+backward at batch 2 on CPU: {elapsed:.2f} s")
