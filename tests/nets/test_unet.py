"""Plain U-Net: shapes in 2D/3D, deep supervision outputs and scales, plans-driven topology, bad input."""

import pytest
import torch

from salseg.errors import ConfigError, SalsegError
from salseg.nets import build
from salseg.nets.unet import unet_topology


def _tiny(dim=2, **kw):
    torch.manual_seed(0)
    return build("unet", in_channels=2, num_classes=3, dim=dim, width=2, **kw)


def test_2d_deep_supervision_shapes_and_scales():
    net = _tiny(2, patch_size=(32, 32)).train()
    outs = net(torch.randn(2, 2, 32, 32))
    # 32 -> 16 -> 8 -> 4: four stages, two DS outputs (the lowest decoder resolution is left out)
    assert [tuple(o.shape) for o in outs] == [(2, 3, 32, 32), (2, 3, 16, 16)]
    assert net.deep_supervision_scales == [[1.0, 1.0], [0.5, 0.5]]
    for o, s in zip(outs, net.deep_supervision_scales):
        assert list(o.shape[2:]) == [int(32 * f) for f in s]
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 32, 32)).shape == (1, 3, 32, 32)


def test_3d_anisotropic_plans():
    plans = {"pool_op_kernel_sizes": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
             "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
             "features_per_stage": [4, 8, 16], "patch_size": [8, 16, 16]}
    torch.manual_seed(0)
    net = build("unet", in_channels=1, num_classes=2, dim=3, plans=plans).train()
    assert net.features == [4, 8, 16]
    assert net.encoder[0][0].conv.kernel_size == (1, 3, 3)
    outs = net(torch.randn(1, 1, 8, 16, 16))
    assert [tuple(o.shape) for o in outs] == [(1, 2, 8, 16, 16)]
    assert net.deep_supervision_scales == [[1.0, 1.0, 1.0]]
    # width overrides the plans' features; cap at max_features
    net = build("unet", in_channels=1, num_classes=2, dim=3, plans=plans, width=8, max_features=12)
    assert net.features == [8, 12, 12]


def test_features_capped_and_default_topology():
    net = build("unet", in_channels=1, num_classes=2, dim=3, width=32, deep_supervision=False,
                patch_size=(64, 128, 128))
    assert max(net.features) == 320 and net.features[:4] == [32, 64, 128, 256]
    pools, kernels = unet_topology(None, 2)
    assert pools == [[1, 1]] + [[2, 2]] * 4 and len(kernels) == 5
    pools, kernels = unet_topology((10, 64, 64), 3, spacing=(5.0, 1.0, 1.0))
    assert pools[1] == [1, 2, 2]          # the coarse z axis is not pooled at first
    assert kernels[0] == [1, 3, 3]        # and gets a kernel of 1 while it is > 2x coarser


def test_bad_input_is_refused_clearly():
    net = _tiny(2, patch_size=(32, 32)).eval()
    with pytest.raises(SalsegError, match="not divisible by its total stride"):
        net(torch.randn(1, 2, 30, 32))
    with pytest.raises(SalsegError, match="expects input"):
        net(torch.randn(1, 2, 4, 32, 32))
    with pytest.raises(ConfigError, match="does not have 3 values"):
        build("unet", in_channels=1, num_classes=2, dim=3,
              plans={"pool_op_kernel_sizes": [[1, 1], [2, 2]], "conv_kernel_sizes": [[3, 3], [3, 3]]})


def test_gradients_reach_every_parameter():
    net = _tiny(2, patch_size=(16, 16)).train()
    loss = sum(o.square().mean() for o in net(torch.randn(2, 2, 16, 16)))
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
