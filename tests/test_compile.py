"""train.compile: regional compilation of the residual blocks keeps the math and the parameter names.

Compiling takes minutes on a shared 2-core CPU (27 s for the first step of an 8-channel U-Net even with
the aot_eager backend), so the test is marked slow; on a GPU `benchmarks/gpu_check.py` times it."""

import pytest
import torch


@pytest.mark.slow
def test_compiled_blocks_give_the_same_outputs_and_keys():
    from scoremix.nets.compile import compile_blocks
    from scoremix.nets.unet import SmallUNet

    torch.manual_seed(0)
    net = SmallUNet(1, 8, (1, 2), 1)
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4)
    keys = list(net.state_dict())
    reference = net(x, c)
    assert compile_blocks(net, backend="aot_eager") == 8
    out = net(x, c)
    torch.testing.assert_close(out, reference)
    assert list(net.state_dict()) == keys


def test_mlp_networks_have_no_blocks_to_compile():
    from scoremix.nets.compile import compile_blocks
    from scoremix.nets.mlp import MLPBackbone

    assert compile_blocks(MLPBackbone(2, hidden=8, depth=1)) == 0
